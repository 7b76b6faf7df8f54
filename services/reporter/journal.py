"""The reporter's memory across restarts: every accepted message of an unfinished run, on disk.

The reporter acks a message once it has been handled, so a reporter that restarted with only
in-memory state would wait forever for results the broker no longer has. Each message is
appended (length-prefixed, in the wire encoding) to ``<dir>/<run-id>.journal`` before the ack;
on start the journals are replayed; a finished run's journal is deleted.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shared.messages import DecodeError, Message, decode, encode, valid_run_id

log = logging.getLogger("dcc.reporter.journal")

_LENGTH = struct.Struct(">I")


class RunJournal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, BinaryIO] = {}

    def _path(self, run_id: str) -> Path | None:
        # run ids come off the wire: never let one name a path outside the directory
        return self.directory / f"{run_id}.journal" if valid_run_id(run_id) else None

    def append(self, run_id: str, message: Message) -> None:
        handle = self._open.get(run_id)
        if handle is None:
            path = self._path(run_id)
            if path is None:
                return
            handle = self._open[run_id] = path.open("ab")
        body = encode(message)
        handle.write(_LENGTH.pack(len(body)) + body)
        handle.flush()  # in the OS before the ack: survives the process being killed

    def forget(self, run_id: str) -> None:
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
