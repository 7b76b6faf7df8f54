"""How a connection failed, in the words every scan uses, and the probes around SSLyze.

SSLyze spends about 11 × network_timeout on a host that accepts and never answers, and says
little about why a connection failed. The engine's own handshake (``handshake``), in either scan
mode the first connection to a direct TLS port, costs at most one timeout and tells refused,
silent, reset, closed and plaintext apart with the wording here (``connect``, ``looks_like_tls``).

On a STARTTLS port in full mode a ClientHello first would be wrong (the server expects its
protocol's greeting), so ``reachable`` only connects: refused and unreachable endpoints keep their
findings and their one timeout, and SSLyze's connectivity test, which speaks the protocol, does the rest.

``diagnose_handshake`` is the one extra handshake the engine spends when SSLyze's connectivity
test found no TLS version at all: OpenSSL clients refuse a certificate list over 100 KiB
("excessive message size"), which SSLyze reports as "no TLS version and cipher suite supported".
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import warnings
from collections.abc import Callable

from services.scanner.sockets import new_socket
from shared import findings
from shared.messages import Finding

REFUSED = "connection refused"
CONNECT_TIMED_OUT = "connection timed out"
HANDSHAKE_TIMED_OUT = "TLS handshake timed out"
PLAINTEXT = "TLS handshake failed: server answered in plaintext, not TLS"
CLOSED = "TLS handshake failed: server closed the connection"
RESET = "TLS handshake failed: connection reset by server"
CERT_TOO_LARGE = (
    "the server's certificate list is larger than the 100 KiB that OpenSSL-based clients accept"
    " (excessive message size)"
)

# TLS record types a server may answer a ClientHello with: alert (21) or handshake (22).
_TLS_RECORD_TYPES = (21, 22)


def _diagnosis_context() -> ssl.SSLContext:
    """Any version down to TLS 1.0, any cipher, no verification: whatever the server speaks, one
    handshake, which only looks at why it failed (SSLyze judges the certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings(), contextlib.suppress(ValueError, ssl.SSLError):
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated for clients that trust TLS 1.0: we only look
        context.minimum_version = ssl.TLSVersion.TLSv1
    return context


_DIAGNOSIS_CONTEXT = _diagnosis_context()


def connect(sock: socket.socket, ip: str, port: int) -> Finding | None:
    """Connect ``sock``; None when connected, else why not (as every probe words it)."""
    try:
        sock.connect((ip, port))
    except OSError as exc:
        return connect_failure(exc)
    return None


def connect_failure(exc: OSError) -> Finding:
    """Why a connection attempt failed, as every probe words it."""
    if isinstance(exc, ConnectionRefusedError):
        return findings.error(findings.Code.CONNECT_REFUSED, REFUSED)
    if isinstance(exc, TimeoutError):
        return findings.error(findings.Code.CONNECT_TIMEOUT, CONNECT_TIMED_OUT)
    return findings.error(findings.Code.CONNECT_ERROR, f"connection failed: {exc.strerror or exc}")


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def looks_like_tls(head: bytes) -> bool:
    """Whether a server's first bytes (at least one) open a TLS record: an alert or a handshake, TLS 1.x."""
    return head[0] in _TLS_RECORD_TYPES and (len(head) < 2 or head[1] == 3)


def reachable(ip: str, port: int, timeout: float) -> Finding | None:
    """The probe of a STARTTLS port: None when ``ip:port`` accepts a TCP connection within ``timeout``
    seconds, else why not. Nothing is sent: what the server should hear first depends on its protocol."""
    with new_socket(_family(ip)) as sock:  # owned by the endpoint's claim: its deadline can close it
        sock.settimeout(timeout)
        return connect(sock, ip, port)


def diagnose_handshake(
    ip: str, port: int, sni: str | None, timeout: float, prepare: Callable[[socket.socket], None] | None = None
) -> Finding | None:
    """One handshake of our own (no verification, any version from TLS 1.0) on a new connection, after
    ``prepare`` (a STARTTLS exchange) if given: ``CERT_TOO_LARGE`` when it fails because the server's
    certificate list exceeds OpenSSL's limit (``max_cert_list``, 100 KiB by default: Python's ``ssl``
    links the same OpenSSL family as the clients we stand for); None when it says anything else.
    ``timeout`` bounds each socket operation; the endpoint's deadline, the whole connection (its socket
    is the claim's, like the probe's)."""
    try:
        with new_socket(_family(ip)) as sock:
            sock.settimeout(timeout)
            if connect(sock, ip, port) is not None:
                return None
            if prepare is not None:
                prepare(sock)
            _handshake(sock, sni)
    except ssl.SSLError as exc:
        if exc.reason == "EXCESSIVE_MESSAGE_SIZE":
            return findings.error(findings.Code.CERT_TOO_LARGE, CERT_TOO_LARGE)
        return None
    except Exception:  # timeout, EOF, the deadline's shutdown, STARTTLS refused: the diagnosis says nothing
        return None
    return None


def _handshake(sock: socket.socket, sni: str | None) -> None:
    """A TLS handshake over ``sock`` through memory buffers, so that ``sock`` stays the plain socket the
    endpoint's owner can shut down (``wrap_socket`` would detach it from the owner's registry)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _DIAGNOSIS_CONTEXT.wrap_bio(incoming, outgoing, server_hostname=sni)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                sock.sendall(pending)
            data = sock.recv(65536)
            if not data:
                incoming.write_eof()
            else:
                incoming.write(data)
    with contextlib.suppress(OSError):
        sock.sendall(outgoing.read())
