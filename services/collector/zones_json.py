"""The original's zones JSON, both ways: into zone snapshots, and back out (``fetch-zones``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from shared import findings
from shared.config import quote, shorten, zone_name_problem
from shared.messages import LocatedFinding, ZoneRecord, ZoneSnapshot, normalise_zone


def snapshots_from_zones_json(run_id: str, data: Mapping[str, Sequence[ZoneRecord]]) -> list[ZoneSnapshot]:
    """One snapshot per zone of ``shared.config.load_zones_json``'s result (kept types only).

    A zone whose name is longer than DNS allows is one failed snapshot (``ZONE_FILE_INVALID``)
    under a short stand-in name, and the other zones go on.
    """
    snapshots = []
    for zone, records in data.items():
        problem = zone_name_problem(zone)
        if problem is None:
            kept = records if isinstance(records, list) else list(records)  # the loader's list: no copy
            snapshots.append(ZoneSnapshot(run_id=run_id, zone=normalise_zone(zone), records=kept))
            continue
        name = stand_in_zone_name(zone)
        message = f"zones JSON: zone name {quote(zone)} {problem}"
        failure = LocatedFinding(fqdn=name, finding=findings.error(findings.Code.ZONE_FILE_INVALID, message))
        snapshots.append(ZoneSnapshot(run_id=run_id, zone=name, failure=failure))
    return snapshots


def stand_in_zone_name(zone: str) -> str:
    """A short name for a zone whose own is unusable: its start and a digest (two such zones never share one)."""
    digest = hashlib.sha256(zone.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{shorten(normalise_zone(zone), 48)}#{digest}"


def zones_json_from_snapshots(snapshots: Iterable[ZoneSnapshot]) -> dict[str, list[dict[str, object]]]:
    """The JSON the original's fetch_zone_transfers.py wrote; failed zones are left out."""
    out: dict[str, list[dict[str, object]]] = {}
    for snap in snapshots:
        if snap.failure is not None:
            continue
        out[snap.zone] = [{"type": r.type, "name": r.name, "ttl": r.ttl, "target": r.target} for r in snap.records]
    return out
