"""The chain each endpoint served when last scanned, so a changed one gets the full scan.

The fast path sees one handshake with SNI. What only SSLyze's full CERTIFICATE_INFO sees (a second
certificate for RSA-only clients, a different one without SNI) most often appears when a
deployment changes, so an endpoint whose served chain differs from the last one seen is scanned in
full once (``ScanSettings.full_scan_on_change``); an endpoint seen for the first time is not (every
first run would be a full one).

The memory is per process and bounded (``LIMIT`` endpoints, the least recently seen forgotten
first). With ``state_dir`` it is kept across runs in ``scanner-chains[-<segment>].bin``: loaded
when the engine starts, written atomically when it closes (a file that cannot be read is a
warning and an empty memory: forgetting only costs a full scan that did not happen).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import msgspec

from shared.files import read_state, write_atomically

log = logging.getLogger("dcc.scanner.chains")

LIMIT = 1_000_000  # endpoints remembered: 16 bytes of digest plus the key each, about 100 MB at most
Key = tuple[str, int, str]  # ip, port, sni


def digest(chain_pem: Sequence[str]) -> bytes:
    """16 bytes naming the chain as served (order included: a reordered chain is a change)."""
    h = hashlib.blake2b(digest_size=16)
    for pem in chain_pem:
        h.update(pem.encode())
        h.update(b"\0")
    return h.digest()


class ChainMemory:
    """Thread-safe: the engine's workers ask it concurrently."""

    def __init__(self, path: Path | None = None, limit: int = LIMIT) -> None:
        self.path = path
        self._limit = limit
        self._lock = threading.Lock()
        self._seen: OrderedDict[Key, bytes] = OrderedDict()
        self._dirty = False
        if path is not None:
            stored = read_state(path, list[tuple[str, int, str, bytes]], "no endpoint counts as changed", log)
            for ip, port, sni, chain in (stored or [])[-limit:]:
                self._seen[(ip, port, sni)] = chain

    def changed(self, key: Key, chain: bytes) -> bool:
        """Record ``chain`` for ``key``; True when a different one was recorded before."""
        with self._lock:
            before = self._seen.pop(key, None)
            self._seen[key] = chain
            if len(self._seen) > self._limit:
                self._seen.popitem(last=False)
            self._dirty = self._dirty or before != chain
        return before is not None and before != chain

    def __len__(self) -> int:
        return len(self._seen)

    def save(self) -> None:
        """Write the memory to ``path`` (when it has one and anything changed); failures are logged."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            rows = [(ip, port, sni, chain) for (ip, port, sni), chain in self._seen.items()]
            self._dirty = False
        try:
            write_atomically(self.path, msgspec.json.encode(rows))
        except OSError as exc:
            log.warning("cannot keep the served chains in %s (%s)", self.path, exc.strerror or exc)
