"""New and removed zones between runs (``known_zones``), and how ``RunStarted`` carries them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.collector.known_zones import FILE_NAME, KnownZones, ZoneChanges
from shared.config import Config
from shared.messages import RunStarted, decode, encode

GOLDEN = Path(__file__).resolve().parents[1] / "wire" / "golden"


def store(tmp_path: Path) -> KnownZones:
    return KnownZones(tmp_path / FILE_NAME)


def run(tmp_path: Path, discovered: dict[str, list[str] | None], run_zones: list[str] | None = None) -> ZoneChanges:
    """One run as ``start_run`` does it: compare with the record, then record (a fresh load each time)."""
    known = store(tmp_path)
    everything = [z for zones in discovered.values() if zones for z in zones]
    changes = known.changes(discovered, run_zones if run_zones is not None else everything)
    known.record(discovered, "run")
    assert known.save()
    return changes


def test_the_first_run_of_a_source_finds_every_zone_new(tmp_path: Path) -> None:
    assert run(tmp_path, {"cat": ["b.test", "a.test"]}) == ZoneChanges(new=["a.test", "b.test"], removed=[])


def test_an_unchanged_source_reports_nothing_new_or_removed(tmp_path: Path) -> None:
    run(tmp_path, {"cat": ["a.test", "b.test"]})
    assert not run(tmp_path, {"cat": ["b.test", "a.test"]})


def test_a_zone_that_appears_is_new_once_and_one_that_disappears_is_removed_once(tmp_path: Path) -> None:
    run(tmp_path, {"cat": ["a.test", "b.test"]})
    assert run(tmp_path, {"cat": ["a.test", "b.test", "c.test"]}) == ZoneChanges(new=["c.test"], removed=[])
    assert run(tmp_path, {"cat": ["b.test", "c.test"]}) == ZoneChanges(new=[], removed=["a.test"])
    assert not run(tmp_path, {"cat": ["b.test", "c.test"]})


def test_a_source_whose_discovery_failed_keeps_its_zones_neither_removed_nor_new(tmp_path: Path) -> None:
    run(tmp_path, {"cat": ["a.test"], "pdns": ["p.test"]})
    assert not run(tmp_path, {"cat": None, "pdns": ["p.test"]}, run_zones=["p.test"])
    assert json.loads((tmp_path / FILE_NAME).read_text())["cat"]["zones"] == ["a.test"]
    # once it works again, it is compared with what it had before it failed
    assert run(tmp_path, {"cat": [], "pdns": ["p.test"]}) == ZoneChanges(new=[], removed=["a.test"])


def test_the_zones_of_a_source_taken_out_of_the_config_are_removed(tmp_path: Path) -> None:
    run(tmp_path, {"cat": ["a.test"], "pdns": ["p.test"]})
    assert run(tmp_path, {"pdns": ["p.test"]}) == ZoneChanges(new=[], removed=["a.test"])
    assert "cat" not in json.loads((tmp_path / FILE_NAME).read_text())


def test_a_zone_still_in_the_run_is_never_removed_and_a_named_one_is_never_new(tmp_path: Path) -> None:
    run(tmp_path, {"cat": ["a.test", "b.test"]})
    # a.test left the catalog but is still named in the config
    assert not run(tmp_path, {"cat": ["b.test"]}, run_zones=["a.test", "b.test"])
    known = store(tmp_path)
    assert known.changes({"cat": ["b.test", "named.test"]}, ["named.test", "b.test"], named=["named.test"]) == (
        ZoneChanges()
    )


def test_an_unreadable_record_counts_every_zone_as_new(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    assert run(tmp_path, {"cat": ["a.test"]}) == ZoneChanges(new=["a.test"], removed=[])
    assert "ignoring unreadable" in caplog.text


def test_without_state_dir_nothing_is_recorded() -> None:
    assert KnownZones.for_config(Config()) is None


def test_a_run_without_zone_changes_is_encoded_exactly_as_before_them() -> None:
    """omit_defaults: a run without discovery puts the same bytes on the wire as before."""
    golden = (GOLDEN / "run_started.v1.json").read_bytes().strip()
    decoded = decode(golden)
    assert isinstance(decoded, RunStarted) and decoded.new_zones == [] and decoded.removed_zones == []
    assert encode(decoded) == golden


def test_a_run_started_with_zone_changes_decodes_from_its_golden_bytes() -> None:
    decoded = decode((GOLDEN / "run_started.v1.zone-changes.json").read_bytes())
    assert decoded == RunStarted(
        run_id="20261201T101500Z-0a1b2c3d",
        started_at=datetime(2026, 12, 1, 10, 15, tzinfo=UTC),
        zones=["example.test", "catalog.test", "new.test"],
        source="config",
        new_zones=["new.test"],
        removed_zones=["gone.test"],
    )
