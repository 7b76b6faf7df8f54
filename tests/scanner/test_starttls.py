"""STARTTLS by port, through the real engine: aiosmtpd and a throwaway PostgreSQL cluster on
loopback serve lab certificates behind STARTTLS; the certificate behind it is judged exactly like a
direct one; a server that does not offer STARTTLS is one clear finding; a server that never finishes
the exchange is ended by the deadline like any other."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sslyze.connection_helpers import opportunistic_tls_helpers as helpers
from sslyze.errors import (
    ConnectionToServerFailed,
    ConnectionToServerTimedOut,
    ServerRejectedOpportunisticTlsNegotiation,
)
from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

from lab.certs import Authority, make_authority
from services.scanner import starttls
from services.scanner.scan import Engine, Outcome, ScanSettings, Target, connection_failure
from shared import findings
from shared.config import STARTTLS_PROTOCOLS, ScanMode

from .starttls_servers import CountingTlsServer, PostgresCluster, StallingServer, server_context, smtp_server

pytestmark = pytest.mark.slow

IP = "127.0.0.1"
MX = "mx.lab.test"
DB = "db.lab.test"
NETWORK_TIMEOUT = 1.0
MARGIN = 1.0


@dataclass(frozen=True)
class Servers:
    ca_file: Path
    smtp: int  # STARTTLS, a valid chain for MX
    smtp_expired: int  # STARTTLS, an expired leaf for MX
    smtp_plain: int  # no STARTTLS in its EHLO reply
    postgres: int  # ssl = on, a valid chain for DB
    postgres_plain: int  # ssl = off
    direct_expired: int  # the expired chain again, over direct TLS

    def starttls(self) -> tuple[tuple[int, str], ...]:
        smtp = ((port, "smtp") for port in (self.smtp, self.smtp_expired, self.smtp_plain))
        return (*smtp, (self.postgres, "postgres"), (self.postgres_plain, "postgres"))


@pytest.fixture(scope="module")
def pki() -> Authority:
    return make_authority()


@pytest.fixture(scope="module")
def servers(pki: Authority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Every server of the module, started once."""
    directory = tmp_path_factory.mktemp("starttls")
    ca_file = directory / "lab-ca.pem"
    ca_file.write_bytes(pki.root.pem)
    valid = server_context(directory, "mx", [pki.leaf(MX), pki.intermediate])
    expired_chain = [pki.leaf(MX, start_days=-400, days=365), pki.intermediate]
    expired = server_context(directory, "mx-expired", expired_chain)
    cluster = PostgresCluster()
    try:
        postgres = cluster.start("ssl-on", [pki.leaf(DB), pki.intermediate])
        postgres_plain = cluster.start("ssl-off", None)
        with (
            smtp_server(IP, valid) as smtp,
            smtp_server(IP, expired) as smtp_expired,
            smtp_server(IP, None) as smtp_plain,
            CountingTlsServer(expired) as direct,
        ):
            yield Servers(ca_file, smtp, smtp_expired, smtp_plain, postgres, postgres_plain, direct.port)
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def engine(servers: Servers) -> Iterator[Engine]:
    settings = ScanSettings(
        network_timeout=NETWORK_TIMEOUT, scan_timeout=10.0, custom_ca_file=servers.ca_file, starttls=servers.starttls()
    )
    scanner = Engine(settings)
    yield scanner
    assert scanner.close()


def rows(outcome: Outcome) -> list[tuple[str, str, str]]:
    return [(f.code, f.status, f.message) for f in outcome.findings]


def test_a_healthy_smtp_server_behind_starttls_has_no_findings(servers: Servers, engine: Engine) -> None:
    outcome = engine.scan_one(Target(IP, servers.smtp, MX))
    assert rows(outcome) == []
    assert outcome.certificate is not None  # the certificate behind STARTTLS was read and judged


def test_an_expired_leaf_behind_starttls_is_reported_as_on_direct_tls(servers: Servers, engine: Engine) -> None:
    behind_starttls = engine.scan_one(Target(IP, servers.smtp_expired, MX))
    direct = engine.scan_one(Target(IP, servers.direct_expired, MX))
    assert rows(behind_starttls) == [(findings.Code.CERT_EXPIRED, "error", "certificate has expired")]
    assert rows(behind_starttls) == rows(direct)
    assert behind_starttls.certificate == direct.certificate


