"""From what a server sent and how each trust store judged it, to findings. Pure: no network, no sslyze.

The rules are the original tool's:
- trust: when every store fails with the same OpenSSL error, one row with that wording; when the
  stores disagree, one row per failing store, ``<Store> - <message>``;
- a name the leaf does not cover is an error, so is a chain sent in the wrong order;
- expiry warnings (every certificate the server sent, UTC) only for endpoints without errors.
Ours on top: a chain that anchors in ``custom_ca_file`` is judged by that file alone, so a healthy
private certificate has no findings and a broken one gets the one row its problem deserves.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID, NameOID

from shared import findings
from shared.messages import CertificateFacts, Finding

# OpenSSL X509_V_ERR_* codes and our finding codes (the wording is OpenSSL's, see verdict_for_code).
OPENSSL_CODES = {
    2: findings.Code.MISSING_ISSUER,  # unable to get issuer certificate
    9: findings.Code.CERT_NOT_YET_VALID,
    10: findings.Code.CERT_EXPIRED,
    18: findings.Code.SELF_SIGNED,
    19: findings.Code.UNTRUSTED_ROOT,
    20: findings.Code.MISSING_ISSUER,  # unable to get local issuer certificate
    21: findings.Code.MISSING_ISSUER,  # unable to verify the first certificate
}
# Errors meaning "no path to an anchor of this store"; any other verdict means the chain reached one.
UNANCHORED_CODES = frozenset({2, 18, 19, 20, 21})


@dataclass(frozen=True)
class StoreVerdict:
    """How one trust store judged a chain: ``finding`` is None when it trusts it."""

    store: str
    finding: Finding | None = None
    anchored: bool = True  # the chain reached one of this store's roots (whatever else went wrong)


@dataclass(frozen=True)
class Deployment:
    """One certificate chain a server sends for the name scanned (servers may send different ones per client)."""

    received_chain: Sequence[x509.Certificate]  # as sent, leaf first
    verdicts: Sequence[StoreVerdict]  # the public trust stores
    hostname_ok: bool  # the leaf covers the name scanned (``hostname_matches``); False without a leaf
    valid_order: bool | None = True
    custom: StoreVerdict | None = None  # custom_ca_file, when configured


def verdict_for_code(store: str, code: int, wording: str) -> StoreVerdict:
    """A store's verdict from an OpenSSL verify error (``wording`` = X509_verify_cert_error_string)."""
    return StoreVerdict(
        store=store,
        finding=findings.error(OPENSSL_CODES.get(code, findings.Code.CERT_INVALID), wording),
        anchored=code not in UNANCHORED_CODES,
    )


def trust_findings(verdicts: Sequence[StoreVerdict], custom: StoreVerdict | None = None) -> list[Finding]:
    if custom is not None and custom.anchored:
        # The chain is one of ours: the public stores' "unknown issuer" is expected noise.
        return [custom.finding] if custom.finding else []
    failing = sorted((v for v in verdicts if v.finding is not None), key=lambda v: v.store.lower())
    if not failing:
        return []
    if len(failing) == len(verdicts) and len({v.finding.message for v in failing if v.finding}) == 1:
        assert failing[0].finding is not None
        return [failing[0].finding]
    return [findings.store_disagreement(v.store, v.finding) for v in failing if v.finding is not None]


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    assert isinstance(san, x509.SubjectAlternativeName)
    return san.get_values_for_type(x509.DNSName)


def _ip_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    assert isinstance(san, x509.SubjectAlternativeName)
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _common_names(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _pattern_matches(pattern: str, name: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern == name:
        return True
    # A wildcard covers exactly one whole left-most label, and never a bare public suffix (*.com).
    if pattern.startswith("*.") and pattern.count(".") >= 2:
        label, _, rest = name.partition(".")
        return bool(label) and rest == pattern[2:]
    return False


def hostname_matches(cert: x509.Certificate, hostname: str) -> bool:
    """RFC 6125: SAN dNSNames (CN only when there are none); IP names against SAN iPAddresses."""
    name = hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return str(address) in _ip_names(cert)
    patterns = _dns_names(cert) or _common_names(cert)
    return any(_pattern_matches(p, name) for p in patterns)


def expiry_warnings(chain: Iterable[x509.Certificate], threshold_s: int, now: datetime) -> list[Finding]:
    """A warning per certificate that expires less than ``threshold_s`` seconds after ``now`` (UTC)."""
    limit = now.astimezone(UTC) + timedelta(seconds=threshold_s)
    return [
        findings.expiring(cert.subject.rfc4514_string(), cert.not_valid_after_utc)
        for cert in chain
        if cert.not_valid_after_utc < limit
    ]


def _unique(items: Iterable[Finding]) -> list[Finding]:
    seen: dict[tuple[str, str], Finding] = {}
    for item in items:
        seen.setdefault((item.code, item.message), item)
    return list(seen.values())


def analyse(deployments: Sequence[Deployment], threshold_s: int, now: datetime) -> list[Finding]:
    """The findings of one endpoint: errors (trust, name, order), else expiry warnings."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    for deployment in deployments:
        if not deployment.received_chain:
            continue
        errors += trust_findings(deployment.verdicts, deployment.custom)
        if not deployment.hostname_ok:
            errors.append(findings.error(findings.Code.HOSTNAME_MISMATCH))
        if deployment.valid_order is False:
            errors.append(findings.error(findings.Code.CHAIN_ORDER))
        warnings += expiry_warnings(deployment.received_chain, threshold_s, now)
    return _unique(errors) if errors else _unique(warnings)


def certificate_facts(chain: Sequence[x509.Certificate]) -> CertificateFacts | None:
    """What the leaf says about itself, valid or not (for JSONL and webhooks)."""
    if not chain:
        return None
    leaf = chain[0]
    return CertificateFacts(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        san=_dns_names(leaf) + _ip_names(leaf),
        chain_length=len(chain),
    )
