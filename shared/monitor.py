"""What the runner tells about its work: ``Monitor``, which does nothing itself.

Code that runs without a health server (``run``, tests) calls the same methods on this base;
``shared.health.ServiceMonitor`` keeps them for ``/healthz``, ``/readyz`` and ``/metrics``. Kept
apart from ``shared.health`` so the runner does not load prometheus_client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shared.transport.base import Consumer, Outgoing

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

Check = Callable[[], "str | None"]  # a readiness check: a reason when not ready, None when ready


class Monitor:
    """What the runner tells about its work. This base does nothing (no health server)."""

    registry: CollectorRegistry | None = None  # where a service adds its own series (None: nowhere)

    def add_check(self, name: str, check: Check) -> None:
        """Readiness also needs ``check()`` to return None (else its reason is the answer)."""

    def also_expose(self, registry: CollectorRegistry) -> None:
        """Serve ``registry``'s series on /metrics too."""

    def beat(self, loop: str) -> None:
        """``loop`` is alive (called on every turn of it)."""

    def watch_consumer(self, queue: str, consumer: Consumer) -> None:
        """Readiness includes ``consumer`` consuming."""

    def forget_consumer(self, queue: str) -> None:
        """``queue``'s consumer is gone on purpose (drained, closed)."""

    def storage(self, queue: str, down: bool) -> None:
        """``queue``'s handler cannot store (paused) or can again."""

    def consumed(self, queue: str, count: int) -> None:
        """``count`` messages (jobs, results: batches counted by what they hold) taken from ``queue``."""

    def published(self, outputs: Sequence[Outgoing]) -> None:
        """``outputs`` were published and confirmed (before packing: one per job or result)."""

    def dead_lettered(self, queue: str) -> None:
        """One message of ``queue`` went to its dead-letter queue."""

    def handled(self, queue: str, seconds: float) -> None:
        """One handler call (a message or a batch) on ``queue`` took ``seconds``."""

    def in_flight(self, queue: str, change: int) -> None:
        """Messages of ``queue`` being handled went up or down by ``change``."""
