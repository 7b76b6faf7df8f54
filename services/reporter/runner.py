"""Wiring of the reporter stage: plans and results in, a report per finished run out.

The in-process ``run`` writes to the files named on its command line; the ``reporter`` service
writes ``DIR/<run-id>.csv`` and keeps a journal in ``DIR/.journal`` so a restarted reporter
finishes the runs it had begun (their messages are acked already).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.reporter.handler import ReporterHandler
from services.reporter.journal import RunJournal
from services.reporter.outputs import DirectorySink, ReportSink
from services.reporter.report import RunReport
from shared.config import Config
from shared.runner import ServeOptions, Stage, StorageUnavailable
from shared.transport import REPORT

# Single-threaded by design (the run state is not shared); a deep prefetch keeps it busy between acks.
OPTIONS = ServeOptions(workers=1, prefetch=200, tick_interval=1.0)


def stage(
    config: Config,
    sink: ReportSink,
    *,
    journal: RunJournal | None = None,
    on_report: Callable[[RunReport], None] | None = None,
) -> Stage[ReporterHandler]:
    return Stage(REPORT, ReporterHandler(config, sink, on_report=on_report, journal=journal), OPTIONS)


def directory_stage(config: Config, output_dir: Path) -> Stage[ReporterHandler]:
    """The reporter service: reports under ``output_dir``, its journal beside them. A disk that
    refuses writes pauses the service (``StorageUnavailable``) instead of failing messages."""
    output_dir.mkdir(parents=True, exist_ok=True)
    return stage(config, _OwnDisk(DirectorySink(output_dir)), journal=RunJournal(output_dir / ".journal"))


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
