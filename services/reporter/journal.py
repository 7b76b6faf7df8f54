"""The reporter's memory across restarts: every accepted message of an unfinished run, on disk.

The reporter acks a message once it has been handled, so a reporter that restarted with only
in-memory state would wait forever for results the broker no longer has. Each message is
appended (length-prefixed, in the wire encoding) to ``<dir>/<run-id>.journal`` before the ack;
on start the journals are replayed; a finished run's journal is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shared.messages import DecodeError, Message, decode, encode, valid_run_id
from shared.runner import StorageUnavailable

log = logging.getLogger("dcc.reporter.journal")

_LENGTH = struct.Struct(">I")


class RunJournal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, BinaryIO] = {}
        # Where each open journal ends: the offset a failed append cuts back to. Counted here, since
        # a tell() per entry is one more system call per result, as costly as the flush.
        self._ends: dict[str, int] = {}

    def _path(self, run_id: str) -> Path | None:
        # run ids come off the wire: never let one name a path outside the directory
        return self.directory / f"{run_id}.journal" if valid_run_id(run_id) else None

    def append(self, run_id: str, message: Message) -> None:
        """Raises ``StorageUnavailable`` when the entry cannot be written; the journal then holds
        none of it (a torn entry in the middle would make every later one unreadable)."""
        handle = self._open.get(run_id)
        if handle is None:
            path = self._path(run_id)
            if path is None:
                return
            try:
                handle = self._open[run_id] = path.open("ab")
            except OSError as exc:  # nothing written: nothing to cut back
                raise StorageUnavailable(f"cannot journal to {self.directory}: {exc.strerror or exc}") from None
            self._ends[run_id] = handle.tell()
        body = encode(message)
        entry = _LENGTH.pack(len(body)) + body
        start = self._ends[run_id]
        try:
            handle.write(entry)
            handle.flush()  # in the OS before the ack: survives the process being killed
        except OSError as exc:
            self._cut_back(run_id, start)
            raise StorageUnavailable(f"cannot journal to {self.directory}: {exc.strerror or exc}") from None
        self._ends[run_id] = start + len(entry)

    def _cut_back(self, run_id: str, size: int) -> None:
        """Drop a half-written entry: close the handle (its buffer holds the rest) and truncate."""
        handle = self._open.pop(run_id, None)
        self._ends.pop(run_id, None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()
        path = self._path(run_id)
        if path is not None:
            with contextlib.suppress(OSError):
                os.truncate(path, size)

    def forget(self, run_id: str) -> None:
        self._ends.pop(run_id, None)
        handle = self._open.pop(run_id, None)
        if handle is not None:
            handle.close()
        path = self._path(run_id)
        if path is not None:
            path.unlink(missing_ok=True)

    def replay(self) -> Iterator[Message]:
        """Every journalled message of every unfinished run, in the order it was accepted."""
        for path in sorted(self.directory.glob("*.journal")):
            data = path.read_bytes()
            offset = 0
            while offset + _LENGTH.size <= len(data):
                (size,) = _LENGTH.unpack_from(data, offset)
                body = data[offset + _LENGTH.size : offset + _LENGTH.size + size]
                if len(body) < size:
                    break  # a write cut short by a crash: its message was never acked, it comes again
                offset += _LENGTH.size + size
                try:
                    yield decode(body)
                except DecodeError as exc:
                    log.error("skipping an unreadable entry in %s: %s", path.name, exc)
            if offset < len(data):
                with path.open("r+b") as handle:  # drop the torn tail so appends stay readable
                    handle.truncate(offset)

    def close(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()
        self._ends.clear()
