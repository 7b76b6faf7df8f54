"""In-memory transport: the default for ``run`` (one process), and the reference in contract tests.

It settles, gives back and counts redeliveries as the broker transport does
(``shared.transport.redelivery``), with the counter in the same header. One process has no
connection to lose, so ``break_connection`` does what the broker does when a consumer's connection
breaks: the contract's crash tests run on this transport too. Order after a give-back or a
redelivery is not part of the contract: here it goes back to the head of the queue.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from shared.transport.base import Consumer, DeadLetter, Delivery, Transport, TransportError
from shared.transport.redelivery import (
    REDELIVERIES_HEADER,
    delivered_before,
    given_back,
    header_count,
    too_many_redeliveries,
)


@dataclass(frozen=True)
class _Ready:
    """A message waiting on a queue."""

    body: bytes
    headers: Mapping[str, object] = field(default_factory=dict)
    lost: bool = False  # its consumer died holding it: counted when it is delivered next


class InMemoryTransport(Transport):
    """Thread-safe queues in one process, with the same settle semantics as the broker."""

    def __init__(self, *, max_redeliveries: int | None = 5) -> None:
        self.max_redeliveries = max_redeliveries
        self._cond = threading.Condition()
        self._queues: dict[str, deque[_Ready]] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._tags = itertools.count()

    def declare(self, queues: Sequence[str]) -> None:
        with self._cond:
            for name in queues:
                self._queues.setdefault(name, deque())
                self._dead.setdefault(name, [])

    def publish_raw(self, destination: str, body: bytes, headers: Mapping[str, object] | None = None) -> None:
        with self._cond:
            queue = self._queues.get(destination)
            if queue is None:
                raise TransportError(f"no queue {destination!r}: message not routed")
            queue.append(_Ready(body, dict(headers or {})))
            self._cond.notify_all()

    def consumer(self, queue: str, prefetch: int) -> Consumer:
        with self._cond:
            if queue not in self._queues:
                raise TransportError(f"no queue {queue!r}")
        return _MemoryConsumer(self, queue, max(1, prefetch))

    def depth(self, queue: str) -> int:
        with self._cond:
            ready = self._queues.get(queue)
            if ready is None:
                raise TransportError(f"no queue {queue!r}")
            return len(ready)

    def dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        with self._cond:
            return self._dead.get(queue, [])[:limit]

    def break_connection(self, consumer: Consumer) -> None:
        """What the broker does when a consumer's connection breaks (its process was killed): the
        deliveries it holds go back to the queue as lost, counted at their next delivery, and its
        later settles of them are void. The consumer itself keeps working, as if it reconnected."""
        if not isinstance(consumer, _MemoryConsumer) or consumer._t is not self:
            raise TypeError("not a consumer of this transport")
        with self._cond:
            consumer._return_unsettled(lambda d: _Ready(d.body, d.headers, lost=True))

    def close(self) -> None:
        pass

    # -- for the consumers (under the lock) -------------------------------------
    def _take(self, queue: str) -> _Ready | None:
        """The next message of ``queue`` to hand out, its redelivery counted; None when it was lost
        once too often and is dead-lettered instead."""
        ready = self._queues[queue].popleft()
        if not ready.lost or self.max_redeliveries is None:
            return ready
        count = header_count(ready.headers, REDELIVERIES_HEADER) + 1
        if count > self.max_redeliveries:
            self._dead[queue].append(DeadLetter(ready.body, too_many_redeliveries(count), dict(ready.headers)))
            return None
        return _Ready(ready.body, {**ready.headers, REDELIVERIES_HEADER: count}, lost=True)


class _MemoryConsumer(Consumer):
    def __init__(self, transport: InMemoryTransport, queue: str, prefetch: int) -> None:
        self._t = transport
        self._queue = queue
        self._prefetch = prefetch
        self._unsettled: dict[object, Delivery] = {}
        self._closed = False
        self._cancelled = False

    def get(self, timeout: float) -> Delivery | None:
        t = self._t
        if self._cancelled:  # like basic.cancel: nothing new arrives, but waiting still takes its time
            time.sleep(timeout)
            return None
        deadline = time.monotonic() + timeout
        with t._cond:
            while True:  # until one is handed out: some may be dead-lettered on the way
                ready = t._cond.wait_for(self._can_take, timeout=max(0.0, deadline - time.monotonic()))
                if not ready or self._closed:
                    return None
                taken = t._take(self._queue)
                if taken is not None:
                    return self._hand_out(taken)

    def _can_take(self) -> bool:
        return self._closed or (len(self._unsettled) < self._prefetch and bool(self._t._queues[self._queue]))

    def _hand_out(self, ready: _Ready) -> Delivery:
        redelivered = ready.lost or delivered_before(ready.headers)
        delivery = Delivery(ready.body, next(self._t._tags), redelivered, dict(ready.headers))
        self._unsettled[delivery.tag] = delivery
        return delivery

    def _settle(self, delivery: Delivery) -> bool:
        return self._unsettled.pop(delivery.tag, None) is not None

    def ack(self, delivery: Delivery) -> None:
        with self._t._cond:
            self._settle(delivery)
            self._t._cond.notify_all()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._t._cond:
            if self._settle(delivery):
                self._t._dead[self._queue].append(DeadLetter(delivery.body, reason, dict(delivery.headers)))
            self._t._cond.notify_all()

    def park(self, body: bytes, reason: str, headers: Mapping[str, object]) -> None:
        with self._t._cond:
            self._t._dead[self._queue].append(DeadLetter(body, reason, dict(headers)))

    def requeue(self, delivery: Delivery) -> None:
        with self._t._cond:
            if self._settle(delivery):
                self._t._queues[self._queue].appendleft(_Ready(delivery.body, given_back(delivery.headers)))
            self._t._cond.notify_all()

    def cancel(self) -> None:
        self._cancelled = True

    def consuming(self) -> bool:
        return not (self._cancelled or self._closed)

    def close(self) -> None:
        with self._t._cond:
            self._return_unsettled(lambda d: _Ready(d.body, given_back(d.headers)))
            self._closed = True

    def _return_unsettled(self, back: Callable[[Delivery], _Ready]) -> None:
        """Put every unsettled delivery back at the head of the queue, in order. Under the lock."""
        for delivery in reversed(list(self._unsettled.values())):
            self._t._queues[self._queue].appendleft(back(delivery))
        self._unsettled.clear()
        self._t._cond.notify_all()
