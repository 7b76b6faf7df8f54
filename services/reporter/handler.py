"""Reporter: gathers a run's plans and results, and writes the report once the run is whole.

A run is complete when every zone named by its ``RunStarted`` has a ``ZonePlan`` and every
planned job has a ``ScanResult``. Results are keyed by job id, so a redelivered result never
adds a row. A run with nothing new for ``run_deadline`` seconds is written as incomplete,
with one ``RUN_INCOMPLETE`` row per missing job or zone. Single-threaded by design: serve it
with one worker.

Only a run the reporter saw start is ever reported. Plans and results may overtake their run's
``RunStarted`` (they come from other processes), so they are held until it arrives, within
bounds: at most ``max_unstarted_runs`` such runs and ``max_unstarted_entries`` entries (results,
plans and their planned jobs) over all of them; a message past those bounds is dead-lettered
(``PermanentError``: an operator can see and replay it). A run whose ``RunStarted`` has not come
by its deadline is dropped with one warning, journal and all, and writes no report: a stray or
forged message (a run id dated in the future) can neither produce a report nor pin ``latest.csv``.
Held findings are logged once their run starts.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from services.reporter import backends
from services.reporter.alerts.state import AlertStateError
from services.reporter.journal import RunJournal
from services.reporter.outputs import ReportSink
from services.reporter.report import Row, RunReport
from shared import findings
from shared.config import Config
from shared.messages import Finding, Message, PlannedJob, RunStarted, ScanResult, ZonePlan, message_kind, valid_run_id
from shared.runner import Handler, PermanentError, StorageUnavailable
from shared.transport.base import Outgoing

if TYPE_CHECKING:
    from services.reporter.alerts import Alerting

log = logging.getLogger("dcc.reporter")

_REMEMBERED_RUNS = 1000
MAX_UNSTARTED_RUNS = 16
MAX_UNSTARTED_ENTRIES = 20_000


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Run:
    run_id: str
    started: RunStarted | None = None
    began: datetime | None = None  # when it started, as this reporter saw it (see RunReport.started_at)
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

    def held_entries(self) -> int:
        """What this run holds: its results, and its plans with their jobs and findings."""
        return len(self.results) + sum(_entries(plan) for plan in self.plans.values())


class ReporterHandler(Handler):
    def __init__(
        self,
        config: Config,
        sink: ReportSink,
        on_report: Callable[[RunReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        journal: RunJournal | None = None,
        *,
        wall_clock: Callable[[], datetime] = _utc_now,
        max_unstarted_runs: int = MAX_UNSTARTED_RUNS,
        max_unstarted_entries: int = MAX_UNSTARTED_ENTRIES,
        alerting: Alerting | None = None,
    ) -> None:
        self._deadline = config.run_deadline
        self._sink = sink
        self._on_report = on_report
        self._alerting = alerting
        self._clock = clock  # monotonic: deadlines
        self._wall_clock = wall_clock  # UTC: when runs start and finish
        self._max_unstarted_runs = max_unstarted_runs
        self._max_unstarted_entries = max_unstarted_entries
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
        if not isinstance(message, RunStarted | ZonePlan | ScanResult):
            raise PermanentError(f"reporter cannot handle {message_kind(message)}")
        run_id = message.run_id
        if not valid_run_id(run_id):  # it names files: never let one reach outside the output dir
            raise PermanentError(f"invalid run id {run_id[:80]!r}")
        if run_id not in self._runs and self._sink.written(run_id):
            self._remember_finished(run_id)  # e.g. a late redelivery after a reporter restart
        if run_id in self._finished:
            log.debug("ignoring %s for finished run %s", type(message).__name__, run_id)
            return []
        self._make_room(message)  # raises PermanentError when the hold for unstarted runs is full
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
        run_id = message.run_id
        run = self._runs.setdefault(run_id, _Run(run_id))
        run.last_activity = self._clock()
        if isinstance(message, RunStarted):
            if run.started is not None:
                return False
            run.started = message
            run.began = min(_aware(message.started_at), self._wall_clock())
            self._log_held(run)
            return True
        if isinstance(message, ZonePlan):
            return self._on_plan(run, message)
        if isinstance(message, ScanResult):
            return self._on_result(run, message)
        return False

    def tick(self) -> list[Outgoing]:
        now = self._clock()
        for run in list(self._runs.values()):
            if now - run.last_activity < self._deadline:
                continue
            if run.started is None:
                self._drop_unstarted(run)
            else:
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
        if run.started is not None:  # else logged when the run starts
            _log_plan(plan)
        return True

    def _on_result(self, run: _Run, result: ScanResult) -> bool:
        if result.job_id in run.results:
            return False  # a redelivery: the first copy already counted
        run.results[result.job_id] = result
        run.settled += result.job_id in run.planned
        if run.started is not None:  # else logged when the run starts
            _log_result(result)
        return True

    def _log_held(self, run: _Run) -> None:
        """The findings of what arrived before the run's RunStarted, now that it has started."""
        for plan in run.plans.values():
            _log_plan(plan)
        for result in run.results.values():
            _log_result(result)

    def _make_room(self, message: RunStarted | ZonePlan | ScanResult) -> None:
        """Refuse (dead-letter) a new message for a run not seen starting when the hold is full."""
        run = self._runs.get(message.run_id)
        if isinstance(message, RunStarted) or (
            run is not None and (run.started is not None or not _is_new(run, message))
        ):
            return
        held = [other for other in self._runs.values() if other.started is None]
        if run is None and len(held) >= self._max_unstarted_runs:
            raise PermanentError(
                f"{message_kind(message)} of run {message.run_id}, which never started: "
                f"{len(held)} runs without a RunStarted are held already"
            )
        entries = sum(other.held_entries() for other in held)
        if entries + _entries(message) > self._max_unstarted_entries:
            raise PermanentError(
                f"{message_kind(message)} of run {message.run_id}, which never started: "
                f"{entries} entries of runs without a RunStarted are held already"
            )

    def _drop_unstarted(self, run: _Run) -> None:
        """A run whose RunStarted never came: forget it, and report nothing."""
        del self._runs[run.run_id]
        if self._journal is not None:
            self._journal.forget(run.run_id)
        log.warning(
            "dropped %d messages of run %s: it never started (no RunStarted within %gs), so it has no report",
            len(run.results) + len(run.plans),
            run.run_id,
            self._deadline,
        )

    def _remember_finished(self, run_id: str) -> None:
        self._finished[run_id] = None
        while len(self._finished) > _REMEMBERED_RUNS:
            self._finished.popitem(last=False)

    def _finish(self, run: _Run, *, complete: bool) -> None:
        report = build_report(run, complete=complete, finished_at=self._wall_clock())
        self._sink.write(report)  # first: if it fails the run stays open and the write is retried
        if self._alerting is not None:
            # before the run is forgotten: a failed commit is retried with the run (the alert state
            # skips a run it recorded already), and a state that refuses writes pauses the reporter
            try:
                self._alerting.on_report(report)
            except (AlertStateError, sqlite3.Error) as exc:
                raise StorageUnavailable(f"alert state: {exc}") from None
        del self._runs[run.run_id]
        self._remember_finished(run.run_id)
        if self._journal is not None:
            self._journal.forget(run.run_id)  # only once the report is safely written
        (log.info if complete else log.error)(report.summary_line())
        if self._on_report is not None:
            self._on_report(report)


