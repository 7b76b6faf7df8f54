"""From what a server sent and how each trust store judged it, to findings. Pure: no network, no sslyze.

The rules are the original tool's:
- trust: when every store fails with the same OpenSSL error, one row with that wording; when the
  stores disagree, one row per failing store, ``<Store> - <message>``;
- a name the leaf does not cover is an error, so is a chain sent in the wrong order;
- expiry warnings only for endpoints without errors.
Ours on top: a chain that anchors in ``custom_ca_file`` is judged by that file alone, so a healthy
private certificate has no findings and a broken one gets the one row its problem deserves; the
chain judged for expiry, weak signatures and weak keys is the one clients rely on (the verified
chain; ``expiry_scope: "served"`` restores the original's every-certificate-sent rule for
expiry); the checks of ``pki_checks`` and the stapled OCSP response (``revocation``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtensionOID, NameOID

from services.scanner import pki_checks, revocation
from shared import findings
from shared.config import PUBLIC_MAX_VALIDITY_DAYS, Config, ExpiryScope
from shared.messages import CertificateFacts, ChainCertificate, Finding

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
class CheckPolicy:
    """The thresholds of the checks beyond the original's (config keys of the same names)."""

    critical_time_to_expiration: int = 7 * 86400  # seconds; 0: no CERT_EXPIRING_CRITICAL
    expiry_scope: ExpiryScope = "chain"  # "chain": leaf and the verified chain; "served": all sent
    max_validity_days: int | None = None  # None: PUBLIC_MAX_VALIDITY_DAYS, not for custom-CA chains; 0: off
    min_rsa_key_bits: int = 2048
    min_ec_key_bits: int = 256
    strict_rfc5280_warnings: bool = True

    @classmethod
    def from_config(cls, config: Config) -> CheckPolicy:
        return cls(
            critical_time_to_expiration=config.critical_time_to_expiration,
            expiry_scope=config.expiry_scope,
            max_validity_days=config.max_validity_days,
            min_rsa_key_bits=config.min_rsa_key_bits,
            min_ec_key_bits=config.min_ec_key_bits,
            strict_rfc5280_warnings=config.strict_rfc5280_warnings,
        )


@dataclass(frozen=True)
class StoreVerdict:
    """How one trust store judged a chain: ``finding`` is None when it trusts it."""

    store: str
    finding: Finding | None = None
    anchored: bool = True  # the chain reached one of this store's roots (whatever else went wrong)
    verified_chain: tuple[x509.Certificate, ...] = ()  # the path to the store's root, when trusted
    strict_problem: str | None = None  # trusted by OpenSSL, rejected by a strict RFC 5280 verifier: why


@dataclass(frozen=True)
class Stapling:
    """What the handshake said about OCSP: the leaf's must-staple flag and the stapled response."""

    must_staple: bool = False
    response: ocsp.OCSPResponse | None = None
    trusted: bool | None = None  # the stapled response verifies against a trust store


@dataclass(frozen=True)
class Deployment:
    """One certificate chain a server sends for the name scanned (servers may send different ones per client)."""

    received_chain: Sequence[x509.Certificate]  # as sent, leaf first
    verdicts: Sequence[StoreVerdict]  # the public trust stores
    hostname_ok: bool  # the leaf covers the name scanned (``hostname_matches``); False without a leaf
    valid_order: bool | None = True
    custom: StoreVerdict | None = None  # custom_ca_file, when configured
    stapling: Stapling = Stapling()
    verdict: ChainVerdict | None = None  # the chain's own findings, when judged already (chain_judge)

    @property
    def anchored_in_custom(self) -> bool:
        return self.custom is not None and self.custom.anchored

    def deciding_verdict(self) -> StoreVerdict | None:
        """The verdict whose verified chain clients rely on: the custom CA's for a chain anchored
        in it, else the first public store (by name) that trusts it; None when nothing trusts it."""
        if self.custom is not None and self.custom.anchored:
            return self.custom if self.custom.verified_chain else None
        trusting = sorted((v for v in self.verdicts if v.verified_chain), key=lambda v: v.store.lower())
        return trusting[0] if trusting else None

    def relied_chain(self) -> Sequence[x509.Certificate]:
        """The chain a client relies on: the verified one, or what was sent when nothing trusts it."""
        verdict = self.deciding_verdict()
        return verdict.verified_chain if verdict is not None else self.received_chain


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


