"""The state file: one owner at a time, readers beside it, a run recorded once."""

from __future__ import annotations

import os

import pytest

from services.reporter.alerts import AlertStateLocked
from shared.config import ConfigError
from tests.reporter.alerts.runs import expired, report


def test_a_second_owner_of_the_state_file_gets_one_clear_line(open_alerting, state_file):
    open_alerting([])
    with pytest.raises(AlertStateLocked) as caught:
        open_alerting([])
    assert str(caught.value) == (
        f"alert state {state_file} is owned by another reporter (pid {os.getpid()}); "
        "only one reporter may use a state file"
    )
    assert isinstance(caught.value, ConfigError)  # the CLI's one-line error, exit 2


def test_the_state_file_is_free_again_once_its_owner_closed_it(open_alerting):
    open_alerting([]).close()
    open_alerting([])


def test_the_state_file_is_sqlite_in_wal_mode(open_alerting, state_file):
    import sqlite3

    open_alerting([])
    with sqlite3.connect(state_file) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_run_handed_over_twice_is_recorded_once(open_alerting):
    alerting = open_alerting([])
    run = report("r1", [expired("www.a.test")])
    assert alerting.on_report(run).opened == 1
    assert alerting.on_report(run).opened == 0


def test_problems_survive_a_restart_and_are_not_opened_again(open_alerting):
    run = [expired("www.a.test")]
    first = open_alerting([])
    first.on_report(report("r1", run))
    first.close()
    assert open_alerting([]).on_report(report("r2", run)).opened == 0


def test_a_corrupt_state_file_is_a_clear_error(tmp_path, open_alerting, state_file):
    state_file.parent.mkdir(parents=True)
    state_file.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=rf"^alert state {state_file}: cannot open: file is not a database$"):
        open_alerting([])
