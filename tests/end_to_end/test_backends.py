"""BACKENDS_DISAGREE end to end: one name on three addresses, one of them still on an older leaf.

Real TLS servers on loopback (127.0.30.1–3, one port) with leaves of the lab PKI, real SSLyze,
the real pipeline: in one process through the ``run`` CLI, and distributed (reporter, resolver
and one scanner per segment as OS processes over the real RabbitMQ, the three addresses split
over two segments), where no scanner sees all three backends and only the reporter can compare.
"""

from __future__ import annotations

import csv
import errno
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.certs import Issued, make_authority
from services.cli import main
from shared import findings
from tests.distributed.broker import Vhost
from tests.distributed.fleet import CLI, REPO, Fleet
from tests.loopback import LoopbackServer

pytestmark = pytest.mark.slow  # TLS servers, and for one test service processes and RabbitMQ

ZONE = "backends.test"
NAME = f"www.{ZONE}"
CURRENT_IPS = ("127.0.30.1", "127.0.30.2")
OLDER_IP = "127.0.30.3"
SEGMENTS = {"a": ["127.0.30.1/32", "127.0.30.2/32"], "b": ["127.0.30.3/32"]}
CODE = findings.Code.BACKENDS_DISAGREE


class Backends:
    """TLS listeners on several loopback addresses and one port, each serving its own chain."""

    def __init__(self, chains: dict[str, list[Issued]], workdir: Path) -> None:
        contexts = [_context(ip, chain, workdir) for ip, chain in chains.items()]
        listeners = _listen_on_one_port(list(chains))
        self._servers = [_Backend(sock, context) for sock, context in zip(listeners, contexts, strict=True)]
        self.port = self._servers[0].port

    def close(self) -> None:
        for server in self._servers:
            server.close()


class _Backend(LoopbackServer):
    """One of them: one handshake, then wait for the scanner to hang up (it probes with odd handshakes too)."""

    def __init__(self, listener: socket.socket, context: ssl.SSLContext) -> None:
        super().__init__(listener=listener, name=f"backend-{listener.getsockname()[0]}")
        self._context = context
        self.start()

    def serve(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(5.0)
        try:
            with self._context.wrap_socket(sock, server_side=True) as tls:
                while tls.recv(1024):
                    pass
        finally:
            sock.close()

    def release(self, sock: socket.socket) -> None:
        pass  # close leaves a connection still open to end on its own (the scanner hangs up)


def _context(ip: str, chain: list[Issued], workdir: Path) -> ssl.SSLContext:
    chain_file, key_file = workdir / f"{ip}.pem", workdir / f"{ip}.key"
    chain_file.write_bytes(b"".join(c.pem for c in chain))
    key_file.write_bytes(chain[0].key_pem)
    key_file.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    return context


def _listen_on_one_port(ips: list[str]) -> list[socket.socket]:
    """A listener on every address, all on one free port (the first picks it, the others follow)."""
    for _attempt in range(20):
        listeners: list[socket.socket] = []
        try:
            for ip in ips:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, listeners[0].getsockname()[1] if len(listeners) > 1 else 0))
                sock.listen(128)
            return listeners
        except OSError as exc:
            for sock in listeners:
                sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, "no port free on every backend address")


