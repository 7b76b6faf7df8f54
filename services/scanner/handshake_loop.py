"""One thread that drives every first handshake on a direct TLS port of an engine at once.

A fast-path scan is one connection and one handshake, mostly waiting for the server (a full scan
starts with the same handshake). On a thread per endpoint, 100 endpoints in flight are 100
threads taking turns at the GIL, each turn a context switch: on loopback that was a third of the
scanner's CPU. Here every handshake is a
``handshake.ChainFetch`` (I/O-free) on a non-blocking socket under one selector, and the one thread
moves the bytes as they arrive (measured in docs/benchmarks-scanner.md).

A ``Request`` says where to connect, its ``timeout`` per socket operation (``network_timeout``: no
progress for that long ends it), the endpoint's ``deadline`` (nothing outlives it), the endpoint's
``SocketOwner`` (its socket is the owner's, so the deadline watcher's ``abort`` shuts it down, and
the loop then sees the connection end), and ``done``: called once with the outcome, on the loop
thread (so it must not block: the engine judges the chain there, and hands anything that waits on
the network to a worker). The loop alone closes the sockets it opened.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import selectors
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.scanner import probe as probing
from services.scanner.handshake import RECEIVE_SIZE, ChainFetch, Fetched
from services.scanner.sockets import ABORTED, SocketOwner
from shared import findings

__all__ = ["HandshakeLoop", "Request"]

log = logging.getLogger("dcc.scanner")

_IN_PROGRESS = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY)


@dataclass(frozen=True)
class Request:
    ip: str
    port: int
    sni: str
    timeout: float  # seconds without progress that end the connection (connect, or each read)
    deadline: float  # time.monotonic() by which it is over, whatever the server does
    owner: SocketOwner
    done: Callable[[Fetched], None]  # called once, on the loop thread


def _stopped_outcome() -> Fetched:
    return findings.error(findings.Code.CONNECT_ERROR, f"connection failed: {ABORTED}")


class _Connection:
    """One request's socket and handshake, and when it next times out."""

    def __init__(self, request: Request, sock: socket.socket, now: float) -> None:
        self.request = request
        self.sock = sock
        self.chain = ChainFetch(request.sni)
        self.connecting = True
        self.unsent = b""
        self.events = 0  # what the selector watches the socket for
        self.expires = min(now + request.timeout, request.deadline)
        self.finished = False

    def progressed(self, now: float) -> None:
        self.expires = min(now + self.request.timeout, self.request.deadline)