def test_an_smtp_server_without_starttls_is_one_clear_finding(servers: Servers, engine: Engine) -> None:
    outcome = engine.scan_one(Target(IP, servers.smtp_plain, MX))
    message = f"server on port {servers.smtp_plain} does not offer STARTTLS (smtp)"
    assert rows(outcome) == [(findings.Code.STARTTLS_NOT_OFFERED, "error", message)]
    assert findings.Code.STARTTLS_NOT_OFFERED.category == findings.Category.CONNECTION


def test_a_postgres_server_with_ssl_on_has_no_findings(servers: Servers, engine: Engine) -> None:
    outcome = engine.scan_one(Target(IP, servers.postgres, DB))
    assert rows(outcome) == []
    assert outcome.certificate is not None


def test_a_postgres_server_with_ssl_off_is_one_clear_finding(servers: Servers, engine: Engine) -> None:
    outcome = engine.scan_one(Target(IP, servers.postgres_plain, DB))
    message = f"server on port {servers.postgres_plain} does not offer STARTTLS (postgres)"
    assert rows(outcome) == [(findings.Code.STARTTLS_NOT_OFFERED, "error", message)]


def test_a_port_without_a_starttls_protocol_is_probed_as_direct_tls_as_before(servers: Servers) -> None:
    """The same SMTP server, its port not mapped: the probe's ClientHello gets SMTP back, as today."""
    engine = Engine(ScanSettings(network_timeout=NETWORK_TIMEOUT, scan_timeout=10.0, custom_ca_file=servers.ca_file))
    try:
        outcome = engine.scan_one(Target(IP, servers.smtp, MX))
    finally:
        assert engine.close()
    plaintext = "TLS handshake failed: server answered in plaintext, not TLS"
    assert rows(outcome) == [(findings.Code.TLS_HANDSHAKE_FAILED, "error", plaintext)]


def test_a_refused_starttls_port_is_connect_refused_as_on_any_port(engine: Engine, servers: Servers) -> None:
    port = servers.smtp_plain  # mapped to smtp; nothing listens there on another loopback address
    outcome = engine.scan_one(Target("127.0.0.44", port, MX))
    assert rows(outcome) == [(findings.Code.CONNECT_REFUSED, "error", "connection refused")]


# connections a silent or drip-feeding STARTTLS server sees: the fast path's one; in full mode the
# probe's TCP connect, then the connectivity test's exchange
CONNECTIONS = {"fast": 1, "full": 2}


@pytest.mark.parametrize("mode", ["fast", "full"])
@pytest.mark.parametrize("protocol", ["smtp", "postgres"])
def test_a_silent_starttls_server_costs_one_network_timeout(servers: Servers, protocol: str, mode: ScanMode) -> None:
    """Accepts and never says a word: the connect succeeds, the exchange times out once."""
    with StallingServer(drip=False) as server:
        settings = ScanSettings(
            network_timeout=NETWORK_TIMEOUT,
            scan_timeout=10.0,
            custom_ca_file=servers.ca_file,
            starttls=((server.port, protocol),),
            scan_mode=mode,
        )
        engine = Engine(settings)
        try:
            outcome = engine.scan_one(Target(server.ip, server.port, MX))
        finally:
            assert engine.close()
        assert server.wait_closed(MARGIN)
        message = f"STARTTLS failed on port {server.port} ({protocol}): the server did not answer in time"
        assert rows(outcome) == [(findings.Code.CONNECT_TIMEOUT, "error", message)]
        assert NETWORK_TIMEOUT * 0.9 <= outcome.duration_s < NETWORK_TIMEOUT + MARGIN
        assert len(server.connections) == CONNECTIONS[mode]


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_a_server_drip_feeding_its_smtp_greeting_is_cut_off_at_the_deadline(servers: Servers, mode: ScanMode) -> None:
    """A greeting that never ends, one byte every half second: no socket operation ever waits the
    network timeout, so only the deadline's shutdown of SSLyze's STARTTLS socket ends it (that socket
    came from the hooked direct-connect function, or it would run on until the server gives up)."""
    scan_timeout, network_timeout = 3.0, 2.0
    with StallingServer(drip=True, interval=0.5) as server:
        settings = ScanSettings(
            network_timeout=network_timeout,
            scan_timeout=scan_timeout,
            custom_ca_file=servers.ca_file,
            starttls=((server.port, "smtp"),),
            scan_mode=mode,
        )
        engine = Engine(settings)
        try:
            start = time.monotonic()
            outcome = engine.scan_one(Target(server.ip, server.port, MX))
            reported = time.monotonic() - start
            assert rows(outcome) == [
                (findings.Code.SCAN_TIMEOUT, "error", f"scan did not finish within {scan_timeout:g}s")
            ]
            assert scan_timeout * 0.9 <= reported < scan_timeout + MARGIN
            assert server.wait_closed(2 * MARGIN)
            assert len(server.connections) == CONNECTIONS[mode]
            assert max(c.closed_at or 0.0 for c in server.connections) <= start + scan_timeout + MARGIN
        finally:
            closing = time.monotonic()
            idle = engine.close()
        assert idle and time.monotonic() - closing < MARGIN


