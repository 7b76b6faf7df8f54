"""Start the services as separate OS processes, the way an operator runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "services.cli"]
REPO = Path(__file__).resolve().parents[2]


class Fleet:
    """Service processes of one test, all against one AMQP URL; logs in ``workdir``."""

    def __init__(self, workdir: Path, config: Path, amqp_url: str) -> None:
        self.workdir = workdir
        self.config = config
        self.env = {**os.environ, "AMQP_URL": amqp_url, "PYTHONUNBUFFERED": "1"}
        self.env.pop("DCC_QUEUE_PREFIX", None)  # the vhost isolates this test already
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.output_dir = workdir / "reports"

    def start(self, name: str, *args: str, config: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``dns-cert-checker ARGS`` as ``name``; ``config`` overrides the fleet's for this one."""
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*CLI, args[0], "--config", str(config or self.config), *args[1:]],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def start_pipeline(self, scanners: dict[str, str], scanner_config: Path | None = None) -> None:
        """Reporter, resolver and one scanner per ``name → segment`` (with ``scanner_config`` if given)."""
        self.start("reporter", "reporter", "--output-dir", str(self.output_dir))
        self.start("resolver", "resolver")
        for name, segment in scanners.items():
            self.start(name, "scanner", "--segment", segment, config=scanner_config)

    def submit(self, zones_json: Path, timeout: float = 60) -> str:
        """``collector --once``: publishes the run and prints its id."""
        done = subprocess.run(
            [*CLI, "collector", "--config", str(self.config), "--from-zones-json", str(zones_json), "--once"],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr.decode()
        run_id = done.stdout.decode().strip().splitlines()[-1]
        assert run_id, done.stderr.decode()
        return run_id

    def wait_for_report(self, run_id: str, timeout: float = 90) -> Path:
        path = self.output_dir / f"{run_id}.csv"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return path
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no report for {run_id} after {timeout}s; logs:\n{self.all_logs()}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(30)

    def stop(self, timeout: float = 30) -> dict[str, int]:
        """SIGTERM everything, as an orchestrator does; the exit codes by name."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()  # only our own child, by its pid
                codes[name] = proc.wait()
        self.procs.clear()
        return codes

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in self.workdir.glob("*.log"))
