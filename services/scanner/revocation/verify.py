"""Whether what a responder or CRL server sent may be believed, and what it says: an OCSP answer counts
only when it is signed by the leaf's issuer or by a responder certificate the issuer delegated OCSP
signing to (RFC 6960 4.2.2.2), names exactly our CertID and has sane dates; a CRL only when the
issuer signed it, it is current and it covers server certificates. These bytes come from a server
the scanned certificate chose, so nothing in them is trusted before these checks; a check that fails
raises ``Unavailable`` with the reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from services.scanner.revocation.messages import Unavailable, iso, revoked_at, shown, status_name
from shared import findings
from shared.messages import Finding

__all__ = ["CLOCK_SKEW", "crl_problem", "crl_verdict", "parse_crl", "responder_verdict", "timing_problem"]

CLOCK_SKEW = timedelta(minutes=5)  # how far our clock and a CA's may disagree

_SIGNING_KEYS = (
    dsa.DSAPublicKey,
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)  # X25519 and X448 keys cannot sign


def timing_problem(this_update: datetime, next_update: datetime | None, now: datetime) -> str | None:
    """What is wrong with an answer's dates (beyond ``CLOCK_SKEW``), completing "the answer …"; None when sane."""
    if this_update > now + CLOCK_SKEW:
        return f"is dated in the future (thisUpdate {iso(this_update)})"
    if next_update is not None and next_update < now - CLOCK_SKEW:
        return f"expired at {iso(next_update)} (its nextUpdate)"
    return None


# --- OCSP --------------------------------------------------------------------------------------


def responder_verdict(
    url: str, response: ocsp.OCSPResponse, leaf: x509.Certificate, issuer: x509.Certificate, now: datetime
) -> tuple[tuple[Finding, ...], datetime | None]:
    """The findings of a verified OCSP answer and its nextUpdate; raises ``Unavailable``."""
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise Unavailable(f"it answered {status_name(response.response_status)!r} instead of a status")
    signer = _ocsp_signer(response, issuer, now)
    if not _signature_valid(signer.public_key(), response.signature, response.tbs_response_bytes, response):
        whose = "the issuer's key" if signer is issuer else "its responder certificate's key"
        raise Unavailable(f"its answer's signature does not verify with {whose}")
    single = _single_for(response, leaf, issuer)
    if single is None:
        raise Unavailable("its answer is about other certificates, not this one")
    timing = timing_problem(single.this_update_utc, single.next_update_utc, now)
    if timing is not None:
        raise Unavailable(f"its answer {timing}")
    where = f"the OCSP responder {shown(url)}"
    if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        revoked = revoked_at(single.revocation_time_utc, single.revocation_reason)
        found = findings.error(
            findings.Code.CERT_REVOKED, f"{where} says the certificate was revoked {revoked}: replace the certificate"
        )
        return (found,), single.next_update_utc
    if single.certificate_status is ocsp.OCSPCertStatus.UNKNOWN:
        unknown = findings.warning(
            findings.Code.REVOCATION_UNKNOWN,
            f"could not check revocation: {where} does not know the certificate (status unknown)",
        )
        return (unknown,), single.next_update_utc
    return (), single.next_update_utc


def signed_for_issuer(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime) -> bool:
    """Whether ``response`` is signed by ``issuer`` or by a responder it delegated OCSP signing to
    (the stapled response of a chain only OpenSSL trusts, which SSLyze leaves unchecked)."""
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return False
    try:
        signer = _ocsp_signer(response, issuer, now)
    except Unavailable:
        return False
    return _signature_valid(signer.public_key(), response.signature, response.tbs_response_bytes, response)


