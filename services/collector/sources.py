"""Which zones a config names, where each comes from, and collecting them one by one.

Sources, in this order (a zone named twice is taken from its first source, with a warning):
1. ``zone_data_sources`` — ``BIND`` entries (AXFR from ``config.server_ip:server_port``, optional
   TSIG; with ``catalog``, the member zones of that catalog zone too), ``FILE`` entries (RFC 1035
   master files) and ``POWERDNS`` entries (the zones its HTTP API lists), the discovered zones
   after the named ones of their source (``discovery.py``);
2. the legacy ``nameserver_zones`` — ``{"ip" | "ip:port" | "[v6]:port": [zones]}``, AXFR.

Skipping unchanged zones (``--skip-unchanged``, with a ``SerialStore``) saves the *transfer*,
never the scan: every configured zone is in every run. ``plan(config, serials)`` asks each
server for the zone's SOA serial (one small query) and hashes each zone file, and marks the
zones whose serial (file hash) equals the one of their last recorded collection. The run lists
every zone in ``RunStarted`` and a ``Collection`` gives one snapshot for each: a marked zone's
snapshot is built from the records cached in ``state_dir`` by that last collection (current run
id, recorded serial), and is transferred as usual when that cache is missing, unreadable or
stale. A zone whose SOA query fails is transferred (its failure is then reported).

A transferred zone's serial and records are recorded only when it was collected without
failure, and only after the consumer took its snapshot (published it) — not after its
endpoints were scanned: the scans are not what the record saves, they happen again every run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from services.collector import axfr, powerdns, zonefile
from services.collector.discovery import Discovery
from services.collector.serials import SerialStore
from services.collector.tasks import ZoneTask as ZoneTask  # re-exported: where runs and tests find it
from shared import findings
from shared.config import BindServer, BindSource, Config, PowerDnsSource, ZoneFileSource, parse_host_port
from shared.messages import LocatedFinding, ZoneSnapshot, normalise_zone

log = logging.getLogger("dcc.collector")


@dataclass
class CollectionPlan:
    collect: list[ZoneTask] = field(default_factory=list)  # every zone of the run, in config order
    # zone discovery: per discovering source, the zones it found (None: its discovery failed)
    discovered: dict[str, list[str] | None] = field(default_factory=dict)

    @property
    def zones(self) -> list[str]:
        return [task.zone for task in self.collect]

    @property
    def named(self) -> list[str]:
        """The zones configured by name (not discovered, not a discovery's own entry)."""
        return [task.zone for task in self.collect if not task.found_by and not task.entry]

    @property
    def unchanged(self) -> list[ZoneTask]:
        """The zones that will be served from the cache (unless it turns out unusable)."""
        return [task for task in self.collect if task.unchanged]


def zone_tasks(config: Config, discovery: Discovery | None = None) -> list[ZoneTask]:
    """Every configured zone with its source, each zone once; with ``discovery``, the zones that
    catalogs and PowerDNS APIs list too (without it, those sources add only the zones they name)."""
    tasks: list[ZoneTask] = []
    for source_name, source in config.zone_data_sources.items():
        if isinstance(source, BindSource):
            label = "axfr:" + axfr.server_label(source.config)
            tasks.extend(ZoneTask(normalise_zone(z), label, server=source.config) for z in source.zones)
            if source.catalog is not None and discovery is not None:
                tasks.extend(discovery.catalog_tasks(source_name, source))
        elif isinstance(source, PowerDnsSource):
            if discovery is not None:
                tasks.extend(discovery.powerdns_tasks(source_name, source))
        elif isinstance(source, ZoneFileSource):
            tasks.extend(
                ZoneTask(normalise_zone(zone), f"file:{path}", path=path) for zone, path in source.files.items()
            )
        else:  # pragma: no cover - the config decoder admits only the types above
            log.warning("zone_data_sources.%s: unsupported source type, ignored", source_name)
    for entry, zones in config.nameserver_zones.items():
        try:
            ip, port = parse_host_port(entry, 53)
        except ValueError as exc:
            tasks.extend(
                ZoneTask(normalise_zone(z), f"axfr:{entry}", problem=f"nameserver_zones: {exc}") for z in zones
            )
            continue
        server = BindServer(server_ip=ip, server_port=port)
        label = "axfr:" + axfr.server_label(server)
        tasks.extend(ZoneTask(normalise_zone(z), label, server=server) for z in zones)
    unique: dict[str, ZoneTask] = {}
    for task in tasks:
        if not task.zone:
            continue
        first = unique.setdefault(task.zone, task)
        if first is not task and not (task.found_by and first.source == task.source):
            # (a discovered zone its own source names too is no news)
            log.warning("zone %s is configured twice: using %s, ignoring %s", task.zone, first.source, task.source)
    return list(unique.values())


def plan(config: Config, serials: SerialStore | None = None) -> CollectionPlan:
    """Every configured and discovered zone; with ``serials``, the ones unchanged since their last
    success are marked."""
    discovery = Discovery(serials, tuple(config.nameservers()), config.use_system_resolver)
    result = CollectionPlan()
    for task in zone_tasks(config, discovery):
        current = _current_version(task) if serials is not None else None
        if serials is not None and current is not None:
            serial, fingerprint = current
            if serials.unchanged(task.source, task.zone, serial, fingerprint):
                log.debug("zone %s unchanged (serial %s) since its last collection", task.zone, serial)
                task = replace(task, unchanged=True)
        result.collect.append(task)
    result.discovered = discovery.found
    return result


@dataclass(frozen=True)
class Collected:
    """One zone's snapshot and how it was obtained."""

    task: ZoneTask
    snapshot: ZoneSnapshot
    from_cache: bool = False
    fingerprint: str | None = None  # zone files: the content hash, recorded with the serial


class Collection:
    """The zones of one run, collected one at a time, in task order; a failing zone is one
    failed snapshot and the others go on.

    With ``serials``: a task marked unchanged is served from the records cached by its last
    collection, or transferred when that cache is unusable. The caller says when a snapshot is
    safely handed on (``published``): only then is a transferred zone's serial recorded, so a
    zone whose snapshot never reached the pipeline is transferred again next time.
    """

    def __init__(self, tasks: Iterable[ZoneTask], run_id: str, serials: SerialStore | None = None) -> None:
        self._tasks = list(tasks)
        self._run_id = run_id
        self._serials = serials
        self.collected = 0
        self.failed: list[ZoneSnapshot] = []
        self.from_cache = 0

    def __iter__(self) -> Iterator[Collected]:
        for task in self._tasks:
            started = time.monotonic()
            item = self._from_cache(task) or self._transfer(task)
            _log_collected(item, time.monotonic() - started)
            if item.snapshot.failure is not None:
                self.failed.append(item.snapshot)
            elif not task.entry:  # a discovery that worked is not a zone collected
                self.collected += 1
                self.from_cache += item.from_cache
            yield item

    def published(self, item: Collected) -> None:
        """``item``'s snapshot is in the pipeline: remember its serial (and records) for next time."""
        snap = item.snapshot
        if item.task.entry:
            return  # a catalog's serial and members were recorded when it was read (discovery.py)
        if self._serials is not None and snap.failure is None and not item.from_cache:
            self._serials.record(item.task.source, item.task.zone, snap.serial, item.fingerprint, snap.records)

    def close(self) -> None:
        if self._serials is not None:
            self._serials.save()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary_line(self) -> str:
        return summary_line(self._run_id, self.collected, self.failed, from_cache=self.from_cache)

    def _from_cache(self, task: ZoneTask) -> Collected | None:
        if not task.unchanged or self._serials is None:
            return None
        cached = self._serials.cached(task.source, task.zone)
        if cached is None:
            log.info("zone %s unchanged but its cached records are unusable: transferring it", task.zone)
            return None
        snap = ZoneSnapshot(run_id=self._run_id, zone=task.zone, records=cached.records, serial=cached.serial)
        return Collected(task, snap, from_cache=True)

    def _transfer(self, task: ZoneTask) -> Collected:
        fingerprint = zonefile.fingerprint(task.path) if task.path is not None else None
        return Collected(task, collect_one(task, self._run_id), fingerprint=fingerprint)


def _log_collected(item: Collected, elapsed: float) -> None:
    snap, task = item.snapshot, item.task
    if snap.failure is not None:
        log.error("%s", failure_line(snap))
    elif task.entry:
        return  # the discovery logged what it found
    elif item.from_cache:
        log.info(
            "zone %s from %s: unchanged (serial %s), %d records from the cache, %.2f s",
            task.zone,
            task.source,
            snap.serial,
            len(snap.records),
            elapsed,
        )
    else:
        log.info(
            "zone %s from %s: %d records, serial %s, %.2f s",
            task.zone,
            task.source,
            len(snap.records),
            snap.serial,
            elapsed,
        )


def collect_one(task: ZoneTask, run_id: str) -> ZoneSnapshot:
    if task.snapshot is not None:
        return task.snapshot
    if task.failure is not None:
        return ZoneSnapshot(run_id=run_id, zone=task.zone, failure=task.failure)
    if task.entry:  # a discovery that worked: nothing to scan in it
        return ZoneSnapshot(run_id=run_id, zone=task.zone, serial=task.listed_serial)
    if task.problem is not None:
        failure = LocatedFinding(
            fqdn=task.zone, finding=findings.error(findings.Code.ZONE_TRANSFER_FAILED, task.problem)
        )
        return ZoneSnapshot(run_id=run_id, zone=task.zone, failure=failure)
    if task.path is not None:
        return zonefile.snapshot(task.zone, task.path, run_id)
    if task.api is not None:
        return powerdns.snapshot(task.api, task.zone_id, task.zone, run_id)
    assert task.server is not None
    return axfr.snapshot(task.server, task.zone, run_id)


def failure_line(snap: ZoneSnapshot) -> str:
    """The one log line for a failed zone."""
    assert snap.failure is not None
    return f"zone {snap.zone}: {snap.failure.finding.code}: {snap.failure.finding.message}"


def summary_line(run_id: str, collected: int, failed: list[ZoneSnapshot], from_cache: int = 0) -> str:
    text = f"run {run_id}: {collected} zone(s) collected"
    if from_cache:
        text += f" ({from_cache} unchanged, from the cache)"
    text += f", {len(failed)} failed"
    if failed:
        text += ": " + ", ".join(f"{s.zone} ({s.failure.finding.code})" for s in failed if s.failure)
    return text


def _current_version(task: ZoneTask) -> tuple[int | None, str | None] | None:
    """(serial, fingerprint) now, or None when it cannot be known cheaply (then: transfer)."""
    if task.problem is not None or task.failure is not None or task.entry:
        return None
    if task.api is not None:  # the zone list said it
        return (task.listed_serial, None) if task.listed_serial else None
    if task.path is not None:
        fingerprint = zonefile.fingerprint(task.path)
        return (None, fingerprint) if fingerprint else None
    assert task.server is not None
    try:
        return axfr.query_serial(task.server, task.zone), None
    except axfr.ZoneTransferError as exc:
        log.info("zone %s: SOA query failed (%s); transferring it", task.zone, exc)
        return None
