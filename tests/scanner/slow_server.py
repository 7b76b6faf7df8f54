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
import socket
import ssl
import threading
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
