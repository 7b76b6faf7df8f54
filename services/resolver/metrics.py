"""The resolver's own series on ``/metrics``: jobs planned per segment (labels from the config)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter

from shared.messages import Message, ScanJob
from shared.runner import Handler
from shared.transport.base import Outgoing


class CountedJobs(Handler):
    """The resolver's handler, counting the scan jobs it plans by segment."""

    def __init__(self, inner: Handler, registry: CollectorRegistry) -> None:
        self._inner = inner
        self._planned = Counter("dcc_jobs_planned", "Scan jobs planned, by segment.", ["segment"], registry=registry)

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        for index, outputs in self._inner.handle_batch(messages):
            self._count(outputs)
            yield index, outputs

    def handle(self, message: Message) -> list[Outgoing]:
        outputs = self._inner.handle(message)
        self._count(outputs)
        return outputs

    def tick(self) -> list[Outgoing]:
        return self._inner.tick()

    def close(self) -> None:
        self._inner.close()

    def _count(self, outputs: list[Outgoing]) -> None:
        counts: dict[str, int] = {}
        for out in outputs:
            if isinstance(out.message, ScanJob):
                counts[out.message.segment] = counts.get(out.message.segment, 0) + 1
        for segment, count in counts.items():
            self._planned.labels(segment).inc(count)
