"""Starting a run: the one routine behind ``run``, the ``collector`` service and ``fetch-zones``.

The sequence is always the same: ``plan_run`` decides the run's zones (from a zones JSON, or
from the config's sources, asking servers for serials when unchanged zones may be skipped),
then ``start_run`` publishes ``RunStarted`` to the reporter first (so it knows every zone of
the run before any plan arrives) and one ``ZoneSnapshot`` per zone to the resolver as each zone
is collected. A zone that fails is a snapshot with its finding; it never stops the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from services.collector.serials import SerialStore
from services.collector.sources import Collection, ZoneTask, plan
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

    @property
    def zones(self) -> list[str]:
        return [task.zone for task in self.tasks]

    @classmethod
    def of_snapshots(cls, run_id: str, snapshots: list[ZoneSnapshot], source: str = "snapshots") -> PlannedRun:
        """A run over zones already read (a zones JSON, or snapshots another collector made)."""
        return cls(run_id, source, [ZoneTask(s.zone, source, snapshot=s) for s in snapshots])

    def started(self) -> RunStarted:
        return RunStarted(run_id=self.run_id, started_at=datetime.now(UTC), zones=self.zones, source=self.source)

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
    tasks = plan(config, serials).collect
    if not tasks:
        raise ConfigError(NO_ZONES)
    return PlannedRun(run_id, "config", tasks, serials)


def start_run(transport: Transport, run: PlannedRun) -> None:
    """Publish ``RunStarted``, then each zone's snapshot as it is collected. Raises ``TransportError``."""
    transport.publish(REPORT, run.started())
    with run.collection() as zones:
        for item in zones:
            transport.publish(RESOLVE, item.snapshot)
            zones.published(item)
    log.log(logging.WARNING if zones.failed else logging.INFO, "%s", zones.summary_line())
