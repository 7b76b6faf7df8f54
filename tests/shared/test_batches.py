"""Packing a call's outputs into batches (shared.batches.pack): sizes, spread, order, destinations."""

from __future__ import annotations

from shared.batches import MIN_PER_BATCH, pack
from shared.messages import Batch, Message, ScanJob, job_id
from shared.transport import Outgoing


def job(n: int) -> ScanJob:
    return ScanJob(
        job_id=job_id("r", "127.0.0.1", 443, f"h{n}.", f"h{n}"),
        run_id="r",
        zone="z",
        ip_address="127.0.0.1",
        port=443,
        fqdn=f"h{n}.",
        sni=f"h{n}",
    )


def sizes(packed: list[Outgoing]) -> list[int]:
    return [len(o.message.messages) if isinstance(o.message, Batch) else 1 for o in packed]


def flat(packed: list[Outgoing], destination: str) -> list[Message]:
    out: list[Message] = []
    for o in packed:
        if o.destination == destination:
            out.extend(o.message.messages if isinstance(o.message, Batch) else [o.message])
    return out


def test_a_queue_s_messages_go_in_batches_of_at_most_the_limit_in_order() -> None:
    jobs = [Outgoing("scan.a", job(n)) for n in range(120)]
    packed = pack(jobs, limit=50)
    assert sizes(packed) == [50, 50, 20]
    assert flat(packed, "scan.a") == [o.message for o in jobs]


def test_spread_splits_a_small_zone_over_several_batches_but_none_below_the_minimum() -> None:
    assert sizes(pack([Outgoing("q", job(n)) for n in range(80)], limit=50, spread=8)) == [10] * 8
    assert sizes(pack([Outgoing("q", job(n)) for n in range(20)], limit=50, spread=8)) == [MIN_PER_BATCH] * 2 + [4]
    assert sizes(pack([Outgoing("q", job(n)) for n in range(1000)], limit=50, spread=8)) == [50] * 20


def test_each_destination_is_packed_on_its_own_and_a_lone_message_stays_single() -> None:
    items = [Outgoing("scan.a", job(n)) for n in range(3)] + [Outgoing("report", job(99))]
    items += [Outgoing("scan.b", job(n)) for n in range(10, 13)]
    packed = pack(items, limit=50)
    assert {o.destination: sizes([o]) for o in packed} == {"scan.a": [3], "report": [1], "scan.b": [3]}
    assert next(o.message for o in packed if o.destination == "report") == job(99)  # not a batch of one
    assert flat(packed, "scan.b") == [job(n) for n in range(10, 13)]


def test_a_limit_of_one_changes_nothing_and_batches_given_are_repacked() -> None:
    items = [Outgoing("q", job(n)) for n in range(5)]
    assert pack(items, limit=1) == items
    given = [Outgoing("q", Batch(messages=[job(0), job(1)])), Outgoing("q", job(2))]
    assert sizes(pack(given, limit=2)) == [2, 1]
    assert flat(pack(given, limit=2), "q") == [job(0), job(1), job(2)]
