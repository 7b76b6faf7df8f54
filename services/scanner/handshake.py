"""The fast path's one connection: one TLS handshake (SNI, OCSP stapling requested) that fetches
the chain as served, and is also the reachability test.

What SSLyze's CERTIFICATE_INFO learns in 6–7 connections (a probe, its connectivity test, four
handshakes), a scan needs from one: the chain the server sends to a client with SNI, and its
stapled OCSP response. The handshake is nassl's (the OpenSSL 1.1.1 that ships with SSLyze, whose
``get_received_chain`` returns the chain as sent; Python 3.11's ``ssl`` gives only the leaf).

Outcomes: ``Served`` (a chain), a ``Finding`` (refused, silent, reset, closed, plaintext: worded as
the probe words them), or ``None``: the handshake failed in a way SSLyze's connectivity test
explains better (no shared version or cipher, an alert, a certificate list too large), so the
engine falls back to the full scan for this endpoint, and its findings are the full scan's.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from nassl._nassl import OCSP_RESPONSE, OpenSSLError
from nassl.ssl_client import ClientCertificateRequested, OpenSslVerifyEnum, OpenSslVersionEnum, SslClient

from services.scanner import probe as probing
from services.scanner import starttls
from services.scanner.sockets import new_socket
from shared import findings
from shared.messages import Finding


@dataclass(frozen=True)
class Served:
    """What one handshake received: the chain as sent (PEM, leaf first) and the stapled response."""

    chain_pem: tuple[str, ...]
    ocsp: OCSP_RESPONSE | None


class _Recording:
    """The socket as nassl sees it: sends everything it is given (nassl calls ``send`` once per
    buffer), and keeps the first bytes the server answered, to tell plaintext from TLS."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.head = b""

    def send(self, data: bytes) -> int:
        self._sock.sendall(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        if len(self.head) < 5:
            self.head += data[: 5 - len(self.head)]
        return data

    def close(self) -> None:
        pass  # the socket belongs to the endpoint's claim, which closes it


def fetch(ip: str, port: int, sni: str, timeout: float, protocol: str | None = None) -> Served | Finding | None:
    """One handshake with ``ip:port`` (after ``protocol``'s STARTTLS exchange, when given); each
    socket operation bounded by ``timeout`` (the endpoint's deadline bounds the whole)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with new_socket(family) as sock:  # owned by the endpoint's claim: its deadline can close it
        sock.settimeout(timeout)
        failure = probing.connect(sock, ip, port)
        if failure is not None:
            return failure
        if protocol is not None:
            try:
                starttls.prepare(sock, protocol, sni)
            except Exception as exc:  # the exchange's errors are many: worded here, or by the full scan
                return starttls.exchange_failure(exc, port, protocol, sni)
        recording = _Recording(sock)
        client = SslClient(
            underlying_socket=recording,  # type: ignore[arg-type]  # nassl only calls send and recv
            ssl_version=OpenSslVersionEnum.SSLV23,
            ssl_verify=OpenSslVerifyEnum.NONE,  # the chain is judged offline, per trust store
            server_name_indication=sni,
        )
        client.set_tlsext_status_ocsp()
        try:
            client.do_handshake()
        except ClientCertificateRequested:
            pass  # the server sent its chain before asking for ours: that is all we need
        except TimeoutError:
            return findings.error(findings.Code.CONNECT_TIMEOUT, probing.HANDSHAKE_TIMED_OUT)
        except ConnectionResetError:
            if not recording.head:  # reset before any answer, as the probe saw it
                return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, probing.RESET)
            return _unless_tls(recording.head, None)
        except (OpenSSLError, OSError) as exc:
            if not recording.head:
                closed = isinstance(exc, OSError) and "did not send data back" in str(exc)
                return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, probing.CLOSED) if closed else None
            return _unless_tls(recording.head, None)
        chain = client.get_received_chain()
        if not chain:
            return None  # anonymous cipher suites: the full scan says what it says
        return Served(tuple(chain), client.get_tlsext_status_ocsp_resp())


def _unless_tls(head: bytes, otherwise: Finding | None) -> Finding | None:
    """The probe's verdict on what the server answered first: plaintext is a finding; TLS, ``otherwise``."""
    if not probing.looks_like_tls(head):
        return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, probing.PLAINTEXT)
    return otherwise
