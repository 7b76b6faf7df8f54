"""Reporter: gathers a run's plans and results, and writes the report once the run is whole.

A run is complete when every zone named by its ``RunStarted`` has a ``ZonePlan`` and every
planned job has a ``ScanResult``. Results are keyed by job id, so a redelivered result never
adds a row. A run with nothing new for ``run_deadline`` seconds is written as incomplete,
with one ``RUN_INCOMPLETE`` row per missing job or zone. Single-threaded by design: serve it
with one worker.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.reporter.journal import RunJournal
from services.reporter.outputs import ReportSink
from services.reporter.report import Row, RunReport
from shared import findings
from shared.config import Config
from shared.messages import Finding, Message, PlannedJob, RunStarted, ScanResult, ZonePlan, valid_run_id
from shared.runner import Handler, PermanentError
from shared.transport.base import Outgoing

log = logging.getLogger("dcc.reporter")

_REMEMBERED_RUNS = 1000


@dataclass
class _Run:
    run_id: str
    started: RunStarted | None = None
    plans: dict[str, ZonePlan] = field(default_factory=dict)
    planned: dict[str, tuple[str, PlannedJob]] = field(default_factory=dict)  # job id → (zone, job)
    results: dict[str, ScanResult] = field(default_factory=dict)
    last_activity: float = 0.0
    settled: int = 0  # planned jobs that have a result (kept as a count: checked per message)

    def missing_zones(self) -> list[str]:
        zones = self.started.zones if self.started else list(self.plans)
        return [z for z in zones if z not in self.plans]

    def missing_jobs(self) -> list[tuple[str, PlannedJob]]:
        return [entry for jid, entry in self.planned.items() if jid not in self.results]

    def complete(self) -> bool:
        return self.started is not None and self.settled == len(self.planned) and not self.missing_zones()


class ReporterHandler(Handler):
    def __init__(
        self,
        config: Config,
        sink: ReportSink,
        on_report: Callable[[RunReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        journal: RunJournal | None = None,
    ) -> None:
        self._deadline = config.run_deadline
        self._sink = sink
        self._on_report = on_report
        self._clock = clock
        self._runs: dict[str, _Run] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._journal = journal
        if journal is not None:
            replayed = sum(1 for message in journal.replay() if self._accept(message))
            if replayed:
                log.info("replayed %d journalled messages of %d unfinished runs", replayed, len(self._runs))
            for run in list(self._runs.values()):
                if run.complete():  # crashed between the last result and the write
                    self._finish(run, complete=True)

    # -- handler protocol -------------------------------------------------------------
    def handle(self, message: Message) -> list[Outgoing]:
        run_id = getattr(message, "run_id", None)
        if not isinstance(message, RunStarted | ZonePlan | ScanResult) or run_id is None:
            raise PermanentError(f"reporter cannot handle {type(message).__name__}")
        if not valid_run_id(run_id):  # it names files: never let one reach outside the output dir
            raise PermanentError(f"invalid run id {run_id[:80]!r}")
        if run_id not in self._runs and self._already_written(run_id):
            self._remember_finished(run_id)  # e.g. a late redelivery after a reporter restart
        if run_id in self._finished:
            log.debug("ignoring %s for finished run %s", type(message).__name__, run_id)
            return []
        run = self._runs.setdefault(run_id, _Run(run_id))
        if _is_new(run, message):
            if self._journal is not None:
                self._journal.append(run_id, message)  # before the state: a failed append is retried whole
            self._accept(message)
        if run.complete():
            self._finish(run, complete=True)  # raises if the report cannot be written: retried
        return []

    def _accept(self, message: Message) -> bool:
        """Fold a message into its run's state; False when it changed nothing (a duplicate)."""
        run_id: str = message.run_id  # type: ignore[union-attr]
        run = self._runs.setdefault(run_id, _Run(run_id))
        run.last_activity = self._clock()
        if isinstance(message, RunStarted):
            new = run.started is None
            run.started = run.started or message
            return new
        if isinstance(message, ZonePlan):
            return self._on_plan(run, message)
        if isinstance(message, ScanResult):
            return self._on_result(run, message)
        return False

    def tick(self) -> list[Outgoing]:
        now = self._clock()
        for run in list(self._runs.values()):
            if now - run.last_activity >= self._deadline:
                self._finish(run, complete=False)
        return []

    # -- progress, for the in-process progress bar ------------------------------------
    def progress(self, run_id: str) -> tuple[int, int]:
        run = self._runs.get(run_id)
        if run is None:
            return (0, 0)
        return (len(run.results), len(run.planned))

    # -- internals --------------------------------------------------------------------
    def _on_plan(self, run: _Run, plan: ZonePlan) -> bool:
        if plan.zone in run.plans:
            return False
        run.plans[plan.zone] = plan
        for job in plan.jobs:
            if job.job_id not in run.planned:
                run.planned[job.job_id] = (plan.zone, job)
                run.settled += job.job_id in run.results
        for located in plan.findings:
            _log_row(Row(plan.zone, located.ip_address, located.port, located.fqdn, located.finding))
        return True

    def _on_result(self, run: _Run, result: ScanResult) -> bool:
        if result.job_id in run.results:
            return False  # a redelivery: the first copy already counted
        run.results[result.job_id] = result
        run.settled += result.job_id in run.planned
        for finding in result.findings:
            _log_row(Row(result.zone, result.ip_address, result.port, result.fqdn, finding))
        return True

    def _remember_finished(self, run_id: str) -> None:
        self._finished[run_id] = None
        while len(self._finished) > _REMEMBERED_RUNS:
            self._finished.popitem(last=False)

    def _already_written(self, run_id: str) -> bool:
        written = getattr(self._sink, "written", None)
        return bool(written(run_id)) if written is not None else False

    def _finish(self, run: _Run, *, complete: bool) -> None:
        report = build_report(run, complete=complete)
        self._sink.write(report)  # first: if it fails the run stays open and the write is retried
        del self._runs[run.run_id]
        self._remember_finished(run.run_id)
        if self._journal is not None:
            self._journal.forget(run.run_id)  # only once the report is safely written
        (log.info if complete else log.error)(report.summary_line())
        if self._on_report is not None:
            self._on_report(report)


