"""``run``: the four services in one process, wired through the in-memory transport.

The same handlers and the same runner as the distributed mode; only the transport differs,
so what passes here passes on the broker (tests/contract checks the transports agree).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from services.reporter.handler import ReporterHandler
from services.reporter.outputs import ReportSink
from services.reporter.report import RunReport
from services.resolver.dns_lookup import Lookup, make_lookup
from services.resolver.handler import ResolverHandler
from shared.config import Config
from shared.messages import RunStarted, ZoneSnapshot
from shared.runner import ServeOptions, serve
from shared.transport.base import REPORT, RESOLVE
from shared.transport.memory import InMemoryTransport

Progress = Callable[[int, int], None]


class PipelineError(RuntimeError):
    """The in-process run could not finish (a service thread died)."""


def run_in_process(
    config: Config,
    run_id: str,
    zones: list[str],
    snapshots: Iterable[ZoneSnapshot],
    sink: ReportSink,
    *,
    progress: Progress | None = None,
    lookup: Lookup | None = None,
    source: str = "",
) -> RunReport:
    """Run one whole job and return its report (also written to ``sink``)."""
    from services.scanner.runner import make_handler, serve_options  # sslyze loads only when scanning

    transport = InMemoryTransport()
    resolver = ResolverHandler(config, lookup or make_lookup(config))
    transport.declare([RESOLVE, *resolver.queues()])
    reports: list[RunReport] = []
    done = threading.Event()

    def on_report(report: RunReport) -> None:
        if report.run_id == run_id:
            reports.append(report)
            done.set()

    reporter = ReporterHandler(config, sink, on_report=on_report)
    stop = threading.Event()
    scanner_options = serve_options(config)
    services: list[tuple[str, object, ServeOptions]] = [
        (RESOLVE, resolver, ServeOptions(workers=1)),
        (REPORT, reporter, ServeOptions(workers=1, tick_interval=1.0)),
    ]
    scanner = make_handler(config)
    for queue in resolver.queues():
        if queue != REPORT:
            services.append((queue, scanner, scanner_options))
    threads = [
        threading.Thread(
            target=serve,
            args=(transport, queue, handler, stop, options),
            name=f"dcc-{queue}",
            daemon=True,
        )
        for queue, handler, options in services
    ]
    for thread in threads:
        thread.start()
    try:
        transport.publish(REPORT, RunStarted(run_id=run_id, started_at=datetime.now(UTC), zones=zones, source=source))
        for snapshot in snapshots:
            transport.publish(RESOLVE, snapshot)
        while not done.wait(0.2):
            if progress is not None:
                progress(*reporter.progress(run_id))
            if not all(t.is_alive() for t in threads):
                raise PipelineError("a service thread stopped unexpectedly")
            lost = [(queue, dead.reason) for queue, *_ in services for dead in transport.dead_letters(queue)]
            if lost:  # in one process nothing can pick a dead letter up again: the run cannot complete
                queue, reason = lost[0]
                raise PipelineError(f"{len(lost)} message(s) could not be processed; first on {queue}: {reason}")
        if progress is not None:
            progress(*reporter.progress(run_id))
    finally:
        stop.set()
        deadline = time.monotonic() + 10
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
    return reports[0]
