"""What the full scan takes from its first handshake, and how it reads CERTIFICATE_INFO's jobs:
SSLyze's own rules for failed jobs, without SSLyze's analysis (the lab cases compare the findings:
tests/scanner/test_fast_path.py)."""

from __future__ import annotations

import pytest
from nassl._nassl import OpenSSLError
from sslyze.errors import ServerRejectedTlsHandshake
from sslyze.plugins.plugin_base import ScanJobResult
from sslyze.server_connectivity import ClientAuthRequirementEnum, TlsVersionEnum
from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

from services.scanner.certificate_info import first_job_result, probing_from, sni_chains
from services.scanner.handshake import Served

LEAF_A, LEAF_B, CA = "leaf-a", "leaf-b", "intermediate"


def chain(*pems: str, sni: bool = True) -> ScanJobResult:
    return ScanJobResult(_return_value=(list(pems), None, None, sni), _exception=None)


def failed(exc: Exception) -> ScanJobResult:
    return ScanJobResult(_return_value=None, _exception=exc)


def rejected(message: str = "handshake failure") -> ServerRejectedTlsHandshake:
    location = ServerNetworkLocation(hostname="x.lab.test", port=443, ip_address="127.0.0.1")
    network = ServerNetworkConfiguration(tls_server_name_indication="x.lab.test")
    return ServerRejectedTlsHandshake(location, network, message)


def test_a_tls_1_3_handshake_tells_what_sslyzes_connectivity_test_would() -> None:
    probed = probing_from(Served((LEAF_A,), None, "TLS_AES_256_GCM_SHA384"))
    assert probed is not None
    assert probed.highest_tls_version_supported == TlsVersionEnum.TLS_1_3
    assert probed.cipher_suite_supported == "TLS_AES_256_GCM_SHA384"
    assert probed.client_auth_requirement == ClientAuthRequirementEnum.DISABLED


@pytest.mark.parametrize(
    "served",
    [
        pytest.param(Served((LEAF_A,), None, "ECDHE-RSA-AES256-GCM-SHA384"), id="tls-1.2-or-older"),
        pytest.param(Served((LEAF_A,), None, "TLS_AES_128_GCM_SHA256", True), id="client-certificate-asked"),
        pytest.param(Served((LEAF_A,), None), id="suite-unknown"),
    ],
)
def test_any_other_handshake_leaves_the_connectivity_test_to_sslyze(served: Served) -> None:
    assert probing_from(served) is None


def test_the_handshake_is_read_as_certificate_info_s_first_job() -> None:
    (served,) = sni_chains([first_job_result(Served((LEAF_A, CA), None, "TLS_AES_128_GCM_SHA256"))])
    assert served.chain_pem == (LEAF_A, CA)


def test_chains_are_distinct_by_leaf_in_the_order_first_seen_the_last_one_kept() -> None:
    results = [chain(LEAF_A), chain(LEAF_B, CA), chain(LEAF_A, CA), chain(LEAF_B, sni=False)]
    assert [s.chain_pem for s in sni_chains(results)] == [(LEAF_A, CA), (LEAF_B, CA)]


def test_the_chain_without_sni_is_no_chain_to_judge() -> None:
    assert [s.chain_pem for s in sni_chains([chain(LEAF_A), failed(rejected()), chain(LEAF_B, sni=False)])] == [
        (LEAF_A,)
    ]


def test_when_every_job_failed_the_first_failure_is_the_scan_s() -> None:
    first = rejected("first")
    with pytest.raises(ServerRejectedTlsHandshake) as raised:
        sni_chains([failed(first), failed(rejected("second")), failed(OpenSSLError("unrecognized name"))])
    assert raised.value is first


def test_a_server_without_certificates_has_no_chain_and_no_error() -> None:
    anonymous = ValueError("peer did not present a certificate")
    assert sni_chains([failed(anonymous), failed(rejected()), failed(anonymous)]) == []


def test_an_unknown_failure_of_a_job_is_raised_as_sslyze_raises_it() -> None:
    with pytest.raises(OpenSSLError, match="bad record mac"):
        sni_chains([chain(LEAF_A), failed(OpenSSLError("bad record mac"))])


def test_only_the_no_sni_job_working_is_an_error_not_an_empty_scan() -> None:
    with pytest.raises(ValueError, match="no handshake with SNI"):
        sni_chains([failed(rejected()), failed(rejected()), chain(LEAF_A, sni=False)])