@dataclass
class World:
    port: int
    ca_file: Path
    zones: Path
    current_expiry: str  # YYYY-MM-DD
    older_expiry: str

    def settings(self, **extra: object) -> dict[str, object]:
        settings: dict[str, object] = {
            "ssl_ports": [self.port],
            "custom_ca_file": str(self.ca_file),
            "network_timeout": 2,
            "scan_timeout": 15,
        }
        settings.update(extra)
        return settings

    def expected_message(self) -> str:
        return (
            f"2 of 3 backends of {NAME}:{self.port} serve a certificate expiring {self.current_expiry} "
            f"({', '.join(CURRENT_IPS)}); 1 serves one expiring {self.older_expiry} ({OLDER_IP})"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("backends")
    pki = make_authority()
    current = pki.leaf(NAME)  # valid from yesterday for a year
    older = pki.leaf(NAME, start_days=-200, days=300)  # the same name, valid, expiring months earlier
    chains = {ip: [current, pki.intermediate] for ip in CURRENT_IPS}
    chains[OLDER_IP] = [older, pki.intermediate]
    ca_file = tmp / "lab-ca.pem"
    ca_file.write_bytes(pki.root.pem)
    records = [{"type": "A", "name": "www", "ttl": 300, "target": ip} for ip in chains]
    zones = tmp / "zones.json"
    zones.write_text(json.dumps({ZONE: records}))
    servers = Backends(chains, tmp)
    try:
        yield World(
            port=servers.port,
            ca_file=ca_file,
            zones=zones,
            current_expiry=current.cert.not_valid_after_utc.date().isoformat(),
            older_expiry=older.cert.not_valid_after_utc.date().isoformat(),
        )
    finally:
        servers.close()


def write_config(path: Path, settings: dict[str, object]) -> Path:
    path.write_text(json.dumps(settings))
    return path


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ip_address", "port", "fqdn", "status", "message"]
    return rows[1:]


def assert_no_backend_failed(rows: list[list[str]]) -> None:
    """Every backend was scanned and trusted: the warning is the only thing wrong with them."""
    assert [row for row in rows if row[3] == "error"] == []


def test_a_name_whose_backends_serve_two_leaves_gets_one_warning_in_csv_and_jsonl(world: World, tmp_path: Path):
    config = write_config(tmp_path / "config.json", world.settings())
    out, jsonl = tmp_path / "out.csv", tmp_path / "out.jsonl"

    code = main(
        [
            "run",
            "--from-zones-json",
            str(world.zones),
            "-o",
            str(out),
            "--jsonl",
            str(jsonl),
            "--config",
            str(config),
            "--quiet",
        ]
    )

    assert code == 0
    rows = csv_rows(out)
    message = world.expected_message()
    assert [row for row in rows if "backends of" in row[4]] == [["", str(world.port), NAME, "warning", message]]
    assert_no_backend_failed(rows)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    [line] = [line for line in lines if line["code"] == CODE]
    assert {k: line[k] for k in ("zone", "ip_address", "port", "fqdn", "status", "message")} == {
        "zone": ZONE,
        "ip_address": "",
        "port": world.port,
        "fqdn": NAME,
        "status": "warning",
        "message": message,
    }
    assert len(lines) == len(rows)


def test_backends_that_serve_the_same_leaf_get_no_warning(world: World, tmp_path: Path):
    # Only the two backends on the current leaf: they agree, so nothing is said about the name.
    zones = tmp_path / "zones.json"
    records = [{"type": "A", "name": "www", "ttl": 300, "target": ip} for ip in CURRENT_IPS]
    zones.write_text(json.dumps({ZONE: records}))
    config = write_config(tmp_path / "config.json", world.settings())
    out = tmp_path / "out.csv"

    assert main(["run", "--from-zones-json", str(zones), "-o", str(out), "--config", str(config), "--quiet"]) == 0

    assert csv_rows(out) == []


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    v = Vhost()
    yield v
    v.delete()


def test_backends_scanned_on_two_segments_by_two_scanners_still_get_one_warning(
    world: World, tmp_path: Path, vhost: Vhost
):
    settings = world.settings(segments=SEGMENTS, default_segment=None, log_level=20)
    config = write_config(tmp_path / "config.json", settings)
    reference = tmp_path / "reference.csv"
    done = subprocess.run(
        [*CLI, "run", "--config", str(config), "--from-zones-json", str(world.zones), "-o", str(reference)],
        cwd=REPO,
        capture_output=True,
        timeout=180,
    )
    assert reference.exists(), done.stderr.decode()[-3000:]
    fleet = Fleet(tmp_path, config, vhost.url())
    try:
        fleet.start_pipeline({"scanner-a": "a", "scanner-b": "b"})
        run_id = fleet.submit(world.zones)
        report = fleet.wait_for_report(run_id)
        rows = csv_rows(report)
        assert [row for row in rows if "backends of" in row[4]] == [
            ["", str(world.port), NAME, "warning", world.expected_message()]
        ]
        assert_no_backend_failed(rows)
        assert report.read_bytes() == reference.read_bytes()  # the in-process run's CSV, byte for byte
        # complete: each segment's jobs were scanned, and only its own scanner consumes its queue
        assert f"run {run_id} complete" in fleet.log("reporter")
    finally:
        codes = fleet.stop()
    assert codes and all(code == 0 for code in codes.values()), f"{codes}\n{fleet.all_logs()}"
