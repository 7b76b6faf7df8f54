"""Loopback TCP servers that misbehave on purpose: silent, hanging up, proxying, talking garbage."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

from tests.loopback import LoopbackServer

Behaviour = Callable[[socket.socket, int], None]  # (accepted connection, 0-based connection number)


class _Server(LoopbackServer):
    """The server behind ``tcp_server``: ``seen`` lists the connections by number, as they come."""

    def __init__(self, behaviour: Behaviour, listener: socket.socket) -> None:
        super().__init__(listener=listener, name="fake")
        self._behaviour = behaviour
        self.seen: list[int] = []
        self.start()

    def on_accept(self, sock: socket.socket, number: int) -> None:
        self.seen.append(number)

    def serve(self, sock: socket.socket, number: int) -> None:
        self._behaviour(sock, number)  # which may leave the connection open, until teardown

    def release(self, sock: socket.socket) -> None:
        sock.close()


@contextlib.contextmanager
def tcp_server(behaviour: Behaviour, address: str = "127.0.0.1") -> Iterator[tuple[str, int, list[int]]]:
    """Serve each connection with ``behaviour`` in a thread; yields (ip, port, [connections seen])."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, 0))
    listener.listen(16)
    with _Server(behaviour, listener) as server:
        yield address, server.port, server.seen


def silent(conn: socket.socket, number: int) -> None:
    """Accept, read the query, never answer (the connection stays open until teardown)."""
    conn.settimeout(30)
    with contextlib.suppress(OSError):
        while conn.recv(4096):
            pass


def read_query(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    (length,) = struct.unpack("!H", _exact(conn, 2))
    return _exact(conn, length)


def _exact(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def garbage(conn: socket.socket, number: int) -> None:
    """A length-prefixed answer that is not a DNS message."""
    read_query(conn)
    body = b"\x00\x01this is not DNS at all"
    conn.sendall(struct.pack("!H", len(body)) + body)
    conn.recv(1)


def hang_up_then_proxy(target: tuple[str, int], hang_ups: int = 1) -> Behaviour:
    """The first ``hang_ups`` connections get a partial answer then EOF; later ones reach ``target``."""

    def behaviour(conn: socket.socket, number: int) -> None:
        if number < hang_ups:
            read_query(conn)
            conn.sendall(b"\x40\x00\x12\x34")  # announces 16 KiB, sends 2 bytes: EOF mid-message
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
            return
        with socket.create_connection(target, timeout=10) as upstream:
            _pipe(conn, upstream)

    return behaviour


def _pipe(a: socket.socket, b: socket.socket) -> None:
    def copy(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
            dst.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join(timeout=30)


def closed_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])
