"""Batches on the wire (shared.batches), against both transports: many jobs per broker message,
each job still its own unit (handled, dead-lettered and answered on its own)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from shared.messages import MAX_BATCH, Batch, Message, ScanJob, ScanResult, decode, encode, result_for, unpacked
from shared.runner import Handler, ServeOptions
from shared.transport import Outgoing

from .conftest import Harness
from .test_transport_contract import _fqdns, _Scan, _serve_in_thread, _wait_for, get, job


def _ack_all(h: Harness, queue: str, bodies: int) -> list[bytes]:
    """Exactly ``bodies`` queue bodies off ``queue`` (acked), and nothing more."""
    consumer = h.transport.consumer(queue, 100)
    try:
        got = []
        for _ in range(bodies):
            delivery = get(consumer)
            got.append(delivery.body)
            consumer.ack(delivery)
        assert consumer.get(0.3) is None, "more bodies than expected"
        return got
    finally:
        consumer.close()


def test_a_batch_is_handled_job_by_job_and_only_the_bad_job_is_dead_lettered(harness: Harness) -> None:
    q_in, q_out = harness.queue("jobs"), harness.queue("results")
    harness.transport.publish(q_in, Batch(messages=[job(n) for n in range(6)]))  # job 3 is cursed
    stop = threading.Event()
    thread = _serve_in_thread(harness, q_in, _Scan(q_out), stop, ServeOptions(workers=2, poll=0.05))
    try:
        _wait_for(lambda: len(harness.dead_letters(q_in)) == 1 and harness.depth(q_out) == 5)
    finally:
        stop.set()
        thread.join(10)
    (parked,) = harness.dead_letters(q_in)
    assert decode(parked.body) == job(3)  # the one job, not its batch
    assert parked.reason.startswith("PermanentError: h3 is cursed")
    results = [m for body in _ack_all(harness, q_out, 5) for m in unpacked(body)]
    assert _fqdns(results) == {f"h{n}.example." for n in (0, 1, 2, 4, 5)}
    assert harness.depth(q_in) == 0 and _ack_all(harness, q_in, 0) == []  # the batch was acked


class _BatchScan(Handler):
    """Answers a batch of jobs at once (as the scanner does), one result per job."""

    def __init__(self, out: str) -> None:
        self.out = out

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        for index, message in enumerate(messages):
            assert isinstance(message, ScanJob)
            yield index, [Outgoing(self.out, result_for(message, [], datetime(2026, 1, 1, tzinfo=UTC)))]


def test_results_leave_in_batches_of_pack_and_every_job_is_answered_once(harness: Harness) -> None:
    q_in, q_out = harness.queue("jobs"), harness.queue("results")
    jobs = [job(n) for n in range(40)]
    harness.transport.publish_many(
        [Outgoing(q_in, Batch(messages=jobs[:25])), Outgoing(q_in, Batch(messages=jobs[25:]))]
    )
    stop = threading.Event()
    options = ServeOptions(workers=1, batch_size=40, batch_linger=0.5, pack=10, pack_linger=30, poll=0.05)
    thread = _serve_in_thread(harness, q_in, _BatchScan(q_out), stop, options)
    try:
        _wait_for(lambda: harness.depth(q_out) == 4)
    finally:
        stop.set()
        thread.join(10)
    bodies = _ack_all(harness, q_out, 4)  # 40 results in 4 bodies of 10
    results = [m for body in bodies for m in unpacked(body)]
    assert sorted(r.job_id for r in results if isinstance(r, ScanResult)) == sorted(j.job_id for j in jobs)
    assert harness.depth(q_in) == 0 and _ack_all(harness, q_in, 0) == []


def test_a_stop_mid_batch_brings_the_whole_batch_back_and_keeps_what_was_answered(harness: Harness) -> None:
    q_in, q_out = harness.queue("jobs"), harness.queue("results")
    jobs = [job(n) for n in (0, 1, 2, 4)]
    harness.transport.publish(q_in, Batch(messages=jobs))
    handler = _Scan(q_out, delay=0.8)
    stop = threading.Event()
    thread = _serve_in_thread(harness, q_in, handler, stop, ServeOptions(workers=1, prefetch=1, poll=0.05))
    _wait_for(lambda: handler.seen >= 1)
    stop.set()  # like SIGTERM: the job being handled finishes, the batch goes back whole
    thread.join(10)
    assert not thread.is_alive()
    (answered,) = [m for body in _ack_all(harness, q_out, 1) for m in unpacked(body)]
    (back,) = _ack_all(harness, q_in, 1)
    assert unpacked(back) == jobs  # redone later: results are keyed by job id, so no second row
    assert _fqdns([answered]) <= _fqdns(jobs)
    assert harness.dead_letters(q_in) == []


def test_a_batch_over_the_limit_is_dead_lettered_whole(harness: Harness) -> None:
    q_in, q_out = harness.queue("jobs"), harness.queue("results")
    one = encode(job(1))
    harness.publish_raw(q_in, b'{"type":"batch.v1","messages":[' + b",".join([one] * (MAX_BATCH + 1)) + b"]}")
    harness.publish_raw(q_in, b'{"type":"batch.v1","messages":[]}')
    harness.publish_raw(q_in, b'{"type":"batch.v1","messages":[{"type":"batch.v1","messages":[' + one + b"]}]}")
    stop = threading.Event()
    thread = _serve_in_thread(harness, q_in, _Scan(q_out), stop, ServeOptions(poll=0.05))
    try:
        _wait_for(lambda: len(harness.dead_letters(q_in)) == 3)
    finally:
        stop.set()
        thread.join(10)
    assert all("invalid message" in d.reason for d in harness.dead_letters(q_in))
    assert harness.depth(q_out) == 0


def test_park_puts_a_body_on_the_dead_letter_queue_and_settles_nothing(harness: Harness) -> None:
    q = harness.queue()
    harness.transport.publish(q, job(1))
    consumer = harness.transport.consumer(q, 1)
    try:
        held = get(consumer)
        consumer.park(encode(job(2)), "one part of a batch", {"x-test": "kept"})
        (parked,) = harness.dead_letters(q)
        assert decode(parked.body) == job(2) and parked.reason == "one part of a batch"
        assert parked.headers.get("x-test") == "kept"
        consumer.requeue(held)  # still ours to settle
    finally:
        consumer.close()
    assert [decode(b) for b in _ack_all(harness, q, 1)] == [job(1)]
