"""Revocation checks: the stapled OCSP response (unit tests on responses built here, and real
``openssl s_server`` staples read by real SSLyze), and the active checks against a real ``openssl
ocsp`` responder and real CRLs served on loopback (``ocsp_lab``)."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.plugins.certificate_info._cert_chain_analyzer import CertificateDeploymentAnalysisResult

from services.scanner.analysis import Stapling, StoreVerdict
from services.scanner.chains import staple_checked
from services.scanner.revocation import RevocationChecker, stapled_findings
from shared import findings
from shared.messages import Finding

from .ocsp_lab import HOST, RevocationLab, free_port, start_revocation_lab

Code = findings.Code
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


# --- stapled responses built here ---------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def make_cert(
    name: str,
    issuer: Issued | None = None,
    *,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
) -> Issued:
    """A P-256 certificate for ``name``: a CA when ``issuer`` is None, else a leaf it issued that
    names ``ocsp_url`` (AIA) and ``crl_url`` (CRL distribution point) when given."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if ocsp_url:
        location = x509.UniformResourceIdentifier(ocsp_url)
        builder = builder.add_extension(
            x509.AuthorityInformationAccess([x509.AccessDescription(AuthorityInformationAccessOID.OCSP, location)]),
            critical=False,
        )
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki() -> tuple[Issued, Issued]:
    """A CA and a leaf it issued (in process: no server needed)."""
    ca = make_cert("Staple test CA")
    return ca, make_cert("leaf.staple.test", ca)


def built_response(
    ca: Issued,
    leaf: Issued,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    *,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    revoked_at: datetime | None = None,
    reason: x509.ReasonFlags | None = None,
) -> ocsp.OCSPResponse:
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf.cert,
        issuer=ca.cert,
        algorithm=hashes.SHA1(),
        cert_status=status,
        this_update=this_update or NOW - timedelta(hours=1),
        next_update=next_update or NOW + timedelta(days=3),
        revocation_time=revoked_at,
        revocation_reason=reason,
    )
    return builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca.cert).sign(ca.key, hashes.SHA256())


