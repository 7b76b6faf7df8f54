"""The ``collector`` service: start a run, announce its zones, send one snapshot per zone.

``dns-cert-checker collector [--from-zones-json FILE] [--once | --every 1h] [--skip-unchanged]``

Each run: a new run id, ``RunStarted`` to the reporter first (so it knows which zones to wait
for), the run id printed on stdout, then one ``ZoneSnapshot`` per zone to the resolver as each
zone arrives. A zone that fails is a snapshot with its finding; it never stops the run.

- ``--once`` (also the default without ``--every``): one run, then exit.
- ``--every 1h``: a run now and then every interval after a run *starts* (a run longer than the
  interval is followed by the next at once). SIGTERM/SIGINT (``shared.signals``) stop the loop
  between runs; a run in progress is finished first. A second signal exits at once.
- ``--skip-unchanged`` (needs ``state_dir``): saves the zone *transfer*, never the scan. A zone
  whose SOA serial (zone files: content hash) is unchanged since its last successful collection
  is not transferred: its snapshot is built from the records that collection cached in
  ``state_dir``. Every zone is in every run and scanned every run, so an expiring certificate on
  a zone whose DNS never changes is still reported. A missing or unreadable cache means the zone
  is transferred. A zone's serial and records are recorded when its snapshot was published
  without failure, before its scans finish (they are repeated every run, so nothing is lost).
  An unchanged catalog zone is not transferred either: its members come from ``state_dir``.

Zone discovery (``catalog`` in a BIND source, POWERDNS sources; ``docs/zone-discovery.md``)
runs at the start of every run, so a zone created on the server is in the next run; with
``state_dir`` the run's ``RunStarted`` names the zones new and removed since the last run.

Exit status: 0 when every run was published (failed zones are findings in the report, not
process errors), 1 when publishing failed, 2 for unusable input (config, zones JSON, interval).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field

from services.collector.runs import CollectOptions, plan_run, start_run
from shared.config import Config, ConfigError
from shared.transport import REPORT, RESOLVE, BrokerRefused, Transport, TransportError

log = logging.getLogger("dcc.collector")

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")

EXIT_OK, EXIT_PUBLISH_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def parse_interval(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``1h30m``, ``1d``, ``45`` (seconds) → seconds; ValueError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(compact):
        match = _PART.match(compact, pos)
        if match is None or match.end() == pos:
            break
        total += float(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if not compact or pos != len(compact) or total <= 0:
        raise ValueError(f"--every {text!r}: expected a duration such as 90s, 30m, 1h or 1h30m")
    return total


@dataclass(frozen=True)
class CollectorOptions:
    collect: CollectOptions = field(default_factory=CollectOptions)
    every: float | None = None  # seconds from one run's start to the next; None: one run


def serve(config: Config, transport: Transport, options: CollectorOptions, stop: threading.Event) -> int:
    """Start one run, or one every ``options.every`` seconds until ``stop`` is set (between runs)."""
    transport.declare([RESOLVE, REPORT])
    status = EXIT_OK
    while True:
        started = time.monotonic()
        result = run_once(config, transport, options.collect)
        status = max(status, result)
        if options.every is None or stop.is_set() or result == EXIT_BAD_INPUT:
            return status
        if stop.wait(max(0.0, options.every - (time.monotonic() - started))):
            return status


def run_once(config: Config, transport: Transport, options: CollectOptions) -> int:
    """One run: its id on stdout, then RunStarted and the snapshots on the broker."""
    try:
        run = plan_run(config, options)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_BAD_INPUT
    print(run.run_id, flush=True)
    try:
        start_run(transport, run)
    except BrokerRefused:
        raise  # wrong credentials are not an outage: the service stops (exit 2), it does not loop
    except TransportError as exc:
        log.error("run %s not published: %s", run.run_id, exc)
        return EXIT_PUBLISH_FAILED
    return EXIT_OK
