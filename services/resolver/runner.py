"""Wiring of the resolver stage: zone snapshots in, scan jobs per segment and zone plans out."""

from __future__ import annotations

from services.resolver.dns_lookup import Lookup, make_lookup
from services.resolver.handler import ResolverHandler
from shared.config import Config
from shared.runner import ServeOptions, Stage
from shared.transport import RESOLVE

# One zone at a time: a snapshot is a whole zone; a small prefetch keeps the next one ready.
OPTIONS = ServeOptions(workers=1, prefetch=4)


def stage(config: Config, lookup: Lookup | None = None) -> Stage[ResolverHandler]:
    handler = ResolverHandler(config, lookup or make_lookup(config))
    return Stage(RESOLVE, handler, OPTIONS, publishes=handler.queues())
