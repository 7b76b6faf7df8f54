"""Starting a run: the one routine behind ``run``, the ``collector`` service and ``fetch-zones``.

The sequence is always the same: ``plan_run`` decides the run's zones (from a zones JSON, or
from the config's sources, asking servers for serials when unchanged zones may be skipped),
then ``start_run`` publishes ``RunStarted`` to the reporter first (so it knows every zone of
the run before any plan arrives) and one ``ZoneSnapshot`` per zone to the resolver as each zone
is collected. A zone that fails is a snapshot with its finding; it never stops the run.

With zone discovery (catalog zones, PowerDNS APIs) and a ``state_dir``, the plan also compares
the zones discovered with those the last run discovered (``known_zones.py``): ``RunStarted``
names the new and the removed ones, and once it is published this run's zones are recorded, so
each change is announced once. ``fetch-zones`` plans the same way but records nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.collector.known_zones import KnownZones, ZoneChanges
from services.collector.serials import SerialStore
from services.collector.sources import Collection, CollectionPlan, ZoneTask, plan
from services.collector.zones_json import snapshots_from_zones_json
from shared.config import Config, ConfigError, load_zones_json
from shared.messages import RunStarted, ZoneSnapshot, new_run_id
from shared.transport import REPORT, RESOLVE, Transport

log = logging.getLogger("dcc.collector")

NO_ZONES = "no zones to scan: give --from-zones-json or configure zone_data_sources / nameserver_zones"


@dataclass(frozen=True)
class CollectOptions:
    """Where a run's zones come from."""

    zones_json: str | None = None  # the original's export (``--from-zones-json``); else the config's sources
    skip_unchanged: bool = False  # serve zones whose serial did not change from state_dir (config sources)


@dataclass(frozen=True)
class PlannedRun:
    """A run whose zones are known and not collected yet."""

    run_id: str
    source: str  # "config" or "zones-json:<path>", as RunStarted carries it
    tasks: list[ZoneTask]
    serials: SerialStore | None = None
    # zone discovery: per source, what it found (None: failed); and what changed since the last run
    discovered: dict[str, list[str] | None] = field(default_factory=dict)
    changes: ZoneChanges = field(default_factory=ZoneChanges)
    known: KnownZones | None = None  # where the discovered zones are recorded (None: nowhere)

    @property
    def zones(self) -> list[str]:
        return [task.zone for task in self.tasks]

    @classmethod
    def of_snapshots(cls, run_id: str, snapshots: list[ZoneSnapshot], source: str = "snapshots") -> PlannedRun:
        """A run over zones already read (a zones JSON, or snapshots another collector made)."""
        return cls(run_id, source, [ZoneTask(s.zone, source, snapshot=s) for s in snapshots])

    def started(self) -> RunStarted:
        return RunStarted(
            run_id=self.run_id,
            started_at=datetime.now(UTC),
            zones=self.zones,
            source=self.source,
            new_zones=self.changes.new,
            removed_zones=self.changes.removed,
        )

    def record_zones(self) -> None:
        """The run's start is announced: remember what it discovered, so the next run compares with it."""
        if self.known is not None:
            self.known.record(self.discovered, self.run_id)
            self.known.save()

    def collection(self) -> Collection:
        """The run's zones, collected one at a time as the caller iterates."""
        return Collection(self.tasks, self.run_id, self.serials)


def plan_run(config: Config, options: CollectOptions, run_id: str | None = None) -> PlannedRun:
    """The zones of a new run; ``ConfigError`` when there are none or the zones JSON is unusable."""
    run_id = run_id or new_run_id()
    if options.zones_json:
        if options.skip_unchanged:
            log.warning("--skip-unchanged has no effect with --from-zones-json")
        source = f"zones-json:{options.zones_json}"
        return PlannedRun.of_snapshots(
            run_id, snapshots_from_zones_json(run_id, load_zones_json(options.zones_json)), source
        )
    serials = SerialStore.for_config(config) if options.skip_unchanged else None
    if options.skip_unchanged and serials is None:
        log.warning("--skip-unchanged needs state_dir in the config: every zone is collected")
    planned = plan(config, serials)
    if not planned.collect:
        raise ConfigError(NO_ZONES)
    known, changes = _zone_changes(config, planned)
    return PlannedRun(run_id, "config", planned.collect, serials, planned.discovered, changes, known)


def _zone_changes(config: Config, planned: CollectionPlan) -> tuple[KnownZones | None, ZoneChanges]:
    """What discovery found new and removed since the last recorded run (nothing without state_dir)."""
    known = KnownZones.for_config(config)
    if known is None:
        if planned.discovered:
            log.info("zone discovery without state_dir: new and removed zones are not tracked")
        return None, ZoneChanges()
    if not planned.discovered and known.empty:
        return None, ZoneChanges()  # no discovery now or before: nothing to compare, nothing to write
    changes = known.changes(planned.discovered, planned.zones, planned.named)
    if changes.new:
        log.info("zones new since the last run: %s", ", ".join(changes.new))
    if changes.removed:
        log.warning("zones removed since the last run (no source lists them any more): %s", ", ".join(changes.removed))
    return known, changes


def start_run(transport: Transport, run: PlannedRun) -> None:
    """Publish ``RunStarted``, then each zone's snapshot as it is collected. Raises ``TransportError``."""
    transport.publish(REPORT, run.started())
    run.record_zones()
    with run.collection() as zones:
        for item in zones:
            transport.publish(RESOLVE, item.snapshot)
            zones.published(item)
    log.log(logging.WARNING if zones.failed else logging.INFO, "%s", zones.summary_line())
