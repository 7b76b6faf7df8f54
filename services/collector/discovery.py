"""Zone discovery: the zones a source says it has, as tasks of the run.

Two kinds of source discover zones:

- a ``BIND`` source with ``catalog``: its catalog zone (RFC 9432, ``catalog.py``) is transferred
  from the same server with the same key, and each member zone becomes a task beside the
  source's ``zones`` (a zone in both is collected once);
- a ``POWERDNS`` source: the API lists the server's zones (``powerdns.py``); ``zones`` empty
  takes them all, else each entry is a zone name or a glob pattern (``*.example.com``).

``exclude_zones`` (default ``*.in-addr.arpa``, ``*.ip6.arpa``: reverse zones have no A/CNAME
worth scanning) drops discovered zones only: a zone named in ``zones`` (BIND), or named exactly
in a PowerDNS ``zones`` list, is collected even when a pattern matches it, since naming it is
asking for it.

The discovery itself is a zone of the run (``ZoneTask.entry``, named by the catalog zone, or
``powerdns:<source name>``): when it fails, that is the one finding for the source (the zones it
would have found are simply not in this run, and not counted as removed); when it works, it has
no records, so it costs nothing and clears its own past failure in the alert state.

With ``--skip-unchanged`` a catalog whose SOA serial is the one recorded with its members is not
transferred again: its members come from ``state_dir`` (``serials.py``); a PowerDNS zone's serial
comes with the zone list, so an unchanged zone costs no request at all.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable

from services.collector import axfr, catalog, powerdns
from services.collector.serials import SerialStore
from services.collector.tasks import ZoneTask
from shared import findings
from shared.config import BindServer, BindSource, PowerDnsSource
from shared.messages import LocatedFinding, normalise_zone

log = logging.getLogger("dcc.collector.discovery")

CATALOG_SOURCE = "catalog:"  # serial-store key prefix of catalog zones (never shared with the zone itself)
_GLOB = frozenset("*?[")


class Discovery:
    """Discovers the zones of the sources it is asked about; ``found`` keeps, per source name, the
    zones it discovered this run, or None when its discovery failed (then nothing is known)."""

    def __init__(
        self,
        serials: SerialStore | None = None,
        nameservers: tuple[tuple[str, int], ...] = (),
        system_resolver: bool = False,
    ) -> None:
        self._serials = serials
        self._nameservers = nameservers  # for an api_url that names its host (lookup_nameservers)
        self._system_resolver = system_resolver
        self.found: dict[str, list[str] | None] = {}

    def catalog_tasks(self, name: str, source: BindSource) -> list[ZoneTask]:
        """The catalog (as the source's entry task), then its member zones not excluded, sorted."""
        assert source.catalog is not None
        server = source.config
        zone = normalise_zone(source.catalog)
        label = CATALOG_SOURCE + axfr.server_label(server)
        try:
            members, serial = self._catalog_members(label, server, zone)
        except axfr.ZoneTransferError as exc:  # logged once, when the run collects its entry
            self.found[name] = None
            return [_entry(zone, label, name, failure=axfr.failure_finding(server, zone, exc))]
        kept = _not_excluded(members, source.exclude_zones, name)
        self.found[name] = kept
        member_label = "axfr:" + axfr.server_label(server)
        return [
            _entry(zone, label, name, serial=serial),
            *(ZoneTask(member, member_label, server=server, found_by=name) for member in kept),
        ]

    def powerdns_tasks(self, name: str, source: PowerDnsSource) -> list[ZoneTask]:
        """The zone list (as the source's entry task), then the zones it selects."""
        api = powerdns.Api(source, self._nameservers, self._system_resolver)
        entry_zone = entry_name(name)
        try:
            listed = powerdns.list_zones(api)
        except axfr.ZoneTransferError as exc:  # logged once, when the run collects its entry
            self.found[name] = None
            return [_entry(entry_zone, api.label, name, failure=powerdns.failure_finding(api, entry_zone, exc))]
        by_zone = {z.zone: z for z in listed}
        exact = [normalise_zone(p) for p in source.zones if not _is_glob(p)]
        patterns = [normalise_zone(p) for p in source.zones if _is_glob(p)]
        matched = sorted(
            z for z in by_zone if z not in exact and (not source.zones or any(_matches(z, p) for p in patterns))
        )
        chosen = [z for z in exact if z in by_zone] + _not_excluded(matched, source.exclude_zones, name)
        self.found[name] = chosen
        log.info("zone_data_sources.%s: %s lists %d zones, %d collected", name, api.base, len(listed), len(chosen))
        tasks = [_entry(entry_zone, api.label, name)]
        for zone in exact:
            if zone in by_zone:
                continue
            problem = f"PowerDNS API at {api.base}: server {source.server_id!r} has no zone {zone}"
            failure = powerdns.failure_finding(
                api, zone, axfr.ZoneTransferError(findings.Code.ZONE_TRANSFER_FAILED, problem)
            )
            tasks.append(ZoneTask(zone, api.label, api=api, failure=failure))
        for zone in chosen:
            listed_zone = by_zone[zone]
            tasks.append(
                ZoneTask(
                    zone,
                    api.label,
                    api=api,
                    zone_id=listed_zone.zone_id,
                    listed_serial=listed_zone.serial,
                    found_by=name,
                )
            )
        return tasks

    def _catalog_members(self, label: str, server: BindServer, zone: str) -> tuple[list[str], int]:
        serials = self._serials
        if serials is not None:
            try:
                serial = axfr.query_serial(server, zone)
            except axfr.ZoneTransferError as exc:
                log.info("catalog %s: SOA query failed (%s); transferring it", zone, exc)
            else:
                cached = serials.cached(label, zone) if serials.unchanged(label, zone, serial) else None
                if cached is not None:
                    log.info("catalog %s unchanged (serial %s): members from the cache", zone, serial)
                    return list(cached.members), serial
        read = catalog.read(server, zone)
        log.info(
            "catalog %s from %s: version %s, serial %d, %d member zones",
            zone,
            axfr.server_label(server),
            read.version,
            read.serial,
            len(read.members),
        )
        if serials is not None:
            serials.record(label, zone, read.serial, records=[], members=read.members)
        return read.members, read.serial


def entry_name(source_name: str) -> str:
    """The zone name a PowerDNS source's zone list goes by in a run (its findings, the alert state)."""
    return normalise_zone(f"powerdns:{source_name}")


def _entry(
    zone: str, label: str, source_name: str, *, serial: int | None = None, failure: LocatedFinding | None = None
) -> ZoneTask:
    return ZoneTask(zone, label, listed_serial=serial, found_by=source_name, entry=True, failure=failure)


def _is_glob(pattern: str) -> bool:
    return any(char in _GLOB for char in pattern)


def _matches(zone: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(zone, pattern)


def _not_excluded(zones: Iterable[str], patterns: list[str], source_name: str) -> list[str]:
    folded = [normalise_zone(p) for p in patterns]
    kept: list[str] = []
    dropped: list[str] = []
    for zone in zones:
        (dropped if any(_matches(zone, p) for p in folded) else kept).append(zone)
    if dropped:
        log.info(
            "zone_data_sources.%s: %d discovered zones excluded by exclude_zones (e.g. %s)",
            source_name,
            len(dropped),
            dropped[0],
        )
    return kept
