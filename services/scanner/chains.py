"""SSLyze's analysis of one served chain → ``analysis.Deployment`` with an OpenSSL verdict per trust store.

SSLyze 6 validates with the ``cryptography`` verifier, whose RFC 5280 profile is stricter than
the clients the checked servers have: it rejects a CA whose ``basicConstraints`` is not critical,
SHA-1 signatures, a leaf without subjectAltName. Relying clients are OpenSSL and browsers, so
trust is judged as OpenSSL judges it: nassl's ``CertificateChainVerifier`` (OpenSSL 1.1.1, shipped
with sslyze) gives the X509_V_ERR code, the original's wording and the chain it built. When it
accepts what ``cryptography`` rejected, the chain is trusted, and the stricter verdict is kept on
the verdict (``strict_problem``) for the checks in ``pki_checks`` to explain. nassl does no hostname
check, so ``deployment_from`` matches the name once per chain and records it on the ``Deployment``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from nassl._nassl import X509
from nassl.cert_chain_verifier import CertificateChainVerificationFailed, CertificateChainVerifier
from sslyze.plugins.certificate_info._cert_chain_analyzer import CertificateDeploymentAnalysisResult
from sslyze.plugins.certificate_info.trust_stores.trust_store import PathValidationResult

from services.scanner import revocation
from services.scanner.analysis import Deployment, Stapling, StoreVerdict, hostname_matches, verdict_for_code

CUSTOM_STORE_NAME = "Supplied CA file"  # what sslyze calls the custom_ca_file store

_verifiers: dict[Path, CertificateChainVerifier] = {}
_verifiers_lock = threading.Lock()


def _verifier(path: Path) -> CertificateChainVerifier:
    # Parsing a store (Mozilla's ~150 roots) costs ms; chains are verified thousands of times.
    with _verifiers_lock:
        verifier = _verifiers.get(path)
        if verifier is None:
            verifier = _verifiers[path] = CertificateChainVerifier.from_file(path)
        return verifier


def openssl_verdict(store: str, store_path: Path, chain_pem: Sequence[str]) -> StoreVerdict:
    """Verify ``chain_pem`` (as sent, leaf first) against the roots in ``store_path``, OpenSSL-style."""
    try:
        built = _verifier(store_path).verify([X509(pem) for pem in chain_pem])
    except CertificateChainVerificationFailed as exc:
        return verdict_for_code(store, exc.openssl_error_code, exc.openssl_error_string)
    chain = tuple(x509.load_pem_x509_certificate(cert.as_pem().encode("ascii")) for cert in built)
    return StoreVerdict(store=store, verified_chain=chain)


def _store_verdict(result: PathValidationResult, chain_pem: Sequence[str]) -> StoreVerdict:
    store = result.trust_store
    if result.was_validation_successful:  # cryptography built a path: so does OpenSSL
        return StoreVerdict(store=store.name, verified_chain=tuple(result.verified_certificate_chain or ()))
    verdict = openssl_verdict(store.name, Path(store.path), chain_pem)
    if verdict.finding is not None:
        return verdict  # OpenSSL's reason, in its wording
    # OpenSSL accepts what cryptography rejected (a stricter RFC 5280 profile, or a name without
    # SAN): trusted, as relying clients see it; keep the stricter reason for pki_checks to explain.
    return StoreVerdict(
        store=store.name, verified_chain=verdict.verified_chain, strict_problem=result.validation_error or "rejected"
    )


def _is_custom(result: PathValidationResult, custom_ca_file: Path | None) -> bool:
    store = result.trust_store
    return custom_ca_file is not None and (store.name == CUSTOM_STORE_NAME or Path(store.path) == custom_ca_file)


def deployment_from(analysis: CertificateDeploymentAnalysisResult, sni: str, custom_ca_file: Path | None) -> Deployment:
    """One chain as served for ``sni``, judged per trust store the way OpenSSL clients judge it."""
    chain = analysis.received_certificate_chain
    chain_pem = [cert.public_bytes(Encoding.PEM).decode("ascii") for cert in chain]
    results = analysis.path_validation_results
    custom: StoreVerdict | None = None
    if custom_ca_file is not None:
        mine = [r for r in results if _is_custom(r, custom_ca_file)]
        custom = (
            _store_verdict(mine[0], chain_pem)
            if mine
            else openssl_verdict(CUSTOM_STORE_NAME, custom_ca_file, chain_pem)  # sslyze did not add it
        )
    public: list[StoreVerdict] = []
    if custom is None or not custom.anchored:  # anchored in the custom CA: the public stores have no say
        public = [_store_verdict(r, chain_pem) for r in results if not _is_custom(r, custom_ca_file)]
    deployment = Deployment(
        received_chain=chain,
        verdicts=public,
        hostname_ok=bool(chain) and hostname_matches(chain[0], sni),
        valid_order=analysis.received_chain_has_valid_order,
        custom=custom,
    )
    stapling = Stapling(
        must_staple=analysis.leaf_certificate_has_must_staple_extension,
        response=analysis.ocsp_response,
        trusted=analysis.ocsp_response_is_trusted,
    )
    return dataclasses.replace(deployment, stapling=staple_checked(stapling, deployment.deciding_verdict()))


def staple_checked(stapling: Stapling, verdict: StoreVerdict | None) -> Stapling:
    """SSLyze checks a staple only against a store whose strict verification succeeded; for a chain
    only OpenSSL trusts (a lax private CA) it says nothing (None). Check it against the issuer in
    the chain OpenSSL built, so such a PKI's good staples are not reported as unverifiable."""
    if stapling.response is None or stapling.trusted is not None or verdict is None:
        return stapling
    if len(verdict.verified_chain) < 2:
        return stapling
    issuer = verdict.verified_chain[1]
    trusted = revocation.signed_for_issuer(stapling.response, issuer, datetime.now(UTC))
    return dataclasses.replace(stapling, trusted=trusted)
