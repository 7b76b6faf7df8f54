"""Checks of the chain a client relies on beyond trust and name: weak signatures, weak keys, a
validity period longer than allowed, and RFC 5280 rules that OpenSSL and browsers do not enforce.

Pure: certificates in, findings out. Every message is a sentence naming the certificate (its
subject, RFC 4514) and what is wrong with it; nothing a library printed reaches a user as is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtensionOID

from shared import findings
from shared.messages import Finding

_WEAK_HASHES: dict[type[hashes.HashAlgorithm], str] = {hashes.MD5: "MD5", hashes.SHA1: "SHA-1"}


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def signature_name(cert: x509.Certificate) -> str:
    """``sha256WithRSAEncryption``, ``ecdsa-with-SHA256``, … or the OID when it has no name."""
    oid = cert.signature_algorithm_oid
    return getattr(oid, "_name", None) or oid.dotted_string


def key_facts(cert: x509.Certificate) -> tuple[str, int]:
    """(key type, key size in bits) of the certificate's public key; ("", 0) when unknown."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    name = type(key).__name__.removeprefix("_").removesuffix("PublicKey")
    return name, 0  # Ed25519, Ed448: no size to judge


def weak_signatures(chain: Sequence[x509.Certificate]) -> list[Finding]:
    """SHA-1 or MD5 signatures; a self-signed certificate's own signature protects nothing (a trust
    anchor is trusted as it is), so it is not judged."""
    found: list[Finding] = []
    for cert in chain:
        if is_self_signed(cert):
            continue
        try:
            algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            continue
        weak = _WEAK_HASHES.get(type(algorithm)) if algorithm is not None else None
        if weak is not None:
            found.append(
                findings.error(
                    findings.Code.WEAK_SIGNATURE,
                    f'certificate "{subject(cert)}" is signed with {weak} ({signature_name(cert)}), '
                    f"which clients reject",
                )
            )
    return found


def weak_keys(chain: Sequence[x509.Certificate], min_rsa_bits: int, min_ec_bits: int) -> list[Finding]:
    """RSA or EC keys below the configured sizes, and DSA keys (no TLS client accepts them now)."""
    found: list[Finding] = []
    for cert in chain:
        kind, bits = key_facts(cert)
        if kind == "DSA":
            message = f'certificate "{subject(cert)}" has a DSA key, which TLS clients no longer accept'
        elif kind == "RSA" and bits < min_rsa_bits:
            message = f'certificate "{subject(cert)}" has a {bits}-bit RSA key: at least {min_rsa_bits} bits are needed'
        elif kind == "EC" and bits < min_ec_bits:
            message = f'certificate "{subject(cert)}" has a {bits}-bit EC key: at least {min_ec_bits} bits are needed'
        else:
            continue
        found.append(findings.error(findings.Code.WEAK_KEY, message))
    return found


def validity_too_long(leaf: x509.Certificate, max_days: int) -> Finding | None:
    """A warning when the leaf is valid for more than ``max_days`` days (0: never)."""
    if max_days <= 0:
        return None
    period = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    if period.total_seconds() <= max_days * 86400:
        return None
    return findings.warning(
        findings.Code.VALIDITY_TOO_LONG,
        f'certificate "{subject(leaf)}" is valid for {period.days} days, longer than the {max_days} days allowed',
    )


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a malformed extension: OpenSSL's verdict already covers what it breaks
        return None


def _not_strict(cert: x509.Certificate, rule: str) -> Finding:
    return findings.warning(
        findings.Code.CA_NOT_STRICT,
        f'certificate "{subject(cert)}" {rule}; OpenSSL and browsers accept it, strict RFC 5280 verifiers reject it',
    )


def rfc5280_violations(chain: Sequence[x509.Certificate]) -> list[Finding]:
    """The RFC 5280 rules private CAs most often break and OpenSSL accepts, per certificate of the
    verified chain (leaf first, anchor last)."""
    found: list[Finding] = []
    for index, cert in enumerate(chain):
        constraints = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
        is_ca = index > 0 or (
            constraints is not None and isinstance(constraints.value, x509.BasicConstraints) and constraints.value.ca
        )
        if is_ca:
            if constraints is None:
                found.append(_not_strict(cert, "is a CA certificate without basicConstraints (RFC 5280 §4.2.1.9)"))
            elif not constraints.critical:
                found.append(
                    _not_strict(
                        cert, "is a CA certificate whose basicConstraints is not marked critical (RFC 5280 §4.2.1.9)"
                    )
                )
            if _extension(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER) is None:
                rule = "is a CA certificate without a subjectKeyIdentifier (RFC 5280 §4.2.1.2)"
                found.append(_not_strict(cert, rule))
        if not is_self_signed(cert) and _extension(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER) is None:
            found.append(_not_strict(cert, "has no authorityKeyIdentifier (RFC 5280 §4.2.1.1)"))
    return found


# What a strict verifier's own message may carry that is not for users: its framing, the
# certificate it was processing (Python repr), a Rust debug dump of an algorithm identifier.
_FRAMING = re.compile(r"^(validation failed: )?(candidates exhausted: )?")
_PROCESSING = re.compile(r"\s*\(encountered processing <Certificate\(.*\)>\)\s*$", re.DOTALL)
_DEBUG_DUMP = re.compile(r"\s*\w+ \{.*\}", re.DOTALL)


def strict_reason(message: str) -> str:
    """A strict verifier's rejection message as a readable phrase."""
    text = _PROCESSING.sub("", _FRAMING.sub("", message.split("\n")[0].strip()))
    text = _DEBUG_DUMP.sub("", text).strip(" :")
    return text or "rejected"


def strict_rejection(message: str) -> Finding:
    """When no rule above explains why a strict verifier rejected what OpenSSL accepts: its reason."""
    return findings.warning(
        findings.Code.CA_NOT_STRICT,
        f"the chain violates RFC 5280 ({strict_reason(message)}); OpenSSL and browsers accept it, "
        "strict RFC 5280 verifiers reject it",
    )
