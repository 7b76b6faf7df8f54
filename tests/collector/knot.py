"""Start a real Knot DNS server on loopback for the collector's tests and benchmark.

Everything lives in one directory (config, zone files, rundir, storage); the server is
stopped by its PID. ``knotd`` missing is an error, never a skip: the tests are about a real
authoritative server.

Catalog zones (RFC 9432): a zone with ``catalog_role="generate"`` is a catalog Knot generates
from the zones that name it in ``catalog_zone`` (``catalog_role="member"``). ``reload_knot``
rewrites the config with other zones and has knotd reload it (SIGHUP), as an operator adds or
removes a zone.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.loopback import stop_process

KNOTD_PACKAGES = "knot (knotd); knot-dnsutils (kdig, optional)"

# ACL kinds a zone can have.
OPEN = "open"  # any 127.0.0.0/8 client may transfer
TSIG = "tsig"  # transfer only with the server's TSIG key
DENY = "deny"  # no transfer ACL: Knot answers REFUSED


@dataclass(frozen=True)
class KnotZone:
    name: str  # without the final dot
    text: str  # RFC 1035 master file ("" for a catalog Knot generates)
    acl: str = OPEN
    catalog_role: str | None = None  # "generate" (a catalog of members) or "member"
    catalog_zone: str | None = None  # a member's catalog


@dataclass
class KnotServer:
    address: str
    port: int
    workdir: Path
    zones: dict[str, Path]
    tsig_name: str
    tsig_secret: str
    tsig_algorithm: str = "hmac-sha256"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    tcp_io_timeout_ms: int = 5000
    configured: list[KnotZone] = field(default_factory=list)

    def zone_file(self, zone: str) -> Path:
        return self.zones[zone]

    def log(self) -> str:
        path = self.workdir / "knotd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def transfers(self, zone: str) -> int:
        """How many AXFRs of ``zone`` Knot has started serving (counted in its log)."""
        marker = f"[{zone.rstrip('.')}.] AXFR, outgoing, "
        return sum(1 for line in self.log().splitlines() if marker in line and ", started" in line)

    def stop(self) -> None:
        stop_process(self.process, grace=5)


def knotd_path() -> str:
    path = shutil.which("knotd") or ("/usr/sbin/knotd" if os.access("/usr/sbin/knotd", os.X_OK) else None)
    if path is None:
        raise RuntimeError(
            f"knotd not found: install the Debian package(s) {KNOTD_PACKAGES} (apt-get install knot knot-dnsutils)"
        )
    return path


def free_port(address: str) -> int:
    """A port free for both TCP and UDP on ``address`` (Knot binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((address, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((address, port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError(f"no free port on {address}")


def new_tsig_secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _config(server: KnotServer, zones: list[KnotZone], tcp_io_timeout_ms: int) -> str:
    lines = [
        "server:",
        f'    rundir: "{server.workdir / "run"}"',
        f"    listen: {server.address}@{server.port}",
        # The default 500 ms drops a client that pauses mid-transfer (GC); tests are not a slow-loris target.
        f"    tcp-io-timeout: {tcp_io_timeout_ms}",
        "    tcp-idle-timeout: 10",
        "    udp-workers: 1",
        "    tcp-workers: 2",
        "    background-workers: 1",
        "log:",
        "  - target: " + str(server.workdir / "knotd.log"),
        "    any: info",
        "database:",
        f'    storage: "{server.workdir / "db"}"',
        "key:",
        f"  - id: {server.tsig_name}",
        f"    algorithm: {server.tsig_algorithm}",
        f"    secret: {server.tsig_secret}",
        "acl:",
        "  - id: xfr_open",
        "    address: 127.0.0.0/8",
        "    action: transfer",
        "  - id: xfr_tsig",
        "    address: 127.0.0.0/8",
        f"    key: {server.tsig_name}",
        "    action: transfer",
        "template:",
        "  - id: default",
        f'    storage: "{server.workdir / "zones"}"',
        '    file: "%s.zone"',
        "    zonefile-sync: -1",
        "    zonefile-load: whole",
        "    journal-content: none",
        "    semantic-checks: off",
        "zone:",
    ]
    for zone in zones:
        lines.append(f"  - domain: {zone.name}")
        if zone.acl == OPEN:
            lines.append("    acl: xfr_open")
        elif zone.acl == TSIG:
            lines.append("    acl: xfr_tsig")
        if zone.catalog_role is not None:
            lines.append(f"    catalog-role: {zone.catalog_role}")
        if zone.catalog_zone is not None:
            lines.append(f"    catalog-zone: {zone.catalog_zone}")
    return "\n".join(lines) + "\n"


def _write_zone_files(workdir: Path, zones: list[KnotZone]) -> dict[str, Path]:
    paths = {}
    for zone in zones:
        path = workdir / "zones" / f"{zone.name}.zone"
        if zone.catalog_role != "generate":  # Knot makes that one itself
            path.write_text(zone.text)
        paths[zone.name] = path
    return paths


def start_knot(
    workdir: Path,
    zones: list[KnotZone],
    address: str = "127.0.0.1",
    tcp_io_timeout_ms: int = 5000,
    tsig_name: str = "collector-key",
    ready_timeout: float = 20.0,
) -> KnotServer:
    """Write config and zone files under ``workdir``, start knotd, wait until every zone answers."""
    binary = knotd_path()
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "db", "zones"):
        (workdir / sub).mkdir(exist_ok=True)
    paths = _write_zone_files(workdir, zones)
    server = KnotServer(
        address=address,
        port=free_port(address),
        workdir=workdir,
        zones=paths,
        tsig_name=tsig_name,
        tsig_secret=new_tsig_secret(),
        tcp_io_timeout_ms=tcp_io_timeout_ms,
        configured=list(zones),
    )
    conf = workdir / "knot.conf"
    conf.write_text(_config(server, zones, tcp_io_timeout_ms))
    with open(workdir / "knotd.stderr", "wb") as stderr:  # the child keeps its own copy of the fd
        server.process = subprocess.Popen(
            [binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        _wait_ready(server, [z.name for z in zones], ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def reload_knot(server: KnotServer, zones: list[KnotZone], timeout: float = 20.0) -> None:
    """Serve ``zones`` instead: zone files written, config rewritten, knotd told to reload (SIGHUP);
    returns once every zone answers and every zone no longer configured does not."""
    gone = [z.name for z in server.configured if z.name not in {zone.name for zone in zones}]
    server.zones = _write_zone_files(server.workdir, zones)
    server.configured = list(zones)
    (server.workdir / "knot.conf").write_text(_config(server, zones, server.tcp_io_timeout_ms))
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGHUP)
    _wait_ready(server, [z.name for z in zones], timeout)
    deadline = time.monotonic() + timeout
    for name in gone:
        while _answers(server, name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"knotd still serves {name} {timeout} s after the reload:\n{server.log()}")
            time.sleep(0.05)


def _answers(server: KnotServer, zone: str) -> bool:
    query = dns.message.make_query(zone + ".", "SOA")
    try:
        answer = dns.query.tcp(query, server.address, timeout=0.5, port=server.port)
    except (OSError, dns.exception.DNSException):
        return True  # cannot tell yet: ask again
    return answer.rcode() == dns.rcode.NOERROR and bool(answer.answer)


def _wait_ready(server: KnotServer, zones: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(zones)
    while pending:
        proc = server.process
        assert proc is not None
        if proc.poll() is not None:
            stderr = (server.workdir / "knotd.stderr").read_text(errors="replace")
            raise RuntimeError(f"knotd exited with {proc.returncode}: {stderr.strip()}\n{server.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"knotd did not serve {pending} within {timeout} s:\n{server.log()}")
        query = dns.message.make_query(pending[0] + ".", "SOA")
        try:
            answer = dns.query.tcp(query, server.address, timeout=0.5, port=server.port)
        except (OSError, dns.exception.DNSException):
            time.sleep(0.05)
            continue
        if answer.rcode() == dns.rcode.NOERROR and answer.answer:
            pending.pop(0)
        else:
            time.sleep(0.05)
