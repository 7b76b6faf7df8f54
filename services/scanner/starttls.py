"""STARTTLS: the plaintext exchange some ports need before TLS, and its failures as findings.

On a port with a STARTTLS protocol (``ScanSettings.starttls``: 25/587 smtp, 143 imap, 5432 postgres,
…) SSLyze's connectivity test and every CERTIFICATE_INFO job run that protocol's exchange on each
connection before the handshake (``tls_opportunistic_encryption``); what the server then presents is
checked exactly like a direct-TLS certificate. The sockets are still opened by SSLyze's direct
connection helper, which ``sockets.install`` routes through the endpoint's owner, so the deadline
ends a server that never finishes the exchange just as it ends one that never finishes a handshake.

SSLyze reports every failure of the exchange as ``ServerRejectedOpportunisticTlsNegotiation`` with
a message of its own per protocol; ``failure`` turns them into findings that say what happened:
``STARTTLS_NOT_OFFERED`` when the server answered but will not start TLS (SMTP without STARTTLS in
its EHLO reply or refusing the command, IMAP/POP3/FTP/XMPP/LDAP/RDP refusing it, PostgreSQL
answering ``N`` to SSLRequest), a timeout or a connection error otherwise. Server text is never
quoted beyond a short, printable excerpt of an SMTP reply.
"""

from __future__ import annotations

import dataclasses
import re
import socket

from sslyze.connection_helpers.opportunistic_tls_helpers import (
    OpportunisticTlsError,
    ProtocolWithOpportunisticTlsEnum,
    get_opportunistic_tls_helper,
)
from sslyze.errors import (
    ConnectionToServerFailed,
    ConnectionToServerTimedOut,
    ServerRejectedConnection,
    ServerRejectedOpportunisticTlsNegotiation,
    TlsHandshakeFailed,
    TlsHandshakeTimedOut,
)
from sslyze.server_setting import ServerNetworkConfiguration

from shared import findings
from shared.messages import Finding

__all__ = ["SMTP_EHLO_HOSTNAME", "configure", "exchange_failure", "failure", "not_offered", "prepare", "protocol_of"]

# What we say in EHLO. Looking up our own name would ask the system resolver; a fixed name in the
# reserved .invalid domain says who we are without pretending to be a resolvable mail host.
SMTP_EHLO_HOSTNAME = "dns-cert-checker.invalid"

_PROTOCOLS = {member.value.lower(): member for member in ProtocolWithOpportunisticTlsEnum}

# The messages of sslyze.connection_helpers.opportunistic_tls_helpers (6.3.1) that mean "the server
# answered and will not start TLS": no STARTTLS in the EHLO reply, or the STARTTLS command refused.
_NOT_OFFERED = (
    "Server does not support STARTTLS with SMTP",
    "XMPP STARTTLS not supported",
    "LDAP AUTH TLS was rejected",
    "RDP AUTH TLS was rejected",
    "IMAP START TLS was rejected",
    "POP START TLS was rejected",
    "FTP AUTH TLS was rejected",
    "Postgres AUTH TLS was rejected",
)
_SMTP_REFUSED = "SMTP STARTTLS rejected: "
_SMTP_GREETING = "Server did not send a '220 service ready' SMTP message"
_SMTP_EHLO = "SMTP EHLO was rejected"
_SMTP_BROKEN = "Unexpected error while performing the SMTP EHLO handshake"
_XMPP_STREAM = "Error opening XMPP stream"

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


def protocol_of(name: str) -> ProtocolWithOpportunisticTlsEnum:
    """SSLyze's enum for one of ``shared.config.STARTTLS_PROTOCOLS`` ("smtp", "xmpp_server", …)."""
    try:
        return _PROTOCOLS[name.lower()]
    except KeyError:
        raise ValueError(f"{name!r} is not a STARTTLS protocol SSLyze knows") from None


def configure(network: ServerNetworkConfiguration, protocol: str) -> ServerNetworkConfiguration:
    """``network`` (a direct-TLS configuration) made to speak ``protocol`` before every handshake."""
    member = protocol_of(protocol)
    xmpp = member in (ProtocolWithOpportunisticTlsEnum.XMPP, ProtocolWithOpportunisticTlsEnum.XMPP_SERVER)
    return dataclasses.replace(
        network,
        tls_opportunistic_encryption=member,
        # the stream's "to": the name whose certificate the server should present, as SNI asks
        xmpp_to_hostname=network.tls_server_name_indication if xmpp else None,
        smtp_ehlo_hostname=SMTP_EHLO_HOSTNAME if member is ProtocolWithOpportunisticTlsEnum.SMTP else None,
    )


