"""One transport contract, two implementations: each test runs on both.

AMQP tests use a real RabbitMQ (``AMQP_URL``, default guest@127.0.0.1:5672) and a unique name
prefix per test, so they never see another run's queues; everything declared is deleted after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

from shared.transport.amqp import DEFAULT_AMQP_URL, AmqpTransport
from shared.transport.base import Transport
from shared.transport.memory import InMemoryTransport


class _DeadLetter(Protocol):
    body: bytes
    reason: str


class Harness:
    """The transport under test plus what tests need beyond the interface (raw bytes, peeking)."""

    def __init__(self, kind: str, transport: Transport) -> None:
        self.kind = kind
        self.transport = transport
        self._queues: list[str] = []

    def queue(self, stem: str = "q") -> str:
        """A fresh declared logical queue."""
        name = f"{stem}-{uuid.uuid4().hex[:8]}"
        self.transport.declare([name])
        self._queues.append(name)
        return name

    def publish_raw(self, queue: str, body: bytes) -> None:
        self.transport.publish_raw(queue, body)  # type: ignore[attr-defined]

    def dead_letters(self, queue: str) -> list[_DeadLetter]:
        return list(self.transport.dead_letters(queue))  # type: ignore[attr-defined]

    def depth(self, queue: str) -> int:
        return int(self.transport.depth(queue))  # type: ignore[attr-defined]

    def cleanup(self) -> None:
        if isinstance(self.transport, AmqpTransport) and self._queues:
            self.transport.delete(self._queues, exchanges=True)
        self.transport.close()


def amqp_url() -> str:
    return os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL


def new_amqp(**kwargs: object) -> AmqpTransport:
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    return AmqpTransport(amqp_url(), prefix=prefix, name=f"dcc-{prefix}", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "amqp"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    transport: Transport = InMemoryTransport() if request.param == "memory" else new_amqp(reconnect_for=20)
    h = Harness(request.param, transport)
    yield h
    h.cleanup()
