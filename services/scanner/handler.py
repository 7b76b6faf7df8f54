"""The scanner service's handler: scan jobs in, one scan result per job out (never dropped)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from services.scanner.scan import Engine, EngineClosed, Outcome, ScanSettings, Target
from shared.messages import Message, ScanJob, ScanResult, message_kind
from shared.messages import result_for as job_result
from shared.runner import Handler, PermanentError
from shared.transport.base import REPORT, ConnectionLost, Outgoing


class ScannerHandler(Handler):
    """Scans a batch of jobs concurrently (``handle_batch``); results are yielded as they finish."""

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self.engine = Engine(settings)

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        jobs: list[ScanJob] = []
        for message in messages:
            if not isinstance(message, ScanJob):
                raise PermanentError(f"the scanner handles scan jobs, not {message_kind(message)}")
            jobs.append(message)
        modes = self.settings.mode_for
        targets = [
            Target(ip=job.ip_address, port=job.port, sni=job.sni, mode=modes(job.port, job.segment)) for job in jobs
        ]
        try:
            for index, outcome in self.engine.scan_many(targets):
                yield index, [Outgoing(REPORT, result_for(jobs[index], outcome))]
        except EngineClosed as exc:
            # The service is stopping (``close``): the jobs not answered stay unsettled and come back,
            # which is what the runner does on a lost connection (no retries, no dead-lettering).
            raise ConnectionLost(str(exc)) from exc

    def close(self) -> None:
        self.engine.close()


def result_for(job: ScanJob, outcome: Outcome) -> ScanResult:
    return job_result(job, outcome.findings, outcome.scanned_at, round(outcome.duration_s, 3), outcome.certificate)