def build_report(run: _Run, *, complete: bool) -> RunReport:
    zones = list(run.started.zones) if run.started else list(run.plans)
    order = {zone: i for i, zone in enumerate(zones)}
    rows: list[Row] = []
    failed: list[str] = []
    for zone, plan in run.plans.items():
        rows.extend(Row(zone, f.ip_address, f.port, f.fqdn, f.finding) for f in plan.findings)
        if (
            plan.findings
            and not plan.jobs
            and any(findings.category(f.finding.code) is findings.Category.COLLECTION for f in plan.findings)
        ):
            failed.append(zone)
    for result in run.results.values():
        rows.extend(
            Row(result.zone, result.ip_address, result.port, result.fqdn, f, result.certificate, result.segment)
            for f in result.findings
        )
    missing_jobs = run.missing_jobs()
    missing_zones = run.missing_zones()
    if not complete:
        for zone, job in missing_jobs:
            rows.append(
                Row(zone, job.ip_address, job.port, job.fqdn, _incomplete("no scan result before the run deadline"))
            )
        for zone in missing_zones:
            rows.append(Row(zone, "", None, zone, _incomplete("zone was never resolved before the run deadline")))
    rows.sort(
        key=lambda r: (
            order.get(r.zone, len(order)),
            r.fqdn,
            r.ip_address,
            r.port or 0,
            r.finding.status,
            r.finding.message,
        )
    )
    return RunReport(
        run_id=run.run_id,
        started_at=run.started.started_at if run.started else None,
        finished_at=datetime.now(UTC),
        complete=complete,
        zones=zones,
        rows=rows,
        results=list(run.results.values()),
        failed_zones=sorted(failed, key=lambda z: order.get(z, 0)),
        missing_jobs=len(missing_jobs) if not complete else 0,
        missing_zones=missing_zones if not complete else [],
    )


def _is_new(run: _Run, message: Message) -> bool:
    """Whether the message would change the run (duplicates are redeliveries)."""
    if isinstance(message, RunStarted):
        return run.started is None
    if isinstance(message, ZonePlan):
        return message.zone not in run.plans
    if isinstance(message, ScanResult):
        return message.job_id not in run.results
    return False


def _incomplete(message: str) -> Finding:
    return findings.error(findings.Code.RUN_INCOMPLETE, message)


def _log_row(row: Row) -> None:
    if row.finding.status == "warning":
        log.warning(row.log_line())
    else:
        log.error(row.log_line())
