"""Revocation through the real engine: what a stapling server sends, and the opt-in active checks,
become the endpoint's findings (real ``openssl s_server`` and ``openssl ocsp``, tests/scanner/ocsp_lab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.scanner.scan import Engine, ScanSettings, Target
from shared.findings import Code
from shared.messages import Finding

from .ocsp_lab import HOST, Process, RevocationLab, start_revocation_lab

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


@pytest.fixture(scope="module")
def rlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevocationLab]:
    with start_revocation_lab(tmp_path_factory.mktemp("revocation-engine")) as running:
        yield running


def scan(rlab: RevocationLab, server: Process, name: str, **settings: object) -> list[Finding]:
    # The lab's certificates live 30 days: no expiry warning in the way of what is tested here.
    settings.setdefault("min_time_to_expiration", 0)
    engine = Engine(
        ScanSettings(network_timeout=2.0, scan_timeout=10.0, custom_ca_file=Path(rlab.authority.pem), **settings)
    )
    try:
        return engine.scan_one(Target(HOST, server.port, rlab.leaves[name].hostname)).findings
    finally:
        engine.close()


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def test_a_stapled_revoked_response_makes_the_endpoint_revoked(rlab: RevocationLab) -> None:
    found = scan(rlab, rlab.stapling["revoked"], "revoked")
    assert codes(found) == [Code.CERT_REVOKED]
    assert "stapled OCSP response" in found[0].message


def test_a_good_staple_leaves_a_healthy_endpoint_without_findings(rlab: RevocationLab) -> None:
    assert scan(rlab, rlab.stapling["good"], "good") == []


def test_a_must_staple_leaf_served_without_a_staple_is_an_error(rlab: RevocationLab) -> None:
    assert codes(scan(rlab, rlab.stapling["must-staple"], "must-staple")) == [Code.MUST_STAPLE_MISSING]


def test_without_a_staple_a_revoked_leaf_passes_unless_active_checks_are_on(rlab: RevocationLab) -> None:
    assert scan(rlab, rlab.unstapled["revoked"], "revoked") == []  # the default: no request to the CA
    found = scan(rlab, rlab.unstapled["revoked"], "revoked", revocation="ocsp")
    assert codes(found) == [Code.CERT_REVOKED]
    assert f"OCSP responder {rlab.responders['ca'].url}" in found[0].message
    assert codes(scan(rlab, rlab.unstapled["revoked"], "revoked", revocation="crl")) == [Code.CERT_REVOKED]


def test_active_checks_find_nothing_wrong_with_a_good_leaf(rlab: RevocationLab) -> None:
    assert scan(rlab, rlab.unstapled["good"], "good", revocation="ocsp") == []
    assert scan(rlab, rlab.unstapled["good"], "good", revocation="crl") == []
