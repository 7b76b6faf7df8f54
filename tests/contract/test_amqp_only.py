"""What only the broker transport has to do: count redeliveries, survive lost connections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.messages import ScanResult, decode
from shared.runner import ServeOptions, serve
from shared.transport.amqp import REDELIVERIES_HEADER, RETURNED_HEADER, AmqpTransport
from shared.transport.base import ConnectionLost, Consumer, Delivery, Outgoing, TransportError
from tests.distributed.broker import close_connections_named

from .conftest import Harness, amqp_url, new_amqp
from .test_transport_contract import _Scan, _wait_for, drain, get, job


@pytest.fixture
def amqp() -> Iterator[Harness]:
    h = Harness("amqp", new_amqp(max_redeliveries=2, reconnect_for=30))
    yield h
    h.cleanup()


ROOT = Path(__file__).resolve().parents[2]

# A consumer process that takes one message and is killed (SIGKILL) while holding it.
_DIE_HOLDING = textwrap.dedent(
    """
    import json, os, signal, sys
    from shared.transport.amqp import AmqpTransport
    url, prefix, queue = sys.argv[1:4]
    transport = AmqpTransport(url, prefix=prefix, max_redeliveries=2, name=prefix + "victim")
    delivery = transport.consumer(queue, 1).get(10)
    print(json.dumps(None if delivery is None else {k: str(v) for k, v in delivery.headers.items()}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _die_holding(transport: AmqpTransport, queue: str) -> dict[str, str] | None:
    done = subprocess.run(
        [sys.executable, "-c", _DIE_HOLDING, amqp_url(), transport.topology.prefix, queue],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == -9, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_message_that_keeps_killing_its_consumer_ends_in_the_dlq(amqp: Harness) -> None:
    transport = amqp.transport
    assert isinstance(transport, AmqpTransport)
    q = amqp.queue()
    transport.publish(q, job(1))
    seen = []
    for _ in range(3):  # the consumer process dies (kill -9) holding it, three times
        headers = _die_holding(transport, q)
        assert headers is not None
        seen.append(int(headers.get(REDELIVERIES_HEADER, 0)))
    consumer = transport.consumer(q, 1)
    assert consumer.get(1.0) is None  # the fourth time it is parked instead
    consumer.close()
    assert seen == [0, 1, 2]
    [dead] = amqp.dead_letters(q)
    assert decode(dead.body) == job(1)
    assert "redelivered 3 times" in dead.reason


def test_a_consumer_that_loses_its_connection_holding_a_message_counts_it(amqp: Harness) -> None:
    transport = amqp.transport
    assert isinstance(transport, AmqpTransport)
    q = amqp.queue()
    transport.publish(q, job(1))
    for expected in (0, 1, 2):
        consumer = transport.consumer(q, 1)
        delivery = get(consumer)
        assert delivery.headers.get(REDELIVERIES_HEADER, 0) == expected
        assert close_connections_named(f"{transport.topology.prefix}:consume:") == 1
        _until_lost(consumer)
        consumer.requeue(delivery)  # too late: the broker took it back with the connection
        consumer.close()
    consumer = transport.consumer(q, 1)
    assert consumer.get(1.0) is None
    consumer.close()
    [dead] = amqp.dead_letters(q)
    assert "redelivered 3 times" in dead.reason
    assert amqp.depth(q) == 0


def _until_lost(consumer: Consumer, timeout: float = 10) -> None:
    """Let pika notice that the broker closed the consumer's connection (without reconnecting)."""
    connection = consumer._connection  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while connection.is_open and time.monotonic() < deadline:
        try:
            connection.process_data_events(0.05)
        except Exception:  # ConnectionClosedByBroker: what we are waiting for
            break
    assert not connection.is_open


def _give_back_in_every_way(transport: AmqpTransport, q: str, rounds: int) -> None:
    """Hand the same message back ``rounds`` times, the ways a shutting-down service does."""
    for n in range(rounds):
        consumer = transport.consumer(q, 4)
        delivery = get(consumer)
        assert decode(delivery.body) == job(1)
        way = n % 3
        if way == 0:  # requeue: a SIGTERM before handling it, or publishing gave up
            consumer.requeue(delivery)
        elif way == 1:  # close with it unsettled: work that outlived the drain deadline
            pass
        else:  # prefetched, never handed out, and the consumer is cancelled (basic.cancel)
            transport.publish(q, job(2))
            deadline = time.monotonic() + 5
            while not consumer._buffer and time.monotonic() < deadline:  # type: ignore[attr-defined]
                consumer._connection.process_data_events(0.05)  # type: ignore[attr-defined]
            assert consumer._buffer, "job 2 was not prefetched"  # type: ignore[attr-defined]
            consumer.cancel()
            consumer.requeue(delivery)
        consumer.close()
        if way == 2:  # job 2 was given back by cancel(): take it off again, uncounted
            other = transport.consumer(q, 4)
            extra: list[Delivery] = []
            while len(extra) < 2:
                extra.append(get(other))
            for d in extra:
                if decode(d.body) == job(2):
                    assert d.headers.get(REDELIVERIES_HEADER) is None
                    other.ack(d)
            other.close()


def test_giving_a_message_back_is_not_a_redelivery_and_never_dead_letters_it(amqp: Harness) -> None:
    transport = amqp.transport
    assert isinstance(transport, AmqpTransport)
    assert transport.max_redeliveries == 2
    q = amqp.queue()
    transport.publish(q, job(1))
    _give_back_in_every_way(transport, q, rounds=9)  # three times the limit
    assert amqp.dead_letters(q) == []
    consumer = transport.consumer(q, 1)
    delivery = get(consumer)  # still there, and still not counted
    assert decode(delivery.body) == job(1)
    assert delivery.redelivered  # it may have been partly handled: handlers must stay idempotent
    assert delivery.headers.get(REDELIVERIES_HEADER) is None
    assert int(delivery.headers.get(RETURNED_HEADER, 0)) >= 9  # type: ignore[call-overload]
    consumer.ack(delivery)
    consumer.close()
    assert amqp.depth(q) == 0 and amqp.dead_letters(q) == []


def test_give_backs_do_not_reset_a_real_redelivery_count(amqp: Harness) -> None:
    transport = amqp.transport
    assert isinstance(transport, AmqpTransport)
    q = amqp.queue()
    transport.publish(q, job(1))
    _die_holding(transport, q)  # one real crash: counted
    _give_back_in_every_way(transport, q, rounds=3)
    consumer = transport.consumer(q, 1)
    delivery = get(consumer)
    assert delivery.headers.get(REDELIVERIES_HEADER) == 1
    consumer.close()  # given back once more
    _die_holding(transport, q)  # crash 2
    _die_holding(transport, q)  # crash 3: past max_redeliveries=2
    consumer = transport.consumer(q, 1)
    assert consumer.get(1.0) is None
    consumer.close()
    [dead] = amqp.dead_letters(q)
    assert "redelivered 3 times" in dead.reason


def test_repeated_graceful_stops_of_serve_never_dead_letter(amqp: Harness) -> None:
    """Scale-down after scale-down (SIGTERM drain with a deep prefetch): jobs survive them all."""
    transport = amqp.transport
    assert isinstance(transport, AmqpTransport)
    q_in, q_out = amqp.queue("jobs"), amqp.queue("results")
    jobs = [job(n) for n in range(12) if n != 3]
    transport.publish_many([Outgoing(q_in, j) for j in jobs])
    for _ in range(4):  # more stops than max_redeliveries=2
        handler = _Scan(q_out, delay=0.3)
        stop = threading.Event()
        opts = ServeOptions(workers=1, prefetch=8, poll=0.05, drain_timeout=0.1)  # drain ends mid-scan
        thread = threading.Thread(target=serve, args=(transport, q_in, handler, stop, opts), daemon=True)
        thread.start()
        _wait_for(lambda: handler.seen >= 1)  # noqa: B023 - waited on before the next round
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        time.sleep(0.5)  # the scan that outlived the drain finishes (its result is a duplicate)
    assert amqp.dead_letters(q_in) == []
    consumer = transport.consumer(q_in, 50)
    left = []
    while (delivery := consumer.get(0.5)) is not None:
        assert delivery.headers.get(REDELIVERIES_HEADER) is None
        left.append(decode(delivery.body))
        consumer.ack(delivery)
    consumer.close()
    done = {r.job_id for r in drain(amqp, q_out, amqp.depth(q_out)) if isinstance(r, ScanResult)}
    assert done | {j.job_id for j in left if isinstance(j, type(jobs[0]))} == {j.job_id for j in jobs}


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
