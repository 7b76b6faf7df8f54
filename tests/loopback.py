"""The skeleton of the tests' hand-written TCP servers on loopback: a listener (its own, on a free
port, or one the caller made), an accept loop that looks at a stop event every 0.1 s, a thread per
connection, and ``close``, which ends it all without waiting for any client.

A server subclasses ``LoopbackServer`` and overrides ``serve`` (what each connection gets), and
``on_accept`` to count or record connections as they come, ``release`` if ``close`` must end a
connection otherwise than with a shutdown. Several listeners (one port on several addresses, say)
are several servers, each given its listener.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from typing import Self


class LoopbackServer:
    """Accepts on ``ip`` (a free port; or on ``listener``, bound and listening already) once
    ``start``-ed, until ``close``; ``ip`` and ``port`` are where it listens, ``accepted`` counts the
    connections. Every connection accepted stays in ``_live`` (a subclass may prune it, under
    ``_lock``), and ``close`` stops accepting, closes the listener and ``release``-s each of them."""

    def __init__(
        self,
        ip: str = "127.0.0.1",
        *,
        backlog: int = 64,
        listener: socket.socket | None = None,
        name: str = "loopback",
    ) -> None:
        if listener is None:
            listener = socket.socket()
            listener.bind((ip, 0))
            listener.listen(backlog)
        listener.settimeout(0.1)  # how long the accept loop may miss the stop event
        self._listener = listener
        self.ip: str = listener.getsockname()[0]
        self.port: int = listener.getsockname()[1]
        self.accepted = 0
        self._name = name
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def on_accept(self, sock: socket.socket, number: int) -> None:
        """Connection ``number`` (0-based, from ``accepted``) was just accepted: called in the accept
        loop, under ``_lock``, before its ``serve`` starts. Does nothing by default."""

    def serve(self, sock: socket.socket, number: int) -> None:
        """What connection ``number`` gets, in a thread of its own; an OSError or a ValueError (the
        client hung up mid-exchange) ends it quietly. By default: nothing, the connection is held
        open until ``close``."""

    def release(self, sock: socket.socket) -> None:
        """How ``close`` ends a connection: a shutdown, which wakes a thread blocked in recv on it
        (nothing, once the connection is closed)."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                number = self.accepted
                self.accepted += 1
                self._live.append(sock)
                self.on_accept(sock, number)
            threading.Thread(target=self._serve, args=(sock, number), name=f"{self._name}-conn", daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.serve(sock, number)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._live:
                self.release(sock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port free on ``ip`` right now (for a server the test starts as another process)."""
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5) -> None:
    """End a server process this test started (by its pid): SIGTERM, then SIGKILL after ``grace`` s."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
