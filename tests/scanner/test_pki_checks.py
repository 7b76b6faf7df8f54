"""The checks beyond the original's, against real TLS servers on loopback serving generated
certificates (lab/pki_cases.py): private CAs built the lax way, weak signatures and keys, a leaf
without SAN, imminent expiry, a stale cross-signed root, a long validity period."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from lab import Lab, start_lab
from lab.pki_cases import CHECK_CASES
from services.scanner import pki_checks
from services.scanner.analysis import CheckPolicy, Deployment, StoreVerdict, analyse
from services.scanner.scan import Engine, ScanSettings, Target
from shared import findings
from shared.messages import Finding

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


@pytest.fixture(scope="module")
def check_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    cases = [*CHECK_CASES, "valid"]
    with start_lab(tmp_path_factory.mktemp("pki-lab"), cases=cases, ip_prefix="127.0.12.") as running:
        yield running


@pytest.fixture(scope="module")
def base(check_lab: Lab) -> ScanSettings:
    return ScanSettings(network_timeout=1.0, scan_timeout=10.0, custom_ca_file=check_lab.ca_file)


def scan(settings: ScanSettings, lab: Lab, *cases: str) -> dict[str, list[Finding]]:
    engine = Engine(settings)
    try:
        targets = [Target(lab.endpoint(c).ip, lab.endpoint(c).port, lab.endpoint(c).hostname) for c in cases]
        return {cases[index]: outcome.findings for index, outcome in engine.scan_many(targets)}
    finally:
        engine.close()


def pairs(items: list[Finding]) -> tuple[tuple[str, str], ...]:
    return tuple((f.code, f.message) for f in items)


def with_checks(settings: ScanSettings, **changes: object) -> ScanSettings:
    return dataclasses.replace(settings, checks=dataclasses.replace(settings.checks, **changes))


def test_every_check_case_gets_exactly_its_expected_findings(check_lab: Lab, base: ScanSettings) -> None:
    found = scan(base, check_lab, *CHECK_CASES, "valid")
    for endpoint in check_lab.endpoints:
        assert pairs(found[endpoint.case]) == endpoint.expected, endpoint.case
    assert found["valid"] == []


def test_a_private_ca_without_critical_basic_constraints_gives_no_error_row(check_lab: Lab, base: ScanSettings) -> None:
    found = scan(base, check_lab, "lax_ca")["lax_ca"]
    assert found and {f.status for f in found} == {"warning"}
    assert {f.code for f in found} == {findings.Code.CA_NOT_STRICT}
    assert all("basicConstraints is not marked critical" in f.message for f in found)
    assert not any(f.code == findings.Code.CERT_INVALID for f in found)


def test_strict_rfc5280_warnings_can_be_turned_off(check_lab: Lab, base: ScanSettings) -> None:
    assert scan(with_checks(base, strict_rfc5280_warnings=False), check_lab, "lax_ca") == {"lax_ca": []}


def test_the_real_defect_behind_a_lax_ca_is_named_not_hidden(check_lab: Lab, base: ScanSettings) -> None:
    (finding,) = scan(base, check_lab, "lax_ca_sha1")["lax_ca_sha1"]
    assert finding.code == findings.Code.WEAK_SIGNATURE and finding.status == "error"


def test_weak_signature_messages_are_sentences_not_library_dumps(check_lab: Lab, base: ScanSettings) -> None:
    found = scan(base, check_lab, "sha1", "md5")
    for case, weak in (("sha1", "SHA-1"), ("md5", "MD5")):
        (finding,) = found[case]
        assert f"is signed with {weak} (" in finding.message
        assert "AlgorithmIdentifier" not in finding.message and "{" not in finding.message


def test_key_size_thresholds_are_configurable(check_lab: Lab, base: ScanSettings) -> None:
    found = scan(with_checks(base, min_rsa_key_bits=1024), check_lab, "rsa1024", "rsa512")
    assert found["rsa1024"] == []
    assert [f.code for f in found["rsa512"]] == [findings.Code.WEAK_KEY]


def test_the_critical_threshold_can_be_turned_off_leaving_the_warning(check_lab: Lab, base: ScanSettings) -> None:
    (finding,) = scan(with_checks(base, critical_time_to_expiration=0), check_lab, "expiring_critical")[
        "expiring_critical"
    ]
    assert (finding.code, finding.status) == (findings.Code.CERT_EXPIRING, "warning")


def test_a_stale_cross_signed_root_counts_only_with_the_served_expiry_scope(check_lab: Lab, base: ScanSettings) -> None:
    assert scan(base, check_lab, "stale_cross_sign") == {"stale_cross_sign": []}
    (finding,) = scan(with_checks(base, expiry_scope="served"), check_lab, "stale_cross_sign")["stale_cross_sign"]
    assert finding.code == findings.Code.CERT_EXPIRING and "Lab Root CA" in finding.message


def test_a_long_validity_period_is_reported_for_a_private_ca_only_when_asked(
    check_lab: Lab, base: ScanSettings
) -> None:
    assert scan(base, check_lab, "long_validity") == {"long_validity": []}
    (finding,) = scan(with_checks(base, max_validity_days=398), check_lab, "long_validity")["long_validity"]
    assert finding.code == findings.Code.VALIDITY_TOO_LONG and finding.status == "warning"
    assert "valid for 825 days, longer than the 398 days allowed" in finding.message


def test_certificate_facts_describe_key_signature_serial_and_the_chain_sent(check_lab: Lab, base: ScanSettings) -> None:
    engine = Engine(base)
    try:
        endpoint = check_lab.endpoint("rsa1024")
        outcome = engine.scan_one(Target(endpoint.ip, endpoint.port, endpoint.hostname))
    finally:
        engine.close()
    facts = outcome.certificate
    assert facts is not None and outcome.findings  # facts even though the endpoint has an error
    assert (facts.key_type, facts.key_bits, facts.signature_algorithm) == ("RSA", 1024, "sha256WithRSAEncryption")
    assert facts.serial and int(facts.serial, 16) > 0
    assert [c.subject.split(",")[-1] for c in facts.chain][:1] == [f"CN={endpoint.hostname}"]
    assert len(facts.chain) == facts.chain_length == 2
    assert facts.chain[1].subject == facts.issuer


# --- the pure parts --------------------------------------------------------------------------------


def test_a_strict_verifiers_rust_dump_becomes_a_phrase() -> None:
    raw = (
        "validation failed: Forbidden signature algorithm: AlgorithmIdentifier { oid: DefinedByMarker(PhantomData<"
        "cryptography_x509::common::AlgorithmParameters>), params: RsaWithSha1(Some(())) } (encountered processing "
        "<Certificate(subject=<Name(CN=x)>, ...)>)"
    )
    assert pki_checks.strict_reason(raw) == "Forbidden signature algorithm"
    criticality = "validation failed: candidates exhausted: invalid extension: 2.5.29.19: Certificate extension has"
    assert pki_checks.strict_reason(criticality + " incorrect criticality") == (
        "invalid extension: 2.5.29.19: Certificate extension has incorrect criticality"
    )


def test_a_public_chain_valid_longer_than_398_days_is_a_warning(check_lab: Lab) -> None:
    from cryptography import x509

    pem = (check_lab.ca_file.parent / "certs" / "long_validity.pem").read_bytes()
    chain = x509.load_pem_x509_certificates(pem)
    public = Deployment(chain, [StoreVerdict("Mozilla", verified_chain=tuple(chain))], hostname_ok=True)
    now = datetime.now(UTC)
    assert [f.code for f in analyse([public], 0, now)] == [findings.Code.VALIDITY_TOO_LONG]
    assert analyse([public], 0, now, CheckPolicy(max_validity_days=0)) == []
