"""A real Alertmanager on a free loopback port (Debian ``prometheus-alertmanager``), stopped by PID.

Missing binary: an error naming the package, never a skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Alertmanager:
    def __init__(self, workdir: Path) -> None:
        if not os.access(ALERTMANAGER, os.X_OK):
            raise RuntimeError(f"{ALERTMANAGER} not found: apt-get install prometheus-alertmanager")
        (workdir / "alertmanager.yml").write_text(CONFIG)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "alertmanager.log").open("wb")
        self.process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: nothing but loopback HTTP
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(workdir)

    def _wait_ready(self, workdir: Path) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        log = (workdir / "alertmanager.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Alertmanager did not become ready on {self.url}:\n{log}")

    def alerts(self) -> list[dict[str, object]]:
        """The alerts it holds as active (resolved ones are gone)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", params={"active": "true"}, timeout=5)
        response.raise_for_status()
        return list(response.json())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()
