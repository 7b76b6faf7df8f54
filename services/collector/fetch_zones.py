"""``dns-cert-checker fetch-zones -o zones.json``: the original's zones JSON from the configured sources.

Made on a host allowed to transfer zones, scanned elsewhere with ``--from-zones-json``. Zones
are written one at a time as they arrive (one record per line, diff-friendly), so only one
zone is in memory. A failed zone is left out of the file, logged as one line, and makes the
exit status 1; the other zones are still written. A file is replaced atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import msgspec

from services.collector.sources import collect_tasks, plan, summary_line
from services.collector.zones_json import zones_json_from_snapshots
from shared.config import Config
from shared.files import atomic_writer
from shared.messages import ZoneSnapshot, new_run_id

log = logging.getLogger("dcc.collector.fetch_zones")


def main(args: argparse.Namespace, config: Config) -> int:
    output = getattr(args, "output", None)
    tasks = plan(config).collect
    if not tasks:
        log.error("no zones configured: add zone_data_sources or nameserver_zones to the config")
        return 2
    run_id = new_run_id()
    failed: list[ZoneSnapshot] = []
    collected = 0
    if output in (None, "-"):
        collected = _write(sys.stdout, collect_tasks(tasks, run_id), failed)
        sys.stdout.flush()
    else:
        target = Path(output)
        try:
            with atomic_writer(target, "w", encoding="utf-8") as handle:
                collected = _write(handle, collect_tasks(tasks, run_id), failed)
        except OSError as exc:
            log.error("cannot write %s: %s", target, exc.strerror or exc)
            return 2
    log.log(logging.WARNING if failed else logging.INFO, "%s", summary_line(run_id, collected, failed))
    return 1 if failed else 0


def _write(out: IO[str], snapshots: Iterable[ZoneSnapshot], failed: list[ZoneSnapshot]) -> int:
    """Stream ``{"zone": [records…], …}``; returns how many zones were written."""
    written = 0
    out.write("{")
    for snap in snapshots:
        if snap.failure is not None:
            failed.append(snap)  # collect_tasks logged its one line
            continue
        records = zones_json_from_snapshots([snap])[snap.zone]
        out.write(("," if written else "") + "\n" + msgspec.json.encode(snap.zone).decode() + ": [")
        for i, record in enumerate(records):
            out.write(("," if i else "") + "\n  " + msgspec.json.encode(record).decode())
        out.write("\n]" if records else "]")
        written += 1
    out.write("\n}\n" if written else "}\n")
    return written
