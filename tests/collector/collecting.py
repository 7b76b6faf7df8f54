"""Collecting zones the way ``start_run`` does: each snapshot handed on, then marked published."""

from __future__ import annotations

from services.collector import sources
from services.collector.serials import SerialStore
from shared.config import Config
from shared.messages import Message, ZoneSnapshot, decode
from shared.transport import InMemoryTransport


def collect(
    config: Config,
    run_id: str,
    serials: SerialStore | None = None,
    *,
    tasks: list[sources.ZoneTask] | None = None,
    from_cache: list[str] | None = None,
) -> list[ZoneSnapshot]:
    """Every snapshot of ``tasks`` (default: the config's plan); zones served from the cache are
    appended to ``from_cache``."""
    todo = tasks if tasks is not None else sources.plan(config, serials).collect
    snapshots = []
    with sources.Collection(todo, run_id, serials) as zones:
        for item in zones:
            snapshots.append(item.snapshot)
            zones.published(item)
            if item.from_cache and from_cache is not None:
                from_cache.append(item.task.zone)
    return snapshots


def zone_names(config: Config) -> list[str]:
    return [task.zone for task in sources.zone_tasks(config)]


def drain(transport: InMemoryTransport, queue: str) -> list[Message]:
    """Every message on ``queue`` now, taken off it (what the collector published)."""
    consumer = transport.consumer(queue, prefetch=100_000)
    out = []
    while (delivery := consumer.get(timeout=0)) is not None:
        out.append(decode(delivery.body))
        consumer.ack(delivery)
    consumer.close()
    return out
