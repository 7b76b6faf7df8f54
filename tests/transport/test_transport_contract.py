"""The transport contract (shared/transport/base.py), against the in-memory and the AMQP transport."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from shared.messages import Message, ScanJob, ScanResult, decode, encode, job_id, result_for
from shared.runner import Handler, PermanentError, ServeOptions, serve
from shared.transport import Consumer, Delivery, Outgoing, TransportError
from shared.transport.redelivery import REDELIVERIES_HEADER, RETURNED_HEADER

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


def test_publish_many_of_more_than_one_window_keeps_order_and_loses_nothing(harness: Harness) -> None:
    q = harness.queue()
    count = 1234  # two whole broker transactions and part of a third
    harness.transport.publish_many([Outgoing(q, job(n)) for n in range(count)])
    assert harness.depth(q) == count
    assert drain(harness, q, count) == [job(n) for n in range(count)]


def test_an_unroutable_message_in_a_batch_raises_and_the_routable_ones_arrive(harness: Harness) -> None:
    q = harness.queue()
    batch = [Outgoing(q, job(0)), Outgoing("never-declared-queue", job(1)), Outgoing(q, job(2))]
    with pytest.raises(TransportError):
        harness.transport.publish_many(batch)
    assert [m for m in drain(harness, q, 2) if m == job(0)] == [job(0)]


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


class _Scan(Handler):
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
    h: Harness, queue: str, handler: Handler, stop: threading.Event, opts: ServeOptions
) -> threading.Thread:
    thread = threading.Thread(target=serve, args=(h.transport, queue, handler, stop, opts), daemon=True)
    thread.start()
    return thread


def _wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
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
    assert all(isinstance(m, ScanJob) for m in left) and all(isinstance(m, ScanResult) for m in finished)
    assert _fqdns(left) | _fqdns(finished) == {f"h{n}.example." for n in (0, 1, 2, 4)}


def _fqdns(messages: list[Message]) -> set[str]:
    return {m.fqdn for m in messages if isinstance(m, ScanJob | ScanResult)}


# -- consumers that die, and consumers that give back -------------------------------------
# A consumer that dies holding a message loses it to the queue: it comes back counted, and past
# max_redeliveries it is parked. One that gives a message back (a graceful stop) never counts.


@pytest.mark.max_redeliveries(2)
def test_a_message_that_keeps_killing_its_consumer_ends_in_the_dlq(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(1))
    seen = []
    for _ in range(3):  # its consumer dies holding it (on the broker: the process is killed -9), three times
        headers = harness.die_holding(q)
        assert headers is not None
        seen.append(int(headers.get(REDELIVERIES_HEADER, 0)))
    consumer = harness.transport.consumer(q, 1)
    assert consumer.get(1.0) is None  # the fourth time it is parked instead
    consumer.close()
    assert seen == [0, 1, 2]
    [dead] = harness.dead_letters(q)
    assert decode(dead.body) == job(1)
    assert "redelivered 3 times" in dead.reason


@pytest.mark.max_redeliveries(2)
def test_a_consumer_that_loses_its_connection_holding_a_message_counts_it(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(1))
    for expected in (0, 1, 2):
        consumer = harness.transport.consumer(q, 1)
        delivery = get(consumer)
        assert delivery.headers.get(REDELIVERIES_HEADER, 0) == expected
        harness.lose_connection(consumer)
        consumer.requeue(delivery)  # too late: the broker took it back with the connection
        consumer.close()
    consumer = harness.transport.consumer(q, 1)
    assert consumer.get(1.0) is None
    consumer.close()
    [dead] = harness.dead_letters(q)
    assert "redelivered 3 times" in dead.reason
    assert harness.depth(q) == 0


def _give_back_in_every_way(h: Harness, q: str, rounds: int) -> None:
    """Hand the same message back ``rounds`` times, the ways a shutting-down service does."""
    for n in range(rounds):
        consumer = h.transport.consumer(q, 4)
        delivery = get(consumer)
        assert decode(delivery.body) == job(1)
        way = n % 3
        if way == 0:  # requeue: a SIGTERM before handling it, or publishing gave up
            consumer.requeue(delivery)
        elif way == 1:  # close with it unsettled: work that outlived the drain deadline
            pass
        else:  # prefetched, never handed out, and the consumer is cancelled (basic.cancel)
            h.transport.publish(q, job(2))
            h.until_prefetched(consumer)
            consumer.cancel()
            consumer.requeue(delivery)
        consumer.close()
        if way == 2:  # job 2 was given back by cancel(): take it off again, uncounted
            other = h.transport.consumer(q, 4)
            extra: list[Delivery] = []
            while len(extra) < 2:
                extra.append(get(other))
            for d in extra:
                if decode(d.body) == job(2):
                    assert d.headers.get(REDELIVERIES_HEADER) is None
                    other.ack(d)
            other.close()


@pytest.mark.max_redeliveries(2)
def test_giving_a_message_back_is_not_a_redelivery_and_never_dead_letters_it(harness: Harness) -> None:
    assert harness.max_redeliveries == 2
    q = harness.queue()
    harness.transport.publish(q, job(1))
    _give_back_in_every_way(harness, q, rounds=9)  # three times the limit
    assert harness.dead_letters(q) == []
    consumer = harness.transport.consumer(q, 1)
    delivery = get(consumer)  # still there, and still not counted
    assert decode(delivery.body) == job(1)
    assert delivery.redelivered  # it may have been partly handled: handlers must stay idempotent
    assert delivery.headers.get(REDELIVERIES_HEADER) is None
    returned = delivery.headers.get(RETURNED_HEADER, 0)
    assert isinstance(returned, int) and returned >= 9
    consumer.ack(delivery)
    consumer.close()
    assert harness.depth(q) == 0 and harness.dead_letters(q) == []


@pytest.mark.max_redeliveries(2)
def test_give_backs_do_not_reset_a_real_redelivery_count(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(1))
    harness.die_holding(q)  # one real crash: counted
    _give_back_in_every_way(harness, q, rounds=3)
    consumer = harness.transport.consumer(q, 1)
    delivery = get(consumer)
    assert delivery.headers.get(REDELIVERIES_HEADER) == 1
    consumer.close()  # given back once more
    harness.die_holding(q)  # crash 2
    harness.die_holding(q)  # crash 3: past max_redeliveries=2
    consumer = harness.transport.consumer(q, 1)
    assert consumer.get(1.0) is None
    consumer.close()
    [dead] = harness.dead_letters(q)
    assert "redelivered 3 times" in dead.reason


@pytest.mark.max_redeliveries(2)
def test_repeated_graceful_stops_of_serve_never_dead_letter(harness: Harness) -> None:
    """Scale-down after scale-down (SIGTERM drain with a deep prefetch): jobs survive them all."""
    q_in, q_out = harness.queue("jobs"), harness.queue("results")
    jobs = [job(n) for n in range(12) if n != 3]
    harness.transport.publish_many([Outgoing(q_in, j) for j in jobs])
    for _ in range(4):  # more stops than max_redeliveries=2
        handler = _Scan(q_out, delay=0.3)
        stop = threading.Event()
        opts = ServeOptions(workers=1, prefetch=8, poll=0.05, drain_timeout=0.1)  # drain ends mid-scan
        thread = _serve_in_thread(harness, q_in, handler, stop, opts)
        _wait_for(lambda: handler.seen >= 1)  # noqa: B023 - waited on before the next round
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        time.sleep(0.5)  # the scan that outlived the drain finishes (its result is a duplicate)
    assert harness.dead_letters(q_in) == []
    consumer = harness.transport.consumer(q_in, 50)
    left = []
    while (delivery := consumer.get(0.5)) is not None:
        assert delivery.headers.get(REDELIVERIES_HEADER) is None
        left.append(decode(delivery.body))
        consumer.ack(delivery)
    consumer.close()
    done = {r.job_id for r in drain(harness, q_out, harness.depth(q_out)) if isinstance(r, ScanResult)}
    assert done | {j.job_id for j in left if isinstance(j, type(jobs[0]))} == {j.job_id for j in jobs}
