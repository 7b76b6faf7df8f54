"""The catalogue of finding codes, with the original tool's CSV wording.

Codes are a public interface (JSONL, webhooks, alert routing): never rename one. Each code has a
category saying which stage found it, so callers ask ``category(code)`` instead of testing prefixes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from shared.messages import Finding


class Category(StrEnum):
    COLLECTION = "collection"  # a zone could not be collected (collector)
    RESOLUTION = "resolution"  # a name could not be turned into endpoints (resolver)
    CONNECTION = "connection"  # an endpoint could not be analysed at all (scanner)
    CERTIFICATE = "certificate"  # what an endpoint served is wrong (scanner)
    RUN = "run"  # the run itself (reporter)


class Code(StrEnum):
    # Certificate findings. Messages are worded exactly as the original wrote them.
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
    # Endpoint findings: the endpoint could not be analysed at all.
    CONNECT_REFUSED = "CONNECT_REFUSED"
    CONNECT_TIMEOUT = "CONNECT_TIMEOUT"
    CONNECT_ERROR = "CONNECT_ERROR"
    TLS_HANDSHAKE_FAILED = "TLS_HANDSHAKE_FAILED"
    SCAN_TIMEOUT = "SCAN_TIMEOUT"
    SCAN_ERROR = "SCAN_ERROR"
    # Name findings.
    CNAME_LOOP = "CNAME_LOOP"
    DANGLING_CNAME = "DANGLING_CNAME"
    CNAME_TOO_DEEP = "CNAME_TOO_DEEP"
    LOOKUP_FAILED = "LOOKUP_FAILED"
    NO_SEGMENT = "NO_SEGMENT"
    INVALID_RECORD = "INVALID_RECORD"
    # Zone findings.
    ZONE_TRANSFER_REFUSED = "ZONE_TRANSFER_REFUSED"
    ZONE_TRANSFER_TIMEOUT = "ZONE_TRANSFER_TIMEOUT"
    ZONE_TRANSFER_FAILED = "ZONE_TRANSFER_FAILED"
    TSIG_BAD_KEY = "TSIG_BAD_KEY"
    ZONE_FILE_INVALID = "ZONE_FILE_INVALID"
    # Run findings.
    RUN_INCOMPLETE = "RUN_INCOMPLETE"

    @property
    def category(self) -> Category:
        return _CATEGORIES[self]


_CATEGORIES: dict[Code, Category] = {
    **dict.fromkeys(
        (
            Code.CERT_EXPIRED,
            Code.CERT_NOT_YET_VALID,
            Code.SELF_SIGNED,
            Code.UNTRUSTED_ROOT,
            Code.MISSING_ISSUER,
            Code.HOSTNAME_MISMATCH,
            Code.CHAIN_ORDER,
            Code.TRUST_STORE_DISAGREEMENT,
            Code.CERT_EXPIRING,
            Code.CERT_INVALID,
        ),
        Category.CERTIFICATE,
    ),
    **dict.fromkeys(
        (
            Code.CONNECT_REFUSED,
            Code.CONNECT_TIMEOUT,
            Code.CONNECT_ERROR,
            Code.TLS_HANDSHAKE_FAILED,
            Code.SCAN_TIMEOUT,
            Code.SCAN_ERROR,
        ),
        Category.CONNECTION,
    ),
    **dict.fromkeys(
        (
            Code.CNAME_LOOP,
            Code.DANGLING_CNAME,
            Code.CNAME_TOO_DEEP,
            Code.LOOKUP_FAILED,
            Code.NO_SEGMENT,
            Code.INVALID_RECORD,
        ),
        Category.RESOLUTION,
    ),
    **dict.fromkeys(
        (
            Code.ZONE_TRANSFER_REFUSED,
            Code.ZONE_TRANSFER_TIMEOUT,
            Code.ZONE_TRANSFER_FAILED,
            Code.TSIG_BAD_KEY,
            Code.ZONE_FILE_INVALID,
        ),
        Category.COLLECTION,
    ),
    Code.RUN_INCOMPLETE: Category.RUN,
}


def category(code: str) -> Category | None:
    """The category of a code off the wire; None for a code this version does not know."""
    try:
        return Code(code).category
    except ValueError:
        return None


_FIXED_MESSAGES = {
    Code.CERT_EXPIRED: "certificate has expired",
    Code.CERT_NOT_YET_VALID: "certificate is not yet valid",
    Code.SELF_SIGNED: "self signed certificate",
    Code.UNTRUSTED_ROOT: "self signed certificate in certificate chain",
    Code.MISSING_ISSUER: "unable to get local issuer certificate",
    Code.HOSTNAME_MISMATCH: "subject does not match hostname",
    Code.CHAIN_ORDER: "certificate chain does not have valid order",
}


def error(code: Code, message: str | None = None) -> Finding:
    """An ``error`` finding; the message defaults to the original's wording for the code."""
    text = message if message is not None else _FIXED_MESSAGES.get(code)
    if text is None:
        raise ValueError(f"finding {code} needs a message")
    return Finding(code=str(code), status="error", message=text)


def store_disagreement(store_name: str, inner: Finding) -> Finding:
    """One row per failing store when trust stores disagree: ``<Store> - <message>``."""
    return Finding(code=str(Code.TRUST_STORE_DISAGREEMENT), status="error", message=f"{store_name} - {inner.message}")


def expiring(subject_rfc4514: str, not_after: datetime) -> Finding:
    """The original's warning: ``certificate "<subject>" expiring at <ISO 8601 UTC>``."""
    when = not_after.astimezone(UTC).replace(tzinfo=None).isoformat()
    return Finding(
        code=str(Code.CERT_EXPIRING),
        status="warning",
        message=f'certificate "{subject_rfc4514}" expiring at {when}',
    )
