"""The alert state: open problems, served certificates and the outbox, in one SQLite file (WAL).

A run's state change and the deliveries it causes commit in one transaction, so a crash either
loses both (the run is compared again by the next one) or keeps both (the senders resend).
One process owns the file (an ``flock`` on ``<state_file>.lock``, released by the kernel when the
owner dies); ``report`` only reads, through a read-only connection, while the owner runs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from sys import intern

import msgspec

from services.reporter.alerts.events import Comparison
from services.reporter.alerts.inventory import InventoryChange, Served
from services.reporter.alerts.problems import Endpoint, Problem
from shared.config import ConfigError
from shared.messages import CertificateFacts

SCHEMA_VERSION = 1
_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, for the small commits of the senders
_KEPT_RUNS = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS problems (
    id TEXT PRIMARY KEY, ip_address TEXT NOT NULL, port INTEGER, fqdn TEXT NOT NULL, code TEXT NOT NULL,
    detail TEXT NOT NULL, zone TEXT NOT NULL, segment TEXT NOT NULL, severity TEXT NOT NULL,
    message TEXT NOT NULL, certificate BLOB, sha256 TEXT, not_after REAL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, last_notified REAL NOT NULL, run_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (
    ip_address TEXT NOT NULL, port INTEGER NOT NULL, fqdn TEXT NOT NULL, zone TEXT NOT NULL,
    segment TEXT NOT NULL, sha256 TEXT NOT NULL, subject TEXT NOT NULL, issuer TEXT NOT NULL,
    not_after REAL NOT NULL, PRIMARY KEY (ip_address, port, fqdn));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, complete INTEGER NOT NULL, finished_at REAL NOT NULL, recorded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL, id TEXT NOT NULL, what TEXT NOT NULL,
    body BLOB NOT NULL, created_at REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, last_attempt_at REAL, last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (receiver, state, seq);
CREATE TABLE IF NOT EXISTS disabled_receivers (
    receiver TEXT PRIMARY KEY, url_fingerprint TEXT NOT NULL, disabled_at REAL NOT NULL, reason TEXT NOT NULL);
"""

_PROBLEM_COLUMNS = (
    "id, ip_address, port, fqdn, code, detail, zone, segment, severity, message, certificate, sha256, not_after,"
    " first_seen, last_seen, last_notified, run_id"
)
_ENDPOINT_COLUMNS = "ip_address, port, fqdn, zone, segment, sha256, subject, issuer, not_after"

log = logging.getLogger("dcc.alerts")

_cert_encoder = msgspec.json.Encoder()
_cert_decoder = msgspec.json.Decoder(CertificateFacts)


class AlertStateError(ConfigError):
    """The alert state file cannot be used; ``str()`` is one user-facing line."""


class AlertStateLocked(AlertStateError):
    """Another process owns the state file."""


@dataclass(frozen=True)
class OutboxEntry:
    receiver: str
    id: str  # the webhook-id: one per delivery, the same on every attempt
    what: str  # problem.opened | … | digest | alerts (for ``report --deliveries``)
    body: bytes


@dataclass(frozen=True)
class Delivery:
    seq: int
    receiver: str
    id: str
    what: str
    body: bytes
    created_at: float
    attempts: int


def _problem_row(p: Problem) -> tuple[object, ...]:
    cert = p.certificate
    return (
        p.id, p.ip_address, p.port, p.fqdn, p.code, p.detail, p.zone, p.segment, p.severity, p.message,
        None if cert is None else _cert_encoder.encode(cert), None if cert is None else cert.sha256,
        None if cert is None else cert.not_after.timestamp(),
        p.first_seen, p.last_seen, p.last_notified, p.run_id,
    )  # fmt: skip


def read_problems(db: sqlite3.Connection) -> dict[str, Problem]:
    # Interned: zone, code, segment… repeat across 100k rows; one copy each saves ~20% of the memory.
    rows = db.execute(f"SELECT {_PROBLEM_COLUMNS} FROM problems")
    return {
        row[0]: Problem(
            id=row[0],
            ip_address=row[1],
            port=row[2],
            fqdn=row[3],
            code=intern(row[4]),
            detail=intern(row[5]),
            zone=intern(row[6]),
            segment=intern(row[7]),
            severity="error" if row[8] == "error" else "warning",
            message=row[9],
            certificate=None if row[10] is None else _cert_decoder.decode(row[10]),
            first_seen=row[13],
            last_seen=row[14],
            last_notified=row[15],
            run_id=intern(row[16]),
        )  # fmt: skip
        for row in rows
    }


