"""Which zones each discovering source had at the last run, so a run can say what is new and what
is gone.

Kept in ``state_dir/collector-discovered-zones.json``: ``{"<source name>": {"zones": [...],
"run_id", "recorded_at"}}``, rewritten atomically once a run's ``RunStarted`` (which carries the
changes) is published. So a zone that appears is "new" in exactly one run's summary, and a zone
that disappears is "removed" in exactly one (the reporter then resolves its open problems as
"zone removed").

- A source whose discovery failed this run keeps its last zones: they are neither removed nor
  new (nothing is known about them), and a later run compares with them.
- A source no longer in the config: its zones are removed (nobody monitors them any more).
- A zone still in the run (named in ``zones``, or from another source) is never removed.
- The first run of a source finds all its zones new.

Without ``state_dir`` nothing is remembered: every discovered zone is still collected and scanned
in every run, but no run reports new or removed zones, and a removed zone's open problems stay
open in the alert state (nothing says the zone went away).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from shared.config import Config
from shared.files import atomic_writer, read_state

log = logging.getLogger("dcc.collector.known_zones")

FILE_NAME = "collector-discovered-zones.json"

Discovered = Mapping[str, list[str] | None]  # source name -> its zones this run; None: discovery failed


class SourceZones(msgspec.Struct, frozen=True):
    zones: list[str]
    run_id: str = ""
    recorded_at: str = ""


@dataclass(frozen=True)
class ZoneChanges:
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new or self.removed)


class KnownZones:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._sources: dict[str, SourceZones] = {}
        self._load()

    @classmethod
    def for_config(cls, config: Config) -> KnownZones | None:
        """The record under ``config.state_dir``; None without a state dir."""
        if not config.state_dir:
            return None
        return cls(Path(config.state_dir) / FILE_NAME)

    @property
    def empty(self) -> bool:
        return not self._sources

    def zones(self) -> set[str]:
        """Every zone some source had at the last recorded run."""
        return {zone for entry in self._sources.values() for zone in entry.zones}

    def changes(self, discovered: Discovered, run_zones: Collection[str], named: Collection[str] = ()) -> ZoneChanges:
        """What ``discovered`` adds to and takes from the last recorded run.

        ``run_zones``: every zone of this run (never removed); ``named``: zones configured by name
        (not new when a source discovers them too: they were monitored already).
        """
        before = self.zones()
        now: set[str] = set()
        for source, zones in discovered.items():
            if zones is None:
                last = self._sources.get(source)
                now.update(last.zones if last is not None else ())
            else:
                now.update(zones)
        present = set(run_zones)
        new = sorted({z for zones in discovered.values() if zones for z in zones} - before - set(named))
        removed = sorted(z for z in before if z not in now and z not in present)
        return ZoneChanges(new=new, removed=removed)

    def record(self, discovered: Discovered, run_id: str) -> None:
        """Remember this run's discovery: failed sources keep their last zones, unconfigured ones go."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        kept: dict[str, SourceZones] = {}
        for source, zones in discovered.items():
            if zones is not None:
                kept[source] = SourceZones(zones=sorted(set(zones)), run_id=run_id, recorded_at=at)
            elif source in self._sources:
                kept[source] = self._sources[source]
        self._sources = kept

    def save(self) -> bool:
        """Write the record (atomically); False, with a warning, when it cannot be written."""
        data = {name: msgspec.to_builtins(entry) for name, entry in sorted(self._sources.items())}
        try:
            with atomic_writer(self.path, "w") as handle:
                json.dump(data, handle, indent=1)
        except OSError as exc:
            log.warning(
                "cannot record the discovered zones in %s (%s): the next run compares with an older record",
                self.path,
                exc.strerror or exc,
            )
            return False
        return True

    def _load(self) -> None:
        sources = read_state(self.path, dict[str, SourceZones], "every discovered zone counts as new", log)
        if sources is not None:
            self._sources = sources
