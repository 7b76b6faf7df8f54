"""The catalogue of finding codes, with the original tool's CSV wording.

Codes are a public interface (JSONL, webhooks, alert routing): never rename one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.messages import Finding

# Certificate findings (scanner). Messages are worded exactly as the original wrote them.
CERT_EXPIRED = "CERT_EXPIRED"
CERT_NOT_YET_VALID = "CERT_NOT_YET_VALID"
SELF_SIGNED = "SELF_SIGNED"
UNTRUSTED_ROOT = "UNTRUSTED_ROOT"
MISSING_ISSUER = "MISSING_ISSUER"
HOSTNAME_MISMATCH = "HOSTNAME_MISMATCH"
CHAIN_ORDER = "CHAIN_ORDER"
TRUST_STORE_DISAGREEMENT = "TRUST_STORE_DISAGREEMENT"
CERT_EXPIRING = "CERT_EXPIRING"
CERT_INVALID = "CERT_INVALID"  # a validation error with no more specific code

# Endpoint findings (scanner): the endpoint could not be analysed at all.
CONNECT_REFUSED = "CONNECT_REFUSED"
CONNECT_TIMEOUT = "CONNECT_TIMEOUT"
CONNECT_ERROR = "CONNECT_ERROR"
TLS_HANDSHAKE_FAILED = "TLS_HANDSHAKE_FAILED"
SCAN_TIMEOUT = "SCAN_TIMEOUT"
SCAN_ERROR = "SCAN_ERROR"

# Name findings (resolver).
CNAME_LOOP = "CNAME_LOOP"
DANGLING_CNAME = "DANGLING_CNAME"
CNAME_TOO_DEEP = "CNAME_TOO_DEEP"
LOOKUP_FAILED = "LOOKUP_FAILED"
NO_SEGMENT = "NO_SEGMENT"
INVALID_RECORD = "INVALID_RECORD"

# Zone findings (collector).
ZONE_TRANSFER_REFUSED = "ZONE_TRANSFER_REFUSED"
ZONE_TRANSFER_TIMEOUT = "ZONE_TRANSFER_TIMEOUT"
ZONE_TRANSFER_FAILED = "ZONE_TRANSFER_FAILED"
TSIG_BAD_KEY = "TSIG_BAD_KEY"
ZONE_FILE_INVALID = "ZONE_FILE_INVALID"

# Run findings (reporter).
RUN_INCOMPLETE = "RUN_INCOMPLETE"

_FIXED_MESSAGES = {
    CERT_EXPIRED: "certificate has expired",
    CERT_NOT_YET_VALID: "certificate is not yet valid",
    SELF_SIGNED: "self signed certificate",
    UNTRUSTED_ROOT: "self signed certificate in certificate chain",
    MISSING_ISSUER: "unable to get local issuer certificate",
    HOSTNAME_MISMATCH: "subject does not match hostname",
    CHAIN_ORDER: "certificate chain does not have valid order",
}


def error(code: str, message: str | None = None) -> Finding:
    """An ``error`` finding; the message defaults to the original's wording for the code."""
    text = message if message is not None else _FIXED_MESSAGES.get(code)
    if text is None:
        raise ValueError(f"finding {code} needs a message")
    return Finding(code=code, status="error", message=text)


def store_disagreement(store_name: str, inner: Finding) -> Finding:
    """One row per failing store when trust stores disagree: ``<Store> - <message>``."""
    return Finding(code=TRUST_STORE_DISAGREEMENT, status="error", message=f"{store_name} - {inner.message}")


def expiring(subject_rfc4514: str, not_after: datetime) -> Finding:
    """The original's warning: ``certificate "<subject>" expiring at <ISO 8601 UTC>``."""
    when = not_after.astimezone(UTC).replace(tzinfo=None).isoformat()
    return Finding(
        code=CERT_EXPIRING,
        status="warning",
        message=f'certificate "{subject_rfc4514}" expiring at {when}',
    )
