"""A certificate list over OpenSSL's 100 KiB limit: every handshake of SSLyze's connectivity test
dies of "excessive message size" and SSLyze says it found no TLS version; the engine then spends one
handshake of its own, and only then, to name the cause: ``CERT_TOO_LARGE``.

Connections are counted at the server and compared with what SSLyze itself spends on the same server
(its connectivity test, or a whole CERTIFICATE_INFO scan through ``sslyze.Scanner``): the engine adds
its own handshake, plus the diagnosis only when the connectivity test found no TLS version; in full
mode on a TLS 1.3 server its handshake stands for SSLyze's connectivity test and first job."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommand,
    ScanCommandsExtraArguments,
    Scanner,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.errors import ServerTlsConfigurationNotSupported
from sslyze.server_connectivity import check_connectivity_to_server
from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

from lab.certs import DAY, Authority, Issued, issue, make_authority
from services.scanner.probe import CERT_TOO_LARGE
from services.scanner.scan import Engine, Outcome, ScanSettings, Target
from shared import findings

from .starttls_servers import CountingTlsServer, server_context, smtp_server

pytestmark = pytest.mark.slow

BIG = "big.lab.test"
OK = "ok.lab.test"
SANS = 10_000
NETWORK_TIMEOUT = 1.0
MARGIN = 1.0
TOO_LARGE = [(findings.Code.CERT_TOO_LARGE, "error", CERT_TOO_LARGE)]


@dataclass(frozen=True)
class Contexts:
    ca_file: Path
    big: ssl.SSLContext  # a leaf with 10,000 DNS SANs (~200 KB) and the intermediate
    normal: ssl.SSLContext
    tls12: ssl.SSLContext  # the normal chain, TLS 1.2 at most


@pytest.fixture(scope="module")
def pki() -> Authority:
    return make_authority()


@pytest.fixture(scope="module")
def big_leaf(pki: Authority) -> Issued:
    names = [BIG] + [f"host{i}.{BIG}" for i in range(SANS - 1)]
    return issue(BIG, issuer=pki.intermediate, san=names, not_before=pki.now - DAY, not_after=pki.now + 300 * DAY)


@pytest.fixture(scope="module")
def contexts(pki: Authority, big_leaf: Issued, tmp_path_factory: pytest.TempPathFactory) -> Contexts:
    directory = tmp_path_factory.mktemp("too-large")
    ca_file = directory / "lab-ca.pem"
    ca_file.write_bytes(pki.root.pem)
    big = server_context(directory, "big", [big_leaf, pki.intermediate])
    normal = server_context(directory, "ok", [pki.leaf(OK), pki.intermediate])
    tls12 = server_context(directory, "ok12", [pki.leaf(OK), pki.intermediate])
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    return Contexts(ca_file, big, normal, tls12)


@pytest.fixture(scope="module")
def engine(contexts: Contexts) -> Iterator[Engine]:
    scanner = Engine(ScanSettings(network_timeout=NETWORK_TIMEOUT, scan_timeout=10.0, custom_ca_file=contexts.ca_file))
    yield scanner
    assert scanner.close()


def rows(outcome: Outcome) -> list[tuple[str, str, str]]:
    return [(f.code, f.status, f.message) for f in outcome.findings]


def sslyze_connectivity_connections(server: CountingTlsServer, sni: str, succeeds: bool = False) -> int:
    """What SSLyze's connectivity test alone costs against ``server`` (unless ``succeeds``, it finds
    no TLS version)."""
    server.reset()
    location = ServerNetworkLocation(hostname=sni, port=server.port, ip_address=server.ip)
    network = ServerNetworkConfiguration(tls_server_name_indication=sni, network_timeout=2, network_max_retries=1)
    if succeeds:
        check_connectivity_to_server(location, network)
    else:
        with pytest.raises(ServerTlsConfigurationNotSupported, match="could not find a TLS version"):
            check_connectivity_to_server(location, network)
    time.sleep(0.1)  # the count is taken at accept: let the last connection land
    count = server.accepted
    server.reset()
    return count


def sslyze_scan_connections(server: CountingTlsServer, sni: str, ca_file: Path) -> int:
    """What SSLyze's own CERTIFICATE_INFO scan (connectivity test and jobs) costs against ``server``."""
    server.reset()
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=sni, port=server.port, ip_address=server.ip),
        network_configuration=ServerNetworkConfiguration(tls_server_name_indication=sni, network_max_retries=1),
        scan_commands={ScanCommand.CERTIFICATE_INFO},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file)
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED
    time.sleep(0.1)  # the count is taken at accept: let the last job's connection land
    count = server.accepted
    server.reset()
    return count


def test_a_certificate_list_over_100_kib_is_one_cert_too_large_finding(contexts: Contexts, engine: Engine) -> None:
    with CountingTlsServer(contexts.big) as server:
        outcome = engine.scan_one(Target(server.ip, server.port, BIG))
    assert rows(outcome) == TOO_LARGE
    assert findings.Code.CERT_TOO_LARGE.category == findings.Category.CERTIFICATE


