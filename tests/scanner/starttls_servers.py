"""Real servers on loopback for the STARTTLS and certificate-size tests.

- ``smtp_server``: aiosmtpd, with STARTTLS (``require_starttls``) when given a TLS context, without
  it otherwise (its EHLO reply then lists no STARTTLS);
- ``PostgresCluster``: a throwaway PostgreSQL cluster (the distribution's ``initdb``/``pg_ctl``, run as
  the ``postgres`` OS user), ``ssl`` on with a lab certificate, or off;
- ``StallingServer``: accepts, then never answers (``silent``) or drip-feeds an endless multi-line
  SMTP greeting one byte per ``interval`` (no socket operation of the client ever times out), and
  records when the client closed each connection;
- ``CountingTlsServer``: direct TLS from a context (or a handshake_failure alert to every hello),
  counting the connections it accepted, optionally never answering from the n-th one on (these two
  are ``tests.loopback.LoopbackServer``-s).

Nothing here skips: a server that cannot start raises, and the test using it fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller

from lab.certs import Issued
from tests.loopback import LoopbackServer

PG_USER = "postgres"  # the OS user the cluster runs as (PostgreSQL refuses to run as root)


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def write_chain(directory: Path, name: str, chain: Sequence[Issued]) -> tuple[Path, Path]:
    """``chain`` (leaf first, served in this order) and the leaf's key as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(b"".join(c.pem for c in chain))
    key.write_bytes(chain[0].key_pem)
    key.chmod(0o600)
    return cert, key


def server_context(directory: Path, name: str, chain: Sequence[Issued]) -> ssl.SSLContext:
    cert, key = write_chain(directory, name, chain)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.num_tickets = 0
    return context


