"""The bounded HTTP fetch of an OCSP answer or a CRL. The URL comes from a certificate an untrusted
server sent, so whoever runs that server chooses where the scanner connects and what it reads back:
the fetch takes ``http://`` only, follows no redirects, ignores proxy settings from the environment,
keeps no cookies and reads no compressed body; it reads at most ``max_bytes``, streamed and cut off
there; one time limit covers the whole fetch, name resolution included, and a watchdog shuts the
socket down at that limit, because httpx's timeouts bound each socket operation and a server that
drip-feeds its answer never trips them. A host that is a name, not an address, is resolved (with
``getaddrinfo``, in a small pool, under the same limit) only when the caller opted in with
``resolve_names`` (the config's ``use_system_resolver``); otherwise it is refused at once, and
nothing is asked of any resolver. Every failure raises ``Unavailable``, never anything else.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ipaddress import ip_address
from typing import Any
from urllib.parse import SplitResult

import httpx

from services.scanner.revocation.messages import Unavailable, shown
from services.scanner.revocation.urls import http_url

__all__ = ["MAX_CONNECTIONS", "NAMES_NOT_RESOLVED", "USER_AGENT", "Fetcher"]

MAX_CONNECTIONS = 32  # fetches in flight at once, whatever the number of scan threads
USER_AGENT = "dns-cert-checker revocation check"
NAMES_NOT_RESOLVED = "its host is a name, and the scanner resolves names only with use_system_resolver: true"

_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


class Fetcher:
    """Fetches one URL at a time per call, from many threads at once; ``close`` ends it."""

    def __init__(self, timeout: float, max_bytes: int, *, resolve_names: bool) -> None:
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._resolve_names = resolve_names
        self._client = httpx.Client(
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # a jar that accepts none
            # one connection per fetch: the watchdog shuts it down, so it must never be pooled
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=0),
        )
        self._resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dcc-revocation-dns")

    def close(self) -> None:
        """Fetches in flight fail; later ones say the scanner is stopping."""
        self._client.close()
        self._resolver.shutdown(wait=False, cancel_futures=True)

    def fetch(
        self, url: str, method: str, content: bytes | None, headers: Mapping[str, str], deadline: float | None
    ) -> bytes:
        """The body ``url`` answers with (HTTP 200 only); ``deadline`` is a ``time.monotonic()`` value.
        Raises ``Unavailable``; ``url`` must be one ``http_url`` accepts."""
        parts = http_url(url)
        assert parts is not None  # the checker fetches only http:// URLs
        if not self._resolve_names and not _is_address(parts.hostname or ""):
            raise Unavailable(NAMES_NOT_RESOLVED)
        started = time.monotonic()
        budget = self._timeout if deadline is None else min(self._timeout, deadline - started)
        if budget <= 0:
            raise Unavailable("no time was left before the endpoint's deadline", cacheable=False)
        whole = budget >= self._timeout  # a timeout under a shorter budget says nothing about the source
        end = started + budget
        target, host = self._resolve(parts, end, whole)
        watchdog = _Watchdog(end - time.monotonic())
        answered = False  # its status line and headers came
        try:
            with self._client.stream(
                method,
                target,
                content=content,
                headers={**headers, "Host": host},
                timeout=httpx.Timeout(max(0.001, end - time.monotonic())),
                extensions={"trace": watchdog.trace},
            ) as response:
                answered = True
                try:
                    body = self._read(response)
                finally:
                    watchdog.disarm()
        except httpx.HTTPError as exc:
            if watchdog.fired or isinstance(exc, httpx.TimeoutException):
                raise Unavailable(_late(answered, budget, whole), cacheable=whole) from None
            raise Unavailable(_transport_problem(exc)) from None
        except RuntimeError:  # httpx: the client was closed (close() while a check runs)
            raise Unavailable("the scanner is stopping", cacheable=False) from None
        finally:
            watchdog.disarm()
        if watchdog.fired:  # a body that ends at connection close would look complete when cut off
            raise Unavailable(_late(answered, budget, whole), cacheable=whole)
        return body

    def _resolve(self, parts: SplitResult, end: float, whole: bool) -> tuple[str, str]:
        """The URL to connect to (an address, so resolution is under our time limit too) and its Host."""
        host = parts.hostname or ""
        port = parts.port or 80
        host_header = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            host_header += f":{parts.port}"
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        try:
            literal = ip_address(host)
        except ValueError:
            pass
        else:
            shown_address = f"[{literal}]" if literal.version == 6 else str(literal)
            return f"http://{shown_address}:{port}{path}", host_header
        if not self._resolve_names:  # fetch() refused it already; never reach the resolver regardless
            raise Unavailable(NAMES_NOT_RESOLVED)
        try:
            future = self._resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        except RuntimeError:  # the pool was shut down
            raise Unavailable("the scanner is stopping", cacheable=False) from None
        try:
            infos = future.result(timeout=max(0.0, end - time.monotonic()))
        except TimeoutError:
            future.cancel()
            raise Unavailable(f"its name {shown(host)} did not resolve in time", cacheable=whole) from None
        except OSError as exc:
            raise Unavailable(f"its name {shown(host)} does not resolve ({exc.strerror or 'no address'})") from None
        if not infos:
            raise Unavailable(f"its name {shown(host)} has no address")
        address = str(infos[0][4][0])
        shown_address = f"[{address}]" if ":" in address else address
        return f"http://{shown_address}:{port}{path}", host_header

    def _read(self, response: httpx.Response) -> bytes:
        if response.status_code != 200:
            raise Unavailable(_status_problem(response.status_code))
        length = response.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > self._max_bytes:
            raise Unavailable(f"its answer is larger than {_size(self._max_bytes)}, the most that is read")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise Unavailable(f"it sent a compressed answer ({shown(encoding, 40)}), which is not read")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_raw():  # raw: never decompressed, so the cap is on what we hold
            size += len(chunk)
            if size > self._max_bytes:
                raise Unavailable(f"its answer is larger than {_size(self._max_bytes)}, the most that is read")
            chunks.append(chunk)
        return b"".join(chunks)


def _is_address(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


class _Watchdog:
    """Ends one fetch at its time limit by shutting its socket down: the thread blocked on it wakes
    at once, whatever the server does. The socket comes from httpx's ``trace`` extension."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._done = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._socket = sock
            if self.fired and not self._done:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self._socket is not None:
                _shut(self._socket)

    def disarm(self) -> None:
        """The fetch is over: its socket is about to be closed, and must not be shut down after."""
        with self._lock:
            self._done = True
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already
        sock.shutdown(socket.SHUT_RDWR)


