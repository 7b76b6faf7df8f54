"""Many messages per queue body (``shared.messages.Batch``): packing on the way out, parts on the way in.

The broker's cost is per message (routing, persistence, a confirm, an ack): about as much CPU as a
fast-path scan. Carrying a zone's jobs and a scanner's results in batches pays it once per batch,
while each job stays its own unit: the runner hands every message of a batch to the handler on its
own and settles it on its own (``Parts``); the batch is acked on the broker when all its parts are.

- ``pack`` groups one call's outputs by queue into batches of at most ``limit``, and into at least
  ``spread`` batches when there are enough, so a zone's jobs still spread over a segment's scanners;
- a part that is dead-lettered is parked on its own (its body is the single message), the others go on;
- a part given back (a stop, a lost broker) makes the whole batch come back once all its parts are
  settled: the ones already done are redone, harmlessly (job ids make every result idempotent).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.messages import Batch, Message, encode
from shared.transport.base import Consumer, Delivery, Outgoing, TransportError

JOBS_PER_BATCH = 50  # scan jobs or results per batch: the broker's cost per job falls to a 50th
MIN_PER_BATCH = 8  # spreading never makes batches smaller than this (unless there are fewer messages)


def pack(items: Sequence[Outgoing], limit: int, spread: int = 1) -> list[Outgoing]:
    """``items`` with the messages of each destination in batches of at most ``limit``.

    With ``spread`` > 1 a destination's messages go in at least that many batches (none smaller than
    ``MIN_PER_BATCH``), so several consumers of its queue share them. A lone message stays as it is.
    The order of the messages of one destination is kept.
    """
    if limit <= 1 or len(items) <= 1:
        return list(items)
    by_destination: dict[str, list[Message]] = {}
    for item in items:
        queued = by_destination.setdefault(item.destination, [])
        if isinstance(item.message, Batch):
            queued.extend(item.message.messages)  # repacked with the rest
        else:
            queued.append(item.message)
    packed: list[Outgoing] = []
    for destination, messages in by_destination.items():
        size = min(limit, max(MIN_PER_BATCH, math.ceil(len(messages) / max(1, spread))))
        for start in range(0, len(messages), size):
            chunk = messages[start : start + size]
            packed.append(Outgoing(destination, chunk[0] if len(chunk) == 1 else Batch(messages=chunk)))
    return packed


@dataclass
class _Parent:
    """One batch delivery while its parts are being handled."""

    delivery: Delivery
    size: int
    given_back: bool = False
    settled: set[int] = field(default_factory=set)  # parts settled already (settling twice is a no-op)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _PartTag:
    parent: _Parent
    index: int
    message: Message  # encoded only if this part is dead-lettered on its own


class Parts(Consumer):
    """A consumer whose batch deliveries can be split into parts settled one by one.

    Everything else passes through to the wrapped consumer. ``ack``, ``dead_letter`` and
    ``requeue`` take a part or an ordinary delivery alike, from any thread.
    """

    def __init__(self, inner: Consumer) -> None:
        self.inner = inner

    def split(self, delivery: Delivery, batch: Batch) -> list[tuple[Delivery, Message]]:
        parent = _Parent(delivery, size=len(batch.messages))
        return [
            (Delivery(b"", _PartTag(parent, index, message), delivery.redelivered, delivery.headers), message)
            for index, message in enumerate(batch.messages)
        ]

    def get(self, timeout: float) -> Delivery | None:
        return self.inner.get(timeout)

    def ack(self, delivery: Delivery) -> None:
        if isinstance(delivery.tag, _PartTag):
            self._part_done(delivery.tag, given_back=False)
        else:
            self.inner.ack(delivery)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if not isinstance(delivery.tag, _PartTag):
            self.inner.dead_letter(delivery, reason)
            return
        tag = delivery.tag
        try:
            self.inner.park(encode(tag.message), reason, tag.parent.delivery.headers)
        except TransportError:
            self._part_done(tag, given_back=True)  # it comes back with its batch instead
            return
        self._part_done(tag, given_back=False)

    def requeue(self, delivery: Delivery) -> None:
        if isinstance(delivery.tag, _PartTag):
            self._part_done(delivery.tag, given_back=True)
        else:
            self.inner.requeue(delivery)

    def park(self, body: bytes, reason: str, headers: Mapping[str, object]) -> None:
        self.inner.park(body, reason, headers)

    def cancel(self) -> None:
        self.inner.cancel()

    def consuming(self) -> bool:
        return self.inner.consuming()

    def close(self) -> None:
        self.inner.close()

    def _part_done(self, tag: _PartTag, *, given_back: bool) -> None:
        parent = tag.parent
        with parent.lock:
            if tag.index in parent.settled:
                return
            parent.settled.add(tag.index)
            parent.given_back = parent.given_back or given_back
            last, back = len(parent.settled) == parent.size, parent.given_back
        if last:
            (self.inner.requeue if back else self.inner.ack)(parent.delivery)
