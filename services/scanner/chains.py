"""SSLyze's CERTIFICATE_INFO result → ``analysis.Deployment`` with an OpenSSL verdict per trust store.

SSLyze 6 validates with the ``cryptography`` verifier, whose messages are not the OpenSSL
wording the original's CSV consumers know. nassl's ``CertificateChainVerifier`` (OpenSSL 1.1.1,
shipped with sslyze) gives the X509_V_ERR code and its wording; it does no hostname check, so
``deployment_from`` matches the name once per chain and records it on the ``Deployment``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from nassl._nassl import X509
from nassl.cert_chain_verifier import CertificateChainVerificationFailed, CertificateChainVerifier
from sslyze.plugins.certificate_info._cert_chain_analyzer import CertificateDeploymentAnalysisResult
from sslyze.plugins.certificate_info.implementation import CertificateInfoScanResult
from sslyze.plugins.certificate_info.trust_stores.trust_store import PathValidationResult

from services.scanner.analysis import Deployment, StoreVerdict, hostname_matches, verdict_for_code
from shared import findings
from shared.messages import Finding

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
        _verifier(store_path).verify([X509(pem) for pem in chain_pem])
    except CertificateChainVerificationFailed as exc:
        return verdict_for_code(store, exc.openssl_error_code, exc.openssl_error_string)
    return StoreVerdict(store=store)


def _store_verdict(result: PathValidationResult, chain_pem: Sequence[str], hostname_ok: bool) -> StoreVerdict:
    store = result.trust_store
    if result.was_validation_successful:
        return StoreVerdict(store=store.name)  # cryptography built a path (and the name matched)
    verdict = openssl_verdict(store.name, Path(store.path), chain_pem)
    if verdict.finding is not None or not hostname_ok:
        # OpenSSL's reason; or OpenSSL trusts it and the mismatched name, reported on its own, was why
        return verdict
    # OpenSSL accepts it, cryptography does not (its RFC 5280 profile is stricter): say why.
    reason = (result.validation_error or "rejected").split("\n")[0]
    failure: Finding = findings.error(findings.Code.CERT_INVALID, f"certificate rejected: {reason}")
    return StoreVerdict(store=store.name, finding=failure, anchored=True)


def _is_custom(result: PathValidationResult, custom_ca_file: Path | None) -> bool:
    store = result.trust_store
    return custom_ca_file is not None and (store.name == CUSTOM_STORE_NAME or Path(store.path) == custom_ca_file)


def deployment_from(analysis: CertificateDeploymentAnalysisResult, sni: str, custom_ca_file: Path | None) -> Deployment:
    """One chain as served for ``sni``, judged per trust store the way OpenSSL clients judge it."""
    chain = analysis.received_certificate_chain
    chain_pem = [cert.public_bytes(Encoding.PEM).decode("ascii") for cert in chain]
    hostname_ok = bool(chain) and hostname_matches(chain[0], sni)
    results = analysis.path_validation_results
    custom: StoreVerdict | None = None
    if custom_ca_file is not None:
        mine = [r for r in results if _is_custom(r, custom_ca_file)]
        custom = (
            _store_verdict(mine[0], chain_pem, hostname_ok)
            if mine
            else openssl_verdict(CUSTOM_STORE_NAME, custom_ca_file, chain_pem)  # sslyze did not add it
        )
    public: list[StoreVerdict] = []
    if custom is None or not custom.anchored:  # anchored in the custom CA: the public stores have no say
        public = [_store_verdict(r, chain_pem, hostname_ok) for r in results if not _is_custom(r, custom_ca_file)]
    return Deployment(
        received_chain=chain,
        verdicts=public,
        hostname_ok=hostname_ok,
        valid_order=analysis.received_chain_has_valid_order,
        custom=custom,
    )


def deployments_from(result: CertificateInfoScanResult, sni: str, custom_ca_file: Path | None) -> list[Deployment]:
    """Every chain the server sends to clients that use SNI (the no-SNI default is not what users get)."""
    return [deployment_from(d, sni, custom_ca_file) for d in result.certificate_deployments]
