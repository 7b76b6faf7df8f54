"""Start a real PowerDNS Authoritative server on loopback, its HTTP API on, for the discovery tests.

The Debian packages ``pdns-server`` and ``pdns-backend-sqlite3`` provide ``pdns_server`` and the
sqlite3 schema. Everything lives in one directory (an empty pdns.conf, the database, the control
socket, the log); the server is stopped by its PID. Security polling (a DNS query to
powerdns.com through the system resolver) is turned off: nothing leaves loopback. A missing
``pdns_server`` is an error, never a skip. Zones are made through the API, as an operator does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.collector.knot import free_port
from tests.loopback import stop_process

PDNS_PACKAGES = "pdns-server pdns-backend-sqlite3"
SCHEMAS = (
    Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"),
    Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"),
)


@dataclass
class PdnsServer:
    address: str
    dns_port: int
    api_port: int
    api_key: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://{self.address}:{self.api_port}"

    def log(self) -> str:
        path = self.workdir / "pdns.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def requests(self, path: str) -> int:
        """How many GETs of ``path`` (e.g. ``/api/v1/servers/localhost/zones/one.test.``) it answered."""
        marker = f'"GET {path} HTTP/1.1"'
        return sum(1 for line in self.log().splitlines() if marker in line)

    def api(self, method: str, path: str, body: object = None) -> httpx.Response:
        with httpx.Client(base_url=self.api_url, timeout=10, trust_env=False) as client:
            return client.request(method, path, json=body, headers={"X-API-Key": self.api_key})

    def create_zone(self, zone: str, rrsets: list[dict[str, object]], kind: str = "Native") -> None:
        """Create ``zone`` (without its final dot) with ``rrsets`` as the API takes them:
        ``{"name": "www.one.test.", "type": "A", "ttl": 300, "records": [{"content": ..., "disabled": false}]}``."""
        body = {
            "name": zone + ".",
            "kind": kind,
            "nameservers": [f"ns1.{zone}."],
            "rrsets": [dict(rrset, changetype="REPLACE") for rrset in rrsets],
        }
        answer = self.api("POST", "/api/v1/servers/localhost/zones", body)
        if answer.status_code != 201:
            raise RuntimeError(f"PowerDNS refused to create {zone}: HTTP {answer.status_code} {answer.text}")

    def delete_zone(self, zone: str) -> None:
        answer = self.api("DELETE", f"/api/v1/servers/localhost/zones/{zone}.")
        if answer.status_code != 204:
            raise RuntimeError(f"PowerDNS refused to delete {zone}: HTTP {answer.status_code} {answer.text}")

    def stop(self) -> None:
        stop_process(self.process, grace=10)


def pdns_server_path() -> str:
    sbin = "/usr/sbin/pdns_server"
    path = shutil.which("pdns_server") or (sbin if os.access(sbin, os.X_OK) else None)
    if path is None:
        raise RuntimeError(f"pdns_server not found: install the Debian packages {PDNS_PACKAGES} (apt-get install …)")
    return path


def _schema() -> str:
    for path in SCHEMAS:
        if path.is_file():
            return path.read_text()
    raise RuntimeError(f"no sqlite3 schema for PowerDNS at {', '.join(map(str, SCHEMAS))}: install {PDNS_PACKAGES}")


def start_pdns(workdir: Path, address: str = "127.0.0.1", ready_timeout: float = 20.0) -> PdnsServer:
    """A fresh database, pdns_server on free loopback ports (DNS and API), ready when the API answers."""
    binary = pdns_server_path()
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "pdns.sqlite3"
    with sqlite3.connect(database) as db:
        db.executescript(_schema())
    (workdir / "pdns.conf").write_text("")  # --config-dir: not /etc/powerdns
    server = PdnsServer(
        address=address,
        dns_port=free_port(address),
        api_port=free_port(address),
        api_key=secrets.token_urlsafe(24),
        workdir=workdir,
    )
    args = [
        binary,
        f"--config-dir={workdir}",
        "--launch=gsqlite3",
        f"--gsqlite3-database={database}",
        f"--local-address={address}",
        f"--local-port={server.dns_port}",
        "--webserver=yes",
        f"--webserver-address={address}",
        f"--webserver-port={server.api_port}",
        "--webserver-allow-from=127.0.0.0/8",
        "--api=yes",
        f"--api-key={server.api_key}",
        f"--socket-dir={workdir}",
        "--guardian=no",
        "--daemon=no",
        "--disable-syslog",
        "--security-poll-suffix=",  # no query to powerdns.com
        "--loglevel=6",  # the webserver logs each request line (counted by requests())
    ]
    with open(workdir / "pdns.log", "wb") as out:  # the child keeps its own copy of the fd
        server.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: PdnsServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc = server.process
        assert proc is not None
        if proc.poll() is not None:
            raise RuntimeError(f"pdns_server exited with {proc.returncode}:\n{server.log()}")
        try:
            if server.api("GET", "/api/v1/servers/localhost").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"pdns_server's API did not answer within {timeout} s:\n{server.log()}")
        time.sleep(0.1)
