"""Certificates for the TLS lab: a private root, intermediates, and a leaf for every case.

ECDSA P-256 keys (generation is instant, unlike RSA). Every certificate carries SKI and AKI:
the ``cryptography`` verifier SSLyze 6 uses rejects leaves without an Authority Key Identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = timedelta(days=1)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate with its key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dns-cert-checker lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue(
    common_name: str,
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    san: Sequence[str] = (),
    not_before: datetime,
    not_after: datetime,
    key: PrivateKey | None = None,
    bc_critical: bool = True,
) -> Issued:
    """A certificate signed by ``issuer`` (self-signed when None), for ``key`` (a new P-256 key when
    None). ``bc_critical=False`` makes the CA certificate many private CAs have (RFC 5280 wants it critical)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    issuer_public = issuer.key.public_key() if issuer else key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=bc_critical)
    builder = builder.add_extension(usage, critical=True)
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


@dataclass(frozen=True)
class Authority:
    """The lab's private PKI: the trusted root, its intermediates, and an unrelated root."""

    root: Issued
    intermediate: Issued
    expiring_intermediate: Issued  # expires within the default 30-day threshold
    rogue_root: Issued  # trusted by nobody
    rogue_intermediate: Issued
    now: datetime

    def leaf(self, hostname: str, *, issuer: Issued | None = None, days: int = 365, start_days: int = -1) -> Issued:
        """A server certificate for ``hostname`` valid from ``now + start_days`` for ``days`` days."""
        start = self.now + start_days * DAY
        return issue(
            hostname,
            issuer=issuer or self.intermediate,
            san=[hostname],
            not_before=start,
            not_after=start + days * DAY,
        )


def make_authority(now: datetime | None = None) -> Authority:
    # Second precision: the expiry warning prints not_after, and certificates store whole seconds.
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    long_start, long_end = now - 30 * DAY, now + 3650 * DAY
    root = issue("Lab Root CA", ca=True, not_before=long_start, not_after=long_end)
    intermediate = issue("Lab Intermediate CA", issuer=root, ca=True, not_before=long_start, not_after=long_end)
    expiring_intermediate = issue(
        "Lab Expiring Intermediate CA", issuer=root, ca=True, not_before=long_start, not_after=now + 10 * DAY
    )
    rogue_root = issue("Rogue Root CA", ca=True, not_before=long_start, not_after=long_end)
    rogue_intermediate = issue(
        "Rogue Intermediate CA", issuer=rogue_root, ca=True, not_before=long_start, not_after=long_end
    )
    return Authority(root, intermediate, expiring_intermediate, rogue_root, rogue_intermediate, now)