def _ocsp_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime) -> x509.Certificate:
    """The certificate whose key must have signed the answer: the issuer, or a responder
    certificate the issuer delegated OCSP signing to (RFC 6960 4.2.2.2). Raises ``Unavailable``."""
    if _names_responder(response, issuer):
        return issuer
    for cert in response.certificates:
        if not _names_responder(response, cert):
            continue
        problem = _delegation_problem(cert, issuer, now)
        if problem is not None:
            subject = shown(cert.subject.rfc4514_string(), 120)
            raise Unavailable(f"its answer is signed by a responder certificate ({subject}) that {problem}")
        return cert
    raise Unavailable(
        "its answer is signed neither by the certificate's issuer"
        " nor by a responder certificate the issuer delegated to"
    )


def _names_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    """Does the answer's ResponderID (by name, or by the SHA-1 of the key) designate ``cert``?"""
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    try:
        return response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _delegation_problem(cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> str | None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return "the certificate's issuer did not sign"
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        usages = None
    if usages is None or ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
        return "lacks the OCSP-signing extended key usage"
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return f"is not valid now (from {iso(cert.not_valid_before_utc)} to {iso(cert.not_valid_after_utc)})"
    return None


def _signature_valid(key: Any, signature: bytes, data: bytes, response: ocsp.OCSPResponse) -> bool:
    try:
        algorithm = response.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            pss = response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
            scheme = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO) if pss else padding.PKCS1v15()
            key.verify(signature, data, scheme, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        elif isinstance(key, dsa.DSAPublicKey) and algorithm is not None:
            key.verify(signature, data, algorithm)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _single_for(
    response: ocsp.OCSPResponse, leaf: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse | None:
    """The answer's entry for exactly our CertID (serial, issuer name and key), in its hash."""
    for single in response.responses:
        if single.serial_number != leaf.serial_number:
            continue
        try:
            ours = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, single.hash_algorithm).build()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if (single.issuer_name_hash, single.issuer_key_hash) == (ours.issuer_name_hash, ours.issuer_key_hash):
            return single
    return None


# --- CRL ---------------------------------------------------------------------------------------


def parse_crl(body: bytes) -> x509.CertificateRevocationList:
    """The CRL in ``body`` (DER, or PEM as some servers send); raises ``Unavailable``."""
    try:
        if body.lstrip().startswith(b"-----BEGIN"):  # RFC 5280 says DER; some servers send PEM
            return x509.load_pem_x509_crl(body)
        return x509.load_der_x509_crl(body)
    except ValueError:
        raise Unavailable("what it serves is not a CRL") from None


def crl_problem(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime) -> str | None:
    """Why ``crl`` cannot be believed about ``issuer``'s certificates (completing "it …"); None when it can."""
    if crl.issuer != issuer.subject:
        return f"it is issued by {shown(crl.issuer.rfc4514_string(), 120)}, not by the certificate's issuer"
    key = issuer.public_key()
    try:
        signed = isinstance(key, _SIGNING_KEYS) and crl.is_signature_valid(key)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        signed = False
    if not signed:
        return "its signature does not verify with the issuer's key"
    timing = timing_problem(crl.last_update_utc, crl.next_update_utc, now)
    if timing is not None:
        return f"it {timing}"
    try:
        scope = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        return "its extensions are malformed"
    if scope.only_contains_ca_certs or scope.only_contains_attribute_certs:
        return "it lists only CA or attribute certificates, not server certificates"
    if scope.indirect_crl:
        return "it is an indirect CRL, which is not supported"
    return None


def crl_verdict(url: str, crl: x509.CertificateRevocationList, leaf: x509.Certificate) -> tuple[Finding, ...]:
    """CERT_REVOKED when the (verified) ``crl`` lists ``leaf``, else nothing."""
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    if entry is None:
        return ()
    try:
        reason: x509.ReasonFlags | None = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, ValueError):
        reason = None
    if reason is x509.ReasonFlags.remove_from_crl:  # a delta CRL's "no longer revoked"
        return ()
    revoked = revoked_at(entry.revocation_date_utc, reason)
    message = f"the CRL {shown(url)} lists the certificate as revoked {revoked}: replace the certificate"
    return (findings.error(findings.Code.CERT_REVOKED, message),)
