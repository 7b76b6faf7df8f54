"""The transport contract (shared/transport/base.py), against the in-memory and the AMQP transport."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from shared.messages import Message, ScanJob, ScanResult, decode, encode, job_id, result_for
from shared.runner import PermanentError, ServeOptions, serve
from shared.transport.base import Consumer, Delivery, Outgoing, TransportError

from .conftest import Harness


def job(n: int, run: str = "run-1") -> ScanJob:
    ip = f"127.0.0.{n % 250 + 1}"
    return ScanJob(
        job_id=job_id(run, ip, 443, f"h{n}.example.", f"h{n}.example"),
        run_id=run,
        zone="example.",
        ip_address=ip,
        port=443,
        fqdn=f"h{n}.example.",
        sni=f"h{n}.example",
    )


def get(consumer: Consumer, timeout: float = 5.0) -> Delivery:
    delivery = consumer.get(timeout)
    assert delivery is not None, "expected a delivery"
    return delivery


def drain(h: Harness, queue: str, expect: int, timeout: float = 10.0) -> list[Message]:
    """Read ``expect`` messages off ``queue`` (acking them), then make sure nothing else is there."""
    consumer = h.transport.consumer(queue, 50)
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            delivery = consumer.get(0.2)
            if delivery is not None:
                got.append(decode(delivery.body))
                consumer.ack(delivery)
        assert consumer.get(0.3) is None, "more messages than expected"
    finally:
        consumer.close()
    return got


def test_publish_get_ack(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(1))
    consumer = harness.transport.consumer(q, 1)
    delivery = get(consumer)
    assert decode(delivery.body) == job(1)
    assert not delivery.redelivered
    consumer.ack(delivery)
    assert consumer.get(0.3) is None
    consumer.close()
    assert harness.depth(q) == 0
    assert drain(harness, q, 0) == []


def test_publish_many_keeps_order(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish_many([Outgoing(q, job(n)) for n in range(20)])
    assert drain(harness, q, 20) == [job(n) for n in range(20)]


def test_unsettled_delivery_comes_back_after_close(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(2))
    first = harness.transport.consumer(q, 1)
    assert decode(get(first).body) == job(2)
    first.close()  # without ack: the message must not be lost
    second = harness.transport.consumer(q, 1)
    again = get(second)
    assert decode(again.body) == job(2)
    assert again.redelivered
    second.ack(again)
    second.close()
    assert drain(harness, q, 0) == []


def test_dead_letter_keeps_body_and_reason(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(3))
    consumer = harness.transport.consumer(q, 1)
    delivery = get(consumer)
    consumer.dead_letter(delivery, "PermanentError: cannot be scanned")
    assert consumer.get(0.3) is None
    consumer.close()
    dead = harness.dead_letters(q)
    assert [(d.body, d.reason) for d in dead] == [(encode(job(3)), "PermanentError: cannot be scanned")]
    assert drain(harness, q, 0) == []


def test_requeue_hands_it_out_again(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(4))
    consumer = harness.transport.consumer(q, 1)
    consumer.requeue(get(consumer))
    again = get(consumer)
    assert decode(again.body) == job(4)
    assert again.redelivered
    consumer.ack(again)
    consumer.close()
    assert drain(harness, q, 0) == []


def test_unroutable_publish_raises(harness: Harness) -> None:
    harness.queue()  # the topology exists, this one queue does not
    with pytest.raises(TransportError):
        harness.transport.publish("never-declared-queue", job(5))
    with pytest.raises(TransportError):
        harness.transport.consumer("never-declared-queue", 1)


def test_prefetch_bounds_unsettled_deliveries(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish_many([Outgoing(q, job(n)) for n in range(4)])
    consumer = harness.transport.consumer(q, 2)
    a, b = get(consumer), get(consumer)
    assert consumer.get(0.5) is None, "a third delivery beyond prefetch=2"
    consumer.ack(a)
    c = get(consumer)
    assert [decode(d.body) for d in (a, b, c)] == [job(0), job(1), job(2)]
    for d in (b, c):
        consumer.ack(d)
    consumer.close()
    assert drain(harness, q, 1) == [job(3)]


def test_ack_from_another_thread(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish_many([Outgoing(q, job(n)) for n in range(3)])
    consumer = harness.transport.consumer(q, 3)
    deliveries = [get(consumer) for _ in range(3)]
    workers = [threading.Thread(target=consumer.ack, args=(d,)) for d in deliveries]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert consumer.get(0.3) is None  # the owner thread services the acks meanwhile
    consumer.close()
    assert harness.depth(q) == 0
    assert drain(harness, q, 0) == []


def test_publish_from_many_threads(harness: Harness) -> None:
    q = harness.queue()
    errors: list[BaseException] = []

    def send(start: int) -> None:
        try:
            for n in range(start, start + 10):
                harness.transport.publish(q, job(n))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(k * 10,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = drain(harness, q, 40)
    assert sorted(m.fqdn for m in got if isinstance(m, ScanJob)) == sorted(job(n).fqdn for n in range(40))


class _Scan:
    """A tiny scanner: one result per job; job 3 can never be handled."""

    def __init__(self, out: str, delay: float = 0.0) -> None:
        self.out = out
        self.delay = delay
        self.seen = 0

    def handle(self, message: Message) -> list[Outgoing]:
        assert isinstance(message, ScanJob)
        self.seen += 1
        time.sleep(self.delay)
        if message.fqdn == "h3.example.":
            raise PermanentError("h3 is cursed")
        result = result_for(message, [], datetime(2026, 1, 1, tzinfo=UTC))
        return [Outgoing(self.out, result)]


def _serve_in_thread(
    h: Harness, queue: str, handler: object, stop: threading.Event, opts: ServeOptions
) -> threading.Thread:
    thread = threading.Thread(target=serve, args=(h.transport, queue, handler, stop, opts), daemon=True)
    thread.start()
    return thread


def _wait_for(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_serve_end_to_end_with_poison_and_permanent_failure(harness: Harness) -> None:
    q_in, q_out = harness.queue("jobs"), harness.queue("results")
    harness.publish_raw(q_in, b"\x00not json at all")
    harness.transport.publish_many([Outgoing(q_in, job(n)) for n in range(6)])
    harness.publish_raw(q_in, b'{"type": "scan_job.v9"}')
    stop = threading.Event()
    thread = _serve_in_thread(harness, q_in, _Scan(q_out), stop, ServeOptions(workers=3, poll=0.05))
    try:
        _wait_for(lambda: len(harness.dead_letters(q_in)) == 3 and harness.depth(q_out) == 5)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    reasons = sorted(d.reason for d in harness.dead_letters(q_in))
    assert reasons[0].startswith("PermanentError: h3 is cursed")
    assert "undecodable" in reasons[1] or "invalid" in reasons[1]
    assert "undecodable" in reasons[2] or "invalid" in reasons[2]
    results = drain(harness, q_out, 5)
    assert sorted(r.fqdn for r in results if isinstance(r, ScanResult)) == [f"h{n}.example." for n in (0, 1, 2, 4, 5)]
    assert drain(harness, q_in, 0) == []  # everything settled


def test_serve_stop_finishes_in_flight_and_requeues_the_rest(harness: Harness) -> None:
    q_in, q_out = harness.queue("jobs"), harness.queue("results")
    harness.transport.publish_many([Outgoing(q_in, job(n)) for n in (0, 1, 2, 4)])
    handler = _Scan(q_out, delay=0.8)
    stop = threading.Event()
    thread = _serve_in_thread(harness, q_in, handler, stop, ServeOptions(workers=1, prefetch=4, poll=0.05))
    _wait_for(lambda: handler.seen >= 1)
    stop.set()  # like SIGTERM: the job being scanned finishes, the prefetched ones go back
    thread.join(10)
    assert not thread.is_alive()
    finished = drain(harness, q_out, 1)
    left = drain(harness, q_in, 3)
    assert len(finished) == 1 and len(left) == 3
    assert {m.fqdn for m in left} | {m.fqdn for m in finished} == {f"h{n}.example." for n in (0, 1, 2, 4)}  # type: ignore[union-attr]
