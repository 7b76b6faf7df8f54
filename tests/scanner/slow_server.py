"""A loopback server that answers each connection only after a delay, like a far-away server, and
counts the connections open at once exactly (the lab's count lags: it sees a close only once the
connection's thread has read the EOF, so a new connection can overlap with one already gone).

Here, whenever a connection is accepted, the open ones are those whose peer has not sent its FIN
yet (TCP state ESTABLISHED, from TCP_INFO, Linux). A client that closes one connection before
opening the next sends the FIN before the SYN, and the kernel processes the FIN first, so the count
never includes a closed connection; it can only miss one not accepted yet, never inflate the peak.

Also ``DripServer``, which drip-feeds its TLS answer. Both are ``tests.loopback.LoopbackServer``-s.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from lab.certs import DAY, issue, make_authority
from tests.loopback import LoopbackServer

_TCP_ESTABLISHED = 1  # first byte of struct tcp_info: tcpi_state


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


class SlowServer(LoopbackServer):
    """Waits ``delay`` seconds after accepting, then does the TLS handshake with ``context`` (or never
    answers at all when ``context`` is None: a silent server), then waits for the client to hang up."""

    def __init__(self, context: ssl.SSLContext | None, delay: float, ip: str = "127.0.0.1") -> None:
        super().__init__(ip, backlog=1024, name="slow")
        self._context = context
        self._delay = delay
        self.peak = 0  # the most connections open at once
        self.start()

    def open_now(self) -> int:
        """Connections the server holds open now (each ends when the client hangs up)."""
        with self._lock:
            return len(self._live)

    @staticmethod
    def _peer_open(sock: socket.socket) -> bool:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return state[0] == _TCP_ESTABLISHED

    def on_accept(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(5.0)
        self._live = [s for s in self._live if self._peer_open(s)]  # this one among them
        self.peak = max(self.peak, len(self._live))

    def serve(self, sock: socket.socket, number: int) -> None:
        try:
            if self._stop.wait(self._delay):
                return
            if self._context is not None:
                with self._lock:  # wrapping detaches the plain socket: the count must see the new one
                    tls = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                    if sock in self._live:
                        self._live[self._live.index(sock)] = tls
                    sock = tls
                tls.do_handshake()
            while sock.recv(4096):  # silent: swallow the hello; TLS: wait for the client to hang up
                pass
        finally:  # scanners hang up mid-handshake on purpose: the error ends the thread quietly
            with self._lock:
                if sock in self._live:
                    self._live.remove(sock)
                sock.close()


@dataclass(eq=False)
class DripConnection:
    """One connection to a ``DripServer``: when it was accepted and when the client closed it (monotonic)."""

    accepted_at: float
    dripping: bool = False  # its answer goes out one byte at a time
    closed_at: float | None = None  # the client closed it (EOF or reset)
    gave_up: bool = False  # the server hung up first (after ``give_up`` seconds)


class DripServer(LoopbackServer):
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
        super().__init__(ip, backlog=128, name="drip")
        self._context = context
        self._interval = interval
        self._give_up = give_up
        self._honest = honest
        self.connections: list[DripConnection] = []  # the n-th is connection number n
        self.start()

    def on_accept(self, sock: socket.socket, number: int) -> None:
        self.connections.append(DripConnection(time.monotonic(), dripping=number >= self._honest))

    def serve(self, sock: socket.socket, number: int) -> None:
        conn = self.connections[number]
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
