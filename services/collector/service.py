"""The ``collector`` service: start a run, announce its zones, send one snapshot per zone.

``dns-cert-checker collector [--from-zones-json FILE] [--once | --every 1h] [--skip-unchanged]``

Each run: a new run id, ``RunStarted`` to the reporter first (so it knows which zones to wait
for), the run id printed on stdout, then one ``ZoneSnapshot`` per zone to the resolver as each
zone arrives. A zone that fails is a snapshot with its finding; it never stops the run.

- ``--once`` (also the default without ``--every``): one run, then exit.
- ``--every 1h``: a run now and then every interval after a run *starts* (a run longer than the
  interval is followed by the next at once). SIGTERM/SIGINT stop the loop between runs; a run in
  progress is finished first. A second signal interrupts at once.
- ``--skip-unchanged`` (needs ``state_dir``): saves the zone *transfer*, never the scan. A zone
  whose SOA serial (zone files: content hash) is unchanged since its last successful collection
  is not transferred: its snapshot is built from the records that collection cached in
  ``state_dir``. Every zone is in every run and scanned every run, so an expiring certificate on
  a zone whose DNS never changes is still reported. A missing or unreadable cache means the zone
  is transferred. A zone's serial and records are recorded when its snapshot was published
  without failure, before its scans finish (they are repeated every run, so nothing is lost).

Exit status: 0 when every run was published (failed zones are findings in the report, not
process errors), 1 when publishing failed, 2 for unusable input (config, zones JSON, interval).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
from datetime import UTC, datetime
from types import FrameType

from services.collector.serials import SerialStore
from services.collector.sources import collect_tasks, plan, summary_line
from services.collector.zones_json import snapshots_from_zones_json
from shared.config import Config, ConfigError, load_zones_json
from shared.messages import RunStarted, ZoneSnapshot, new_run_id
from shared.transport.base import REPORT, RESOLVE, Transport, TransportError

log = logging.getLogger("dcc.collector")

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


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


def main(args: argparse.Namespace, config: Config, transport: Transport) -> int:
    every_text = getattr(args, "every", None)
    try:
        every = parse_interval(every_text) if every_text else None
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    once = bool(getattr(args, "once", False)) or every is None
    from_zones_json = getattr(args, "from_zones_json", None)
    serials: SerialStore | None = None
    if getattr(args, "skip_unchanged", False):
        serials = SerialStore.for_config(config)
        if serials is None:
            log.warning("--skip-unchanged needs state_dir in the config: every zone is collected")
        elif from_zones_json:
            log.warning("--skip-unchanged has no effect with --from-zones-json")
            serials = None

    transport.declare([RESOLVE, REPORT])
    stop = threading.Event()
    with _stop_on_signals(stop):
        status = 0
        while True:
            started = time.monotonic()
            try:
                if from_zones_json:
                    result = run_from_zones_json(transport, from_zones_json)
                else:
                    result = run_from_config(transport, config, serials)
            except TransportError as exc:
                log.error("run not published: %s", exc)
                result = 1
            status = max(status, result)
            if once or stop.is_set() or result == 2:
                return status
            assert every is not None
            if stop.wait(max(0.0, every - (time.monotonic() - started))):
                return status


def run_from_config(transport: Transport, config: Config, serials: SerialStore | None = None) -> int:
    """One run over the configured sources (AXFR, zone files)."""
    zones = plan(config, serials)
    if not zones.collect:
        log.error("no zones configured: add zone_data_sources or nameserver_zones to the config")
        return 2
    run_id = new_run_id()
    _start(transport, run_id, zones.zones, "config")
    failed: list[ZoneSnapshot] = []
    from_cache: list[str] = []
    collected = 0
    for snap in collect_tasks(zones.collect, run_id, serials, from_cache):
        transport.publish(RESOLVE, snap)
        if snap.failure is not None:
            failed.append(snap)
        else:
            collected += 1
    level = logging.WARNING if failed else logging.INFO
    log.log(level, "%s", summary_line(run_id, collected, failed, from_cache=len(from_cache)))
    return 0


def run_from_zones_json(transport: Transport, path: str) -> int:
    """One run over an export made by ``fetch-zones`` (or the original tool)."""
    try:
        data = load_zones_json(path)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    run_id = new_run_id()
    snapshots = snapshots_from_zones_json(run_id, data)
    _start(transport, run_id, [s.zone for s in snapshots], f"zones-json:{path}")
    for snap in snapshots:
        transport.publish(RESOLVE, snap)
    log.info("run %s: %d zone(s) from %s", run_id, len(snapshots), path)
    return 0


def _start(transport: Transport, run_id: str, zones: list[str], source: str) -> None:
    """RunStarted goes first: the reporter then knows every zone of the run before any plan."""
    transport.publish(REPORT, RunStarted(run_id=run_id, started_at=datetime.now(UTC), zones=zones, source=source))
    print(run_id, flush=True)


class _stop_on_signals:  # noqa: N801 - used like a function: with _stop_on_signals(stop)
    """SIGTERM/SIGINT set ``stop``; a second one restores the default behaviour and re-raises."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, object] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (tests, embedding)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.__exit__()
            signal.raise_signal(signum)
            return
        log.warning("%s received: stopping after the current run", signal.Signals(signum).name)
        self.stop.set()
