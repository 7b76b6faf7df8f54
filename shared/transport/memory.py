"""In-memory transport: the default for ``run`` (one process), and the reference in contract tests."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from shared.messages import Message, encode
from shared.transport.base import Consumer, Delivery, Transport, TransportError


@dataclass(frozen=True)
class DeadLetter:
    body: bytes
    reason: str


class InMemoryTransport(Transport):
    """Thread-safe queues in one process, with the same settle semantics as the broker."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[tuple[bytes, bool]]] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._tags = itertools.count()

    def declare(self, queues: Sequence[str]) -> None:
        with self._cond:
            for name in queues:
                self._queues.setdefault(name, deque())
                self._dead.setdefault(name, [])

    def publish(self, destination: str, message: Message) -> None:
        self.publish_raw(destination, encode(message))

    def publish_raw(self, destination: str, body: bytes) -> None:
        """Put bytes on a queue as they are (tests use it for poison messages)."""
        with self._cond:
            queue = self._queues.get(destination)
            if queue is None:
                raise TransportError(f"no queue {destination!r}: message not routed")
            queue.append((body, False))
            self._cond.notify_all()

    def consumer(self, queue: str, prefetch: int) -> Consumer:
        with self._cond:
            if queue not in self._queues:
                raise TransportError(f"no queue {queue!r}")
        return _MemoryConsumer(self, queue, max(1, prefetch))

    def depth(self, queue: str) -> int:
        with self._cond:
            return len(self._queues[queue])

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        with self._cond:
            return list(self._dead.get(queue, []))

    def close(self) -> None:
        pass


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
        with t._cond:
            ready = t._cond.wait_for(
                lambda: self._closed or (len(self._unsettled) < self._prefetch and bool(t._queues[self._queue])),
                timeout=timeout,
            )
            if not ready or self._closed:
                return None
            body, redelivered = t._queues[self._queue].popleft()
            delivery = Delivery(body=body, tag=next(t._tags), redelivered=redelivered)
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
                self._t._dead[self._queue].append(DeadLetter(delivery.body, reason))
            self._t._cond.notify_all()

    def requeue(self, delivery: Delivery) -> None:
        with self._t._cond:
            if self._settle(delivery):
                self._t._queues[self._queue].appendleft((delivery.body, True))
            self._t._cond.notify_all()

    def cancel(self) -> None:
        self._cancelled = True

    def close(self) -> None:
        with self._t._cond:
            for delivery in reversed(list(self._unsettled.values())):
                self._t._queues[self._queue].appendleft((delivery.body, True))
            self._unsettled.clear()
            self._closed = True
            self._t._cond.notify_all()