def prepare(sock: socket.socket, protocol: str, sni: str) -> None:
    """Run ``protocol``'s exchange on a connected socket, as SSLyze does before its handshakes
    (raises ``OpportunisticTlsError``, ``OSError`` or ``smtplib``'s errors when it fails)."""
    helper = get_opportunistic_tls_helper(protocol_of(protocol), sni, SMTP_EHLO_HOSTNAME)
    helper.prepare_socket_for_tls_handshake(sock)


def exchange_failure(exc: Exception, port: int, protocol: str, sni: str) -> Finding | None:
    """The finding for ``prepare`` failing as it did, worded as ``failure`` words SSLyze's error for
    the same cause; None when SSLyze's own connection attempt says it better (the fast path then
    falls back to the full scan)."""
    if isinstance(exc, OpportunisticTlsError):
        return _negotiation(port, protocol, str(exc.args[0]) if exc.args else "", sni)
    if isinstance(exc, TimeoutError):
        message = f"STARTTLS failed on port {port} ({protocol}): the server did not answer in time"
        return findings.error(findings.Code.CONNECT_TIMEOUT, message)
    return None


def not_offered(port: int, protocol: str) -> Finding:
    message = f"server on port {port} does not offer STARTTLS ({protocol})"
    return findings.error(findings.Code.STARTTLS_NOT_OFFERED, message)


def _excerpt(text: str, limit: int = 80) -> str:
    """A server's words, safe to show: printable ASCII, whitespace collapsed, shortened."""
    flat = " ".join(_UNPRINTABLE.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _negotiation(port: int, protocol: str, message: str, sni: str) -> Finding:
    """``ServerRejectedOpportunisticTlsNegotiation``'s message as a finding."""
    if message.startswith(_NOT_OFFERED):
        return not_offered(port, protocol)
    if message.startswith(_SMTP_REFUSED):
        reply = _excerpt(message.removeprefix(_SMTP_REFUSED))
        text = f"server on port {port} does not offer STARTTLS ({protocol}): it refused the STARTTLS command"
        return findings.error(findings.Code.STARTTLS_NOT_OFFERED, f"{text} ({reply})" if reply else text)
    failed = f"STARTTLS failed on port {port} ({protocol})"
    if message.startswith(_SMTP_GREETING):
        return findings.error(findings.Code.CONNECT_ERROR, f"{failed}: the server did not greet with 220 service ready")
    if message.startswith(_SMTP_EHLO):
        return findings.error(findings.Code.CONNECT_ERROR, f"{failed}: the server rejected EHLO {SMTP_EHLO_HOSTNAME}")
    if message.startswith(_SMTP_BROKEN):  # smtplib's errors: a socket timeout or EOF becomes "disconnected"
        if "timed out" in message:
            return findings.error(findings.Code.CONNECT_TIMEOUT, f"{failed}: the server did not answer in time")
        if "unexpectedly closed" in message or "not connected" in message:
            return findings.error(findings.Code.CONNECT_ERROR, f"{failed}: the server closed the connection")
        return findings.error(findings.Code.CONNECT_ERROR, f"{failed}: the server's answer is not SMTP")
    if message.startswith(_XMPP_STREAM):
        return findings.error(findings.Code.CONNECT_ERROR, f"{failed}: the server refused an XMPP stream to {sni}")
    return findings.error(findings.Code.CONNECT_ERROR, failed)


def failure(exc: ConnectionToServerFailed) -> Finding | None:
    """The finding for SSLyze's connection error on a STARTTLS port; None on a direct-TLS one."""
    member = exc.network_configuration.tls_opportunistic_encryption
    if member is None:
        return None
    port, protocol = exc.server_location.port, member.value.lower()
    sni = exc.network_configuration.tls_server_name_indication
    if isinstance(exc, ServerRejectedOpportunisticTlsNegotiation):
        return _negotiation(port, protocol, exc.error_message, sni)
    if isinstance(exc, ConnectionToServerTimedOut):  # the TCP connect worked: the exchange is what timed out
        message = f"STARTTLS failed on port {port} ({protocol}): the server did not answer in time"
        return findings.error(findings.Code.CONNECT_TIMEOUT, message)
    if isinstance(exc, TlsHandshakeTimedOut):
        return findings.error(findings.Code.CONNECT_TIMEOUT, f"TLS handshake timed out after STARTTLS ({protocol})")
    if isinstance(exc, TlsHandshakeFailed):
        return findings.error(
            findings.Code.TLS_HANDSHAKE_FAILED, f"TLS handshake failed after STARTTLS ({protocol}): {exc.error_message}"
        )
    if isinstance(exc, ServerRejectedConnection):
        return None  # refused or reset: worded as on any port
    message = f"connection failed during STARTTLS ({protocol})"
    if not exc.error_message.startswith("Unexpected connection error"):  # that one ends in a repr of an OSError
        message = f"{message}: {exc.error_message}"
    return findings.error(findings.Code.CONNECT_ERROR, message)
