"""What the collector saw last time, per source and zone: the SOA serial (and a zone file's hash)
and the records of that collection.

Under ``state_dir``:

- ``collector-serials.json`` — ``{"<source>|<zone>": {"serial", "fingerprint", "collected_at"}}``,
  rewritten atomically at the end of a collection. Keys carry the source, so the same zone from
  two servers (or a file) never shares a serial.
- ``collector-zones/<zone>-<hash of the key>.msgpack`` — the records of that collection
  (msgpack of ``CachedZone``; a 100k-record zone is about 3 MB), written atomically when the
  zone is recorded. With ``--skip-unchanged`` an unchanged zone is served from this file
  instead of being transferred again; it is still scanned every run. A catalog zone (source
  ``catalog:<server>``) keeps its member zones here instead of records, so an unchanged catalog
  is not transferred either.

Only successful collections are recorded: a failed zone is always tried again. A cache file
is used only when it names the same source, zone, serial and file hash as the serials file;
anything else (missing, unreadable, stale, another format version) means: transfer the zone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from shared.config import Config
from shared.files import atomic_writer, read_state, write_atomically
from shared.messages import ZoneRecord

log = logging.getLogger("dcc.collector.serials")

FILE_NAME = "collector-serials.json"
CACHE_DIR = "collector-zones"
CACHE_VERSION = 1

_UNSAFE = re.compile(r"[^a-z0-9._-]")


class SerialEntry(msgspec.Struct, frozen=True):
    serial: int | None = None
    fingerprint: str | None = None  # zone files: sha256 of the bytes
    collected_at: str = ""


class CachedZone(msgspec.Struct, frozen=True, kw_only=True):
    """One zone's records as last collected, with what identifies that collection."""

    version: int = CACHE_VERSION
    source: str
    zone: str
    serial: int | None = None
    fingerprint: str | None = None
    collected_at: str = ""
    records: list[ZoneRecord] = []
    members: list[str] = []  # a catalog zone's member zones (added later: older files have none)


_cache_encoder = msgspec.msgpack.Encoder()
_cache_decoder = msgspec.msgpack.Decoder(CachedZone)


class SerialStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.cache_dir = self.path.parent / CACHE_DIR
        self._entries: dict[str, SerialEntry] = {}
        self._dirty = False
        self._load()

    @classmethod
    def for_config(cls, config: Config) -> SerialStore | None:
        """The store under ``config.state_dir``, or None when no state dir is configured."""
        if not config.state_dir:
            return None
        return cls(Path(config.state_dir) / FILE_NAME)

    @staticmethod
    def key(source: str, zone: str) -> str:
        return f"{source}|{zone}"

    def get(self, source: str, zone: str) -> SerialEntry | None:
        return self._entries.get(self.key(source, zone))

    def unchanged(self, source: str, zone: str, serial: int | None, fingerprint: str | None = None) -> bool:
        """True when the last successful collection saw this very serial (or file hash)."""
        entry = self.get(source, zone)
        if entry is None:
            return False
        if fingerprint is not None:
            return entry.fingerprint == fingerprint
        return serial is not None and entry.serial == serial

    def record(
        self,
        source: str,
        zone: str,
        serial: int | None,
        fingerprint: str | None = None,
        records: list[ZoneRecord] | None = None,
        members: list[str] | None = None,
    ) -> bool:
        """Remember a successful collection; with ``records`` (and a catalog's ``members``), cache them first.

        Returns False (and records nothing) when the records cannot be written: the zone is
        then transferred again next time rather than trusted to a cache that is not there.
        """
        collected_at = datetime.now(UTC).isoformat(timespec="seconds")
        if records is not None:
            cached = CachedZone(
                source=source,
                zone=zone,
                serial=serial,
                fingerprint=fingerprint,
                collected_at=collected_at,
                records=records,
                members=members or [],
            )
            try:
                self._write_cache(self.cache_path(source, zone), cached)
            except OSError as exc:
                log.warning("zone %s: cannot cache its records in %s (%s)", zone, self.cache_dir, exc.strerror or exc)
                return False
        self._entries[self.key(source, zone)] = SerialEntry(
            serial=serial, fingerprint=fingerprint, collected_at=collected_at
        )
        self._dirty = True
        return True

    def cache_path(self, source: str, zone: str) -> Path:
        digest = hashlib.sha256(self.key(source, zone).encode()).hexdigest()[:16]
        return self.cache_dir / f"{_UNSAFE.sub('_', zone.lower())[:100]}-{digest}.msgpack"

    def cached(self, source: str, zone: str) -> CachedZone | None:
        """The records of the zone's last recorded collection, or None (then: transfer it)."""
        entry = self.get(source, zone)
        if entry is None:
            return None
        path = self.cache_path(source, zone)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            log.info("zone %s: no cached records (%s)", zone, path)
            return None
        except OSError as exc:
            log.warning("zone %s: cannot read cached records %s (%s)", zone, path, exc.strerror)
            return None
        try:
            cached = _cache_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("zone %s: ignoring unreadable cached records %s (%s)", zone, path, exc)
            return None
        same = (cached.version, cached.source, cached.zone, cached.serial, cached.fingerprint) == (
            CACHE_VERSION,
            source,
            zone,
            entry.serial,
            entry.fingerprint,
        )
        if not same:
            log.info("zone %s: cached records %s are not from its last recorded collection", zone, path)
            return None
        return cached

    def save(self) -> None:
        """Write the file if anything changed (atomic: temp file + rename)."""
        if not self._dirty:
            return
        data = {key: msgspec.to_builtins(entry) for key, entry in sorted(self._entries.items())}
        with atomic_writer(self.path, "w") as handle:
            json.dump(data, handle, indent=1)
        self._dirty = False

    def _write_cache(self, path: Path, cached: CachedZone) -> None:
        write_atomically(path, _cache_encoder.encode(cached))

    def _load(self) -> None:
        entries = read_state(self.path, dict[str, SerialEntry], "every zone will be collected", log)
        if entries is not None:
            self._entries = entries
