"""BACKENDS_DISAGREE at scale: how long the reporter's comparison of backends takes per run.

    .venv/bin/python bench/backends_compare.py [--names 25000] [--backends 4]

Builds ``names × backends`` scan results (every fifth name has one backend on an older leaf),
runs ``services.reporter.backends.disagreements`` three times and prints the best wall time and
the time per 100k results.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from services.reporter.backends import disagreements
from shared.messages import CertificateFacts, ScanResult

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def results(names: int, backends: int) -> list[ScanResult]:
    def facts(fingerprint: str) -> CertificateFacts:
        return CertificateFacts(subject="CN=x", issuer="CN=CA", not_before=NOW, not_after=NOW, sha256=fingerprint * 64)

    current, older = facts("a"), facts("b")
    return [
        ScanResult(
            job_id=f"{n}-{b}",
            run_id="r",
            zone="example.com",
            ip_address=f"10.{n // 250 % 250}.{n % 250}.{b + 1}",
            port=443,
            fqdn=f"n{n}.example.com",
            findings=[],
            scanned_at=NOW,
            certificate=older if b == backends - 1 and n % 5 == 0 else current,
        )
        for n in range(names)
        for b in range(backends)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=25_000)
    parser.add_argument("--backends", type=int, default=4)
    args = parser.parse_args()
    batch = results(args.names, args.backends)
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        rows = disagreements(batch)
        best = min(best, time.perf_counter() - began)
    per = best / len(batch) * 100_000
    print(f"{len(batch)} results, {len(rows)} names disagree: best {best:.3f}s ({per:.3f}s per 100k results)")


if __name__ == "__main__":
    main()
