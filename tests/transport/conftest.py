"""One transport contract, two implementations: each test runs on both.

AMQP tests use a real RabbitMQ (``AMQP_URL``, default guest@127.0.0.1:5672) and a unique name
prefix per test, so they never see another run's queues; everything declared is deleted after.

The interface has no way to make a consumer die, which the crash half of the contract needs: each
harness does it as that transport would see it. On the broker a consumer process is killed
(SIGKILL) or its connection force-closed by ``rabbitmqctl``; the memory transport's
``break_connection`` returns a consumer's unsettled deliveries as the broker does for a broken
connection. Either way the transport itself has to notice and count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.transport import Consumer, DeadLetter, InMemoryTransport, Transport, amqp_url_from_env
from shared.transport.amqp import AmqpConsumer, AmqpTransport
from tests.distributed.broker import close_connections_named

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["memory", "amqp"]
DEFAULT_MAX_REDELIVERIES = 5  # both transports' default


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "max_redeliveries(n): the harness's transport dead-letters past n redeliveries")


class Harness(ABC):
    """The transport under test, plus what tests need that the interface does not offer: fresh
    queues, and consumers that die."""

    kind: str
    transport: Transport

    def __init__(self) -> None:
        self._queues: list[str] = []

    def queue(self, stem: str = "q") -> str:
        """A fresh declared logical queue."""
        name = f"{stem}-{uuid.uuid4().hex[:8]}"
        self.transport.declare([name])
        self._queues.append(name)
        return name

    def publish_raw(self, queue: str, body: bytes) -> None:
        self.transport.publish_raw(queue, body)

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        return self.transport.dead_letters(queue)

    def depth(self, queue: str) -> int:
        return self.transport.depth(queue)

    @property
    @abstractmethod
    def max_redeliveries(self) -> int | None:
        """The transport's limit: past it, a message lost by its consumers is dead-lettered."""

    @abstractmethod
    def die_holding(self, queue: str) -> dict[str, str] | None:
        """A consumer takes the next message of ``queue`` and dies holding it: it neither settles
        nor gives it back. The headers it saw (values as text); None if nothing came."""

    @abstractmethod
    def lose_connection(self, consumer: Consumer) -> None:
        """Break ``consumer``'s connection under it; returns once it is gone. Its unsettled
        deliveries are the transport's to bring back."""

    @abstractmethod
    def until_prefetched(self, consumer: Consumer) -> None:
        """Wait until ``consumer`` holds a message it has not handed out yet, where it prefetches."""

    def cleanup(self) -> None:
        self.transport.close()


class MemoryHarness(Harness):
    kind = "memory"
    transport: InMemoryTransport

    def __init__(self, transport: InMemoryTransport) -> None:
        super().__init__()
        self.transport = transport

    @property
    def max_redeliveries(self) -> int | None:
        return self.transport.max_redeliveries

    def die_holding(self, queue: str) -> dict[str, str] | None:
        consumer = self.transport.consumer(queue, 1)
        delivery = consumer.get(10)
        if delivery is None:
            return None
        self.transport.break_connection(consumer)  # and the consumer is never heard of again
        return {k: str(v) for k, v in delivery.headers.items()}

    def lose_connection(self, consumer: Consumer) -> None:
        self.transport.break_connection(consumer)

    def until_prefetched(self, consumer: Consumer) -> None:
        pass  # it hands out on ``get`` and holds nothing back: there is nothing to wait for


# A consumer process that takes one message and is killed (SIGKILL) while holding it.
_DIE_HOLDING = textwrap.dedent(
    """
    import json, os, signal, sys
    from shared.transport.amqp import AmqpTransport
    url, prefix, queue, limit = sys.argv[1:5]
    max_redeliveries = None if limit == "none" else int(limit)
    transport = AmqpTransport(url, prefix=prefix, max_redeliveries=max_redeliveries, name=prefix + "victim")
    delivery = transport.consumer(queue, 1).get(10)
    print(json.dumps(None if delivery is None else {k: str(v) for k, v in delivery.headers.items()}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


class AmqpHarness(Harness):
    kind = "amqp"
    transport: AmqpTransport

    def __init__(self, transport: AmqpTransport) -> None:
        super().__init__()
        self.transport = transport

    @property
    def max_redeliveries(self) -> int | None:
        return self.transport.max_redeliveries

    def die_holding(self, queue: str) -> dict[str, str] | None:
        limit = self.transport.max_redeliveries
        args = [amqp_url_from_env(), self.transport.topology.prefix, queue, "none" if limit is None else str(limit)]
        done = subprocess.run(
            [sys.executable, "-c", _DIE_HOLDING, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == -9, done.stderr
        headers: dict[str, str] | None = json.loads(done.stdout)
        return headers

    def lose_connection(self, consumer: Consumer, timeout: float = 10) -> None:
        """The broker force-closes the consumer's connection; pika is then let to notice, without
        the consumer reconnecting (as it would on its next ``get``)."""
        assert isinstance(consumer, AmqpConsumer)
        assert close_connections_named(f"{self.transport.topology.prefix}:consume:{consumer.queue}:") == 1
        connection = consumer._connection
        assert connection is not None
        deadline = time.monotonic() + timeout
        while connection.is_open and time.monotonic() < deadline:
            try:
                connection.process_data_events(0.05)
            except Exception:  # ConnectionClosedByBroker: what we are waiting for
                break
        assert not connection.is_open

    def until_prefetched(self, consumer: Consumer, timeout: float = 5) -> None:
        assert isinstance(consumer, AmqpConsumer)
        connection = consumer._connection
        assert connection is not None
        deadline = time.monotonic() + timeout
        while not consumer._buffer and time.monotonic() < deadline:
            connection.process_data_events(0.05)
        assert consumer._buffer, "nothing was prefetched"

    def cleanup(self) -> None:
        if self._queues:
            self.transport.delete(self._queues, exchanges=True)
        super().cleanup()


def new_amqp(*, max_redeliveries: int | None = DEFAULT_MAX_REDELIVERIES, reconnect_for: float = 120.0) -> AmqpTransport:
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    return AmqpTransport(
        amqp_url_from_env(),
        prefix=prefix,
        name=f"dcc-{prefix}",
        max_redeliveries=max_redeliveries,
        reconnect_for=reconnect_for,
    )


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The transport of ``request.param``; ``@pytest.mark.max_redeliveries(n)`` sets its limit."""
    marker = request.node.get_closest_marker("max_redeliveries")
    limit: int | None = marker.args[0] if marker is not None else DEFAULT_MAX_REDELIVERIES
    h: Harness
    if request.param == "memory":
        h = MemoryHarness(InMemoryTransport(max_redeliveries=limit))
    else:
        h = AmqpHarness(new_amqp(max_redeliveries=limit, reconnect_for=20))
    yield h
    h.cleanup()
