"""``ZoneTask``: one zone of a run and where it comes from (a server, a file, an API, or nowhere)."""

from __future__ import annotations

from dataclasses import dataclass

from services.collector.powerdns import Api
from shared.config import BindServer
from shared.messages import LocatedFinding, ZoneSnapshot


@dataclass(frozen=True)
class ZoneTask:
    """One zone and where to get it: a server (AXFR), a file or a PowerDNS API; ``problem`` if none works."""

    zone: str
    source: str  # "axfr:127.0.0.1:53", "file:zones/example.com.zone" (logs, serial keys)
    server: BindServer | None = None
    path: str | None = None
    problem: str | None = None
    unchanged: bool = False  # set by plan(): same serial (file hash) as its last recorded collection
    snapshot: ZoneSnapshot | None = None  # already read (a zones JSON): nothing to collect
    # --- zone discovery (catalog zones, the PowerDNS API) ---
    api: Api | None = None  # read from this PowerDNS API ...
    zone_id: str = ""  # ... where the zone has this id
    listed_serial: int | None = None  # the serial the discovery saw (PowerDNS list, catalog SOA)
    found_by: str = ""  # the zone_data_sources entry that discovered it; "" when configured by name
    # The discovery itself (the catalog zone, the PowerDNS zone list) as a zone of the run: no records
    # to scan, and ``failure`` when it failed. Being in every run, it resolves its own past failure.
    entry: bool = False
    failure: LocatedFinding | None = None