def has_san(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return False
    return True


def hostname_matches(cert: x509.Certificate, hostname: str) -> bool:
    """RFC 6125 as today's clients apply it: SAN dNSNames, IP names against SAN iPAddresses. The
    common name is never used: browsers and current TLS libraries ignore it."""
    name = hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return str(address) in _ip_names(cert)
    return any(_pattern_matches(p, name) for p in _dns_names(cert))


def name_finding(leaf: x509.Certificate) -> Finding:
    """Why the leaf does not cover the name: the original's wording, or that it has no SAN at all."""
    if has_san(leaf):
        return findings.error(findings.Code.HOSTNAME_MISMATCH)
    names = _common_names(leaf)
    ignored = f', and clients ignore its common name "{names[0]}"' if names else ""
    return findings.error(findings.Code.HOSTNAME_MISMATCH, f"certificate has no subjectAltName{ignored}")


def expiry_warnings(chain: Iterable[x509.Certificate], threshold_s: int, now: datetime) -> list[Finding]:
    """A warning per certificate that expires less than ``threshold_s`` seconds after ``now`` (UTC)."""
    limit = now.astimezone(UTC) + timedelta(seconds=threshold_s)
    return [
        findings.expiring(cert.subject.rfc4514_string(), cert.not_valid_after_utc)
        for cert in chain
        if cert.not_valid_after_utc < limit
    ]


def expiry_findings(
    chain: Iterable[x509.Certificate], threshold_s: int, critical_s: int, now: datetime
) -> tuple[list[Finding], list[Finding]]:
    """(errors, warnings): CERT_EXPIRING_CRITICAL for a certificate not yet expired but within
    ``critical_s``, the original's warning for the others within ``threshold_s``."""
    now = now.astimezone(UTC)
    critical_limit = now + timedelta(seconds=critical_s)
    errors: list[Finding] = []
    rest: list[x509.Certificate] = []
    for cert in chain:
        not_after = cert.not_valid_after_utc
        if critical_s > 0 and now <= not_after < critical_limit:
            errors.append(findings.expiring_critical(cert.subject.rfc4514_string(), not_after, critical_s))
        else:
            rest.append(cert)
    return errors, expiry_warnings(rest, threshold_s, now)


def _unique(items: Iterable[Finding]) -> list[Finding]:
    seen: dict[tuple[str, str], Finding] = {}
    for item in items:
        seen.setdefault((item.code, item.message), item)
    return list(seen.values())


def _validity_limit(deployment: Deployment, policy: CheckPolicy) -> int:
    if policy.max_validity_days is not None:
        return policy.max_validity_days
    # The CA/Browser Forum limit binds public CAs; a private CA sets its own unless told otherwise.
    return 0 if deployment.anchored_in_custom else PUBLIC_MAX_VALIDITY_DAYS


@dataclass(frozen=True)
class ChainVerdict:
    """What a chain's findings are whatever name it was served for: computed once per chain (the
    fast path caches it, ``chain_judge``); the name and the expiry are judged per endpoint."""

    trust: tuple[Finding, ...]
    order: tuple[Finding, ...]
    weak: tuple[Finding, ...]
    expiry_scope: tuple[x509.Certificate, ...]  # the certificates whose expiry counts
    validity: tuple[Finding, ...]
    stapled: tuple[Finding, ...]
    strict: tuple[Finding, ...]  # the RFC 5280 rules it breaks, by name
    strict_rejection: Finding | None  # a strict verifier's reason no named rule explains


def chain_verdict(deployment: Deployment, policy: CheckPolicy) -> ChainVerdict:
    leaf = deployment.received_chain[0]
    relied = deployment.relied_chain()
    weak = pki_checks.weak_signatures(relied) + pki_checks.weak_keys(
        relied, policy.min_rsa_key_bits, policy.min_ec_key_bits
    )
    too_long = pki_checks.validity_too_long(leaf, _validity_limit(deployment, policy))
    stapled = revocation.stapled_findings(
        leaf, deployment.stapling.must_staple, deployment.stapling.response, deployment.stapling.trusted
    )
    strict: list[Finding] = []
    rejection: Finding | None = None
    verdict = deployment.deciding_verdict()
    if policy.strict_rfc5280_warnings and verdict is not None:
        strict = pki_checks.rfc5280_violations(verdict.verified_chain)
        if not strict and verdict.strict_problem is not None and not weak:
            rejection = pki_checks.strict_rejection(verdict.strict_problem)
    return ChainVerdict(
        trust=tuple(trust_findings(deployment.verdicts, deployment.custom)),
        order=(findings.error(findings.Code.CHAIN_ORDER),) if deployment.valid_order is False else (),
        weak=tuple(weak),
        expiry_scope=tuple(relied if policy.expiry_scope == "chain" else deployment.received_chain),
        validity=(too_long,) if too_long is not None else (),
        stapled=tuple(stapled),
        strict=tuple(strict),
        strict_rejection=rejection,
    )


def _judge(
    deployment: Deployment, threshold_s: int, now: datetime, policy: CheckPolicy
) -> tuple[list[Finding], list[Finding]]:
    """(errors, warnings) of one chain as served: its verdict, and the name and expiry checks."""
    chain = deployment.verdict or chain_verdict(deployment, policy)
    errors = list(chain.trust)
    if not deployment.hostname_ok:
        errors.append(name_finding(deployment.received_chain[0]))
    errors += chain.order + chain.weak
    critical, warnings = expiry_findings(chain.expiry_scope, threshold_s, policy.critical_time_to_expiration, now)
    errors += critical
    warnings += chain.validity
    errors += [f for f in chain.stapled if f.status == "error"]
    warnings += [f for f in chain.stapled if f.status == "warning"]
    warnings += chain.strict
    if chain.strict_rejection is not None and deployment.hostname_ok:  # else the name was why it was rejected
        warnings.append(chain.strict_rejection)
    return errors, warnings


def analyse(
    deployments: Sequence[Deployment], threshold_s: int, now: datetime, policy: CheckPolicy = CheckPolicy()
) -> list[Finding]:
    """The findings of one endpoint: errors (trust, name, order, weak crypto, imminent expiry,
    revocation), else warnings (expiry, validity period, strict RFC 5280): the original's rule."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    for deployment in deployments:
        if not deployment.received_chain:
            continue
        found_errors, found_warnings = _judge(deployment, threshold_s, now, policy)
        errors += found_errors
        warnings += found_warnings
    return _unique(errors) if errors else _unique(warnings)


def combine(found: Sequence[Finding], more: Sequence[Finding]) -> list[Finding]:
    """Two sets of one endpoint's findings under the original's rule: the errors if any, else the warnings."""
    errors = [f for f in (*found, *more) if f.status == "error"]
    return _unique(errors) if errors else _unique([*found, *more])


def certificate_facts(chain: Sequence[x509.Certificate]) -> CertificateFacts | None:
    """What the served certificates say about themselves, valid or not (for JSONL and webhooks)."""
    if not chain:
        return None
    leaf = chain[0]
    key_type, key_bits = pki_checks.key_facts(leaf)
    return CertificateFacts(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        san=_dns_names(leaf) + _ip_names(leaf),
        chain_length=len(chain),
        serial=format(leaf.serial_number, "x"),
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=pki_checks.signature_name(leaf),
        chain=[
            ChainCertificate(
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                sha256=cert.fingerprint(hashes.SHA256()).hex(),
            )
            for cert in chain
        ],
    )