def test_every_protocol_of_the_config_is_one_sslyze_speaks() -> None:
    network = ServerNetworkConfiguration(tls_server_name_indication="chat.lab.test")
    for protocol in STARTTLS_PROTOCOLS:
        configured = starttls.configure(network, protocol)
        assert configured.tls_opportunistic_encryption is starttls.protocol_of(protocol)
        assert configured.tls_server_name_indication == "chat.lab.test"
    assert starttls.configure(network, "xmpp").xmpp_to_hostname == "chat.lab.test"
    assert starttls.configure(network, "smtp").smtp_ehlo_hostname == starttls.SMTP_EHLO_HOSTNAME


def _failure(protocol: str, exc_type: type[ConnectionToServerFailed], message: str) -> tuple[str, str]:
    network = starttls.configure(ServerNetworkConfiguration(tls_server_name_indication=MX), protocol)
    location = ServerNetworkLocation(hostname=MX, port=2525, ip_address=IP)
    finding = connection_failure(
        exc_type(server_location=location, network_configuration=network, error_message=message)
    )
    return finding.code, finding.message


def test_every_refusal_sslyze_words_for_a_protocol_is_starttls_not_offered() -> None:
    """SSLyze's own wording, read from its helpers (so a reworded release fails here, not in production)."""
    refusals = {
        "imap": helpers._ImapHelper.ERR_NO_STARTTLS,
        "pop3": helpers._Pop3Helper.ERR_NO_STARTTLS,
        "ftp": helpers._FtpHelper.ERR_NO_STARTTLS,
        "postgres": helpers._PostgresHelper.ERR_NO_STARTTLS,
        "rdp": helpers._RdpHelper.ERR_NO_STARTTLS,
        "ldap": "LDAP AUTH TLS was rejected; returned: b'0\\x0c\\x02\\x01\\x01x\\x07\\n\\x015'",
        "xmpp": "XMPP STARTTLS not supported",
        "smtp": "Server does not support STARTTLS with SMTP",
    }
    for protocol, message in refusals.items():
        code, text = _failure(protocol, ServerRejectedOpportunisticTlsNegotiation, message)
        assert (code, text) == (
            findings.Code.STARTTLS_NOT_OFFERED,
            f"server on port 2525 does not offer STARTTLS ({protocol})",
        )


def test_other_starttls_failures_read_as_sentences_without_library_dumps() -> None:
    rejected = ServerRejectedOpportunisticTlsNegotiation
    cases = {
        ("smtp", rejected, "SMTP STARTTLS rejected: TLS not available\x00 due to temporary reason"): (
            findings.Code.STARTTLS_NOT_OFFERED,
            "server on port 2525 does not offer STARTTLS (smtp): it refused the STARTTLS command"
            " (TLS not available due to temporary reason)",
        ),
        ("smtp", rejected, "Server did not send a '220 service ready' SMTP message: go away"): (
            findings.Code.CONNECT_ERROR,
            "STARTTLS failed on port 2525 (smtp): the server did not greet with 220 service ready",
        ),
        (
            "smtp",
            rejected,
            "Unexpected error while performing the SMTP EHLO handshake: Connection unexpectedly closed",
        ): (
            findings.Code.CONNECT_ERROR,
            "STARTTLS failed on port 2525 (smtp): the server closed the connection",
        ),
        ("xmpp", rejected, "Error opening XMPP stream, try --xmpp_to"): (
            findings.Code.CONNECT_ERROR,
            f"STARTTLS failed on port 2525 (xmpp): the server refused an XMPP stream to {MX}",
        ),
        ("imap", ConnectionToServerTimedOut, "Connection to the server timed out"): (
            findings.Code.CONNECT_TIMEOUT,
            "STARTTLS failed on port 2525 (imap): the server did not answer in time",
        ),
    }
    for (protocol, exc_type, message), expected in cases.items():
        assert _failure(protocol, exc_type, message) == expected