class HandshakeLoop:
    """The loop thread and its selector; ``submit`` from any thread, ``stop`` once."""

    def __init__(self, name: str = "dcc-handshakes") -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._new: deque[Request] = deque()
        self._stopped = False
        self._live: set[_Connection] = set()
        # (expiry, order, connection): at most one entry per connection; a connection that made
        # progress since goes back in with its new expiry when its old one comes up. Weak: a
        # finished connection (its socket and TLS state) is not kept until its expiry comes.
        self._timers: list[tuple[float, int, weakref.ref[_Connection]]] = []
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> bool:
        """Start ``request`` on the loop; False (and ``done`` never called) once the loop stopped."""
        with self._lock:
            if self._stopped:
                return False
            wake = not self._new
            self._new.append(request)
        if wake and threading.current_thread() is not self._thread:
            self._wake()
        return True

    def in_flight(self) -> int:
        return len(self._live)

    def stop(self, timeout: float = 1.0) -> None:
        """End every connection (``done`` gets a connection error, the engine has cancelled them by
        then) and the thread. Idempotent."""
        with self._lock:
            self._stopped = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed (stopped)
            self._wake_out.send(b"\0")

    # ------------------------------------------------------------------ the loop thread

    def _run(self) -> None:
        try:
            while not self._stopped:
                self._turn()
        except Exception:  # a bug here must not leave endpoints waiting for a loop that is gone
            log.exception("the handshake loop failed")
        finally:
            self._close_all()

    def _turn(self) -> None:
        wait = None
        if self._timers:
            wait = max(0.0, self._timers[0][0] - time.monotonic())
        for key, mask in self._selector.select(wait):
            if key.data is None:
                self._drain_wakes()
            else:
                self._guarded(key.data, mask)
        self._expire(time.monotonic())
        # last: what the callbacks above submitted from this thread (no wake) starts this turn
        self._take_new()

    def _drain_wakes(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _take_new(self) -> None:
        while True:
            with self._lock:
                if not self._new or self._stopped:
                    return
                request = self._new.popleft()
            self._open(request)

    def _open(self, request: Request) -> None:
        now = time.monotonic()
        family = socket.AF_INET6 if ":" in request.ip else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            self._call(request, probing.connect_failure(exc))
            return
        try:
            request.owner.adopt(sock)  # closes it and raises when the endpoint was ended already
        except ConnectionAbortedError as exc:
            self._call(request, probing.connect_failure(exc))
            return
        conn = _Connection(request, sock, now)
        self._live.add(conn)
        try:
            sock.setblocking(False)
            code = sock.connect_ex((request.ip, request.port))
        except OSError as exc:
            self._finish(conn, probing.connect_failure(exc))
            return
        if code == 0:
            self._connected(conn)
        elif code in _IN_PROGRESS:
            self._watch(conn, selectors.EVENT_WRITE)
        else:
            self._finish(conn, probing.connect_failure(OSError(code, os.strerror(code))))
            return
        if not conn.finished:
            heapq.heappush(self._timers, (conn.expires, next(self._order), weakref.ref(conn)))

    def _guarded(self, conn: _Connection, mask: int) -> None:
        try:
            self._ready(conn, mask)
        except Exception as exc:  # a bug must become this endpoint's finding, not the loop's end
            log.exception("the handshake with %s:%d failed", conn.request.ip, conn.request.port)
            self._finish(conn, findings.error(findings.Code.SCAN_ERROR, f"scan failed: {type(exc).__name__}: {exc}"))

    def _ready(self, conn: _Connection, mask: int) -> None:
        if conn.finished:
            return
        if conn.connecting:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._finish(conn, probing.connect_failure(OSError(code, os.strerror(code))))
                return
            self._connected(conn)
            return
        if mask & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                pass
            except OSError as exc:
                conn.chain.fail(exc)
                self._finish(conn, conn.chain.outcome)
                return
            else:
                conn.progressed(time.monotonic())
                conn.chain.feed(data)
                conn.chain.advance()
                if conn.chain.done:
                    self._finish(conn, conn.chain.outcome)
                    return
        self._send(conn)

    def _connected(self, conn: _Connection) -> None:
        conn.connecting = False
        conn.progressed(time.monotonic())
        conn.chain.advance()  # the ClientHello
        if conn.chain.done:  # nassl refused before sending anything
            self._finish(conn, conn.chain.outcome)
            return
        self._send(conn)

    def _send(self, conn: _Connection) -> None:
        conn.unsent += conn.chain.to_send()
        if conn.unsent:
            try:
                sent = conn.sock.send(conn.unsent)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                conn.chain.fail(exc)
                self._finish(conn, conn.chain.outcome)
                return
            conn.unsent = conn.unsent[sent:]
        self._watch(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.unsent else 0))

    def _watch(self, conn: _Connection, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self._selector.modify(conn.sock, events, conn)
        else:
            self._selector.register(conn.sock, events, conn)
        conn.events = events

    def _expire(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, ref = heapq.heappop(self._timers)
            conn = ref()
            if conn is None or conn.finished:
                continue
            if conn.expires > now:  # it made progress since this entry went in
                heapq.heappush(self._timers, (conn.expires, next(self._order), ref))
                continue
            if conn.connecting:
                self._finish(conn, probing.connect_failure(TimeoutError()))
            else:
                conn.chain.fail(TimeoutError())
                self._finish(conn, conn.chain.outcome)

    def _finish(self, conn: _Connection, outcome: Fetched) -> None:
        if conn.finished:
            return
        conn.finished = True
        self._live.discard(conn)
        if conn.events:
            self._selector.unregister(conn.sock)
        conn.request.owner.release(conn.sock)  # closed here, by the one thread that used it
        self._call(conn.request, outcome)

    @staticmethod
    def _call(request: Request, outcome: Fetched) -> None:
        try:
            request.done(outcome)
        except Exception:
            log.exception("handling the handshake with %s:%d failed", request.ip, request.port)

    def _close_all(self) -> None:
        """Stopping: every connection and every request not started yet ends now."""
        with self._lock:
            self._stopped = True
            pending = list(self._new)
            self._new.clear()
        for conn in list(self._live):
            self._finish(conn, _stopped_outcome())
        for request in pending:
            self._call(request, _stopped_outcome())
        self._timers.clear()
        self._selector.close()
        self._wake_in.close()
        self._wake_out.close()
