"""TLS endpoints on loopback, good and broken, each on its own address and all on one port.

One accept thread (a selector over every listener) hands each connection to a short-lived
thread, so many scans at once (SSLyze opens ~6 connections per scan) are fine. Non-certificate
cases: ``refused`` (nothing listens), ``hung`` (accepts, never answers), ``plaintext`` (HTTP).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import selectors
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from lab import pki_cases
from lab.certs import DAY, Authority, Issued, issue, make_authority
from lab.pki_cases import CHECK_CASES
from shared import findings

Kind = Literal["tls", "refused", "hung", "plaintext"]

# Every case, in address order (the n-th case gets ``ip_prefix + n``; valid6 lives on ::1).
ALL_CASES = (
    "valid",
    "expired",
    "not_yet_valid",
    "self_signed",
    "mismatch",
    "missing_intermediate",
    "untrusted_root",
    "wrong_order",
    "expiring",
    "expiring_intermediate",
    "refused",
    "hung",
    "plaintext",
    "valid6",
)

# The scanner's wording for endpoints that cannot be analysed (kept here as the lab's spec).
REFUSED_MESSAGE = "connection refused"
HUNG_MESSAGE = "TLS handshake timed out"
PLAINTEXT_MESSAGE = "TLS handshake failed: server answered in plaintext, not TLS"
_HTTP_ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class LabEndpoint:
    case: str
    hostname: str
    ip: str
    port: int
    expected: tuple[tuple[str, str], ...]  # (finding code, CSV message); empty when healthy


@dataclass
class _Case:
    name: str
    kind: Kind
    chain: list[Issued] = field(default_factory=list)  # as served: leaf first
    key: Issued | None = None
    expected: tuple[tuple[str, str], ...] = ()


def _error(code: str) -> tuple[str, str]:
    return code, findings.error(code).message


def _expiring(cert: Issued) -> tuple[str, str]:
    warning = findings.expiring(cert.cert.subject.rfc4514_string(), cert.cert.not_valid_after_utc)
    return warning.code, warning.message


def _build_case(name: str, hostname: str, pki: Authority, workdir: Path) -> _Case:
    """What the endpoint serves and what a scan with the lab CA as custom CA must report."""
    inter = pki.intermediate
    if name in ("valid", "valid6"):
        leaf = pki.leaf(hostname)
        return _Case(name, "tls", [leaf, inter], leaf)
    if name == "expired":
        leaf = pki.leaf(hostname, start_days=-400, days=365)
        return _Case(name, "tls", [leaf, inter], leaf, (_error(findings.Code.CERT_EXPIRED),))
    if name == "not_yet_valid":
        leaf = pki.leaf(hostname, start_days=10)
        return _Case(name, "tls", [leaf, inter], leaf, (_error(findings.Code.CERT_NOT_YET_VALID),))
    if name == "self_signed":
        leaf = _self_signed(hostname, pki)
        return _Case(name, "tls", [leaf], leaf, (_error(findings.Code.SELF_SIGNED),))
    if name == "mismatch":
        leaf = pki.leaf("other-name.example.test")
        return _Case(name, "tls", [leaf, inter], leaf, (_error(findings.Code.HOSTNAME_MISMATCH),))
    if name == "missing_intermediate":
        leaf = pki.leaf(hostname)
        return _Case(name, "tls", [leaf], leaf, (_error(findings.Code.MISSING_ISSUER),))
    if name == "untrusted_root":
        leaf = pki.leaf(hostname, issuer=pki.rogue_intermediate)
        chain = [leaf, pki.rogue_intermediate, pki.rogue_root]
        return _Case(name, "tls", chain, leaf, (_error(findings.Code.UNTRUSTED_ROOT),))
    if name == "wrong_order":
        leaf = pki.leaf(hostname)
        return _Case(name, "tls", [leaf, pki.root, inter], leaf, (_error(findings.Code.CHAIN_ORDER),))
    if name == "expiring":
        leaf = pki.leaf(hostname, start_days=-80, days=90)  # 10 days left
        return _Case(name, "tls", [leaf, inter], leaf, (_expiring(leaf),))
    if name == "expiring_intermediate":
        leaf = pki.leaf(hostname, issuer=pki.expiring_intermediate)
        chain = [leaf, pki.expiring_intermediate]
        return _Case(name, "tls", chain, leaf, (_expiring(pki.expiring_intermediate),))
    if name == "refused":
        return _Case(name, "refused", expected=((findings.Code.CONNECT_REFUSED, REFUSED_MESSAGE),))
    if name == "hung":
        return _Case(name, "hung", expected=((findings.Code.CONNECT_TIMEOUT, HUNG_MESSAGE),))
    if name == "plaintext":
        return _Case(name, "plaintext", expected=((findings.Code.TLS_HANDSHAKE_FAILED, PLAINTEXT_MESSAGE),))
    if name in CHECK_CASES:
        built = pki_cases.build(name, hostname, pki, workdir)
        return _Case(name, "tls", built.chain, built.chain[0], built.expected)
    raise ValueError(f"unknown lab case {name!r}; known: {', '.join(ALL_CASES)}")


def _self_signed(hostname: str, pki: Authority) -> Issued:
    return issue(hostname, san=[hostname], not_before=pki.now - DAY, not_after=pki.now + 365 * DAY)


class _Server:
    """Accepts on every listener in one thread; one thread per connection after that."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        self._conns: set[socket.socket] = set()
        self._active: dict[str, int] = {}  # open connections per local address
        self.peaks: dict[str, int] = {}  # the most there ever were at once (tests: per-IP limits)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="lab-accept", daemon=True)

    def add(self, sock: socket.socket, kind: Kind, context: ssl.SSLContext | None) -> None:
        sock.setblocking(False)
        self._listeners.append(sock)
        self._selector.register(sock, selectors.EVENT_READ, (kind, context))

    def start(self) -> None:
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                kind, context = key.data
                listener: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                conn.setblocking(True)
                ip = conn.getsockname()[0]
                with self._lock:
                    self._conns.add(conn)
                    self._active[ip] = self._active.get(ip, 0) + 1
                    self.peaks[ip] = max(self.peaks.get(ip, 0), self._active[ip])
                threading.Thread(target=self._serve, args=(conn, kind, context), daemon=True).start()

    def _serve(self, conn: socket.socket, kind: Kind, context: ssl.SSLContext | None) -> None:
        ip = conn.getsockname()[0]
        sock = conn
        try:
            conn.settimeout(5.0)
            if kind == "hung":
                conn.settimeout(None)
                while conn.recv(4096):  # swallow whatever comes, never answer, until the client gives up
                    pass
            elif kind == "plaintext":
                conn.recv(4096)
                conn.sendall(_HTTP_ANSWER)
            elif context is not None:
                sock = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                with self._lock:  # wrapping detached ``conn``: close() must reach the new socket
                    self._conns.discard(conn)
                    self._conns.add(sock)
                sock.do_handshake()
                sock.settimeout(2.0)
                while sock.recv(1024):  # wait for the client to hang up (scanners do, right away)
                    pass
        except (OSError, ssl.SSLError, ValueError):
            pass  # scanners probe with odd handshakes and hang up mid-way: expected
        finally:
            with self._lock:
                self._conns.discard(sock)
                self._conns.discard(conn)
                self._active[ip] -= 1
            sock.close()
            conn.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for sock in self._listeners:
            self._selector.unregister(sock)
            sock.close()
        self._selector.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the handler threads blocked in recv