def test_a_good_verified_staple_has_no_findings(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    assert stapled_findings(leaf.cert, False, built_response(ca, leaf), True) == []
    assert stapled_findings(leaf.cert, True, built_response(ca, leaf), True) == []


def test_a_stapled_revoked_response_is_an_error_with_its_time_and_reason(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    revoked = built_response(
        ca, leaf, ocsp.OCSPCertStatus.REVOKED, revoked_at=when, reason=x509.ReasonFlags.key_compromise
    )
    [finding] = stapled_findings(leaf.cert, False, revoked, True)
    assert (finding.code, finding.status) == (Code.CERT_REVOKED, "error")
    assert "stapled OCSP response" in finding.message
    assert "2026-01-02T03:04:05Z" in finding.message and "keyCompromise" in finding.message


def test_a_must_staple_certificate_without_a_staple_is_an_error(pki: tuple[Issued, Issued]) -> None:
    _, leaf = pki
    [finding] = stapled_findings(leaf.cert, True, None, None)
    assert (finding.code, finding.status) == (Code.MUST_STAPLE_MISSING, "error")
    assert "must-staple" in finding.message


def test_a_certificate_without_must_staple_needs_no_staple(pki: tuple[Issued, Issued]) -> None:
    _, leaf = pki
    assert stapled_findings(leaf.cert, False, None, None) == []


def test_a_staple_for_another_serial_is_unverified(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    other = make_cert("other.staple.test", ca)
    [finding] = stapled_findings(leaf.cert, False, built_response(ca, other), True)
    assert (finding.code, finding.status) == (Code.OCSP_STAPLE_UNVERIFIED, "warning")
    assert "another certificate" in finding.message
    assert f"0x{other.cert.serial_number:X}" in finding.message


def test_a_staple_past_its_next_update_is_unverified(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    expired = built_response(ca, leaf, this_update=NOW - 3 * DAY, next_update=NOW - DAY)
    [finding] = stapled_findings(leaf.cert, False, expired, True)
    assert (finding.code, finding.status) == (Code.OCSP_STAPLE_UNVERIFIED, "warning")
    assert "expired at" in finding.message and (NOW - DAY).strftime("%Y-%m-%dT%H:%M") in finding.message


def test_an_unsuccessful_staple_is_unverified(pki: tuple[Issued, Issued]) -> None:
    _, leaf = pki
    unsuccessful = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    [finding] = stapled_findings(leaf.cert, False, unsuccessful, None)
    assert (finding.code, finding.status) == (Code.OCSP_STAPLE_UNVERIFIED, "warning")
    assert "unsuccessful (tryLater)" in finding.message


def test_an_untrusted_staple_is_unverified(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    [finding] = stapled_findings(leaf.cert, False, built_response(ca, leaf), False)
    assert (finding.code, finding.status) == (Code.OCSP_STAPLE_UNVERIFIED, "warning")
    assert "not trusted" in finding.message


def test_a_staple_of_a_chain_only_openssl_trusts_is_checked_against_the_issuer_it_built(
    pki: tuple[Issued, Issued],
) -> None:
    """SSLyze leaves the staple unchecked (None) when no store's strict verification succeeded, as
    for a lax private CA; the chain OpenSSL built names the issuer, and its signature decides."""
    ca, leaf = pki
    trusted_by_openssl = StoreVerdict("Supplied CA file", verified_chain=(leaf.cert, ca.cert))
    good = Stapling(must_staple=True, response=built_response(ca, leaf), trusted=None)
    assert staple_checked(good, trusted_by_openssl).trusted is True
    assert stapled_findings(leaf.cert, True, good.response, staple_checked(good, trusted_by_openssl).trusted) == []
    stranger = make_cert("Stranger CA")
    forged = Stapling(response=built_response(stranger, leaf), trusted=None)
    assert staple_checked(forged, trusted_by_openssl).trusted is False
    assert staple_checked(good, None).trusted is None  # nothing trusts the chain: nothing to check against
    assert staple_checked(dataclasses.replace(good, trusted=False), trusted_by_openssl).trusted is False  # SSLyze's own


def test_a_staple_no_trust_store_could_check_is_unverified(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    [finding] = stapled_findings(leaf.cert, False, built_response(ca, leaf), None)
    assert (finding.code, finding.status) == (Code.OCSP_STAPLE_UNVERIFIED, "warning")
    assert "no trust store validated" in finding.message


def test_an_untrusted_staple_that_says_revoked_is_a_warning_not_an_error(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    revoked = built_response(ca, leaf, ocsp.OCSPCertStatus.REVOKED, revoked_at=NOW - DAY)
    [finding] = stapled_findings(leaf.cert, False, revoked, False)
    assert (finding.code, finding.status) == (Code.OCSP_STAPLE_UNVERIFIED, "warning")
    assert "revoked" in finding.message and "does not verify" in finding.message


def test_an_unusable_staple_of_a_must_staple_certificate_says_clients_refuse_it(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki
    [finding] = stapled_findings(leaf.cert, True, built_response(ca, leaf), False)
    assert finding.code == Code.OCSP_STAPLE_UNVERIFIED
    assert "clients that enforce must-staple refuse the connection" in finding.message


# --- active checks without a server ---------------------------------------------------------------


def test_urls_other_than_http_are_reported_and_never_fetched(pki: tuple[Issued, Issued]) -> None:
    ca, _ = pki
    for mode, leaf in (
        ("ocsp", make_cert("https.staple.test", ca, ocsp_url="https://ocsp.example.invalid/").cert),
        (
            "crl",
            make_cert(
                "ldap.staple.test", ca, crl_url="ldap://ldap.example.invalid/cn=CA?certificateRevocationList"
            ).cert,
        ),
    ):
        checker = RevocationChecker(mode, 2.0)  # type: ignore[arg-type]
        started = time.monotonic()
        [finding] = checker.check([leaf, ca.cert])
        checker.close()
        assert (finding.code, finding.status) == (Code.REVOCATION_UNKNOWN, "warning")
        assert "only plain http://" in finding.message and ".example.invalid/" in finding.message
        assert time.monotonic() - started < 0.5  # nothing was even resolved


def test_a_chain_without_an_issuer_or_without_a_url_is_not_checked(pki: tuple[Issued, Issued]) -> None:
    ca, leaf = pki  # this leaf names neither an OCSP responder nor a CRL
    with_urls = make_cert("urls.staple.test", ca, ocsp_url=f"http://{HOST}:9/", crl_url=f"http://{HOST}:9/ca.crl").cert
    for mode in ("ocsp", "crl"):
        checker = RevocationChecker(mode, 2.0)
        assert checker.check([with_urls]) == []
        assert checker.check([leaf.cert, ca.cert]) == []
        checker.close()


NAMED_HOSTS = {"ocsp": "http://ocsp.example.invalid/", "crl": "http://crl.example.invalid/ca.crl"}


def named_host_leaves(ca: Issued) -> list[tuple[Literal["ocsp", "crl"], str, x509.Certificate]]:
    """(mode, kind, leaf): a leaf whose OCSP responder, and one whose CRL, is at a host name."""
    return [
        ("ocsp", "OCSP responder", make_cert("ocsp-name.staple.test", ca, ocsp_url=NAMED_HOSTS["ocsp"]).cert),
        ("crl", "CRL", make_cert("crl-name.staple.test", ca, crl_url=NAMED_HOSTS["crl"]).cert),
    ]


def test_a_url_naming_a_host_is_not_fetched_and_nothing_is_resolved(
    pki: tuple[Issued, Issued], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, _ = pki

    def no_lookup(*args: object, **kwargs: object) -> list[object]:
        raise AssertionError(f"the system resolver was asked: getaddrinfo{args}")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    for mode, kind, leaf in named_host_leaves(ca):
        checker = RevocationChecker(mode, 2.0)
        started = time.monotonic()
        [finding] = checker.check([leaf, ca.cert])
        [again] = checker.check([leaf, ca.cert])
        took = time.monotonic() - started
        checker.close()
        assert (finding.code, finding.status) == (Code.REVOCATION_UNKNOWN, "warning")
        assert finding.message == (
            f"could not check revocation with the {kind} {NAMED_HOSTS[mode]}: its host is a name,"
            " and the scanner resolves names only with use_system_resolver: true"
        )
        assert again == finding
        assert took < 0.5  # well under the 2 s timeout: nothing was resolved or connected to


def test_with_resolve_names_a_host_name_is_resolved_and_fetched(
    pki: tuple[Issued, Issued], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opt-in path (use_system_resolver: true) still asks getaddrinfo; here a fake one answers
    with loopback, where nobody listens, and every other call is held to numeric addresses."""
    ca, _ = pki
    real = socket.getaddrinfo
    port = free_port()
    asked: list[object] = []

    def loopback(host: object, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        if isinstance(host, str) and host.endswith(".example.invalid"):
            return list(real(HOST, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST))
        kwargs["flags"] = socket.AI_NUMERICHOST  # a name would fail here, never reach DNS
        return list(real(host, *args, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", loopback)
    for mode, kind, leaf in named_host_leaves(ca):
        checker = RevocationChecker(mode, 2.0, resolve_names=True)
        [finding] = checker.check([leaf, ca.cert])
        checker.close()
        assert finding.code == Code.REVOCATION_UNKNOWN
        assert finding.message.startswith(f"could not check revocation with the {kind} {NAMED_HOSTS[mode]}:")
        assert "could not connect (Connection refused)" in finding.message
    assert "ocsp.example.invalid" in asked and "crl.example.invalid" in asked


# --- the lab: real responders, CRLs and stapling servers ----------------------------------------------


@pytest.fixture(scope="module")
def rlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevocationLab]:
    with start_revocation_lab(tmp_path_factory.mktemp("revocation-lab")) as running:
        yield running


@pytest.fixture
def ocsp_checker() -> Iterator[RevocationChecker]:
    checker = RevocationChecker("ocsp", 2.0)
    yield checker
    checker.close()


@pytest.fixture
def crl_checker() -> Iterator[RevocationChecker]:
    checker = RevocationChecker("crl", 2.0, max_bytes=2**20)
    yield checker
    checker.close()


@pytest.mark.slow
def test_the_ocsp_responder_says_a_revoked_certificate_is_revoked(
    rlab: RevocationLab, ocsp_checker: RevocationChecker
) -> None:
    [finding] = ocsp_checker.check(rlab.chain("revoked"))
    assert (finding.code, finding.status) == (Code.CERT_REVOKED, "error")
    assert f"OCSP responder {rlab.responders['ca'].url}" in finding.message
    assert "(reason: keyCompromise)" in finding.message
    assert f"revoked at {datetime.now(UTC):%Y-}" in finding.message


@pytest.mark.slow
def test_the_ocsp_responder_finds_nothing_wrong_with_a_good_certificate(
    rlab: RevocationLab, ocsp_checker: RevocationChecker
) -> None:
    assert ocsp_checker.check(rlab.chain("good")) == []
    assert ocsp_checker.check(rlab.chain("also-good")) == []


@pytest.mark.slow
def test_a_delegated_responder_certificate_the_issuer_signed_for_ocsp_is_accepted(
    rlab: RevocationLab, ocsp_checker: RevocationChecker
) -> None:
    [finding] = ocsp_checker.check(rlab.chain("delegated-revoked"))
    assert finding.code == Code.CERT_REVOKED
    assert "(reason: superseded)" in finding.message


@pytest.mark.slow
def test_a_responder_certificate_without_the_ocsp_signing_usage_is_refused(
    rlab: RevocationLab, ocsp_checker: RevocationChecker
) -> None:
    [finding] = ocsp_checker.check(rlab.chain("via-impostor"))
    assert (finding.code, finding.status) == (Code.REVOCATION_UNKNOWN, "warning")
    assert rlab.responders["impostor"].url in finding.message
    assert "lacks the OCSP-signing extended key usage" in finding.message


@pytest.mark.slow
def test_an_ocsp_answer_signed_by_a_stranger_is_refused(rlab: RevocationLab, ocsp_checker: RevocationChecker) -> None:
    [finding] = ocsp_checker.check(rlab.chain("via-stranger"))
    assert (finding.code, finding.status) == (Code.REVOCATION_UNKNOWN, "warning")
    assert "issuer did not sign" in finding.message


@pytest.mark.slow
def test_a_responder_nobody_runs_is_revocation_unknown_at_once(
    rlab: RevocationLab, ocsp_checker: RevocationChecker
) -> None:
    started = time.monotonic()
    [finding] = ocsp_checker.check(rlab.chain("nobody-listens"))
    assert time.monotonic() - started < 2.0
    assert (finding.code, finding.status) == (Code.REVOCATION_UNKNOWN, "warning")
    assert "could not connect (Connection refused)" in finding.message
    assert "Traceback" not in finding.message and "Error(" not in finding.message


@pytest.mark.slow
def test_a_silent_responder_costs_one_timeout_per_issuer_not_one_per_certificate(rlab: RevocationLab) -> None:
    checker = RevocationChecker("ocsp", 1.0)
    before = rlab.silent.accepted
    started = time.monotonic()
    [first] = checker.check(rlab.chain("silent-a"))
    first_took = time.monotonic() - started
    started = time.monotonic()
    [second] = checker.check(rlab.chain("silent-b"))  # another leaf of the same issuer
    second_took = time.monotonic() - started
    checker.close()
    assert 0.8 < first_took < 2.5  # the timeout, and not much more
    assert second_took < 0.5  # the failure was remembered
    assert rlab.silent.accepted - before == 1
    assert first.code == second.code == Code.REVOCATION_UNKNOWN
    assert "did not answer within 1 s" in first.message and rlab.silent.url() in first.message


@pytest.mark.slow
def test_concurrent_checks_of_a_silent_responder_wait_for_one_timeout(rlab: RevocationLab) -> None:
    checker = RevocationChecker("ocsp", 1.0)
    before = rlab.silent.accepted
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(checker.check, [rlab.chain(f"silent-{n}") for n in "abababab"]))
    took = time.monotonic() - started
    checker.close()
    assert all(codes(found) == [Code.REVOCATION_UNKNOWN] for found in results)
    assert rlab.silent.accepted - before == 1  # one connection, whatever the number of threads
    assert took < 3.0


@pytest.mark.slow
def test_the_responder_is_asked_once_however_many_checks_want_the_same_certificate(rlab: RevocationLab) -> None:
    checker = RevocationChecker("ocsp", 2.0)
    before = rlab.web.count("/ocsp")
    assert checker.check(rlab.chain("counted")) == []
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(checker.check, [rlab.chain("counted")] * 8))
    checker.close()
    assert results == [[]] * 8
    assert rlab.web.count("/ocsp") - before == 1


@pytest.mark.slow
def test_the_crl_says_a_revoked_certificate_is_revoked(rlab: RevocationLab, crl_checker: RevocationChecker) -> None:
    [finding] = crl_checker.check(rlab.chain("revoked"))
    assert (finding.code, finding.status) == (Code.CERT_REVOKED, "error")
    assert f"CRL {rlab.web.url('/ca.crl')}" in finding.message
    assert "(reason: keyCompromise)" in finding.message


@pytest.mark.slow
def test_a_certificate_the_crl_does_not_list_is_fine(rlab: RevocationLab, crl_checker: RevocationChecker) -> None:
    assert crl_checker.check(rlab.chain("good")) == []


@pytest.mark.slow
def test_one_crl_download_serves_every_certificate_of_the_issuer(rlab: RevocationLab) -> None:
    checker = RevocationChecker("crl", 2.0)
    before = rlab.web.count("/ca.crl")
    names = ["good", "revoked", "also-good", "must-staple"] * 3
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(checker.check, [rlab.chain(name) for name in names]))
    checker.close()
    assert rlab.web.count("/ca.crl") - before == 1
    assert [codes(found) for found in results[:4]] == [[], [Code.CERT_REVOKED], [], []]


@pytest.mark.slow
def test_a_crl_signed_by_another_key_is_revocation_unknown(rlab: RevocationLab, crl_checker: RevocationChecker) -> None:
    [finding] = crl_checker.check(rlab.chain("forged"))
    assert (finding.code, finding.status) == (Code.REVOCATION_UNKNOWN, "warning")
    assert finding.message == (
        f"could not check revocation with the CRL {rlab.web.url('/forged.crl')}:"
        " its signature does not verify with the issuer's key"
    )


@pytest.mark.slow
def test_a_crl_past_its_next_update_is_revocation_unknown(rlab: RevocationLab, crl_checker: RevocationChecker) -> None:
    [finding] = crl_checker.check(rlab.chain("stale"))
    assert finding.code == Code.REVOCATION_UNKNOWN
    assert "expired at" in finding.message and "(its nextUpdate)" in finding.message


@pytest.mark.slow
def test_redirects_are_not_followed(rlab: RevocationLab, crl_checker: RevocationChecker) -> None:
    before = rlab.web.count("/ca.crl")
    [finding] = crl_checker.check(rlab.chain("redirected"))
    assert finding.code == Code.REVOCATION_UNKNOWN
    assert "HTTP 302" in finding.message and "redirects are not followed" in finding.message
    assert rlab.web.count("/ca.crl") == before


@pytest.mark.slow
def test_an_answer_larger_than_max_bytes_is_refused_with_or_without_a_length(
    rlab: RevocationLab, crl_checker: RevocationChecker
) -> None:
    for name in ("huge", "huge-unsized"):
        [finding] = crl_checker.check(rlab.chain(name))
        assert finding.code == Code.REVOCATION_UNKNOWN
        assert "larger than 1 MiB" in finding.message


@pytest.mark.slow
def test_a_drip_fed_answer_ends_at_the_timeout(rlab: RevocationLab) -> None:
    checker = RevocationChecker("crl", 1.0)
    started = time.monotonic()
    [finding] = checker.check(rlab.chain("drip"))
    took = time.monotonic() - started
    checker.close()
    assert finding.code == Code.REVOCATION_UNKNOWN
    assert "did not finish answering within 1 s" in finding.message
    assert took < 2.0  # each byte came well within any per-read timeout: only the watchdog ends it


@pytest.mark.slow
def test_the_deadline_bounds_a_fetch_and_a_cut_short_fetch_is_not_remembered(rlab: RevocationLab) -> None:
    checker = RevocationChecker("crl", 5.0)
    before = rlab.silent.accepted
    for _ in range(2):
        started = time.monotonic()
        [finding] = checker.check(rlab.chain("silent-a"), deadline=started + 0.3)
        assert time.monotonic() - started < 1.0
        assert "did not answer within 0.3 s" in finding.message
    checker.close()
    assert rlab.silent.accepted - before == 2  # the responder may be fine: our deadline was short


# --- stapling, as SSLyze sees it ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stapled(rlab: RevocationLab) -> dict[str, CertificateDeploymentAnalysisResult]:
    """The deployment SSLyze reports for each stapling server of the lab, by leaf name."""
    requests = [
        ServerScanRequest(
            server_location=ServerNetworkLocation(
                hostname=rlab.leaves[name].hostname, port=server.port, ip_address=HOST
            ),
            network_configuration=ServerNetworkConfiguration(
                tls_server_name_indication=rlab.leaves[name].hostname, network_timeout=5
            ),
            scan_commands={ScanCommand.CERTIFICATE_INFO},
            scan_commands_extra_arguments=ScanCommandsExtraArguments(
                certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(rlab.authority.pem))
            ),
        )
        for name, server in rlab.stapling.items()
    ]
    names = {request.uuid: name for request, name in zip(requests, rlab.stapling, strict=True)}
    scanner = Scanner()
    scanner.queue_scans(requests)
    deployments: dict[str, CertificateDeploymentAnalysisResult] = {}
    for result in scanner.get_results():
        name = names[result.uuid]  # a result has its request's uuid
        assert result.scan_status == ServerScanStatusEnum.COMPLETED, (name, result.connectivity_error_trace)
        assert result.scan_result is not None
        attempt = result.scan_result.certificate_info
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, (name, attempt.error_trace)
        assert attempt.result is not None
        deployments[name] = attempt.result.certificate_deployments[0]
    return deployments


def staple_verdict(deployment: CertificateDeploymentAnalysisResult) -> list[Finding]:
    return stapled_findings(
        deployment.received_certificate_chain[0],
        deployment.leaf_certificate_has_must_staple_extension,
        deployment.ocsp_response,
        deployment.ocsp_response_is_trusted,
    )


@pytest.mark.slow
def test_sslyze_reads_a_stapled_revoked_response_as_revoked(
    stapled: dict[str, CertificateDeploymentAnalysisResult],
) -> None:
    deployment = stapled["revoked"]
    assert deployment.ocsp_response is not None and deployment.ocsp_response_is_trusted is True
    [finding] = staple_verdict(deployment)
    assert (finding.code, finding.status) == (Code.CERT_REVOKED, "error")
    assert "stapled OCSP response" in finding.message and "keyCompromise" in finding.message


@pytest.mark.slow
def test_a_good_stapled_response_has_no_findings(stapled: dict[str, CertificateDeploymentAnalysisResult]) -> None:
    deployment = stapled["good"]
    assert deployment.ocsp_response is not None and deployment.ocsp_response_is_trusted is True
    assert staple_verdict(deployment) == []


@pytest.mark.slow
def test_a_must_staple_certificate_served_without_a_staple_is_an_error(
    stapled: dict[str, CertificateDeploymentAnalysisResult],
) -> None:
    deployment = stapled["must-staple"]
    assert deployment.leaf_certificate_has_must_staple_extension
    assert deployment.ocsp_response is None
    assert codes(staple_verdict(deployment)) == [Code.MUST_STAPLE_MISSING]
