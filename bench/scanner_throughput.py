"""Scanner throughput: scans/s of ScannerHandler against the lab's TLS endpoints on loopback.

The lab runs in a child process, so this process's CPU time is the scanner's alone.

    .venv/bin/python bench/scanner_throughput.py [--jobs 300] [--concurrency 100] [--scan-mode fast|full]
    .venv/bin/python bench/scanner_throughput.py --sslyze-scanner   # the same jobs through sslyze.Scanner

Jobs are spread round-robin over every TLS endpoint of the lab (11 addresses incl. ::1); findings
are whatever each endpoint deserves, they do not matter here.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

# The repository root, so `lab` imports even where the editable install predates lab/__init__.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import LabEndpoint, start_lab  # noqa: E402
from shared.config import Config  # noqa: E402
from shared.messages import ScanJob, job_id  # noqa: E402

NON_TLS = {"refused", "hung", "plaintext"}


def serve_lab(conn: Connection, workdir: str) -> None:
    with start_lab(Path(workdir)) as lab:
        conn.send(([e for e in lab.endpoints if e.case not in NON_TLS], str(lab.ca_file)))
        conn.recv()  # until the parent is done


def make_jobs(endpoints: list[LabEndpoint], count: int) -> list[ScanJob]:
    jobs = []
    for n in range(count):
        e = endpoints[n % len(endpoints)]
        fqdn = f"bench{n}.lab.test"
        jobs.append(
            ScanJob(
                job_id=job_id("bench", e.ip, e.port, fqdn, e.hostname),
                run_id="bench",
                zone="lab.test",
                ip_address=e.ip,
                port=e.port,
                fqdn=fqdn,
                sni=e.hostname,
            )
        )
    return jobs


def run_handler(jobs: list[ScanJob], config: Config, deadline: float) -> int:
    """Feed batches the way shared.runner.serve does: batch_size jobs per call, `workers` calls at once."""
    from services.scanner.runner import make_handler, serve_options

    handler = make_handler(config)
    options = serve_options(config)
    batches = [jobs[i : i + options.batch_size] for i in range(0, len(jobs), options.batch_size)]

    done = [0]
    lock = threading.Lock()

    def one(batch: list[ScanJob]) -> int:
        if time.monotonic() > deadline:
            return 0
        count = 0
        for _ in handler.handle_batch(batch):
            count += 1
            with lock:
                done[0] += 1
                if done[0] % 1000 == 0:  # memory and threads as scans add up: flat is the goal
                    print(f"  after {done[0]:>6} scans: RSS {_rss_mb():.0f} MB, {threading.active_count()} threads")
        return count

    try:
        with ThreadPoolExecutor(options.workers) as pool:
            return sum(pool.map(one, batches))
    finally:
        handler.close()


def _rss_mb() -> float:
    """Resident set size now (VmRSS), not the peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_sslyze_scanner(jobs: list[ScanJob], config: Config) -> int:
    """The same scans through sslyze.Scanner (one queue_scans call), for comparison."""
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
    )
    from sslyze.plugins.scan_commands import ScanCommand

    assert config.custom_ca_file is not None
    extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(Path(config.custom_ca_file)))
    requests = [
        ServerScanRequest(
            server_location=ServerNetworkLocation(hostname=j.sni, port=j.port, ip_address=j.ip_address),
            network_configuration=ServerNetworkConfiguration(
                tls_server_name_indication=j.sni, network_timeout=int(config.network_timeout), network_max_retries=1
            ),
            scan_commands={ScanCommand.CERTIFICATE_INFO},
            scan_commands_extra_arguments=extra,
        )
        for j in jobs
    ]
    scanner = Scanner(
        per_server_concurrent_connections_limit=config.max_connections_per_ip,
        concurrent_server_scans_limit=config.scan_concurrency,
    )
    scanner.queue_scans(requests)
    return sum(1 for _ in scanner.get_results())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=100, help="config scan_concurrency")
    parser.add_argument("--max-connections-per-ip", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop feeding batches after this long")
    parser.add_argument("--sslyze-scanner", action="store_true", help="use sslyze.Scanner instead (comparison)")
    parser.add_argument("--scan-mode", choices=("fast", "full"), default="fast", help="config scan_mode")
    args = parser.parse_args(argv)
    if not 0 < args.jobs <= 20_000:
        parser.error("--jobs must be within 1..20000")

    parent, child = multiprocessing.Pipe()
    with tempfile.TemporaryDirectory() as workdir:
        server = multiprocessing.get_context("spawn").Process(target=serve_lab, args=(child, workdir), daemon=True)
        server.start()
        try:
            endpoints, ca_file = parent.recv()
            config = Config(
                scan_concurrency=args.concurrency,
                max_connections_per_ip=args.max_connections_per_ip,
                network_timeout=5.0,
                scan_timeout=30.0,
                custom_ca_file=ca_file,
                scan_mode=args.scan_mode,
            )
            jobs = make_jobs(endpoints, args.jobs)
            cpu0, wall0 = time.process_time(), time.monotonic()
            if args.sslyze_scanner:
                done = run_sslyze_scanner(jobs, config)
            else:
                done = run_handler(jobs, config, wall0 + args.max_seconds)
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        finally:
            parent.send("stop")
            server.join(timeout=10)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine = "sslyze.Scanner" if args.sslyze_scanner else f"ScannerHandler ({args.scan_mode})"
    print(
        f"{engine}: {done} scans over {len(endpoints)} addresses in {wall:.2f}s = {done / wall:.1f} scans/s; "
        f"client CPU {cpu:.2f}s = {1000 * cpu / max(1, done):.1f} ms/scan; peak RSS {rss_mb:.0f} MB; "
        f"concurrency {args.concurrency}, {args.max_connections_per_ip} connections/IP, {os.cpu_count()} CPUs"
    )
    return 0 if done == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
