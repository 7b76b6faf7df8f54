"""What only the broker transport has to do: survive connections the broker closes, give up on a
broker that is not there, refuse work once closed. (Counting redeliveries is the contract's.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.messages import ScanResult, decode
from shared.runner import ServeOptions, serve
from shared.transport import ConnectionLost, Outgoing, TransportError
from shared.transport.amqp import AmqpTransport
from shared.transport.amqp.links import Link, message_properties
from tests.distributed.broker import close_connections_named

from .conftest import AmqpHarness, new_amqp
from .test_transport_contract import _Scan, _wait_for, drain, job


@pytest.fixture
def amqp() -> Iterator[AmqpHarness]:
    h = AmqpHarness(new_amqp(max_redeliveries=2, reconnect_for=30))
    yield h
    h.cleanup()


def test_serve_survives_forced_connection_close(amqp: AmqpHarness) -> None:
    transport = amqp.transport
    q_in, q_out = amqp.queue("jobs"), amqp.queue("results")
    transport.publish_many([Outgoing(q_in, job(n)) for n in range(20) if n != 3])
    stop = threading.Event()
    handler = _Scan(q_out, delay=0.1)
    thread = threading.Thread(
        target=serve, args=(transport, q_in, handler, stop, ServeOptions(workers=2, poll=0.05)), daemon=True
    )
    thread.start()
    try:
        _wait_for(lambda: handler.seen >= 4)
        assert close_connections_named(transport.topology.prefix) >= 2  # consumer + publisher links
        _wait_for(lambda: amqp.depth(q_in) == 0 and amqp.depth(q_out) >= 19, timeout=30)
    finally:
        stop.set()
        thread.join(15)
    assert thread.is_alive() is False
    results = drain(amqp, q_out, amqp.depth(q_out), timeout=5)
    by_job = {r.job_id for r in results if isinstance(r, ScanResult)}
    assert len(by_job) == 19  # every job done; redelivery may repeat a few (the reporter dedups)
    assert amqp.dead_letters(q_in) == []


def test_a_connection_lost_in_the_middle_of_a_batch_loses_nothing_and_repeats_nothing(
    amqp: AmqpHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches go out as broker transactions: the second one here is half sent when its connection
    goes; the broker drops what was not committed, and the batch goes again on a new link."""
    transport = amqp.transport
    q = amqp.queue("bulk")
    count = 1600  # four transactions
    calls = 0
    whole = Link.publish_batch

    def break_the_second(self: Link, exchange: str, items: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            channel = self._batch_channel()
            for routing_key, body, headers in items[: len(items) // 2]:
                channel.basic_publish(exchange, routing_key, body, properties=message_properties(headers))
            self.connection.close()  # the connection goes before the commit
        whole(self, exchange, items)

    monkeypatch.setattr(Link, "publish_batch", break_the_second)
    transport.publish_many([Outgoing(q, job(n)) for n in range(count)])
    assert calls == 5  # four batches, the second twice
    assert drain(amqp, q, count, timeout=30) == [job(n) for n in range(count)]


def test_a_consumer_whose_io_loop_closes_under_it_reconnects_instead_of_dying(
    amqp: AmqpHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen after a broker outage: pika's process_data_events raised ValueError("Timeout closed
    before call") on a connection lost mid-call, which killed the serving thread."""
    transport = amqp.transport
    q = amqp.queue("loop")
    consumer = transport.consumer(q, 5)
    try:
        assert consumer.get(0.1) is None  # connected and consuming
        connection = consumer._connection
        real = connection.process_data_events

        def lost_mid_call(time_limit: float = 0) -> None:
            connection.close()
            monkeypatch.setattr(connection, "process_data_events", real)
            raise ValueError("Timeout closed before call")

        monkeypatch.setattr(connection, "process_data_events", lost_mid_call)
        transport.publish(q, job(7))
        delivery = consumer.get(10.0)  # the loss is handled, the consumer reconnects, the job comes
        assert delivery is not None and decode(delivery.body) == job(7)
        consumer.ack(delivery)
    finally:
        consumer.close()


def test_publish_after_close_fails_fast() -> None:
    transport = new_amqp()
    transport.close()
    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        transport.publish("anything", job(1))
    assert time.monotonic() - started < 1


def test_unreachable_broker_gives_up_after_reconnect_for() -> None:
    transport = AmqpTransport("amqp://guest:secret-pw@127.0.0.1:1/", reconnect_for=1.5)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        transport.declare(["resolve"])
    assert time.monotonic() - started < 10
    assert "secret-pw" not in str(info.value) and "secret-pw" not in repr(transport)
