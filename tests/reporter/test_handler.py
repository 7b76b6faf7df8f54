"""The reporter handler: completion, duplicates, deadlines, and the files it writes."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.reporter.handler import ReporterHandler
from services.reporter.outputs import CsvFileSink, DirectorySink, ReportSink
from services.reporter.report import RunReport
from shared import findings
from shared.config import Config
from shared.messages import LocatedFinding, PlannedJob, RunStarted, ScanResult, ZonePlan
from shared.runner import PermanentError

NOW = datetime(2026, 11, 29, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def started(zones=("a.test", "b.test")) -> RunStarted:
    return RunStarted(run_id="r1", started_at=NOW, zones=list(zones))


def result(jid: str, fqdn: str, *found) -> ScanResult:
    return ScanResult(
        job_id=jid,
        run_id="r1",
        zone=fqdn.split(".", 1)[1],
        ip_address="127.0.0.1",
        port=443,
        fqdn=fqdn,
        findings=list(found),
        scanned_at=NOW,
    )


def zone_plan(zone: str, *jobs: tuple[str, str], zone_findings=()) -> ZonePlan:
    return ZonePlan(
        run_id="r1", zone=zone, jobs=[PlannedJob(j, "127.0.0.1", 443, f) for j, f in jobs], findings=list(zone_findings)
    )


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def make(tmp_path: Path, **config):
    reports: list[RunReport] = []
    clock = Clock()
    handler = ReporterHandler(Config(**config), DirectorySink(tmp_path), on_report=reports.append, clock=clock)
    return handler, reports, clock


def test_run_completes_when_every_zone_is_planned_and_every_job_reported(tmp_path):
    handler, reports, _ = make(tmp_path)
    loop = LocatedFinding(
        fqdn="x.b.test", finding=findings.error(findings.Code.CNAME_LOOP, "CNAME loop: x.b.test -> x.b.test")
    )
    # results may overtake their plan: they come from other processes
    handler.handle(result("j2", "www.b.test", findings.error(findings.Code.CERT_EXPIRED)))
    handler.handle(started())
    handler.handle(zone_plan("a.test", ("j1", "www.a.test")))
    assert reports == []
    handler.handle(zone_plan("b.test", ("j2", "www.b.test"), zone_findings=[loop]))
    assert reports == []
    handler.handle(
        result("j1", "www.a.test", findings.expiring("CN=www.a.test", datetime(2026, 12, 1, 12, tzinfo=UTC)))
    )
    assert len(reports) == 1 and reports[0].complete
    rows = read_csv(tmp_path / "r1.csv")
    assert rows == [
        ["ip_address", "port", "fqdn", "status", "message"],
        ["127.0.0.1", "443", "www.a.test", "warning", 'certificate "CN=www.a.test" expiring at 2026-12-01T12:00:00'],
        ["127.0.0.1", "443", "www.b.test", "error", "certificate has expired"],
        ["", "", "x.b.test", "error", "CNAME loop: x.b.test -> x.b.test"],
    ]
    assert read_csv(tmp_path / "latest.csv") == rows
    lines = [json.loads(line) for line in (tmp_path / "r1.jsonl").read_text().splitlines()]
    assert [line["code"] for line in lines] == ["CERT_EXPIRING", "CERT_EXPIRED", "CNAME_LOOP"]
    assert lines[1]["severity"] == "error" and lines[1]["zone"] == "b.test"


def test_duplicate_results_never_add_rows(tmp_path):
    handler, reports, _ = make(tmp_path)
    handler.handle(started(["a.test"]))
    handler.handle(zone_plan("a.test", ("j1", "www.a.test"), ("j2", "api.a.test")))
    expired = findings.error(findings.Code.CERT_EXPIRED)
    handler.handle(result("j1", "www.a.test", expired))
    handler.handle(result("j1", "www.a.test", expired))  # redelivered
    assert reports == []
    handler.handle(result("j2", "api.a.test"))
    handler.handle(result("j2", "api.a.test"))  # late duplicate after completion
    assert len(reports) == 1
    assert len(read_csv(tmp_path / "r1.csv")) == 2


def test_duplicate_plans_do_not_double_count(tmp_path):
    handler, reports, _ = make(tmp_path)
    handler.handle(started(["a.test"]))
    handler.handle(zone_plan("a.test", ("j1", "www.a.test")))
    handler.handle(zone_plan("a.test", ("j1", "www.a.test")))
    handler.handle(result("j1", "www.a.test"))
    assert len(reports) == 1 and reports[0].complete


def test_a_zone_with_no_jobs_completes_the_run(tmp_path):
    handler, reports, _ = make(tmp_path)
    handler.handle(started(["empty.test"]))
    handler.handle(zone_plan("empty.test"))
    assert len(reports) == 1 and reports[0].complete
    assert read_csv(tmp_path / "r1.csv") == [["ip_address", "port", "fqdn", "status", "message"]]


def test_stalled_run_is_written_as_incomplete_listing_what_is_missing(tmp_path):
    handler, reports, clock = make(tmp_path, run_deadline=60)
    handler.handle(started())
    handler.handle(zone_plan("a.test", ("j1", "www.a.test"), ("j2", "api.a.test")))
    handler.handle(result("j1", "www.a.test"))
    clock.now = 59
    handler.tick()
    assert reports == []
    clock.now = 61
    handler.tick()
    assert len(reports) == 1
    report = reports[0]
    assert not report.complete and report.missing_jobs == 1 and report.missing_zones == ["b.test"]
    rows = read_csv(tmp_path / "r1.csv")
    assert ["127.0.0.1", "443", "api.a.test", "error", "no scan result before the run deadline"] in rows
    assert ["", "", "b.test", "error", "zone was never resolved before the run deadline"] in rows
    assert "INCOMPLETE" in report.summary_line()
    handler.handle(result("j2", "api.a.test"))  # too late: ignored, no second report
    assert len(reports) == 1


def test_failed_zones_are_listed_in_the_summary(tmp_path):
    handler, reports, _ = make(tmp_path)
    refused = LocatedFinding(
        ip_address="127.0.0.1",
        port=53,
        fqdn="b.test",
        finding=findings.error(findings.Code.ZONE_TRANSFER_REFUSED, "zone transfer refused"),
    )
    handler.handle(started())
    handler.handle(zone_plan("b.test", zone_findings=[refused]))
    handler.handle(zone_plan("a.test"))
    assert reports[0].failed_zones == ["b.test"]
    assert "failed zones: b.test" in reports[0].summary_line()
    assert read_csv(tmp_path / "r1.csv")[1] == ["127.0.0.1", "53", "b.test", "error", "zone transfer refused"]


def test_single_file_sink_writes_csv_and_jsonl(tmp_path):
    sink = CsvFileSink(tmp_path / "out.csv", tmp_path / "out.jsonl")
    handler = ReporterHandler(Config(), sink)
    handler.handle(started(["a.test"]))
    handler.handle(zone_plan("a.test", ("j1", "www.a.test")))
    handler.handle(result("j1", "www.a.test", findings.error(findings.Code.HOSTNAME_MISMATCH)))
    assert read_csv(tmp_path / "out.csv")[1] == [
        "127.0.0.1",
        "443",
        "www.a.test",
        "error",
        "subject does not match hostname",
    ]
    assert json.loads((tmp_path / "out.jsonl").read_text())["code"] == "HOSTNAME_MISMATCH"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_findings_are_logged_in_the_original_format(tmp_path, caplog):
    handler, _, _ = make(tmp_path)
    handler.handle(started(["a.test"]))
    with caplog.at_level("WARNING", logger="dcc.reporter"):
        handler.handle(result("j1", "www.a.test", findings.error(findings.Code.SELF_SIGNED)))
    assert ("ERROR", "127.0.0.1:443 - www.a.test - self signed certificate") in [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]


def test_a_restarted_reporter_finishes_the_runs_it_had_begun(tmp_path):
    from services.reporter.journal import RunJournal

    first, reports, _ = make_journalled(tmp_path)
    first.handle(started(["a.test"]))
    first.handle(zone_plan("a.test", ("j1", "www.a.test"), ("j2", "api.a.test")))
    first.handle(result("j1", "www.a.test", findings.error(findings.Code.CERT_EXPIRED)))
    first.handle(
        result("j1", "www.a.test", findings.error(findings.Code.CERT_EXPIRED))
    )  # duplicate: not journalled twice
    assert reports == []
    # the process dies here: its acked messages live only in the journal
    second, reports2, _ = make_journalled(tmp_path)
    assert second.progress("r1") == (1, 2)
    second.handle(result("j2", "api.a.test"))
    assert len(reports2) == 1 and reports2[0].complete
    assert read_csv(tmp_path / "r1.csv")[1:] == [["127.0.0.1", "443", "www.a.test", "error", "certificate has expired"]]
    assert list((tmp_path / ".journal").iterdir()) == []  # forgotten once written
    # a late redelivery after yet another restart must not start the run again
    third, reports3, clock = make_journalled(tmp_path, run_deadline=1)
    third.handle(result("j2", "api.a.test"))
    clock.now = 10
    third.tick()
    assert reports3 == [] and len(read_csv(tmp_path / "r1.csv")) == 2
    assert RunJournal(tmp_path / ".journal").directory.is_dir()


def test_a_torn_journal_tail_is_dropped(tmp_path):
    from services.reporter.journal import RunJournal

    journal = RunJournal(tmp_path)
    journal.append("r1", started(["a.test"]))
    journal.close()
    with (tmp_path / "r1.journal").open("ab") as handle:
        handle.write(b"\x00\x00\x01\x00{partial")
    assert [type(m).__name__ for m in journal.replay()] == ["RunStarted"]
    journal.append("r1", zone_plan("a.test"))
    journal.close()
    assert [type(m).__name__ for m in RunJournal(tmp_path).replay()] == ["RunStarted", "ZonePlan"]


def test_name_findings_log_without_an_endpoint_and_v6_is_bracketed():
    from services.reporter.report import Row

    loop = findings.error(findings.Code.CNAME_LOOP, "CNAME loop: a -> a")
    assert Row("z", "", None, "a.z", loop).log_line() == "a.z - CNAME loop: a -> a"
    expired = findings.error(findings.Code.CERT_EXPIRED)
    assert Row("z", "::1", 443, "a.z", expired).log_line() == "[::1]:443 - a.z - certificate has expired"


def make_journalled(tmp_path: Path, **config):
    from services.reporter.journal import RunJournal

    reports: list[RunReport] = []
    clock = Clock()
    handler = ReporterHandler(
        Config(**config),
        DirectorySink(tmp_path),
        on_report=reports.append,
        clock=clock,
        journal=RunJournal(tmp_path / ".journal"),
    )
    return handler, reports, clock


class FlakySink(ReportSink):
    """A sink whose disk is full for the first ``failures`` writes."""

    def __init__(self, inner, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def write(self, report: RunReport) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        self.inner.write(report)


def test_a_failed_report_write_keeps_the_run_open_for_the_retry(tmp_path):
    reports: list[RunReport] = []
    handler = ReporterHandler(Config(), FlakySink(DirectorySink(tmp_path), 1), on_report=reports.append)
    handler.handle(started(["a.test"]))
    with pytest.raises(OSError):
        handler.handle(zone_plan("a.test"))  # completes the run, but the write fails
    assert reports == [] and not (tmp_path / "r1.csv").exists()
    handler.handle(zone_plan("a.test"))  # the runner's retry of the same message
    assert len(reports) == 1 and (tmp_path / "r1.csv").exists()


def test_a_failed_journal_append_is_retried_whole(tmp_path):
    from services.reporter.journal import RunJournal

    class FlakyJournal(RunJournal):
        fail = True

        def append(self, run_id, message):
            if self.fail:
                self.fail = False
                raise OSError(28, "No space left on device")
            super().append(run_id, message)

    journal = FlakyJournal(tmp_path / ".journal")
    handler = ReporterHandler(Config(), DirectorySink(tmp_path), journal=journal)
    with pytest.raises(OSError):
        handler.handle(started(["a.test"]))
    handler.handle(started(["a.test"]))  # retried: journalled this time, not dropped as a duplicate
    journal.close()
    assert [type(m).__name__ for m in RunJournal(tmp_path / ".journal").replay()] == ["RunStarted"]


def test_run_ids_that_are_paths_are_refused(tmp_path):
    handler, reports, _ = make(tmp_path / "out")
    for bad in ("../escaped", ".hidden", "a/b", ""):
        with pytest.raises(PermanentError):
            handler.handle(RunStarted(run_id=bad, started_at=NOW, zones=[]))
    assert not (tmp_path / "escaped.csv").exists() and reports == []


def test_latest_csv_never_goes_back_to_an_older_run(tmp_path):
    sink = DirectorySink(tmp_path)
    handler = ReporterHandler(Config(run_deadline=60), sink, clock=(clock := Clock()))
    older, newer = "20261129T010000Z-aaaa", "20261129T020000Z-bbbb"
    handler.handle(RunStarted(run_id=older, started_at=NOW, zones=["a.test"]))  # stalls
    handler.handle(RunStarted(run_id=newer, started_at=NOW, zones=["b.test"]))
    handler.handle(ZonePlan(run_id=newer, zone="b.test", jobs=[]))
    assert (tmp_path / "latest.csv").read_bytes() == (tmp_path / f"{newer}.csv").read_bytes()
    clock.now = 120
    handler.tick()  # the older run is written late, as incomplete
    assert "never resolved" in (tmp_path / f"{older}.csv").read_text()
    assert (tmp_path / "latest.csv").read_bytes() == (tmp_path / f"{newer}.csv").read_bytes()


def test_a_run_csv_exists_only_once_everything_else_is_written(tmp_path):
    """``<run-id>.csv`` is the "written" signal: a failed latest.csv leaves no run CSV behind."""
    sink = DirectorySink(tmp_path)
    handler = ReporterHandler(Config(), sink)
    run_id = "20261129T010000Z-aaaa"
    (tmp_path / "latest.csv").mkdir()  # cannot be replaced by a file
    handler.handle(RunStarted(run_id=run_id, started_at=NOW, zones=["a.test"]))
    with pytest.raises(OSError):
        handler.handle(ZonePlan(run_id=run_id, zone="a.test", jobs=[]))
    assert not (tmp_path / f"{run_id}.csv").exists() and not sink.written(run_id)
    (tmp_path / "latest.csv").rmdir()
    handler.handle(ZonePlan(run_id=run_id, zone="a.test", jobs=[]))  # redelivered: the write is retried
    assert sink.written(run_id)
    assert (tmp_path / "latest.csv").read_bytes() == (tmp_path / f"{run_id}.csv").read_bytes()


def test_certificate_text_is_never_terminal_markup():
    from io import StringIO

    from rich.console import Console

    from services.console import print_report
    from services.reporter.report import Row

    subject = "CN=evil[/x] [bold]"
    warning = findings.expiring(subject, datetime(2026, 12, 1, tzinfo=UTC))
    report = RunReport("r1", NOW, NOW, True, ["a.test"], [Row("a.test", "127.0.0.1", 443, "a.test", warning)], [])
    out = StringIO()
    print_report(report, console=Console(file=out, width=300))
    assert subject in out.getvalue()


def start_run(handler: ReporterHandler, run_id: str, started_at: datetime) -> None:
    handler.handle(RunStarted(run_id=run_id, started_at=started_at, zones=["a.test"]))


def finish_run(handler: ReporterHandler, run_id: str) -> None:
    """Complete the run with one row that names it: ``<run_id>.a.test``."""
    loop = LocatedFinding(fqdn=f"{run_id}.a.test", finding=findings.error(findings.Code.CNAME_LOOP, "CNAME loop"))
    handler.handle(ZonePlan(run_id=run_id, zone="a.test", jobs=[], findings=[loop]))


def latest_run(directory: Path) -> str:
    """Which run ``latest.csv`` is the report of (its rows name it, see ``finish_run``)."""
    (row,) = read_csv(directory / "latest.csv")[1:]
    return row[2].removesuffix(".a.test")


def test_latest_csv_follows_the_run_that_started_last_not_the_run_id_order(tmp_path):
    handler = ReporterHandler(Config(), DirectorySink(tmp_path), wall_clock=lambda: NOW + timedelta(days=1))
    start_run(handler, "zzzz-started-first", NOW)
    start_run(handler, "aaaa-started-second", NOW + timedelta(minutes=5))
    finish_run(handler, "aaaa-started-second")
    finish_run(handler, "zzzz-started-first")  # completes last, but is older news
    assert latest_run(tmp_path) == "aaaa-started-second"
    start_run(handler, "mmmm-started-third", NOW + timedelta(minutes=10))
    finish_run(handler, "mmmm-started-third")
    assert latest_run(tmp_path) == "mmmm-started-third"


def test_a_restarted_reporter_keeps_latest_csv_on_the_run_that_started_last(tmp_path):
    later = NOW + timedelta(hours=1)
    first = ReporterHandler(Config(), DirectorySink(tmp_path), wall_clock=lambda: later)
    start_run(first, "b-newer", later)
    finish_run(first, "b-newer")
    second = ReporterHandler(Config(), DirectorySink(tmp_path), wall_clock=lambda: later)  # a new process
    start_run(second, "c-older", NOW)
    finish_run(second, "c-older")
    assert latest_run(tmp_path) == "b-newer"
