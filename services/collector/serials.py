"""What the collector saw last time: each zone's SOA serial (and a zone file's hash), per source.

A JSON file (``<state_dir>/collector-serials.json`` by default), rewritten atomically. Keys
are ``<source>|<zone>`` so the same zone from two servers (or a file) never shares a serial.
Only successful collections are recorded: a failed zone is always tried again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from shared.config import Config

log = logging.getLogger("dcc.collector.serials")

FILE_NAME = "collector-serials.json"


class SerialEntry(msgspec.Struct, frozen=True):
    serial: int | None = None
    fingerprint: str | None = None  # zone files: sha256 of the bytes
    collected_at: str = ""


class SerialStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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

    def record(self, source: str, zone: str, serial: int | None, fingerprint: str | None = None) -> None:
        self._entries[self.key(source, zone)] = SerialEntry(
            serial=serial, fingerprint=fingerprint, collected_at=datetime.now(UTC).isoformat(timespec="seconds")
        )
        self._dirty = True

    def save(self) -> None:
        """Write the file if anything changed (atomic: temp file + rename)."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {key: msgspec.to_builtins(entry) for key, entry in sorted(self._entries.items())}
        fd, tmp = tempfile.mkstemp(prefix=".serials-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read %s (%s): every zone will be collected", self.path, exc.strerror)
            return
        try:
            self._entries = msgspec.json.decode(raw, type=dict[str, SerialEntry])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring unreadable %s (%s): every zone will be collected", self.path, exc)
