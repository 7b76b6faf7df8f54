"""Every broker name the project uses, declared from one place.

Every name is behind an optional prefix (``DCC_QUEUE_PREFIX``, so test runs and tenants never collide):

- direct exchange ``dcc``: routing key = logical queue name (``resolve``, ``report``, ``scan.dmz``);
- durable queue ``dcc.<logical>`` bound to it with that key;
- direct exchange ``dcc.dead`` and durable queue ``dcc.<logical>.dead`` per queue: dead letters,
  with the reason in the ``x-dcc-reason`` header and the origin in ``x-dcc-queue``.

Queues carry no ``x-`` arguments on purpose: arguments cannot change after declaration
(PRECONDITION_FAILED), so limits and TTLs belong in broker policies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import BlockingChannel

REASON_HEADER = "x-dcc-reason"
QUEUE_HEADER = "x-dcc-queue"
DEAD_AT_HEADER = "x-dcc-dead-at"


@dataclass(frozen=True)
class Topology:
    """Every broker name the project uses, in one place."""

    prefix: str = ""

    @property
    def exchange(self) -> str:
        return f"{self.prefix}dcc"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}dcc.dead"

    def queue(self, logical: str) -> str:
        return f"{self.prefix}dcc.{logical}"

    def dead_queue(self, logical: str) -> str:
        return f"{self.prefix}dcc.{logical}.dead"

    def declare(self, channel: BlockingChannel, logical_queues: Sequence[str]) -> None:
        channel.exchange_declare(self.exchange, exchange_type="direct", durable=True)
        channel.exchange_declare(self.dead_exchange, exchange_type="direct", durable=True)
        for logical in logical_queues:
            channel.queue_declare(self.queue(logical), durable=True)
            channel.queue_bind(self.queue(logical), self.exchange, routing_key=logical)
            channel.queue_declare(self.dead_queue(logical), durable=True)
            channel.queue_bind(self.dead_queue(logical), self.dead_exchange, routing_key=logical)
