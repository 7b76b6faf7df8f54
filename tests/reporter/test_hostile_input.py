"""Names and messages from outside are data, never instructions: no formula cell in a CSV, no forged
log line, no broken terminal table, and no message that pins ``latest.csv`` to a run that never
started."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from services.cli import main
from services.console import print_report
from services.reporter.handler import ReporterHandler
from services.reporter.journal import RunJournal
from services.reporter.outputs import CsvFileSink, DirectorySink, render_csv, spreadsheet_safe
from services.reporter.report import Row, RunReport
from shared import findings
from shared.config import Config
from shared.messages import PlannedJob, RunStarted, ScanResult, ZonePlan
from shared.runner import PermanentError

NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
HYPERLINK = '=hyperlink("http://evil.example/","x")'
FORGED = "\n2026-12-01 10:00:00,000 ERROR dcc.reporter: 10.9.9.9:443 - forged - certificate has expired"
TRIGGERS = ["=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20"]  # and their full-width forms


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def report_of(*rows: Row, run_id: str = "r1") -> RunReport:
    return RunReport(run_id, NOW, NOW, True, ["a.test"], list(rows), [])


def expired(fqdn: str, ip: str = "127.0.0.1") -> Row:
    return Row("a.test", ip, 443, fqdn, findings.error(findings.Code.CERT_EXPIRED))


# -- CSV: formula injection -------------------------------------------------------------------


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_a_cell_a_spreadsheet_would_evaluate_is_prefixed_with_a_quote(trigger: str) -> None:
    assert spreadsheet_safe(f"{trigger}cmd|' /C calc'!A0") == f"'{trigger}cmd|' /C calc'!A0"


@pytest.mark.parametrize(
    "cell",
    [
        "",
        "www.a.test",
        "*.a.test",
        "2001:db8::1",
        "443",
        'certificate "CN=www.a.test,O=Example" expiring at 2026-12-01T12:00:00',  # "=" inside: text
        "Mozilla - unable to get local issuer certificate",
        " =1+1",
        "'=already quoted",
    ],
)
def test_an_ordinary_cell_is_left_exactly_as_it_is(cell: str) -> None:
    assert spreadsheet_safe(cell) == cell


def test_every_column_of_the_csv_is_neutralised() -> None:
    hostile = Row("a.test", "=1+2", 443, "+" + HYPERLINK, findings.error(findings.Code.CERT_EXPIRED, "@SUM(A1)"))
    rows = list(csv.reader(io.StringIO(render_csv(report_of(hostile)))))
    assert rows[1] == ["'=1+2", "443", "'+" + HYPERLINK, "error", "'@SUM(A1)"]


def test_an_ordinary_csv_is_byte_for_byte_the_original_format() -> None:
    warning = findings.expiring("CN=www.a.test", datetime(2026, 12, 1, 12, tzinfo=UTC))
    loop = findings.error(findings.Code.CNAME_LOOP, "CNAME loop: x.a.test -> x.a.test")
    report = report_of(
        Row("a.test", "127.0.0.1", 443, "www.a.test", warning),
        Row("a.test", "2001:db8::1", 8443, "*.a.test", findings.error(findings.Code.SELF_SIGNED)),
        Row("a.test", "", None, "x.a.test", loop),
    )
    assert render_csv(report) == (
        "ip_address,port,fqdn,status,message\n"
        '127.0.0.1,443,www.a.test,warning,"certificate ""CN=www.a.test"" expiring at 2026-12-01T12:00:00"\n'
        "2001:db8::1,8443,*.a.test,error,self signed certificate\n"
        ",,x.a.test,error,CNAME loop: x.a.test -> x.a.test\n"
    )


def test_the_run_csv_and_latest_csv_are_neutralised_and_the_jsonl_keeps_the_name(tmp_path: Path) -> None:
    run_id = "20261201T100000Z-aaaa"
    sink = DirectorySink(tmp_path)
    sink.write(RunReport(run_id, NOW, NOW, True, ["a.test"], [expired(HYPERLINK)], []))
    for name in (f"{run_id}.csv", "latest.csv"):
        assert read_csv(tmp_path / name)[1] == ["127.0.0.1", "443", "'" + HYPERLINK, "error", "certificate has expired"]
    assert json.loads((tmp_path / f"{run_id}.jsonl").read_text())["fqdn"] == HYPERLINK


def test_the_single_file_csv_is_neutralised(tmp_path: Path) -> None:
    CsvFileSink(tmp_path / "out.csv", tmp_path / "out.jsonl").write(report_of(expired("-" + HYPERLINK)))
    assert read_csv(tmp_path / "out.csv")[1][2] == "'-" + HYPERLINK
    assert json.loads((tmp_path / "out.jsonl").read_text())["fqdn"] == "-" + HYPERLINK


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``main`` installs its own log handler and quietens third-party loggers: undo both afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    others = {name: logging.getLogger(name).level for name in ("pika", "sslyze", "urllib3", "httpx")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in others.items():
        logging.getLogger(name).setLevel(level)


def run_zones(tmp_path: Path, records: list[dict[str, object]]) -> tuple[Path, Path]:
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"evil.test": records}))
    config = tmp_path / "config.json"
    config.write_text("{}")
    out, jsonl = tmp_path / "out.csv", tmp_path / "out.jsonl"
    code = main(["--from-zones-json", str(zones), "-o", str(out), "--jsonl", str(jsonl), "--config", str(config)])
    assert code == 0
    return out, jsonl


def test_zone_records_named_like_formulas_reach_the_csv_as_text(tmp_path, capsys, root_logging) -> None:
    names = [HYPERLINK, "+cmd", "-cmd", "@cmd"]
    records = [{"type": "CNAME", "name": name, "ttl": 300, "target": "gone"} for name in names]
    out, jsonl = run_zones(tmp_path, records)
    rows = read_csv(out)[1:]
    assert sorted(row[2] for row in rows) == sorted(f"'{name}.evil.test" for name in names)
    assert all(not cell.startswith(tuple(TRIGGERS)) for row in rows for cell in row)
    assert sorted(json.loads(line)["fqdn"] for line in jsonl.read_text().splitlines()) == sorted(
        f"{name}.evil.test" for name in names
    )


# -- logs and terminal: one record, one line ----------------------------------------------------


def test_a_newline_in_a_zone_name_cannot_forge_a_log_line(tmp_path, capsys, root_logging) -> None:
    run_zones(tmp_path, [{"type": "CNAME", "name": "www" + FORGED, "ttl": 300, "target": "gone"}])
    lines = capsys.readouterr().err.splitlines()
    assert not any(line.startswith("2026-12-01 10:00:00,000") for line in lines)
    escaped = "www\\n2026-12-01 10:00:00,000 error dcc.reporter: 10.9.9.9:443 - forged"  # names are lower-cased
    assert any(escaped in line.lower() for line in lines)


def test_a_log_line_of_a_finding_is_one_line_whatever_the_certificate_says() -> None:
    warning = findings.expiring("CN=evil" + FORGED, datetime(2026, 12, 1, 12, tzinfo=UTC))
    line = Row("a.test", "127.0.0.1", 443, "www\r\x1b[2Ja.test", warning).log_line()
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.startswith('127.0.0.1:443 - www\\r\\x1b[2Ja.test - certificate "CN=evil\\n2026-12-01')


def test_the_reporter_logs_a_hostile_certificate_subject_on_one_line(tmp_path, caplog) -> None:
    handler = ReporterHandler(Config(), DirectorySink(tmp_path))
    handler.handle(RunStarted(run_id="r1", started_at=NOW, zones=["a.test"]))
    warning = findings.expiring("CN=evil" + FORGED, datetime(2026, 12, 1, 12, tzinfo=UTC))
    with caplog.at_level("WARNING", logger="dcc.reporter"):
        handler.handle(result("r1", "j1", "www.a.test", warning))
    (record,) = [r for r in caplog.records if r.name == "dcc.reporter"]
    assert "\n" not in record.getMessage() and "forged - certificate has expired" in record.getMessage()


def test_a_hostile_name_cannot_break_a_row_of_the_terminal_table() -> None:
    out = io.StringIO()
    hostile = expired("evil\x1b[2J\r\nforged\u2028.a.test")
    print_report(report_of(hostile, expired("ok.a.test", "127.0.0.2")), console=Console(file=out, width=300))
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text and "\u2028" not in text
    (row,) = [line for line in text.splitlines() if "evil" in line]
    assert "forged" in row and "certificate has expired" in row and "CERT_EXPIRED" in row


# -- a run that never started ---------------------------------------------------------------------

FUTURE = "29991231T235959Z-deadbeef"
HONEST = "20261201T100000Z-0a0a0a0a"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def result(run_id: str, job: str, fqdn: str, *found: findings.Finding) -> ScanResult:
    return ScanResult(
        job_id=job, run_id=run_id, zone="a.test", ip_address="10.9.9.9", port=443, fqdn=fqdn,
        findings=list(found), scanned_at=NOW,
    )  # fmt: skip


def complete_run(handler: ReporterHandler, run_id: str, started_at: datetime = NOW) -> None:
    handler.handle(RunStarted(run_id=run_id, started_at=started_at, zones=["a.test"]))
    handler.handle(ZonePlan(run_id=run_id, zone="a.test", jobs=[PlannedJob("j1", "10.9.9.9", 443, "www.a.test")]))
    handler.handle(result(run_id, "j1", "www.a.test", findings.error(findings.Code.CERT_EXPIRED)))


def make(
    tmp_path: Path, journal: RunJournal | None = None, max_unstarted_runs: int = 16, max_unstarted_entries: int = 20_000
) -> tuple[ReporterHandler, list[RunReport], Clock, WallClock]:
    """A reporter with a 60 s run deadline on clocks the test moves."""
    reports: list[RunReport] = []
    clock, wall = Clock(), WallClock()
    handler = ReporterHandler(
        Config(run_deadline=60),
        DirectorySink(tmp_path),
        on_report=reports.append,
        clock=clock,
        journal=journal,
        wall_clock=wall,
        max_unstarted_runs=max_unstarted_runs,
        max_unstarted_entries=max_unstarted_entries,
    )
    return handler, reports, clock, wall


def test_a_result_for_a_run_that_never_started_is_never_reported(tmp_path: Path) -> None:
    handler, reports, clock, _ = make(tmp_path)
    handler.handle(result(FUTURE, "j1", "www.a.test", findings.error(findings.Code.CERT_EXPIRED)))
    clock.now = 120
    handler.tick()  # the run deadline passes without its RunStarted
    assert reports == [] and sorted(p.name for p in tmp_path.iterdir()) == []
    complete_run(handler, HONEST)
    assert [r.run_id for r in reports] == [HONEST]
    assert (tmp_path / "latest.csv").read_bytes() == (tmp_path / f"{HONEST}.csv").read_bytes()


def test_results_held_for_a_run_are_logged_only_once_it_starts(tmp_path: Path, caplog) -> None:
    handler, reports, _, _ = make(tmp_path)
    with caplog.at_level("WARNING", logger="dcc.reporter"):
        handler.handle(result(HONEST, "j1", "www.a.test", findings.error(findings.Code.CERT_EXPIRED)))
        assert [r for r in caplog.records if "certificate has expired" in r.getMessage()] == []
        handler.handle(RunStarted(run_id=HONEST, started_at=NOW, zones=["a.test"]))
        handler.handle(ZonePlan(run_id=HONEST, zone="a.test", jobs=[PlannedJob("j1", "10.9.9.9", 443, "www.a.test")]))
    logged = [r.getMessage() for r in caplog.records if "certificate has expired" in r.getMessage()]
    assert logged == ["10.9.9.9:443 - www.a.test - certificate has expired"]
    assert len(reports) == 1 and reports[0].complete  # the result that came first still counts


def test_what_is_held_for_runs_that_never_started_is_bounded(tmp_path: Path, caplog) -> None:
    handler, reports, clock, _ = make(tmp_path, max_unstarted_runs=2, max_unstarted_entries=3)
    handler.handle(result("stray-1", "j1", "a.a.test"))
    handler.handle(result("stray-2", "j1", "a.a.test"))
    with pytest.raises(PermanentError, match="never started"):
        handler.handle(result("stray-3", "j1", "a.a.test"))  # a third such run: dead-lettered
    handler.handle(result("stray-1", "j2", "b.a.test"))
    handler.handle(result("stray-1", "j2", "b.a.test"))  # a redelivery holds nothing more
    with pytest.raises(PermanentError, match="never started"):
        handler.handle(result("stray-2", "j2", "b.a.test"))  # a fourth entry
    handler.handle(RunStarted(run_id="begun", started_at=NOW, zones=["a.test"]))  # a run that starts is not held
    clock.now = 120
    with caplog.at_level("WARNING", logger="dcc.reporter"):
        handler.tick()
    dropped = [r.getMessage() for r in caplog.records if "never started" in r.getMessage()]
    assert len(dropped) == 2 and any("2 messages of run stray-1" in m for m in dropped)
    assert [r.run_id for r in reports] == ["begun"]  # written incomplete at its deadline; the stray ones never
    handler.handle(result("stray-3", "j1", "a.a.test"))  # room again


def test_a_run_that_never_started_leaves_no_journal_behind(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path / ".journal")
    handler, reports, clock, _ = make(tmp_path, journal=journal)
    handler.handle(result(FUTURE, "j1", "www.a.test"))
    assert [p.name for p in (tmp_path / ".journal").iterdir()] == [f"{FUTURE}.journal"]
    clock.now = 120
    handler.tick()
    assert list((tmp_path / ".journal").iterdir()) == [] and reports == []


def test_a_run_that_claims_to_start_in_the_future_cannot_pin_latest_csv(tmp_path: Path) -> None:
    handler, reports, _, wall = make(tmp_path)
    complete_run(handler, FUTURE, started_at=datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert (tmp_path / "latest.csv").read_bytes() == (tmp_path / f"{FUTURE}.csv").read_bytes()
    assert reports[0].started_at == NOW  # as this reporter saw it start, not as it claims
    wall.now = NOW + timedelta(hours=1)
    complete_run(handler, HONEST, started_at=NOW + timedelta(hours=1))
    assert (tmp_path / "latest.csv").read_bytes() == (tmp_path / f"{HONEST}.csv").read_bytes()


def test_a_directory_pinned_by_the_old_marker_moves_on(tmp_path: Path) -> None:
    (tmp_path / ".latest-run").write_text(FUTURE)  # what the old reporter left behind
    (tmp_path / "latest.csv").write_text("pinned\n")
    handler, _, _, _ = make(tmp_path)
    complete_run(handler, HONEST)
    assert (tmp_path / "latest.csv").read_bytes() == (tmp_path / f"{HONEST}.csv").read_bytes()
    assert not (tmp_path / ".latest-run").exists()
