"""A fast reachability probe before SSLyze: one connection, one ClientHello, a hard timeout.

SSLyze spends about 11 × network_timeout on a host that accepts and never answers, and says
little about why a connection failed. This probe costs at most one timeout, tells refused,
silent, reset and plaintext apart, and lets only endpoints that answer in TLS reach SSLyze.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

from services.scanner.sockets import new_socket
from shared import findings
from shared.messages import Finding

REFUSED = "connection refused"
CONNECT_TIMED_OUT = "connection timed out"
HANDSHAKE_TIMED_OUT = "TLS handshake timed out"
PLAINTEXT = "TLS handshake failed: server answered in plaintext, not TLS"
CLOSED = "TLS handshake failed: server closed the connection"
RESET = "TLS handshake failed: connection reset by server"

# TLS record types a server may answer a ClientHello with: alert (21) or handshake (22).
_TLS_RECORD_TYPES = (21, 22)


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only "does it speak TLS?": SSLyze judges the certificate
    # Wide cipher list so an old server answers something; any TLS answer, even a protocol_version
    # alert, is enough here: SSLyze then tries every version itself.
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


_CONTEXT = _client_context()


def _client_hello(sni: str | None) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _CONTEXT.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def probe(ip: str, port: int, sni: str | None, timeout: float) -> Finding | None:
    """None when ``ip:port`` answers a ClientHello in TLS within ``timeout`` seconds, else why not."""
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with new_socket(family) as sock:  # owned by the endpoint's claim: its deadline can close it
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
        except ConnectionRefusedError:
            return findings.error(findings.Code.CONNECT_REFUSED, REFUSED)
        except TimeoutError:
            return findings.error(findings.Code.CONNECT_TIMEOUT, CONNECT_TIMED_OUT)
        except OSError as exc:
            return findings.error(findings.Code.CONNECT_ERROR, f"connection failed: {exc.strerror or exc}")
        try:
            sock.sendall(_client_hello(sni))
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            head = sock.recv(5)
        except TimeoutError:
            return findings.error(findings.Code.CONNECT_TIMEOUT, HANDSHAKE_TIMED_OUT)
        except ConnectionResetError:
            return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, RESET)
        except OSError as exc:
            return findings.error(findings.Code.CONNECT_ERROR, f"connection failed: {exc.strerror or exc}")
    if not head:
        return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, CLOSED)
    if head[0] in _TLS_RECORD_TYPES and (len(head) < 2 or head[1] == 3):
        return None  # a TLS record (even an alert): SSLyze tries more than our one hello
    return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, PLAINTEXT)