def build_report(run: _Run, *, complete: bool, finished_at: datetime | None = None) -> RunReport:
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
    rows.extend(backends.disagreements(run.results.values(), order))  # needs every result: only here
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
        started_at=run.began,
        finished_at=finished_at or _utc_now(),
        complete=complete,
        zones=zones,
        rows=rows,
        results=list(run.results.values()),
        failed_zones=sorted(failed, key=lambda z: order.get(z, 0)),
        missing_jobs=len(missing_jobs) if not complete else 0,
        missing_zones=missing_zones if not complete else [],
        new_zones=list(run.started.new_zones) if run.started else [],
        removed_zones=list(run.started.removed_zones) if run.started else [],
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


def _entries(message: Message) -> int:
    """How much a held message weighs: one, and a plan its jobs and findings too."""
    if isinstance(message, ZonePlan):
        return 1 + len(message.jobs) + len(message.findings)
    return 1


def _aware(moment: datetime) -> datetime:
    """A timestamp without a zone is UTC (everything we send carries one)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _log_plan(plan: ZonePlan) -> None:
    for located in plan.findings:
        _log_row(Row(plan.zone, located.ip_address, located.port, located.fqdn, located.finding))


def _log_result(result: ScanResult) -> None:
    for finding in result.findings:
        _log_row(Row(result.zone, result.ip_address, result.port, result.fqdn, finding))


def _log_row(row: Row) -> None:
    if row.finding.status == "warning":
        log.warning(row.log_line())
    else:
        log.error(row.log_line())
