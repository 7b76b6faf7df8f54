"""Alert state: one run's state update + outbox at scale, and deliveries per second.

    .venv/bin/python bench/alerts_state.py [--findings 100000] [--deliveries 2000]

Part 1 commits runs of N findings (one per endpoint, each endpoint with its certificate) to a
fresh state file with a webhook, a Slack and an Alertmanager receiver (senders not started):
the first run opens N problems (N webhook events + 1 digest + N/1000 Alertmanager posts), the
second is identical (nothing new; every problem re-posted to Alertmanager), the third finds
every certificate fixed (N resolved). Part 2 delivers M webhook events to a threaded HTTP
server on loopback that verifies nothing and answers 204. Seconds are wall time; peak RSS is
the process's maximum resident set (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from services.reporter.alerts import Alerting
from services.reporter.report import Row, RunReport
from shared import findings
from shared.alerts_config import AlertmanagerReceiver, AlertsConfig, Receiver, SlackReceiver, WebhookReceiver
from shared.config import Config
from shared.messages import CertificateFacts, ScanResult

SECRET_ENV = "DCC_BENCH_WEBHOOK_SECRET"
NOW = datetime(2026, 11, 29, tzinfo=UTC)


STEPS = [("r1", True, "opens every problem"), ("r2", True, "identical"), ("r3", False, "resolves every problem")]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_report(run_id: str, n: int, *, broken: bool) -> RunReport:
    """N endpoints in 10 zones; each serves its own certificate, expiring (a warning) when broken."""
    rows: list[Row] = []
    results: list[ScanResult] = []
    for i in range(n):
        zone = f"z{i % 10}.bench"
        fqdn = f"h{i}.{zone}"
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        not_after = NOW + timedelta(days=10 if broken else 300)
        cert = CertificateFacts(
            subject=f"CN={fqdn}",
            issuer="CN=Bench CA",
            not_before=NOW - timedelta(days=60),
            not_after=not_after,
            sha256=f"{i:064x}" if broken else f"{i + 1:064x}",
            san=[fqdn],
        )
        found = [findings.expiring(cert.subject, not_after)] if broken else []
        results.append(
            ScanResult(
                job_id=f"j{i}", run_id=run_id, zone=zone, ip_address=ip, port=443, fqdn=fqdn,
                findings=found, scanned_at=NOW, certificate=cert, segment="default",
            )
        )  # fmt: skip
        rows += [Row(zone, ip, 443, fqdn, f, cert, "default") for f in found]
    zones = sorted({r.zone for r in results})
    return RunReport(run_id, NOW, NOW + timedelta(minutes=5), True, zones, rows, results)


def _config(state_file: Path, receivers: list[Receiver]) -> Config:
    os.environ[SECRET_ENV] = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    return Config(alerts=AlertsConfig(state_file=str(state_file), receivers=receivers))


def bench_step(step: int, n: int, state_file: Path) -> None:
    """One run in this (fresh) process, so that its peak RSS is its own."""
    run_id, broken, label = STEPS[step]
    config = _config(
        state_file,
        [
            WebhookReceiver(name="hook", url="http://127.0.0.1:9/hook", secret_env=SECRET_ENV),
            SlackReceiver(name="chat", url="http://127.0.0.1:9/slack"),
            AlertmanagerReceiver(name="am", url="http://127.0.0.1:9"),
        ],
    )
    started = time.perf_counter()
    alerting = Alerting.from_config(config, clock=lambda: NOW + timedelta(hours=step))
    assert alerting is not None
    opened_s = time.perf_counter() - started
    try:
        report = build_report(run_id, n, broken=broken)
        before = current_rss_mb()
        started = time.perf_counter()
        outcome = alerting.on_report(report)
        seconds = time.perf_counter() - started
    finally:
        alerting.close()
    print(
        f"run {run_id} ({label}): on_report {seconds:.2f} s ({outcome.summary()}); opening the state {opened_s:.2f} s;"
        f" RSS {before:.0f} MB with the report built, peak {peak_rss_mb():.0f} MB",
        flush=True,
    )


class _Sink(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        with _Sink.lock:
            _Sink.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def bench_delivery(m: int, directory: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    config = _config(directory / "deliver.db", [WebhookReceiver(name="hook", url=url, secret_env=SECRET_ENV)])
    alerting = Alerting.from_config(config)
    assert alerting is not None
    try:
        alerting.on_report(build_report("d1", m, broken=True))
        started = time.perf_counter()
        left = alerting.flush(600)
        seconds = time.perf_counter() - started
    finally:
        alerting.close()
        server.shutdown()
    sent = m - left
    print(f"deliveries: {sent} signed webhook events in {seconds:.2f} s = {sent / seconds:.0f}/s (one receiver)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=2_000)
    parser.add_argument("--step", type=int, help=argparse.SUPPRESS)  # internal: one run in a child
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step is not None:
        bench_step(args.step, args.findings, args.state)
        return
    with tempfile.TemporaryDirectory(prefix="dcc-bench-alerts-") as tmp:
        state = Path(tmp) / "state.db"
        for step in range(len(STEPS)):
            child = [
                sys.executable,
                __file__,
                "--findings",
                str(args.findings),
                "--step",
                str(step),
                "--state",
                str(state),
            ]
            subprocess.run(child, check=True)
        size = sum(p.stat().st_size for p in Path(tmp).glob("state.db*"))
        print(f"state file with its WAL after the three runs: {size / 1e6:.0f} MB")
        bench_delivery(args.deliveries, Path(tmp))


if __name__ == "__main__":
    main()
