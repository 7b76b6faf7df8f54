"""An endpoint whose served chain changed since it was last seen gets SSLyze's full scan once;
one seen for the first time, or serving what it served before, costs the fast path's one
connection. With ``state_dir`` the memory outlives the process (a cron ``run`` per day)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.certs import Authority, make_authority
from services.scanner.chain_memory import ChainMemory, digest
from services.scanner.scan import Engine, ScanSettings, Target
from tests.scanner.starttls_servers import CountingTlsServer, server_context, write_chain

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
HOST = "www.change.test"
FULL = 4  # a TLS 1.3 server's full scan: our handshake (for the connectivity test and first job), 3 jobs


@pytest.fixture(scope="module")
def pki() -> Authority:
    return make_authority()


@pytest.fixture
def server(tmp_path: Path, pki: Authority) -> Iterator[CountingTlsServer]:
    with CountingTlsServer(server_context(tmp_path, "old", [pki.leaf(HOST), pki.intermediate])) as served:
        yield served


def settings(tmp_path: Path, pki: Authority, *, state: Path | None = None, on: bool = True) -> ScanSettings:
    ca, _ = write_chain(tmp_path, "ca", [pki.root])
    return ScanSettings(
        network_timeout=2.0, scan_timeout=15.0, custom_ca_file=ca, full_scan_on_change=on, chain_state=state
    )


def connections_of_a_scan(engine: Engine, server: CountingTlsServer) -> tuple[int, list[str]]:
    server.reset()
    outcome = engine.scan_one(Target(server.ip, server.port, HOST))
    return server.accepted, [f.code for f in outcome.findings]


def test_a_changed_chain_is_scanned_in_full_once_and_then_on_the_fast_path_again(
    tmp_path: Path, pki: Authority, server: CountingTlsServer
) -> None:
    engine = Engine(settings(tmp_path, pki))
    try:
        assert connections_of_a_scan(engine, server) == (1, []), "first sight: the fast path"
        assert connections_of_a_scan(engine, server) == (1, []), "unchanged: the fast path"
        server.use(server_context(tmp_path, "new", [pki.leaf(HOST, days=5), pki.intermediate]))
        connections, codes = connections_of_a_scan(engine, server)
        assert connections == FULL, "a new chain: SSLyze's full scan"
        assert codes == ["CERT_EXPIRING_CRITICAL"], "and its findings"
        assert connections_of_a_scan(engine, server) == (1, ["CERT_EXPIRING_CRITICAL"]), "seen now: fast again"
    finally:
        engine.close()


def test_without_full_scan_on_change_a_changed_chain_stays_on_the_fast_path(
    tmp_path: Path, pki: Authority, server: CountingTlsServer
) -> None:
    engine = Engine(settings(tmp_path, pki, on=False))
    try:
        connections_of_a_scan(engine, server)
        server.use(server_context(tmp_path, "new", [pki.leaf(HOST, days=5), pki.intermediate]))
        assert connections_of_a_scan(engine, server) == (1, ["CERT_EXPIRING_CRITICAL"])
    finally:
        engine.close()


def test_the_chains_seen_are_remembered_across_processes_in_the_state_dir(
    tmp_path: Path, pki: Authority, server: CountingTlsServer
) -> None:
    state = tmp_path / "state" / "scanner-chains.bin"
    first = Engine(settings(tmp_path, pki, state=state))
    try:
        assert connections_of_a_scan(first, server)[0] == 1
    finally:
        first.close()
    assert state.exists(), "written when the engine closes"
    server.use(server_context(tmp_path, "new", [pki.leaf(HOST), pki.intermediate]))
    second = Engine(settings(tmp_path, pki, state=state))
    try:
        assert connections_of_a_scan(second, server)[0] >= FULL, "the next run sees the change"
    finally:
        second.close()


def test_the_memory_tells_a_change_from_a_first_sight_and_forgets_the_least_recent_first() -> None:
    memory = ChainMemory(limit=2)
    a, b = digest(["A"]), digest(["B"])
    assert not memory.changed(("10.0.0.1", 443, "x"), a), "first sight"
    assert not memory.changed(("10.0.0.1", 443, "x"), a), "the same chain"
    assert memory.changed(("10.0.0.1", 443, "x"), b)
    assert digest(["A", "B"]) != digest(["B", "A"]), "a reordered chain is a change"
    memory.changed(("10.0.0.2", 443, "y"), a)
    memory.changed(("10.0.0.3", 443, "z"), a)  # over the limit: 10.0.0.1 was seen least recently
    assert len(memory) == 2
    assert not memory.changed(("10.0.0.1", 443, "x"), a), "forgotten: a first sight again"


def test_an_unreadable_memory_file_is_a_warning_and_an_empty_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "scanner-chains.bin"
    path.write_bytes(b"not json")
    with caplog.at_level(logging.WARNING, "dcc.scanner.chains"):
        memory = ChainMemory(path)
    assert len(memory) == 0
    assert "no endpoint counts as changed" in caplog.text
