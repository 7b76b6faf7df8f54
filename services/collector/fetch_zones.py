"""``dns-cert-checker fetch-zones -o zones.json``: the original's zones JSON from the configured sources.

Made on a host allowed to transfer zones, scanned elsewhere with ``--from-zones-json``. Zones
are written one at a time as they arrive (one record per line, diff-friendly), so only one
zone is in memory. A failed zone is left out of the file, logged as one line, and makes the
exit status 1; the other zones are still written. A file is replaced atomically.

Discovered zones (catalog members, PowerDNS zones) are written like the others; the catalog zone
itself (or a PowerDNS zone list) is not a zone to scan and is left out, unless it failed: then it
is the failure that makes the exit status 1. Nothing is recorded as discovered: only a run does that.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO

import msgspec

from services.collector.runs import CollectOptions, plan_run
from services.collector.sources import Collection
from services.collector.zones_json import zones_json_from_snapshots
from shared.config import Config
from shared.files import atomic_writer

log = logging.getLogger("dcc.collector.fetch_zones")


def main(config: Config, output: str | None) -> int:
    """Write the zones JSON to ``output`` (None or ``-``: stdout). Raises ``ConfigError`` without zones."""
    run = plan_run(config, CollectOptions())
    with run.collection() as zones:
        if output in (None, "-"):
            _write(sys.stdout, zones)
            sys.stdout.flush()
        else:
            target = Path(output)
            try:
                with atomic_writer(target, "w", encoding="utf-8") as handle:
                    _write(handle, zones)
            except OSError as exc:
                log.error("cannot write %s: %s", target, exc.strerror or exc)
                return 2
    log.log(logging.WARNING if zones.failed else logging.INFO, "%s", zones.summary_line())
    return 1 if zones.failed else 0


def _write(out: IO[str], zones: Collection) -> None:
    """Stream ``{"zone": [records…], …}``, leaving failed zones out (the collection logged them)."""
    written = 0
    out.write("{")
    for item in zones:
        snap = item.snapshot
        if snap.failure is not None or item.task.entry:
            continue
        records = zones_json_from_snapshots([snap])[snap.zone]
        out.write(("," if written else "") + "\n" + msgspec.json.encode(snap.zone).decode() + ": [")
        for i, record in enumerate(records):
            out.write(("," if i else "") + "\n  " + msgspec.json.encode(record).decode())
        out.write("\n]" if records else "]")
        zones.published(item)
        written += 1
    out.write("\n}\n" if written else "}\n")
