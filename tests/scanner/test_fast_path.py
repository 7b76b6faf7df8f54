"""The fast path (one handshake, the chain judged once) finds exactly what the full SSLyze scan
finds, on every lab case: the original's, the checks' (lab/pki_cases.py), and the endpoints that
cannot be analysed; and its verdicts are shared by the endpoints that serve one chain."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sslyze.errors import ConnectionToServerFailed
from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument, CertificateInfoImplementation
from sslyze.plugins.plugin_base import ScanJobResult
from sslyze.server_connectivity import ServerConnectivityInfo, check_connectivity_to_server
from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

from lab import ALL_CASES, Lab, LabEndpoint, start_lab
from lab.pki_cases import CHECK_CASES
from services.scanner import certificate_info
from services.scanner.analysis import analyse
from services.scanner.chain_judge import ChainJudge
from services.scanner.chains import deployment_from
from services.scanner.scan import Engine, Outcome, ScanSettings, Target
from shared.messages import Finding

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


@pytest.fixture(scope="module")
def every_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    cases = [*ALL_CASES, *CHECK_CASES]
    with start_lab(tmp_path_factory.mktemp("fast-path"), cases=cases, ip_prefix="127.0.14.") as lab:
        yield lab


def scan_all(lab: Lab, mode: str, names: list[tuple[int, str]] | None = None) -> list[Outcome]:
    engine = Engine(ScanSettings(network_timeout=1.0, scan_timeout=10.0, custom_ca_file=lab.ca_file))
    targets = [Target(e.ip, e.port, e.hostname, mode=mode) for e in lab.endpoints]
    targets += [Target(lab.endpoints[i].ip, lab.port, name, mode=mode) for i, name in names or []]
    try:
        outcomes = dict(engine.scan_many(targets))
    finally:
        engine.close()
    return [outcomes[i] for i in range(len(targets))]


def test_the_fast_path_finds_exactly_what_the_full_scan_finds_on_every_lab_case(every_case: Lab) -> None:
    fast, full = scan_all(every_case, "fast"), scan_all(every_case, "full")
    for endpoint, quick, thorough in zip(every_case.endpoints, fast, full, strict=True):
        assert quick.findings == thorough.findings, endpoint.case
        assert quick.certificate == thorough.certificate, endpoint.case
        assert tuple((f.code, f.message) for f in quick.findings) == endpoint.expected, endpoint.case


def test_names_a_chain_does_not_cover_are_judged_per_name_from_one_shared_verdict(every_case: Lab) -> None:
    valid = next(i for i, e in enumerate(every_case.endpoints) if e.case == "valid")
    names = [(valid, "www.lab.test"), (valid, "other.lab.test")]  # the valid chain, served for names it lacks
    engine = Engine(ScanSettings(network_timeout=1.0, scan_timeout=10.0, custom_ca_file=every_case.ca_file))
    endpoint = every_case.endpoints[valid]
    try:
        first = engine.scan_one(Target(endpoint.ip, endpoint.port, endpoint.hostname))
        misnamed = [engine.scan_one(Target(endpoint.ip, endpoint.port, name)) for _, name in names]
        judged = engine._judge  # the cache's own counters: one analysis, two reuses
        assert (judged.misses, judged.hits) == (1, 2)
    finally:
        engine.close()
    assert first.findings == []
    assert all([f.code for f in outcome.findings] == ["HOSTNAME_MISMATCH"] for outcome in misnamed)
    thorough = scan_all(every_case, "full", names)[-2:]
    assert [o.findings for o in misnamed] == [o.findings for o in thorough]


def certificate_info_jobs(endpoint: LabEndpoint, ca_file: Path) -> tuple[ServerConnectivityInfo, list[ScanJobResult]]:
    location = ServerNetworkLocation(hostname=endpoint.hostname, port=endpoint.port, ip_address=endpoint.ip)
    network = ServerNetworkConfiguration(tls_server_name_indication=endpoint.hostname, network_timeout=2)
    server = ServerConnectivityInfo(location, network, check_connectivity_to_server(location, network))
    extra = CertificateInfoExtraArgument(custom_ca_file=ca_file)
    results = []
    for job in CertificateInfoImplementation.scan_jobs_for_scan_command(server, extra):
        function: Callable[..., Any] = job.function_to_call
        try:
            results.append(ScanJobResult(_return_value=function(*job.function_arguments), _exception=None))
        except Exception as exc:
            results.append(ScanJobResult(_return_value=None, _exception=exc))
    return server, results


def sslyze_own_findings(
    server: ServerConnectivityInfo, results: list[ScanJobResult], sni: str, ca_file: Path, now: datetime
) -> list[Finding]:
    """SSLyze's analysis of CERTIFICATE_INFO's handshakes, then our per-store verdicts: the reference."""
    settings = ScanSettings(custom_ca_file=ca_file)
    result = CertificateInfoImplementation.result_for_completed_scan_jobs(server, results)
    deployments = [deployment_from(d, sni, ca_file) for d in result.certificate_deployments]
    return analyse(deployments, settings.min_time_to_expiration, now, settings.checks)


def judged_findings(judge: ChainJudge, results: list[ScanJobResult], sni: str, now: datetime) -> list[Finding]:
    """What full mode does with the same handshakes."""
    settings = ScanSettings()
    deployments = [judge.judge(c.chain_pem, c.ocsp, sni).deployment for c in certificate_info.sni_chains(results)]
    return analyse(deployments, settings.min_time_to_expiration, now, settings.checks)


def outcome_of(analysis: Callable[[], list[Finding]]) -> list[Finding] | str:
    try:
        return analysis()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_full_mode_judges_what_sslyzes_own_analysis_judges_on_every_lab_case(every_case: Lab) -> None:
    """Full mode judges the chains CERTIFICATE_INFO's handshakes received with the ChainJudge, not
    with SSLyze's analysis of them (every store, SNI and no-SNI): on the same handshakes both give
    the same findings, and fail the same way."""
    judge = ChainJudge(every_case.ca_file, ScanSettings().checks)
    now = datetime.now(UTC)
    compared = 0
    for endpoint in every_case.endpoints:
        try:
            server, results = certificate_info_jobs(endpoint, every_case.ca_file)
        except ConnectionToServerFailed:
            continue  # no TLS there: the handshake's findings (the test above)
        sni = endpoint.hostname
        reference = functools.partial(sslyze_own_findings, server, results, sni, every_case.ca_file, now)
        ours = functools.partial(judged_findings, judge, results, sni, now)
        assert outcome_of(ours) == outcome_of(reference), endpoint.case
        compared += 1
    assert compared >= len(every_case.endpoints) // 2  # most cases have a chain to judge