class _Sink:
    """An aiosmtpd handler that accepts every message and keeps none (nobody sends any)."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


@contextlib.contextmanager
def smtp_server(ip: str, context: ssl.SSLContext | None) -> Iterator[int]:
    """An SMTP server on ``ip`` (a free port, yielded); STARTTLS with ``context``, none without."""
    options: dict[str, object] = {"tls_context": context, "require_starttls": True} if context else {}
    # server_hostname: our banner name (else aiosmtpd asks the system resolver for its FQDN)
    controller = Controller(_Sink(), hostname=ip, port=free_port(ip), server_hostname="mx.lab.test", **options)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing (Debian package postgresql; .ci/provision installs it)")
    return found[-1]  # the newest major version installed


def _as_postgres(*argv: str, timeout: float = 60) -> None:
    subprocess.run(["runuser", "-u", PG_USER, "--", *argv], check=True, capture_output=True, timeout=timeout)


class PostgresCluster:
    """PostgreSQL clusters of one ``initdb``, each in its own data directory (a copy), on 127.0.0.1:
    ``start`` one with ssl on (the given chain) or off; ``close`` stops them all and removes the files."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dcc-pg-"))  # not pytest's tmp: postgres cannot enter it
        self._running: list[Path] = []
        shutil.chown(self.root, PG_USER, PG_USER)
        self._template = self.root / "template"
        _as_postgres(
            _postgres_bin("initdb"),
            "-D",
            str(self._template),
            "-U",
            PG_USER,
            "-A",
            "trust",
            "--no-sync",
            "--locale=C",
            "-E",
            "UTF8",
        )

    def start(self, name: str, chain: Sequence[Issued] | None) -> int:
        """Start cluster ``name`` (ssl on, serving ``chain``, when given); its port."""
        data = self.root / name
        shutil.copytree(self._template, data, symlinks=True)
        port = free_port()
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{data}'",
            "fsync = off",
            "shared_buffers = 16MB",
            "max_connections = 20",
        ]
        if chain is None:
            settings.append("ssl = off")
        else:
            cert, key = write_chain(data, "server", chain)
            settings += ["ssl = on", f"ssl_cert_file = '{cert}'", f"ssl_key_file = '{key}'"]
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\n" + "\n".join(settings) + "\n")
        user = pwd.getpwnam(PG_USER)
        for path in [data, *data.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        _as_postgres(_postgres_bin("pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-t", "60", "start")
        self._running.append(data)
        return port

    def close(self) -> None:
        for data in self._running:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _as_postgres(_postgres_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        self._running.clear()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(eq=False)
class StalledConnection:
    accepted_at: float  # monotonic
    closed_at: float | None = None  # the client closed it (EOF or reset)


class StallingServer(LoopbackServer):
    """Accepts on ``ip`` and then never completes a greeting: ``drip`` sends an endless multi-line
    SMTP greeting ("220-…") one byte every ``interval`` seconds, ``silent`` sends nothing. It reads and
    discards whatever the client sends, and records when the client closed each connection."""

    def __init__(self, ip: str = "127.0.0.1", *, drip: bool, interval: float = 0.5) -> None:
        super().__init__(ip, name="stall")
        self._drip = drip
        self._interval = interval
        self.connections: list[StalledConnection] = []  # the n-th is connection number n
        self.start()

    def on_accept(self, sock: socket.socket, number: int) -> None:
        self.connections.append(StalledConnection(time.monotonic()))

    def serve(self, sock: socket.socket, number: int) -> None:
        conn = self.connections[number]
        greeting = b"220-mx.lab.test still greeting you\r\n"
        sent = 0
        try:
            while not self._stop.is_set():
                if self._drip:
                    sock.send(greeting[sent % len(greeting) : sent % len(greeting) + 1])
                    sent += 1
                readable, _, _ = select.select([sock], [], [], self._interval)
                if readable and not sock.recv(65536):
                    break
        except OSError:
            pass  # reset: the client closed it too
        finally:
            sock.close()
        if not self._stop.is_set():
            conn.closed_at = time.monotonic()

    def wait_closed(self, timeout: float) -> bool:
        """True once every connection so far was closed by the client, within ``timeout`` seconds."""
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            with self._lock:
                if self.connections and all(c.closed_at is not None for c in self.connections):
                    return True
            time.sleep(0.02)
        return False


# A TLS alert record: fatal (2) handshake_failure (40), what a server says when it accepts no offer.
HANDSHAKE_FAILURE_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"


class CountingTlsServer(LoopbackServer):
    """Direct TLS on ``ip`` from ``context``; ``accepted`` counts the connections it accepted. Without a
    context it answers every ClientHello with a handshake_failure alert (a server no client can reach).
    Connections from number ``hang_from`` on (0-based) are read and never answered."""

    def __init__(self, context: ssl.SSLContext | None, ip: str = "127.0.0.1", hang_from: int | None = None) -> None:
        super().__init__(ip, name="count")
        self._context = context
        self._hang_from = hang_from
        self.closed_by_client: list[float] = []  # when the client closed each hanging connection (monotonic)
        self.start()

    def reset(self) -> None:
        with self._lock:
            self.accepted = 0  # the numbering starts again too: ``hang_from`` counts from here

    def use(self, context: ssl.SSLContext) -> None:
        """Serve ``context``'s certificate from the next connection on (a deployment changing it)."""
        self._context = context

    def serve(self, sock: socket.socket, number: int) -> None:
        hang = self._hang_from is not None and number >= self._hang_from
        try:
            sock.settimeout(30.0 if hang else 5.0)
            if hang:
                while sock.recv(65536):  # swallow the hello, never answer, until the client hangs up
                    pass
                with self._lock:
                    self.closed_by_client.append(time.monotonic())
            elif self._context is None:
                sock.recv(65536)
                sock.sendall(HANDSHAKE_FAILURE_ALERT)
            else:
                with self._context.wrap_socket(sock, server_side=True) as tls:
                    while tls.recv(4096):  # until the client hangs up
                        pass
        finally:  # scanners hang up mid-handshake, and a too-large certificate ends every handshake
            sock.close()
