"""The original's zones JSON, both ways: into zone snapshots, and back out (``fetch-zones``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shared.config import ZonesJsonRecord
from shared.messages import RECORD_TYPES, RecordType, ZoneRecord, ZoneSnapshot, normalise_zone

_KEPT: dict[str, RecordType] = {kind: kind for kind in RECORD_TYPES}


def snapshots_from_zones_json(run_id: str, data: Mapping[str, Sequence[ZonesJsonRecord]]) -> list[ZoneSnapshot]:
    """One snapshot per zone; unknown record types are dropped here, as the original ignored them."""
    snapshots = []
    for zone, records in data.items():
        kept = [
            ZoneRecord(type=_KEPT[r.type], name=r.name, target=r.target, ttl=r.ttl) for r in records if r.type in _KEPT
        ]
        snapshots.append(ZoneSnapshot(run_id=run_id, zone=normalise_zone(zone), records=kept))
    return snapshots


def zones_json_from_snapshots(snapshots: Iterable[ZoneSnapshot]) -> dict[str, list[dict[str, object]]]:
    """The JSON the original's fetch_zone_transfers.py wrote; failed zones are left out."""
    out: dict[str, list[dict[str, object]]] = {}
    for snap in snapshots:
        if snap.failure is not None:
            continue
        out[snap.zone] = [{"type": r.type, "name": r.name, "ttl": r.ttl, "target": r.target} for r in snap.records]
    return out
