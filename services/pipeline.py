"""``run``: the four stages in one process, wired through the in-memory transport.

The same stages (``services/<stage>/runner.py``), the same runner and the same run-start routine
(``services.collector.runs``) as the distributed mode; only the transport differs, so what
passes here passes on the broker (tests/transport checks the transports agree).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.collector.runs import PlannedRun, start_run
from services.reporter import runner as reporter_runner
from services.reporter.outputs import ReportSink
from services.reporter.report import RunReport
from services.resolver import runner as resolver_runner
from services.resolver.dns_lookup import Lookup
from services.resolver.segments import SegmentMap
from shared.config import Config
from shared.runner import Handler, Stage, serve_stage
from shared.transport import InMemoryTransport

if TYPE_CHECKING:
    from services.reporter.alerts import Alerting

Progress = Callable[[int, int], None]


class PipelineError(RuntimeError):
    """The in-process run could not finish (a service thread died, or a message was dead-lettered)."""


def run_in_process(
    config: Config,
    run: PlannedRun,
    sink: ReportSink,
    *,
    progress: Progress | None = None,
    lookup: Lookup | None = None,
    alerting: Alerting | None = None,
) -> RunReport:
    """Run one whole job and return its report (also written to ``sink``)."""
    from services.scanner import runner as scanner_runner  # sslyze loads only when scanning

    reports: list[RunReport] = []
    done = threading.Event()

    def on_report(report: RunReport) -> None:
        if report.run_id == run.run_id:
            reports.append(report)
            done.set()

    # one process: a disk that refuses the report or the alert state fails the run, it is not waited for
    reporter = reporter_runner.stage(config, sink, on_report=on_report, alerting=alerting, wait_for_storage=False)
    segments = SegmentMap(config.segments, config.default_segment).names()
    stages: list[Stage[Handler]] = [
        resolver_runner.stage(config, lookup),
        reporter,
        *scanner_runner.stages(config, segments),
    ]
    transport = InMemoryTransport()
    for stage in stages:
        transport.declare(stage.queues())  # before any thread publishes to another stage's queue
    stop = threading.Event()
    threads = [
        threading.Thread(target=serve_stage, args=(transport, stage, stop), name=f"dcc-{stage.queue}", daemon=True)
        for stage in stages
    ]
    for thread in threads:
        thread.start()
    try:
        start_run(transport, run)
        while not done.wait(0.2):
            if progress is not None:
                progress(*reporter.handler.progress(run.run_id))
            _check(threads, transport, stages)
        if progress is not None:
            progress(*reporter.handler.progress(run.run_id))
    finally:
        stop.set()
        deadline = time.monotonic() + 10
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
    return reports[0]


def _check(threads: list[threading.Thread], transport: InMemoryTransport, stages: list[Stage[Handler]]) -> None:
    """In one process nothing can pick a dead letter up again, nor replace a dead thread: the run
    cannot complete, so it fails now instead of waiting for its deadline."""
    if not all(t.is_alive() for t in threads):
        raise PipelineError("a service thread stopped unexpectedly")
    lost = [(stage.queue, dead.reason) for stage in stages for dead in transport.dead_letters(stage.queue)]
    if lost:
        queue, reason = lost[0]
        raise PipelineError(f"{len(lost)} message(s) could not be processed; first on {queue}: {reason}")
