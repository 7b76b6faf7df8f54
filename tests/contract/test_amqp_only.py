"""What only the broker transport has to do: count redeliveries, survive lost connections."""

from __future__ import annotations

import threading
import time

import pytest

from shared.messages import ScanResult, decode
from shared.runner import ConnectionLost, ServeOptions, serve
from shared.transport.amqp import REDELIVERIES_HEADER, AmqpTransport
from shared.transport.base import Outgoing, TransportError
from tests.distributed.broker import close_connections_named

from .conftest import Harness, new_amqp
from .test_transport_contract import _Scan, _wait_for, drain, get, job


@pytest.fixture
def amqp() -> Harness:
    h = Harness("amqp", new_amqp(max_redeliveries=2, reconnect_for=30))
    yield h  # type: ignore[misc]
    h.cleanup()


def test_a_message_that_keeps_killing_its_consumer_ends_in_the_dlq(amqp: Harness) -> None:
    q = amqp.queue()
    amqp.transport.publish(q, job(1))
    seen = []
    for _ in range(3):  # the consumer "dies" holding it, three times
        consumer = amqp.transport.consumer(q, 1)
        delivery = get(consumer)
        seen.append(delivery.headers.get(REDELIVERIES_HEADER, 0))
        consumer.close()
    consumer = amqp.transport.consumer(q, 1)
    assert consumer.get(1.0) is None  # the fourth time it is parked instead
    consumer.close()
    assert seen == [0, 1, 2]
    [dead] = amqp.dead_letters(q)
    assert decode(dead.body) == job(1)
    assert "redelivered 3 times" in dead.reason


def test_serve_survives_forced_connection_close(amqp: Harness) -> None:
    transport = amqp.transport
    assert isinstance(transport, AmqpTransport)
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
