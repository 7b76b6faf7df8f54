"""A loopback server that answers each connection only after a delay, like a far-away server, and
counts the connections open at once exactly (the lab's count lags: it sees a close only once the
connection's thread has read the EOF, so a new connection can overlap with one already gone).

Here, whenever a connection is accepted, the open ones are those whose peer has not sent its FIN
yet (TCP state ESTABLISHED, from TCP_INFO, Linux). A client that closes one connection before
opening the next sends the FIN before the SYN, and the kernel processes the FIN first, so the count
never includes a closed connection; it can only miss one not accepted yet, never inflate the peak.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.certs import DAY, issue, make_authority

_TCP_ESTABLISHED = 1  # first byte of struct tcp_info: tcpi_state


@dataclass(eq=False)
class _Conn:
    sock: socket.socket  # replaced by its TLS wrapper once wrapped


def wildcard_context(domain: str, directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for ``*.domain`` issued by a fresh private CA, and that CA's file."""
    pki = make_authority()
    leaf = issue(
        f"*.{domain}",
        issuer=pki.intermediate,
        san=[f"*.{domain}"],
        not_before=pki.now - DAY,
        not_after=pki.now + 365 * DAY,
    )
    chain, key, ca = directory / "chain.pem", directory / "key.pem", directory / "ca.pem"
    chain.write_bytes(leaf.pem + pki.intermediate.pem)
    key.write_bytes(leaf.key_pem)
    ca.write_bytes(pki.root.pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    context.num_tickets = 0
    return context, ca


class SlowServer:
    """Waits ``delay`` seconds after accepting, then does the TLS handshake with ``context`` (or never
    answers at all when ``context`` is None: a silent server), then waits for the client to hang up."""

    def __init__(self, context: ssl.SSLContext | None, delay: float, ip: str = "127.0.0.1") -> None:
        self._context = context
        self._delay = delay
        self._listener = socket.socket()
        self._listener.bind((ip, 0))
        self._listener.listen(1024)
        self._listener.settimeout(0.1)
        self.ip, self.port = self._listener.getsockname()[:2]
        self.peak = 0  # the most connections open at once
        self.accepted = 0
        self._open: list[_Conn] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="slow-accept", daemon=True)
        self._thread.start()

    @staticmethod
    def _peer_open(conn: _Conn) -> bool:
        state = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return state[0] == _TCP_ESTABLISHED

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(5.0)
            conn = _Conn(sock)
            with self._lock:
                self.accepted += 1
                self._open = [c for c in self._open if self._peer_open(c)]
                self._open.append(conn)
                self.peak = max(self.peak, sum(1 for c in self._open if self._peer_open(c)))
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: _Conn) -> None:
        try:
            if self._stop.wait(self._delay):
                return
            if self._context is not None:
                with self._lock:  # wrapping detaches the plain socket: the count must see the new one
                    conn.sock = self._context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
                conn.sock.do_handshake()  # type: ignore[attr-defined]
            while conn.sock.recv(4096):  # silent: swallow the hello; TLS: wait for the client to hang up
                pass
        except (OSError, ssl.SSLError, ValueError):
            pass  # scanners hang up mid-handshake on purpose
        finally:
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)
                conn.sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked in recv

    def __enter__(self) -> SlowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class DripConnection:
    """One connection to a ``DripServer``: when it was accepted and when the client closed it (monotonic)."""

    accepted_at: float
    dripping: bool = False  # its answer goes out one byte at a time
    closed_at: float | None = None  # the client closed it (EOF or reset)
    gave_up: bool = False  # the server hung up first (after ``give_up`` seconds)


class DripServer:
    """A hostile TLS server: it reads the ClientHello and sends its real answer (the ServerHello and
    the rest of its flight, from ``context``) one byte every ``interval`` seconds, so no socket
    operation of the client ever waits ``network_timeout``; after ``give_up`` seconds it hangs up.
    The first ``honest`` connections get a normal handshake instead. Without a context it answers
    nothing (a silent server). Each connection records when the client closed it."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        ip: str = "127.0.0.1",
        interval: float = 1.0,
        give_up: float = 30.0,
        honest: int = 0,
    ) -> None:
        self._context = context
        self._interval = interval
        self._give_up = give_up
        self._honest = honest
        self._listener = socket.socket()
        self._listener.bind((ip, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.ip, self.port = self._listener.getsockname()[:2]
        self.connections: list[DripConnection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, name="drip-accept", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                conn = DripConnection(time.monotonic(), dripping=len(self.connections) >= self._honest)
                self.connections.append(conn)
                self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock, conn), name="drip-conn", daemon=True).start()

    def _serve(self, sock: socket.socket, conn: DripConnection) -> None:
        try:
            if self._context is not None and not conn.dripping:
                client_closed = self._honest_handshake(sock)
            else:
                client_closed = self._drip(sock, conn)
        except TimeoutError:
            client_closed = False
        except (OSError, ssl.SSLError):  # reset, or a handshake the client broke off
            client_closed = True
        finally:
            sock.close()
        if not self._stop.is_set():
            with self._lock:
                conn.closed_at = time.monotonic() if client_closed else None
                conn.gave_up = not client_closed

    def _honest_handshake(self, sock: socket.socket) -> bool:
        assert self._context is not None
        sock.settimeout(5.0)
        with self._context.wrap_socket(sock, server_side=True) as tls:
            while tls.recv(4096):  # wait for the client to hang up
                pass
        return True

    def _answer(self, sock: socket.socket, until: float) -> bytes:
        """Read the ClientHello; the server's whole answer to it (empty: silent, or the client left)."""
        if self._context is None:
            return b""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
        while not outgoing.pending:
            sock.settimeout(max(0.01, until - time.monotonic()))  # TimeoutError: the server gives up
            data = sock.recv(65536)
            if not data:
                return b""
            incoming.write(data)
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLError:  # no common ground: the answer is an alert, dripped all the same
                break
        return outgoing.read()

    def _drip(self, sock: socket.socket, conn: DripConnection) -> bool:
        """Answer one byte per interval; True when the client closed, False when the server gave up."""
        until = conn.accepted_at + self._give_up
        answer = self._answer(sock, until)
        sock.setblocking(True)
        sent = 0
        while not self._stop.is_set():
            if sent < len(answer):
                sock.send(answer[sent : sent + 1])
                sent += 1
            remaining = until - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([sock], [], [], min(self._interval, remaining))
            if readable and not sock.recv(65536):  # EOF (a reset raises, which is the client closing too)
                return True
        return False

    def wait_closed(self, timeout: float) -> bool:
        """Wait until every connection so far is over; True if they all ended within ``timeout``."""
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            with self._lock:
                if all(c.closed_at is not None or c.gave_up for c in self.connections):
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> DripServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