class Lab:
    """Running endpoints; a context manager that stops them on exit."""

    def __init__(self, endpoints: list[LabEndpoint], ca_file: Path, port: int, zone: str, server: _Server) -> None:
        self.endpoints = endpoints
        self.ca_file = ca_file
        self.port = port
        self.zone = zone
        self._server = server

    def zones_json(self) -> dict[str, list[dict[str, object]]]:
        """The original's zones JSON: one A (or AAAA) record per endpoint."""
        records: list[dict[str, object]] = []
        for endpoint in self.endpoints:
            kind = "AAAA" if ipaddress.ip_address(endpoint.ip).version == 6 else "A"
            name = endpoint.hostname.removesuffix("." + self.zone)
            records.append({"type": kind, "name": name, "ttl": 300, "target": endpoint.ip})
        return {self.zone: records}

    def peak_connections(self, ip: str) -> int:
        """The most connections ``ip`` had open at once since the start (or ``reset_peaks``)."""
        return self._server.peaks.get(ip, 0)

    def reset_peaks(self) -> None:
        self._server.peaks.clear()

    def endpoint(self, case: str) -> LabEndpoint:
        return next(e for e in self.endpoints if e.case == case)

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _listen(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


def _is_free(ip: str, port: int) -> bool:
    try:
        _listen(ip, port).close()
    except OSError:
        return False
    return True


def _context(case: _Case, directory: Path) -> ssl.SSLContext:
    assert case.key is not None
    directory.mkdir(parents=True, exist_ok=True)
    chain_file, key_file = directory / f"{case.name}.pem", directory / f"{case.name}.key"
    chain_file.write_bytes(b"".join(c.pem for c in case.chain))  # served in exactly this order
    key_file.write_bytes(case.key.key_pem)
    key_file.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # else OpenSSL 3 refuses to serve the weak-crypto cases
    context.load_cert_chain(chain_file, key_file)
    context.num_tickets = 0  # nobody resumes; saves work per handshake
    return context


def _by_sni(contexts: dict[str, ssl.SSLContext]) -> ssl.SSLContext:
    """The first name's context, handing each handshake to the context of the name it asks for
    (SNI); a name the lab does not serve, or none, gets the first name's certificate."""
    first = next(iter(contexts.values()))

    def choose(sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        chosen = contexts.get((name or "").lower())
        if chosen is not None:
            sock.context = chosen

    first.sni_callback = choose
    return first


def start_lab(
    workdir: Path,
    *,
    port: int = 0,
    ip_prefix: str = "127.0.10.",
    zone: str = "lab.test",
    cases: Sequence[str] | None = None,
    now: datetime | None = None,
    listen: str | None = None,
) -> Lab:
    """Generate the PKI into ``workdir`` and serve every case; ``port=0`` picks a free port.

    ``listen``: serve every case on that one address instead (a container has one address per
    network), the certificate chosen by the name the client asks for (SNI); TLS cases only.
    """
    wanted = list(cases) if cases is not None else list(ALL_CASES)
    known = ALL_CASES + CHECK_CASES  # check cases only when asked for: the default lab is the original's
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown lab cases {unknown}; known: {', '.join(known)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pki = make_authority(now)
    ca_file = workdir / "lab-ca.pem"
    roots = [pki.root, *(pki_cases.extra_roots(pki) if set(wanted) & set(CHECK_CASES) else ())]
    ca_file.write_bytes(b"".join(root.pem for root in roots))
    built = []
    for name in (c for c in known if c in wanted):
        ip = listen or ("::1" if name == "valid6" else f"{ip_prefix}{known.index(name) + 1}")
        hostname = f"{name.replace('_', '-')}.{zone}"
        built.append((ip, hostname, _build_case(name, hostname, pki, workdir)))
    contexts = {case.name: _context(case, workdir / "certs") for _, _, case in built if case.kind == "tls"}
    served = [(ip, case.kind, contexts.get(case.name)) for ip, _, case in built if case.kind != "refused"]
    if listen is not None:
        not_tls = [case.name for _, _, case in built if case.kind != "tls"]
        if not_tls or not built:
            raise ValueError(f"one address serves TLS cases by name (SNI), not {not_tls or 'no case at all'}")
        served = [(listen, "tls", _by_sni({hostname: contexts[case.name] for _, hostname, case in built}))]

    for _attempt in range(20):  # port=0: the first listener picks the port, the others may find it taken
        server = _Server()
        chosen = port
        try:
            for ip, kind, context in served:
                sock = _listen(ip, chosen)
                chosen = sock.getsockname()[1]
                server.add(sock, kind, context)
            refused_ok = all(_is_free(ip, chosen) for ip, _, case in built if case.kind == "refused")
        except OSError as exc:
            server.close()
            if port or exc.errno != errno.EADDRINUSE:
                raise
            continue
        if not refused_ok:
            server.close()
            if port:
                raise OSError(errno.EADDRINUSE, f"something listens where the refused endpoint should be: {chosen}")
            continue
        break
    else:
        raise OSError(errno.EADDRINUSE, "no common free port for the lab's addresses")
    server.start()
    endpoints = [LabEndpoint(case.name, hostname, ip, chosen, case.expected) for ip, hostname, case in built]
    return Lab(endpoints, ca_file, chosen, zone, server)
