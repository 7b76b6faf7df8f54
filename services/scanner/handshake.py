"""The fast path's one connection, and the full scan's first: one TLS handshake (SNI, OCSP stapling
requested) that fetches the chain as served, and is also the reachability test.

What SSLyze's CERTIFICATE_INFO learns in 6 connections (its connectivity test, four
handshakes), a scan needs from one: the chain the server sends to a client with SNI, and its
stapled OCSP response. The handshake is nassl's (the OpenSSL 1.1.1 that ships with SSLyze, whose
``get_received_chain`` returns the chain as sent; Python 3.11's ``ssl`` gives only the leaf).

``ChainFetch`` is the handshake without I/O: bytes from the server in (``feed``), bytes for the
server out (``to_send``), ``advance`` until ``done``. Two drivers move the bytes: ``fetch`` here,
blocking, on a thread (after a STARTTLS exchange, say), and ``handshake_loop``, one thread driving
every direct handshake of the engine at once on non-blocking sockets.

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

RECEIVE_SIZE = 65536  # bytes asked of the socket at once: a whole server flight, usually


@dataclass(frozen=True)
class Served:
    """What one handshake received: the chain as sent (PEM, leaf first) and the stapled response;
    and what the full scan reuses of it (``certificate_info.probing_from``): the suite negotiated
    (OpenSSL's name) and whether the server asked for a client certificate."""

    chain_pem: tuple[str, ...]
    ocsp: OCSP_RESPONSE | None
    cipher: str = ""
    asked_for_client_certificate: bool = False


Fetched = Served | Finding | None


class _NeedData(Exception):
    """nassl asked for server bytes that have not arrived yet: the handshake pauses until ``feed``."""


class _Buffers:
    """The socket as nassl sees it: what it sends is kept for the driver, what it reads is what the
    driver fed (``_NeedData`` when nothing is there yet; b"" once the server closed)."""

    def __init__(self) -> None:
        self.outgoing = bytearray()
        self.incoming = bytearray()
        self.eof = False

    def send(self, data: bytes) -> int:
        self.outgoing += data
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.incoming:
            if self.eof:
                return b""  # nassl: "peer did not send data back"
            raise _NeedData
        data = bytes(self.incoming[:size])
        del self.incoming[:size]
        return data

    def close(self) -> None:
        pass  # the real socket is the driver's


class ChainFetch:
    """One handshake for ``sni``, I/O-free: ``advance`` runs it as far as the bytes fed allow."""

    def __init__(self, sni: str) -> None:
        self._io = _Buffers()
        self._client = SslClient(
            underlying_socket=self._io,  # type: ignore[arg-type]  # nassl only calls send and recv
            ssl_version=OpenSslVersionEnum.SSLV23,
            ssl_verify=OpenSslVerifyEnum.NONE,  # the chain is judged offline, per trust store
            server_name_indication=sni,
        )
        self._client.set_tlsext_status_ocsp()
        self.head = b""  # the server's first bytes, to tell plaintext from TLS
        self.done = False
        self.outcome: Fetched = None

    def to_send(self) -> bytes:
        """What the client has for the server now (the ClientHello first)."""
        data = bytes(self._io.outgoing)
        self._io.outgoing.clear()
        return data

    def feed(self, data: bytes) -> None:
        """Bytes the server sent; b"": it closed the connection."""
        if not data:
            self._io.eof = True
            return
        if len(self.head) < 5:
            self.head += data[: 5 - len(self.head)]
        self._io.incoming += data

    def advance(self) -> None:
        """Run the handshake on what was fed; ``done`` (with ``outcome``) once it ended either way."""
        if self.done:
            return
        asked = False
        try:
            self._client.do_handshake()
        except _NeedData:
            return
        except ClientCertificateRequested:
            asked = True  # the server sent its chain before asking for ours: that is all we need
        except (OpenSSLError, OSError) as exc:
            self.fail(exc)
            return
        chain = self._client.get_received_chain()
        if not chain:  # anonymous cipher suites: the full scan says what it says
            self._end(None)
            return
        cipher = "" if asked else self._client.get_current_cipher_name()  # unset mid-handshake
        ocsp = self._client.get_tlsext_status_ocsp_resp()
        self._end(Served(tuple(chain), ocsp, cipher, asked))

    def fail(self, exc: BaseException) -> None:
        """The handshake ended with ``exc`` (the socket's or OpenSSL's): the finding it means, or None."""
        if isinstance(exc, TimeoutError):
            self._end(findings.error(findings.Code.CONNECT_TIMEOUT, probing.HANDSHAKE_TIMED_OUT))
        elif not self.head:
            if isinstance(exc, ConnectionResetError):  # reset before any answer, as the probe saw it
                self._end(findings.error(findings.Code.TLS_HANDSHAKE_FAILED, probing.RESET))
            elif isinstance(exc, OSError) and "did not send data back" in str(exc):
                self._end(findings.error(findings.Code.TLS_HANDSHAKE_FAILED, probing.CLOSED))
            else:
                self._end(None)
        elif not probing.looks_like_tls(self.head):
            self._end(findings.error(findings.Code.TLS_HANDSHAKE_FAILED, probing.PLAINTEXT))
        else:
            self._end(None)

    def _end(self, outcome: Fetched) -> None:
        self.done = True
        self.outcome = outcome


def fetch(ip: str, port: int, sni: str, timeout: float, protocol: str | None = None) -> Fetched:
    """One handshake with ``ip:port`` (after ``protocol``'s STARTTLS exchange, when given), blocking;
    each socket operation bounded by ``timeout`` (the endpoint's deadline bounds the whole)."""
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
        chain = ChainFetch(sni)
        chain.advance()
        while not chain.done:
            try:
                sock.sendall(chain.to_send())
                data = sock.recv(RECEIVE_SIZE)
            except OSError as exc:
                chain.fail(exc)
                break
            chain.feed(data)
            chain.advance()
        return chain.outcome
