"""Wiring of the scanner stage: scan jobs of a segment in, one scan result per job out."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence

from services.scanner.handler import ScannerHandler
from services.scanner.metrics import ScanMetrics
from services.scanner.scan import ScanSettings
from shared.batches import JOBS_PER_BATCH
from shared.config import Config
from shared.messages import Message, ScanResult
from shared.runner import Handler, ServeOptions, Stage
from shared.transport import REPORT, Outgoing, scan_queue


def serve_options(config: Config) -> ServeOptions:
    """Batches as large as the engine's concurrency; two of them in flight, so a batch's last slow
    endpoints (a silent host costs a network_timeout) never leave the engine idle.

    Jobs arrive in broker batches of up to ``JOBS_PER_BATCH`` and results leave in batches of as
    many (or after ``pack_linger``). The prefetch counts broker messages: enough for four rounds
    of full batches, which also bounds what one scanner holds back from the others on its queue."""
    concurrency = max(1, config.scan_concurrency)
    workers = 2
    return ServeOptions(
        workers=workers,
        batch_size=concurrency,
        batch_linger=0.05,
        prefetch=max(16, math.ceil(8 * workers * concurrency / JOBS_PER_BATCH)),
        pack=JOBS_PER_BATCH,
        pack_linger=0.25,
        # In-flight endpoints finish within scan_timeout of starting; a full queued batch needs two rounds
        # (more if many of its names share an address: they take turns). Unfinished work is redelivered.
        drain_timeout=max(30.0, 2 * config.scan_timeout + 5),
    )


def make_handler(config: Config, segments: Sequence[str] = ()) -> ScannerHandler:
    """The scanner of ``segments`` (they name its file of last-seen chains under ``state_dir``)."""
    name = f"scanner-chains-{'-'.join(sorted(segments))}.bin" if segments else "scanner-chains.bin"
    return ScannerHandler(ScanSettings.from_config(config, state_name=name))


def stages(config: Config, segments: Sequence[str], metrics: ScanMetrics | None = None) -> list[Stage[Handler]]:
    """One stage per segment queue, all sharing one engine: connection limits per address hold
    across every queue this process consumes. ``metrics``: count each segment's scans there."""
    inner = make_handler(config, segments)
    handler = _Shared(inner, users=len(segments))
    options = serve_options(config)
    if metrics is None:
        return [Stage(scan_queue(segment), handler, options, publishes=[REPORT]) for segment in segments]
    metrics.busiest_from(inner.engine.busiest_address)
    return [
        Stage(scan_queue(segment), _Measured(handler, segment, metrics), options, publishes=[REPORT])
        for segment in segments
    ]


class _Measured(Handler):
    """A segment's scans counted as they are answered; endpoints in flight while a batch runs."""

    def __init__(self, inner: Handler, segment: str, metrics: ScanMetrics) -> None:
        self._inner, self._segment, self._metrics = inner, segment, metrics

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        in_flight = self._metrics.in_flight.labels(self._segment)
        in_flight.inc(len(messages))
        answered = 0
        try:
            for index, outputs in self._inner.handle_batch(messages):
                answered += 1
                in_flight.dec()
                for out in outputs:
                    if isinstance(out.message, ScanResult):
                        self._metrics.scanned(self._segment, out.message)
                yield index, outputs
        finally:
            in_flight.dec(len(messages) - answered)

    def close(self) -> None:
        self._inner.close()


class _Shared(Handler):
    """One scanner handler served on several queues: closed when the last of them stops, so a
    queue still draining never loses its engine to another that stopped first."""

    def __init__(self, inner: ScannerHandler, users: int) -> None:
        self._inner = inner
        self._users = max(1, users)
        self._lock = threading.Lock()

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        return self._inner.handle_batch(messages)

    def close(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self._inner.close()
