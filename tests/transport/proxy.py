"""A TCP proxy on a loopback port that can play a broker outage without touching the shared broker.

``cut()`` is the outage: the listening socket closes (new connections are refused) and every
connection through the proxy is reset on both sides, as a broker that dies takes its connections
with it. ``restore()`` listens on the same port again. Everything runs on one selector thread.
"""

from __future__ import annotations

import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable


class FlakyProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; ``cut`` and ``restore`` play an outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._commands: queue.Queue[tuple[Callable[[], None], threading.Event]] = queue.Queue()
        self._stopping = False
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()
        self.accepted = 0  # connections taken since the start, so a test can see the clients reconnect
        self._thread = threading.Thread(target=self._loop, daemon=True, name="flaky-proxy")
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Refuse new connections and reset every open one; returns once done."""
        self._call(self._cut)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._call(self._listen)

    def close(self) -> None:
        self._call(self._cut)
        self._stopping = True
        self._thread.join(5)
        self._selector.close()

    # -- on the proxy thread --------------------------------------------------------
    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()
        self._commands.put((fn, done))
        assert done.wait(5), "the proxy thread did not answer"

    def _listen(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._listener = listener

    def _cut(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        for sock in list(self._peers):
            self._drop(sock, reset=True)

    def _loop(self) -> None:
        while not self._stopping:
            while not self._commands.empty():
                fn, done = self._commands.get()
                fn()
                done.set()
            for key, _ in self._selector.select(timeout=0.02):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "accept":
                    self._accept(sock)
                elif sock in self._peers:
                    self._forward(sock)

    def _accept(self, listener: socket.socket) -> None:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self.accepted += 1
        for one, other in ((client, upstream), (upstream, client)):
            one.settimeout(5)
            self._peers[one] = other
            self._selector.register(one, selectors.EVENT_READ, "data")

    def _forward(self, sock: socket.socket) -> None:
        other = self._peers[sock]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock, reset=False)

    def _drop(self, sock: socket.socket, *, reset: bool) -> None:
        """Close a pair; ``reset``: abortively (RST), as a dead broker's host answers."""
        other = self._peers.pop(sock, None)
        if other is None:
            return  # the other end of a pair dropped already
        self._peers.pop(other, None)
        for one in (sock, other):
            self._selector.unregister(one)
            if reset:
                one.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            one.close()