def test_the_diagnosis_costs_one_connection_beyond_the_handshake_and_sslyzes_test(
    contexts: Contexts, engine: Engine
) -> None:
    with CountingTlsServer(contexts.big) as server:
        sslyze_alone = sslyze_connectivity_connections(server, BIG)
        outcome = engine.scan_one(Target(server.ip, server.port, BIG))
        assert rows(outcome) == TOO_LARGE
        assert server.accepted == 1 + sslyze_alone + 1  # handshake, SSLyze's connectivity test, diagnosis


def test_a_full_scan_of_a_tls_1_3_server_costs_sslyzes_scan_without_its_connectivity_test(
    contexts: Contexts, engine: Engine
) -> None:
    with CountingTlsServer(contexts.normal) as server:
        connectivity = sslyze_connectivity_connections(server, OK, succeeds=True)
        sslyze_alone = sslyze_scan_connections(server, OK, contexts.ca_file)
        outcome = engine.scan_one(Target(server.ip, server.port, OK, mode="full"))
        time.sleep(0.1)
        assert rows(outcome) == []
        # our handshake is the reachability test, the connectivity test and CERTIFICATE_INFO's first job
        assert connectivity >= 1 and server.accepted == sslyze_alone - connectivity
        server.reset()
        assert rows(engine.scan_one(Target(server.ip, server.port, OK))) == []
        time.sleep(0.1)
        assert server.accepted == 1  # the fast path: one handshake, which was the probe too


def test_a_full_scan_of_a_tls_1_2_server_costs_one_handshake_more_than_sslyzes_scan(
    contexts: Contexts, engine: Engine
) -> None:
    with CountingTlsServer(contexts.tls12) as server:
        sslyze_alone = sslyze_scan_connections(server, OK, contexts.ca_file)
        outcome = engine.scan_one(Target(server.ip, server.port, OK, mode="full"))
        time.sleep(0.1)
        assert rows(outcome) == []
        assert server.accepted == 1 + sslyze_alone  # our handshake, then exactly what SSLyze spends


def test_a_server_refusing_every_handshake_is_not_mistaken_for_a_large_certificate(engine: Engine) -> None:
    """A handshake_failure alert to every hello: SSLyze finds no TLS version, the diagnosis sees an
    alert, not the size limit, so the finding stays SSLyze's (one diagnosis connection more)."""
    with CountingTlsServer(None) as server:
        sslyze_alone = sslyze_connectivity_connections(server, OK)
        outcome = engine.scan_one(Target(server.ip, server.port, OK))
        assert server.accepted == 1 + sslyze_alone + 1
    no_version = (
        "TLS handshake failed: TLS probing failed:"
        " could not find a TLS version and cipher suite supported by the server"
    )
    assert rows(outcome) == [(findings.Code.TLS_HANDSHAKE_FAILED, "error", no_version)]


def test_a_too_large_certificate_behind_starttls_is_diagnosed_through_starttls(contexts: Contexts) -> None:
    with smtp_server("127.0.0.1", contexts.big) as port:
        settings = ScanSettings(
            network_timeout=NETWORK_TIMEOUT,
            scan_timeout=10.0,
            custom_ca_file=contexts.ca_file,
            starttls=((port, "smtp"),),
        )
        engine = Engine(settings)
        try:
            outcome = engine.scan_one(Target("127.0.0.1", port, BIG))
        finally:
            assert engine.close()
    assert rows(outcome) == TOO_LARGE


def test_the_diagnosis_connection_ends_at_the_deadline(contexts: Contexts) -> None:
    """The server answers the probe and SSLyze's test with the large certificate, then never answers the
    diagnosis' hello: the endpoint is reported timed out at its deadline and that connection is closed."""
    scan_timeout = 3.0
    with CountingTlsServer(contexts.big) as counting:
        hang_from = 1 + sslyze_connectivity_connections(counting, BIG)
    settings = ScanSettings(network_timeout=10.0, scan_timeout=scan_timeout, custom_ca_file=contexts.ca_file)
    engine = Engine(settings)
    try:
        with CountingTlsServer(contexts.big, hang_from=hang_from) as server:
            start = time.monotonic()
            outcome = engine.scan_one(Target(server.ip, server.port, BIG))
            reported = time.monotonic() - start
            deadline = f"scan did not finish within {scan_timeout:g}s"
            assert rows(outcome) == [(findings.Code.SCAN_TIMEOUT, "error", deadline)]
            assert scan_timeout * 0.9 <= reported < scan_timeout + MARGIN
            until = time.monotonic() + MARGIN
            while not server.closed_by_client and time.monotonic() < until:
                time.sleep(0.02)
            assert server.accepted == hang_from + 1  # the diagnosis was the hanging one
            assert len(server.closed_by_client) == 1 and server.closed_by_client[0] <= start + scan_timeout + MARGIN
    finally:
        assert engine.close()
