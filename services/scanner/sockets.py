"""The sockets an endpoint's work opens, owned so that its deadline can end them.

``network_timeout`` bounds each socket operation, not a connection: a server that drip-feeds its
handshake one byte per second never trips it, and only closing the socket ends such a connection.
Our own handshake opens its own socket; SSLyze opens its sockets deep in its connection helpers. So every
socket an endpoint's work opens is registered with that endpoint's ``SocketOwner``:

- our handshake (and probe) creates its socket with ``new_socket``;
- SSLyze creates every socket of a direct connection (connectivity test and every scan job, through
  ``SslConnection.connect``) in ``sslyze.connection_helpers.tls_connection._open_socket_for_direct_connection``.
  ``install`` replaces that one function with ``_open_direct``, which makes the same connection
  (numeric address, ``network_timeout`` on the socket) through ``new_socket``.

The owner of a new socket is the calling thread's: ``with owner.claim():`` makes ``owner`` current on
this thread for the block (the engine enters it around each piece of an endpoint's work, on whichever
thread runs it). A thread without a claim (anything outside the scan engine) gets SSLyze's own
function, unchanged; SSLyze's HTTP-proxy connections (which we never configure) are not covered.

``owner.abort()`` (the engine's deadline watcher, or ``Engine.close``) shuts every registered socket
down (``SHUT_RDWR``): the server sees the connection closed at once, and the thread blocked on it in
``recv``, ``send`` or ``connect`` wakes with EOF or an error, which SSLyze reports as a failed
connection. A socket the owner would get after that is refused (``ConnectionAbortedError``) before it
connects. The descriptor itself is closed by the thread that used it, when its claim ends (unless
SSLyze closed it already): closing a descriptor another thread is blocked on could let a new socket
reuse its number under that thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from sslyze.connection_helpers import tls_connection
from sslyze.server_setting import ServerNetworkLocation

__all__ = ["Claim", "SocketOwner", "install", "new_socket"]

ABORTED = "the scan was ended (its deadline passed, or the scanner stopped)"


class SocketOwner:
    """Every socket one endpoint's work has open, on any thread; ``abort`` ends them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._aborted = False

    @property
    def aborted(self) -> bool:
        return self._aborted

    def claim(self) -> Claim:
        """A context manager: sockets this thread opens inside it belong to this owner, and are
        closed when it ends."""
        return Claim(self)

    def abort(self) -> None:
        """End the work: shut down every socket open now, refuse any later one. Any thread; idempotent."""
        with self._lock:
            self._aborted = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # closed already, or never connected
                    sock.shutdown(socket.SHUT_RDWR)

    def adopt(self, sock: socket.socket) -> None:
        """``sock`` is this owner's until ``release``; refused (closed, ``ConnectionAbortedError``) once aborted."""
        with self._lock:
            if not self._aborted:
                self._sockets.add(sock)
                return
        sock.close()
        raise ConnectionAbortedError(ABORTED)

    def release(self, sock: socket.socket) -> None:
        """Close ``sock`` (by the thread that used it) and forget it."""
        with self._lock:  # never shut down by ``abort`` once closed: its number may be reused
            self._sockets.discard(sock)
        sock.close()


class Claim:
    """One thread's stretch of an endpoint's work (see ``SocketOwner.claim``). A plain class, not
    ``contextlib.contextmanager``: sslyze's exceptions are frozen dataclasses, which a generator-based
    context manager fails to re-raise."""

    def __init__(self, owner: SocketOwner) -> None:
        self.owner = owner
        self._opened: list[socket.socket] = []
        self._outer: Claim | None = None

    def __enter__(self) -> Claim:
        self._outer = getattr(_current, "claim", None)
        _current.claim = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.claim = self._outer
        for sock in self._opened:
            self.owner.release(sock)
        self._opened.clear()

    def new_socket(self, family: socket.AddressFamily) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        self.owner.adopt(sock)  # raises (and closes it) when the owner was aborted
        self._opened.append(sock)
        return sock

    def connect(self, family: socket.AddressFamily, address: tuple[object, ...], timeout: float) -> socket.socket:
        """A socket of this claim connected to ``address``; connection errors propagate (socket closed)."""
        sock = self.new_socket(family)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            if self.owner.aborted:  # shut down before it connected: it must not stay connected
                raise ConnectionAbortedError(ABORTED)
        except BaseException:
            self._opened.remove(sock)
            self.owner.release(sock)
            raise
        return sock


_current = threading.local()


def new_socket(family: socket.AddressFamily) -> socket.socket:
    """A new TCP socket, owned by the current thread's claim if it has one."""
    claim: Claim | None = getattr(_current, "claim", None)
    if claim is None:
        return socket.socket(family, socket.SOCK_STREAM)
    return claim.new_socket(family)


_sslyze_open_direct = tls_connection._open_socket_for_direct_connection
_install_lock = threading.Lock()


def _open_direct(server_location: ServerNetworkLocation, network_timeout: int) -> socket.socket:
    """SSLyze's direct connection, on a socket of the current thread's claim (SSLyze's own without one)."""
    claim: Claim | None = getattr(_current, "claim", None)
    if claim is None:
        return _sslyze_open_direct(server_location, network_timeout)
    assert server_location.ip_address  # as in SSLyze: we always give the address to connect to
    family, _, _, _, address = socket.getaddrinfo(
        server_location.ip_address, server_location.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
    )[0]
    return claim.connect(family, address, network_timeout)  # errors reach SSLyze as ``create_connection``'s would


def install() -> None:
    """Route SSLyze's direct connections through ``_open_direct`` (idempotent). Fails loudly when the
    pinned SSLyze no longer has the function: its deadlines would silently stop ending connections."""
    with _install_lock:
        current = getattr(tls_connection, "_open_socket_for_direct_connection", None)
        if current is _open_direct:
            return
        if current is not _sslyze_open_direct:
            raise RuntimeError("sslyze's connection helper changed: scan deadlines cannot close its sockets")
        tls_connection._open_socket_for_direct_connection = _open_direct
