"""Start a real Knot DNS server on loopback for the collector's tests and benchmark.

Everything lives in one directory (config, zone files, rundir, storage); the server is
stopped by its PID. ``knotd`` missing is an error, never a skip: the tests are about a real
authoritative server.
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

KNOTD_PACKAGES = "knot (knotd); knot-dnsutils (kdig, optional)"

# ACL kinds a zone can have.
OPEN = "open"  # any 127.0.0.0/8 client may transfer
TSIG = "tsig"  # transfer only with the server's TSIG key
DENY = "deny"  # no transfer ACL: Knot answers REFUSED


@dataclass(frozen=True)
class KnotZone:
    name: str  # without the final dot
    text: str  # RFC 1035 master file
    acl: str = OPEN


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
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


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
    return "\n".join(lines) + "\n"


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
    paths = {}
    for zone in zones:
        path = workdir / "zones" / f"{zone.name}.zone"
        path.write_text(zone.text)
        paths[zone.name] = path
    server = KnotServer(
        address=address,
        port=free_port(address),
        workdir=workdir,
        zones=paths,
        tsig_name=tsig_name,
        tsig_secret=new_tsig_secret(),
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
