"""How revocation problems are worded: the ``Unavailable`` reason a source gave no answer for, the
``REVOCATION_UNKNOWN`` finding it becomes, and how dates, reasons and text taken from a certificate
or a server are shown. Everything a finding quotes from outside goes through ``shown``, because the
certificate and the responder belong to whoever runs the scanned server: their text must stay one
bounded line in a message.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509 import ocsp

from shared import findings
from shared.config import one_line
from shared.messages import Finding

__all__ = ["Unavailable", "iso", "revoked_at", "shown", "status_name", "unknown"]


class Unavailable(Exception):
    """No answer from a responder or CRL; ``reason`` completes "could not check revocation with …: "."""

    def __init__(self, reason: str, *, cacheable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cacheable = cacheable  # False: our own deadline cut it short, the source may be fine


def unknown(kind: str, url: str, reason: str) -> Finding:
    """The REVOCATION_UNKNOWN warning for ``kind`` ("OCSP responder" or "CRL") at ``url``."""
    return findings.warning(
        findings.Code.REVOCATION_UNKNOWN, f"could not check revocation with the {kind} {shown(url)}: {reason}"
    )


def revoked_at(when: datetime | None, reason: x509.ReasonFlags | None) -> str:
    text = f"at {iso(when)}" if when is not None else "(no date given)"
    return f"{text} (reason: {reason.value})" if reason is not None else text


def status_name(status: ocsp.OCSPResponseStatus) -> str:
    # MALFORMED_REQUEST -> malformedRequest, RFC 6960's spelling
    first, *rest = status.name.lower().split("_")
    return first + "".join(word.capitalize() for word in rest)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def shown(text: str, limit: int = 200) -> str:
    """Text from a certificate or a server, safe in a one-line message."""
    return one_line(text, limit)
