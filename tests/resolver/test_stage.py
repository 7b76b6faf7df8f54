"""The resolver stage on a transport: a zone's jobs leave in batches, not one broker message each."""

from __future__ import annotations

import threading
import time

from services.resolver.dns_lookup import LookupAnswer
from services.resolver.runner import stage
from shared.batches import JOBS_PER_BATCH
from shared.config import Config
from shared.messages import ScanJob, ZonePlan, ZoneRecord, ZoneSnapshot, unpacked
from shared.runner import serve_stage
from shared.transport import REPORT, InMemoryTransport, scan_queue


def _bodies(transport: InMemoryTransport, queue: str) -> list[bytes]:
    consumer = transport.consumer(queue, 10_000)
    bodies = []
    while (delivery := consumer.get(0.2)) is not None:
        bodies.append(delivery.body)
        consumer.ack(delivery)
    consumer.close()
    return bodies


def _resolve(snapshot: ZoneSnapshot, config: Config) -> InMemoryTransport:
    transport = InMemoryTransport()
    resolver = stage(config, lookup=lambda name: LookupAnswer(nxdomain=True))  # every name is in the zone
    transport.declare([*resolver.queues(), "resolve"])
    transport.publish("resolve", snapshot)
    stop = threading.Event()
    thread = threading.Thread(target=serve_stage, args=(transport, resolver, stop), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while transport.depth(REPORT) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    return transport


def test_a_large_zone_s_jobs_travel_fifty_to_a_message_and_none_is_lost() -> None:
    records = [ZoneRecord("A", f"h{n}", f"10.0.{n // 250}.{n % 250 + 1}") for n in range(1000)]
    transport = _resolve(ZoneSnapshot(run_id="r1", zone="example.test", records=records), Config())
    bodies = _bodies(transport, scan_queue("default"))
    jobs = [m for body in bodies for m in unpacked(body)]
    assert len(bodies) == 1000 // JOBS_PER_BATCH
    assert all(isinstance(j, ScanJob) for j in jobs) and len({j.job_id for j in jobs}) == 1000  # type: ignore[union-attr]
    (plan,) = [m for body in _bodies(transport, REPORT) for m in unpacked(body)]
    assert isinstance(plan, ZonePlan) and {p.job_id for p in plan.jobs} == {j.job_id for j in jobs}  # type: ignore[union-attr]


def test_a_small_zone_is_still_spread_over_several_messages_for_the_segment_s_scanners() -> None:
    records = [ZoneRecord("A", f"h{n}", f"10.0.0.{n + 1}") for n in range(40)]
    transport = _resolve(ZoneSnapshot(run_id="r1", zone="example.test", records=records), Config())
    bodies = _bodies(transport, scan_queue("default"))
    assert len(bodies) == 5 and sum(len(unpacked(b)) for b in bodies) == 40  # 8 jobs each
