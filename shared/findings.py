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
    # Certificate checks beyond the original's (README: "Findings").
    CERT_EXPIRING_CRITICAL = "CERT_EXPIRING_CRITICAL"  # error: within critical_time_to_expiration
    WEAK_SIGNATURE = "WEAK_SIGNATURE"  # error: SHA-1 or MD5 in the chain clients rely on
    WEAK_KEY = "WEAK_KEY"  # error: RSA/EC key below the configured size, or DSA
    CA_NOT_STRICT = "CA_NOT_STRICT"  # warning: violates RFC 5280 in a way OpenSSL and browsers accept
    VALIDITY_TOO_LONG = "VALIDITY_TOO_LONG"  # warning: valid longer than max_validity_days
    CERT_TOO_LARGE = "CERT_TOO_LARGE"  # error: certificate list over the 100 KiB OpenSSL clients accept
    CERT_REVOKED = "CERT_REVOKED"  # error: a stapled or fetched OCSP response, or a CRL, says revoked
    MUST_STAPLE_MISSING = "MUST_STAPLE_MISSING"  # error: must-staple leaf served without a staple
    OCSP_STAPLE_UNVERIFIED = "OCSP_STAPLE_UNVERIFIED"  # warning: the stapled response cannot be verified
    REVOCATION_UNKNOWN = "REVOCATION_UNKNOWN"  # warning: an active revocation check could not answer
    BACKENDS_DISAGREE = "BACKENDS_DISAGREE"  # warning: the addresses of one name serve different leaves
    # Endpoint findings: the endpoint could not be analysed at all.
    CONNECT_REFUSED = "CONNECT_REFUSED"
    CONNECT_TIMEOUT = "CONNECT_TIMEOUT"
    CONNECT_ERROR = "CONNECT_ERROR"
    TLS_HANDSHAKE_FAILED = "TLS_HANDSHAKE_FAILED"
    SCAN_TIMEOUT = "SCAN_TIMEOUT"
    SCAN_ERROR = "SCAN_ERROR"
    STARTTLS_NOT_OFFERED = "STARTTLS_NOT_OFFERED"  # a STARTTLS port whose server does not offer it
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
            Code.CERT_EXPIRING_CRITICAL,
            Code.WEAK_SIGNATURE,
            Code.WEAK_KEY,
            Code.CA_NOT_STRICT,
            Code.VALIDITY_TOO_LONG,
            Code.CERT_TOO_LARGE,
            Code.CERT_REVOKED,
            Code.MUST_STAPLE_MISSING,
            Code.OCSP_STAPLE_UNVERIFIED,
            Code.REVOCATION_UNKNOWN,
            Code.BACKENDS_DISAGREE,
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
            Code.STARTTLS_NOT_OFFERED,
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


def warning(code: Code, message: str) -> Finding:
    """A ``warning`` finding (no warning has a fixed wording: each names what it is about)."""
    return Finding(code=str(code), status="warning", message=message)


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


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"


def expiring_critical(subject_rfc4514: str, not_after: datetime, threshold_s: int) -> Finding:
    """The error past ``critical_time_to_expiration``: the original's warning text, and how close."""
    when = not_after.astimezone(UTC).replace(tzinfo=None).isoformat()
    return Finding(
        code=str(Code.CERT_EXPIRING_CRITICAL),
        status="error",
        message=f'certificate "{subject_rfc4514}" expiring at {when}, less than {_span(threshold_s)} from now',
    )
