"""The fast path (one handshake, the chain judged once) finds exactly what the full SSLyze scan
finds, on every lab case: the original's, the checks' (lab/pki_cases.py), and the endpoints that
cannot be analysed; and its verdicts are shared by the endpoints that serve one chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab import ALL_CASES, Lab, start_lab
from lab.pki_cases import CHECK_CASES
from services.scanner.scan import Engine, Outcome, ScanSettings, Target

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
