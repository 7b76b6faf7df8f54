"""Socket ownership (``services.scanner.sockets``) on loopback: aborting an owner ends its
connections on every thread, refuses new ones, and touches no socket it does not own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sslyze.connection_helpers import tls_connection
from sslyze.server_setting import ServerNetworkLocation

from services.scanner import sockets


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Accepts (the kernel does) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_abort_wakes_a_thread_blocked_on_its_socket_and_the_server_sees_the_close(listener: socket.socket) -> None:
    owner = sockets.SocketOwner()
    got: list[bytes | Exception] = []

    def client() -> None:
        with owner.claim() as claim:
            sock = claim.connect(socket.AF_INET, listener.getsockname(), timeout=30)
            try:
                got.append(sock.recv(10))  # the server never sends: only the abort ends this
            except OSError as exc:
                got.append(exc)
        got.append(b"closed" if sock.fileno() == -1 else b"still open")

    thread = threading.Thread(target=client)
    thread.start()
    server_side, _ = listener.accept()
    with server_side:
        time.sleep(0.1)  # the client is in recv
        owner.abort()
        thread.join(timeout=2)
        assert not thread.is_alive()
        server_side.settimeout(2)
        assert server_side.recv(10) == b""  # the client's FIN
    assert got == [b"", b"closed"]  # EOF in the blocked thread; the claim closed the descriptor


def test_an_aborted_owner_gets_no_new_connection(listener: socket.socket) -> None:
    owner = sockets.SocketOwner()
    owner.abort()
    with owner.claim() as claim, pytest.raises(ConnectionAbortedError):
        claim.connect(socket.AF_INET, listener.getsockname(), timeout=2)
    with owner.claim(), pytest.raises(ConnectionAbortedError):
        sockets.new_socket(socket.AF_INET)


def test_sslyze_connects_through_the_current_claim(listener: socket.socket) -> None:
    sockets.install()
    sockets.install()  # idempotent
    ip, port = listener.getsockname()
    location = ServerNetworkLocation(hostname="x.lab.test", port=port, ip_address=ip)
    owner = sockets.SocketOwner()
    with owner.claim():
        owned = tls_connection._open_socket(location, 2)
    assert owned.fileno() == -1  # it was the claim's: closed with it
    unowned = tls_connection._open_socket(location, 2)  # no claim: SSLyze's own socket, nobody's to abort
    with unowned:
        owner.abort()
        unowned.getpeername()  # still connected
        assert unowned.fileno() != -1


def test_claims_nest_and_restore_the_outer_owner() -> None:
    outer, inner = sockets.SocketOwner(), sockets.SocketOwner()
    with outer.claim():
        with inner.claim():
            inner_sock = sockets.new_socket(socket.AF_INET)
        outer_sock = sockets.new_socket(socket.AF_INET)
        assert inner_sock.fileno() == -1 and outer_sock.fileno() != -1
    assert outer_sock.fileno() == -1
    with sockets.new_socket(socket.AF_INET) as free:  # no claim: owned by nobody
        assert free.fileno() != -1
