"""Wiring of the reporter stage: plans and results in, a report per finished run out.

The in-process ``run`` writes to the files named on its command line; the ``reporter`` service
writes ``DIR/<run-id>.csv`` and keeps a journal in ``DIR/.journal`` so a restarted reporter
finishes the runs it had begun (their messages are acked already).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from services.reporter.handler import ReporterHandler
from services.reporter.journal import RunJournal
from services.reporter.outputs import DirectorySink, ReportSink
from services.reporter.report import RunReport
from shared.batches import JOBS_PER_BATCH
from shared.config import Config, ConfigError
from shared.runner import ServeOptions, Stage, StorageUnavailable
from shared.transport import REPORT

if TYPE_CHECKING:
    from services.reporter.alerts import Alerting

# Single-threaded by design (the run state is not shared); a deep prefetch keeps it busy between acks.
# Results come 50 to a broker message, each its own part, and the consume loop hands out one batch
# per turn, waiting up to batch_linger for a delivery each turn: batches of one part made a reporter
# whose prefetch was full do 20 results/s. So one call takes every part the prefetch can hold.
PREFETCH = 200
OPTIONS = ServeOptions(workers=1, batch_size=PREFETCH * JOBS_PER_BATCH, prefetch=PREFETCH, tick_interval=1.0)


def stage(
    config: Config,
    sink: ReportSink,
    *,
    journal: RunJournal | None = None,
    on_report: Callable[[RunReport], None] | None = None,
    alerting: Alerting | None = None,
    wait_for_storage: bool = True,
) -> Stage[ReporterHandler]:
    handler = ReporterHandler(config, sink, on_report=on_report, journal=journal, alerting=alerting)
    return Stage(REPORT, handler, replace(OPTIONS, wait_for_storage=wait_for_storage))


@contextmanager
def alerting_for(
    config: Config, *, metrics_port: int | None = None, metrics_file: str | None = None
) -> Iterator[Alerting | None]:
    """The alert state and its senders for as long as the block runs (None without ``alerts``),
    with ``/metrics`` on ``metrics_port`` and a textfile written at the end. Opening it is where a
    bad receiver or a state file another reporter owns fails: one ``ConfigError`` line, exit 2."""
    from services.reporter.alerts import Alerting, serve_metrics, write_textfile

    alerting = Alerting.from_config(config)
    server = None
    try:
        if alerting is not None:
            alerting.start()
            if metrics_port is not None:
                server = serve_metrics(alerting.registry, metrics_port)
        elif metrics_port is not None or metrics_file is not None:
            raise ConfigError('--metrics-port and --metrics-file need an "alerts" section in the config')
        yield alerting
    finally:
        if server is not None:
            server.shutdown()
        if alerting is not None:
            alerting.close()
            if metrics_file is not None:
                write_textfile(alerting.registry, metrics_file)


def directory_stage(config: Config, output_dir: Path, *, alerting: Alerting | None = None) -> Stage[ReporterHandler]:
    """The reporter service: reports under ``output_dir``, its journal beside them. A disk that
    refuses writes pauses the service (``StorageUnavailable``) instead of failing messages."""
    output_dir.mkdir(parents=True, exist_ok=True)
    journal = RunJournal(output_dir / ".journal")
    return stage(config, _OwnDisk(DirectorySink(output_dir)), journal=journal, alerting=alerting)


class _OwnDisk(ReportSink):
    """The service's own report directory: a failed write is its storage failing, not the run's."""

    def __init__(self, inner: DirectorySink) -> None:
        self._inner = inner

    def write(self, report: RunReport) -> None:
        try:
            self._inner.write(report)
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot write reports to {self._inner.directory}: {exc.strerror or exc}"
            ) from None

    def written(self, run_id: str) -> bool:
        return self._inner.written(run_id)
