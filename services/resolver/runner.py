"""Wiring of the resolver stage: zone snapshots in, scan jobs per segment and zone plans out."""

from __future__ import annotations

from services.resolver.dns_lookup import Lookup, make_lookup
from services.resolver.handler import ResolverHandler
from shared.batches import JOBS_PER_BATCH
from shared.config import Config
from shared.runner import ServeOptions, Stage
from shared.transport import RESOLVE

# One zone at a time: a snapshot is a whole zone; a small prefetch keeps the next one ready.
# A zone's jobs go out in batches (one broker message per 50 jobs), at least 8 of them when the
# zone has enough jobs, so the scanners of a segment share even a small zone.
OPTIONS = ServeOptions(workers=1, prefetch=4, pack=JOBS_PER_BATCH, spread=8)


def stage(config: Config, lookup: Lookup | None = None) -> Stage[ResolverHandler]:
    handler = ResolverHandler(config, lookup or make_lookup(config))
    return Stage(RESOLVE, handler, OPTIONS, publishes=handler.queues())
