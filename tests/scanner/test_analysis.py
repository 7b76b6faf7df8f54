"""The analysis rules on fabricated inputs: no network, no sslyze scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.x509 import Certificate, DNSName
from sslyze import TrustStore
from sslyze.plugins.certificate_info._cert_chain_analyzer import CertificateDeploymentAnalyzer
from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository

from lab.certs import DAY, Authority, issue, make_authority
from lab.servers import ALL_CASES, _build_case
from services.scanner.analysis import (
    Deployment,
    StoreVerdict,
    analyse,
    certificate_facts,
    expiry_warnings,
    hostname_matches,
    trust_findings,
    verdict_for_code,
)
from services.scanner.chains import deployment_from
from services.scanner.scan import Target, target_problem
from shared import findings

# SSLyze's bundled stores hold a root with a negative serial; cryptography warns on parsing it.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
THIRTY_DAYS = 2592000
STORES = ("Android", "Apple", "Java", "Mozilla", "Windows")


@pytest.fixture(scope="module")
def pki() -> Authority:
    return make_authority(NOW)


def code_and_message(items: list[findings.Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in items]


def all_fail(code: int, wording: str) -> list[StoreVerdict]:
    return [verdict_for_code(store, code, wording) for store in STORES]


def served(chain: list[Certificate], sni: str, verdicts: list[StoreVerdict], valid_order: bool = True) -> Deployment:
    """A chain as the scanner records it for ``sni``: the name matched against the leaf once, here."""
    return Deployment(chain, verdicts, hostname_ok=hostname_matches(chain[0], sni), valid_order=valid_order)


def test_openssl_codes_map_to_our_codes_with_openssl_wording() -> None:
    assert verdict_for_code("Mozilla", 10, "certificate has expired").finding == findings.error(
        findings.Code.CERT_EXPIRED
    )
    assert verdict_for_code("Mozilla", 9, "certificate is not yet valid").finding == findings.error(
        findings.Code.CERT_NOT_YET_VALID
    )
    assert verdict_for_code("Mozilla", 18, "self signed certificate").finding == findings.error(
        findings.Code.SELF_SIGNED
    )
    untrusted = verdict_for_code("Mozilla", 19, "self signed certificate in certificate chain")
    assert untrusted.finding == findings.error(findings.Code.UNTRUSTED_ROOT) and not untrusted.anchored
    missing = verdict_for_code("Mozilla", 20, "unable to get local issuer certificate")
    assert missing.finding == findings.error(findings.Code.MISSING_ISSUER) and not missing.anchored
    other = verdict_for_code("Mozilla", 7, "certificate signature failure")
    assert (
        other.finding == findings.error(findings.Code.CERT_INVALID, "certificate signature failure") and other.anchored
    )


def test_stores_that_agree_give_one_row_in_openssl_wording() -> None:
    rows = trust_findings(all_fail(20, "unable to get local issuer certificate"))
    assert code_and_message(rows) == [(findings.Code.MISSING_ISSUER, "unable to get local issuer certificate")]


def test_stores_that_disagree_give_one_row_per_failing_store() -> None:
    verdicts = [StoreVerdict(store) for store in STORES[:3]] + [
        verdict_for_code("Windows", 20, "unable to get local issuer certificate"),
        verdict_for_code("Mozilla", 10, "certificate has expired"),
    ]
    rows = trust_findings(verdicts)
    assert code_and_message(rows) == [
        (findings.Code.TRUST_STORE_DISAGREEMENT, "Mozilla - certificate has expired"),
        (findings.Code.TRUST_STORE_DISAGREEMENT, "Windows - unable to get local issuer certificate"),
    ]


def test_every_store_failing_differently_is_a_disagreement_too() -> None:
    verdicts = [verdict_for_code(s, 20, "unable to get local issuer certificate") for s in STORES[:4]]
    verdicts.append(verdict_for_code("Windows", 10, "certificate has expired"))
    assert len(trust_findings(verdicts)) == 5


def test_a_chain_anchored_in_the_custom_ca_is_judged_by_it_alone() -> None:
    public = all_fail(20, "unable to get local issuer certificate")
    assert trust_findings(public, StoreVerdict("Supplied CA file")) == []
    expired = verdict_for_code("Supplied CA file", 10, "certificate has expired")
    assert code_and_message(trust_findings(public, expired)) == [
        (findings.Code.CERT_EXPIRED, "certificate has expired")
    ]


def test_a_chain_foreign_to_the_custom_ca_is_judged_by_the_public_stores() -> None:
    foreign = verdict_for_code("Supplied CA file", 20, "unable to get local issuer certificate")
    assert trust_findings([StoreVerdict(s) for s in STORES], foreign) == []  # publicly trusted: no noise
    self_signed = all_fail(18, "self signed certificate")
    assert code_and_message(trust_findings(self_signed, verdict_for_code("Supplied CA file", 18, "x"))) == [
        (findings.Code.SELF_SIGNED, "self signed certificate")
    ]


def test_warnings_only_when_the_endpoint_has_no_errors(pki: Authority) -> None:
    soon = pki.leaf("a.lab.test", start_days=-80, days=90).cert
    trusted = [StoreVerdict(s) for s in STORES]
    healthy = served([soon], "a.lab.test", trusted)
    assert [f.code for f in analyse([healthy], THIRTY_DAYS, NOW)] == [findings.Code.CERT_EXPIRING]
    # the same chain served under another name: the mismatch is an error, so no warning
    assert code_and_message(analyse([served([soon], "b.lab.test", trusted)], THIRTY_DAYS, NOW)) == [
        (findings.Code.HOSTNAME_MISMATCH, "subject does not match hostname")
    ]
    misordered = served([soon], "a.lab.test", trusted, valid_order=False)
    assert [f.code for f in analyse([misordered], THIRTY_DAYS, NOW)] == [findings.Code.CHAIN_ORDER]


def test_expiry_is_compared_in_utc_at_the_exact_threshold(pki: Authority) -> None:
    not_after = NOW + timedelta(seconds=THIRTY_DAYS)
    cert = issue(
        "edge.lab.test", issuer=pki.intermediate, san=["edge.lab.test"], not_before=NOW - DAY, not_after=not_after
    )
    assert expiry_warnings([cert.cert], THIRTY_DAYS, NOW) == []
    one_second_later = NOW + timedelta(seconds=1)
    assert len(expiry_warnings([cert.cert], THIRTY_DAYS, one_second_later)) == 1
    # "now" in another zone is the same instant: same verdict
    paris = one_second_later.astimezone(timezone(timedelta(hours=2)))
    (warning,) = expiry_warnings([cert.cert], THIRTY_DAYS, paris)
    assert warning.message == 'certificate "CN=edge.lab.test,O=dns-cert-checker lab" expiring at 2026-03-31T12:00:00'
    assert warning.status == "warning"


def test_every_certificate_of_the_served_chain_is_checked_and_rows_are_not_repeated(pki: Authority) -> None:
    leaf = pki.leaf("x.lab.test", issuer=pki.expiring_intermediate).cert
    chain = [leaf, pki.expiring_intermediate.cert]
    trusted = [StoreVerdict(s) for s in STORES]
    two = [served(chain, "x.lab.test", trusted), served(chain, "x.lab.test", trusted)]  # e.g. TLS 1.3 and 1.2
    rows = analyse(two, THIRTY_DAYS, NOW)
    assert [r.message.split('"')[1] for r in rows] == ["CN=Lab Expiring Intermediate CA,O=dns-cert-checker lab"]


def test_hostname_matching(pki: Authority) -> None:
    wildcard = issue("w", issuer=pki.intermediate, san=["*.apps.lab.test"], not_before=NOW, not_after=NOW + DAY).cert
    assert hostname_matches(wildcard, "dcc-wildcard-probe.apps.lab.test")
    assert hostname_matches(wildcard, "X.APPS.lab.test.")
    assert not hostname_matches(wildcard, "apps.lab.test")
    assert not hostname_matches(wildcard, "a.b.apps.lab.test")
    cn_only = issue("legacy.lab.test", issuer=pki.intermediate, not_before=NOW, not_after=NOW + DAY).cert
    assert not hostname_matches(cn_only, "legacy.lab.test")  # clients ignore the common name
    with_san = pki.leaf("san.lab.test").cert
    assert not hostname_matches(with_san, "dns-cert-checker lab")
    assert not hostname_matches(with_san, "127.0.0.1")


def test_certificate_facts_describe_the_leaf(pki: Authority) -> None:
    leaf = pki.leaf("facts.lab.test")
    facts = certificate_facts([leaf.cert, pki.intermediate.cert])
    assert facts is not None
    assert facts.subject == "CN=facts.lab.test,O=dns-cert-checker lab"
    assert facts.issuer == "CN=Lab Intermediate CA,O=dns-cert-checker lab"
    assert facts.not_after == leaf.cert.not_valid_after_utc and facts.not_after.tzinfo is not None
    assert facts.san == ["facts.lab.test"] and facts.chain_length == 2
    assert len(facts.sha256) == 64
    assert certificate_facts([]) is None


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c not in ("refused", "hung", "plaintext")])
def test_every_lab_chain_analysed_offline_gives_its_expected_findings(case: str, tmp_path: Path) -> None:
    """SSLyze's own deployment analysis + our OpenSSL verdicts, on the lab's chains, no server."""
    pki = make_authority()  # the trust checks run at the real current time
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.root.pem)
    hostname = f"{case.replace('_', '-')}.lab.test"
    spec = _build_case(case, hostname, pki, tmp_path)
    stores = [*TrustStoresRepository.get_default().get_all_stores(), TrustStore(ca_file, "Supplied CA file", "N/A")]
    pem = [c.pem.decode() for c in spec.chain]
    result = CertificateDeploymentAnalyzer(DNSName(hostname), pem, None, stores).perform()
    deployment = deployment_from(result, hostname, ca_file)
    assert deployment.hostname_ok == (case != "mismatch")
    found = analyse([deployment], THIRTY_DAYS, datetime.now(UTC))
    assert tuple(code_and_message(found)) == spec.expected


def test_targets_sslyze_must_not_see_are_scan_errors() -> None:
    wildcard = target_problem(Target("127.0.0.1", 443, "*.lab.test"))
    assert wildcard is not None and wildcard.code == findings.Code.SCAN_ERROR and "*.lab.test" in wildcard.message
    no_ip = target_problem(Target("", 443, "a.lab.test"))  # sslyze would resolve the name itself
    assert no_ip is not None and no_ip.code == findings.Code.SCAN_ERROR
    assert target_problem(Target("::1", 443, "a.lab.test.")) is None