def read_inventory(db: sqlite3.Connection) -> dict[Endpoint, Served]:
    rows = db.execute(f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints")
    served = (
        Served(
            ip_address=r[0],
            port=r[1],
            fqdn=r[2],
            zone=intern(r[3]),
            segment=intern(r[4]),
            sha256=r[5],
            subject=r[6],
            issuer=intern(r[7]),
            not_after=r[8],
        )  # fmt: skip
        for r in rows
    )
    return {s.endpoint: s for s in served}


def open_read_only(path: str | Path) -> sqlite3.Connection:
    """For ``report``: reads beside a running owner (WAL), never takes the lock, never writes."""
    if not Path(path).is_file():
        raise AlertStateError(f"alert state {path} does not exist (no run has recorded one yet)")
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("SELECT count(*) FROM problems").fetchone()
    except sqlite3.Error as exc:
        raise AlertStateError(f"alert state {path}: cannot read: {exc}") from None
    return db


class StateStore:
    """The owner's handle on the state file. Thread-safe: senders and the reporter share it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd = _take_ownership(self.path)
        self._mutex = threading.RLock()
        self._checkpointer: threading.Thread | None = None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives a crash of the process
            self._db.execute("PRAGMA busy_timeout = 30000")  # ``report`` readers never block us for long
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AlertStateError(f"alert state {self.path}: written by a newer version (schema {version})")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._release()
            raise AlertStateError(f"alert state {self.path}: cannot open: {exc}") from None
        except AlertStateError:
            self._release()
            raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._mutex:
            return list(self._db.execute(sql, args))

    # -- state ---------------------------------------------------------------------------------
    def load_problems(self) -> dict[str, Problem]:
        with self._mutex:
            return read_problems(self._db)

    def load_inventory(self) -> dict[Endpoint, Served]:
        with self._mutex:
            return read_inventory(self._db)

    def run_recorded(self, run_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def last_recorded_at(self) -> float | None:
        rows = self._query("SELECT max(recorded_at) FROM runs")
        value = rows[0][0]
        return float(value) if isinstance(value, float | int) else None

    def last_completed_at(self) -> float | None:
        rows = self._query("SELECT max(finished_at) FROM runs WHERE complete")
        value = rows[0][0]
        return float(value) if isinstance(value, float | int) else None

    def commit_run(
        self,
        *,
        run_id: str,
        complete: bool,
        finished_at: float,
        now: float,
        comparison: Comparison,
        inventory: InventoryChange,
        outbox: Iterable[OutboxEntry],
    ) -> int:
        """Commit a run's state change with its deliveries; how many deliveries were queued."""
        with self._mutex:
            # A 100k-finding run writes ~100 MB to the WAL; copying it into the database at COMMIT
            # would double the reporter's wait, so that checkpoint runs on another connection.
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
            try:
                queued = self._write_run(run_id, complete, finished_at, now, comparison, inventory, outbox)
            finally:
                self._db.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_PAGES}")
        self._checkpoint_soon()
        return queued

    def _write_run(
        self,
        run_id: str,
        complete: bool,
        finished_at: float,
        now: float,
        comparison: Comparison,
        inventory: InventoryChange,
        outbox: Iterable[OutboxEntry],
    ) -> int:
        with self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO problems ({_PROBLEM_COLUMNS}) VALUES ({', '.join('?' * 17)})",
                map(_problem_row, comparison.rewritten),
            )
            db.executemany(
                "UPDATE problems SET last_seen = ?, run_id = ? WHERE id = ?",
                ((p.last_seen, p.run_id, p.id) for p in comparison.seen),
            )
            db.executemany("DELETE FROM problems WHERE id = ?", ((p.id,) for p in comparison.resolved))
            db.executemany(
                f"INSERT OR REPLACE INTO endpoints ({_ENDPOINT_COLUMNS}) VALUES ({', '.join('?' * 9)})",
                (
                    (s.ip_address, s.port, s.fqdn, s.zone, s.segment, s.sha256, s.subject, s.issuer, s.not_after)
                    for s in inventory.upserts
                ),
            )
            db.executemany("DELETE FROM endpoints WHERE ip_address = ? AND port = ? AND fqdn = ?", inventory.removed)
            queued = db.executemany(
                "INSERT INTO outbox (receiver, id, what, body, created_at) VALUES (?, ?, ?, ?, ?)",
                ((e.receiver, e.id, e.what, e.body, now) for e in outbox),
            ).rowcount
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (run_id, int(complete), finished_at, now))
            db.execute(
                "DELETE FROM runs WHERE run_id NOT IN (SELECT run_id FROM runs ORDER BY recorded_at DESC LIMIT ?)",
                (_KEPT_RUNS,),
            )
        return queued

    def _checkpoint_soon(self) -> None:
        if self._checkpointer is not None and self._checkpointer.is_alive():
            return
        self._checkpointer = threading.Thread(target=self._checkpoint, name="dcc-alerts-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint(self) -> None:
        try:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                db.close()
        except sqlite3.Error as exc:  # the next checkpoint (any commit's) catches up
            log.warning("alert state %s: checkpoint failed: %s", self.path, exc)

    # -- outbox --------------------------------------------------------------------------------
    def next_pending(self, receiver: str) -> Delivery | None:
        rows = self._query(
            "SELECT seq, receiver, id, what, body, created_at, attempts FROM outbox"
            " WHERE receiver = ? AND state = 'pending' ORDER BY seq LIMIT 1",
            (receiver,),
        )
        if not rows:
            return None
        seq, name, msg_id, what, body, created_at, attempts = rows[0]
        assert isinstance(seq, int) and isinstance(body, bytes) and isinstance(attempts, int)
        return Delivery(seq, str(name), str(msg_id), str(what), body, float(str(created_at)), attempts)

    def pending_after(self, receiver: str, seq: int) -> bool:
        rows = self._query(
            "SELECT 1 FROM outbox WHERE receiver = ? AND state = 'pending' AND seq > ? LIMIT 1", (receiver, seq)
        )
        return bool(rows)

    def delivered(self, seq: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def attempt_failed(self, seq: int, error: str, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?, last_error = ? WHERE seq = ?",
                (now, error, seq),
            )

    def give_up(self, seq: int, error: str, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_attempt_at = ?, last_error = ?"
                " WHERE seq = ?",
                (now, error, seq),
            )

    def disable(self, receiver: str, url_fingerprint: str, reason: str, now: float) -> int:
        """The receiver said 410 Gone: remember it, and give up its pending deliveries (how many)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO disabled_receivers VALUES (?, ?, ?, ?)",
                (receiver, url_fingerprint, now, reason),
            )
            cursor = db.execute(
                "UPDATE outbox SET state = 'dead', last_error = ? WHERE receiver = ? AND state = 'pending'",
                (reason, receiver),
            )
            return cursor.rowcount

    def disabled(self) -> dict[str, str]:
        """Disabled receivers → the fingerprint of the URL that answered 410."""
        return {
            str(name): str(fp) for name, fp in self._query("SELECT receiver, url_fingerprint FROM disabled_receivers")
        }

    def enable(self, receiver: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM disabled_receivers WHERE receiver = ?", (receiver,))

    def retire_unknown_receivers(self, receivers: Sequence[str]) -> int:
        """Pending deliveries to receivers no longer configured can never go: mark them dead."""
        marks = ", ".join("?" * len(receivers))
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE outbox SET state = 'dead', last_error = 'receiver removed from the config'"
                f" WHERE state = 'pending' AND receiver NOT IN ({marks})",
                tuple(receivers),
            )
            return cursor.rowcount

    def pending_counts(self) -> dict[str, int]:
        rows = self._query("SELECT receiver, count(*) FROM outbox WHERE state = 'pending' GROUP BY receiver")
        return {str(name): int(str(count)) for name, count in rows}

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._mutex:
            self._db.close()
        self._release()

    def _release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1


def _take_ownership(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise AlertStateError(f"alert state {path}: cannot create {lock_path.name}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlertStateLocked(
            f"alert state {path} is owned by another reporter (pid {owner}); only one reporter may use a state file"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
