"""Catalog zones (RFC 9432): the zones an authoritative server says it serves, read by AXFR.

A catalog zone lists its member zones as ``<unique-id>.zones.<catalog> PTR <member>`` and says
its schema version as ``version.<catalog> TXT "2"`` (version 1, the draft Knot, BIND and
PowerDNS produced before the RFC, has the same ``zones.`` layout). The catalog is transferred
with the collector's one AXFR routine (``axfr.transfer_records``: same timeouts, retries, TSIG
and error wording as any zone); only the PTR and TXT records are kept.

Members are read as RFC 9432 says a consumer must: a catalog without a version, or with one
other than 1 or 2, is not processed at all (one finding); a member node with more than one PTR
is ignored (a warning); properties (``group``, ``coo``, anything else under a member or the
catalog) are ignored. A member listed under two unique ids is one zone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT

from services.collector import axfr
from services.collector.records import zone_origin
from shared import findings
from shared.config import BindServer
from shared.messages import normalise_zone

log = logging.getLogger("dcc.collector.catalog")

VERSIONS = ("1", "2")

# (owner's labels relative to the catalog, lower-case; "PTR" or "TXT"; the target name or the text)
Entry = tuple[tuple[str, ...], str, str]


@dataclass(frozen=True)
class Catalog:
    zone: str  # the catalog zone's name
    serial: int
    version: str
    members: list[str]  # normalised zone names, sorted


def read(server: BindServer, catalog: str) -> Catalog:
    """Transfer ``catalog`` from ``server`` and read its members. Raises ``axfr.ZoneTransferError``."""
    zone = normalise_zone(catalog)
    try:
        origin = zone_origin(zone)
    except dns.exception.DNSException as exc:
        raise axfr.ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED, f"invalid catalog zone name {catalog!r}: {exc}"
        ) from None
    result = axfr.transfer_records(server, zone, _converter(origin))
    version, members = members_of(zone, result.records)
    return Catalog(zone, result.serial, version, members)


def members_of(catalog: str, entries: list[Entry]) -> tuple[str, list[str]]:
    """(version, member zones) of a catalog's PTR/TXT entries; ``ZoneTransferError`` when the
    version is missing or one this collector does not read."""
    versions = sorted({text for labels, kind, text in entries if labels == ("version",) and kind == "TXT"})
    if len(versions) != 1 or versions[0] not in VERSIONS:
        found = ", ".join(repr(v) for v in versions) if versions else "none"
        raise axfr.ZoneTransferError(
            findings.Code.ZONE_TRANSFER_FAILED,
            f"catalog zone {catalog} has schema version {found} (version.{catalog} TXT); "
            f"RFC 9432 consumers read only version 1 or 2, so its members are not read",
        )
    targets: dict[str, list[str]] = {}  # unique id -> the PTR targets at its member node
    for labels, kind, text in entries:
        if kind == "PTR" and len(labels) == 2 and labels[1] == "zones":
            targets.setdefault(labels[0], []).append(text)
    members: set[str] = set()
    for unique_id, names in targets.items():
        if len(names) != 1:
            log.warning(
                "catalog %s: member node %s.zones has %d PTR records: ignored (RFC 9432 allows one)",
                catalog,
                unique_id,
                len(names),
            )
            continue
        members.add(names[0])
    members.discard("")
    return versions[0], sorted(members)


def _converter(origin: dns.name.Name) -> axfr.Convert[Entry]:
    def convert(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> list[Entry]:
        if rdataset.rdclass != dns.rdataclass.IN:
            return []
        labels = tuple(label.decode("ascii", "backslashreplace").lower() for label in name.relativize(origin).labels)
        if rdataset.rdtype == dns.rdatatype.PTR:
            return [(labels, "PTR", _ptr_target(rdata, origin)) for rdata in rdataset]
        if rdataset.rdtype == dns.rdatatype.TXT:
            return [(labels, "TXT", _txt(rdata)) for rdata in rdataset]
        return []

    return convert


def _ptr_target(rdata: object, origin: dns.name.Name) -> str:
    """A PTR's target as a zone name (dnspython's rdata are untyped: this one is a PTR)."""
    return normalise_zone(cast(dns.rdtypes.ANY.PTR.PTR, rdata).target.derelativize(origin).to_text())


def _txt(rdata: object) -> str:
    return b"".join(cast(dns.rdtypes.ANY.TXT.TXT, rdata).strings).decode("utf-8", "replace")