def _transport_problem(exc: httpx.HTTPError) -> str:
    detail = _ERRNO.sub("", str(exc)).strip().rstrip(".")
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({shown(detail, 120)})" if detail else "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"its answer is not valid HTTP ({shown(detail, 120)})" if detail else "its answer is not valid HTTP"
    what = detail or type(exc).__name__
    return f"the connection failed ({shown(what, 120)})"


def _late(answered: bool, budget: float, whole: bool) -> str:
    seconds = f"{budget:.1f}".rstrip("0").rstrip(".")
    limit = "" if whole else " (what was left before the endpoint's deadline)"
    return f"it did not {'finish answering' if answered else 'answer'} within {seconds} s{limit}"


def _status_problem(code: int) -> str:
    try:
        phrase = f" {HTTPStatus(code).phrase}"
    except ValueError:
        phrase = ""
    if 300 <= code < 400:
        return f"it answered HTTP {code}{phrase}, a redirect, and redirects are not followed"
    return f"it answered HTTP {code}{phrase}"


def _size(limit: int) -> str:
    if limit >= 2**20 and limit % 2**20 == 0:
        return f"{limit // 2**20} MiB"
    if limit >= 2**10 and limit % 2**10 == 0:
        return f"{limit // 2**10} KiB"
    return f"{limit} bytes"
