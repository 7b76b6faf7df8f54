"""Benchmark: AXFR of a large zone from a real Knot server on loopback, then resolve it.

    .venv/bin/python bench/axfr_large.py [--records 100000] [--repeat 3]

Starts knotd (Debian package ``knot``) in a temporary directory on 127.0.0.1 and a free port,
serving one generated zone (80 % A, 10 % AAAA, 10 % CNAME). Each measurement runs in a fresh
subprocess so its peak RSS (``ru_maxrss``) is its own:

- ``collect``: ``services.collector.runs.plan_run(...).collection()`` (streamed, our path), wall time and RSS;
- ``collect+tracemalloc``: the same with tracemalloc on, for the peak of Python allocations;
- ``from_xfr``: the original's way (``dns.zone.from_xfr`` then a record list), for comparison;
- ``resolve``: ``services.resolver.handler.ResolverHandler.plan`` on the collected zone (no DNS
  traffic: every name is in the zone), if that module exists.

Twice: with the test suite's Knot setting (``tcp-io-timeout: 5000``) and with Knot's default
(500 ms), which drops a client that pauses. Bounded: every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.collector.knot import KnotZone, start_knot  # noqa: E402
from tests.collector.zones import bulk_zone  # noqa: E402

ZONE = "big.test"
STEP_TIMEOUT = 180


def _worker(mode: str, port: int) -> dict[str, object]:
    import gc

    import msgspec

    from shared.config import Config

    config = msgspec.convert(
        {"nameserver_zones": {f"127.0.0.1:{port}": [ZONE]}, "ssl_ports": [443]},
        type=Config,
    )
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, object] = {"mode": mode, "rss_before_kib": baseline}
    if mode in ("collect", "collect+tracemalloc", "resolve"):
        from services.collector.runs import CollectOptions, plan_run

        if mode == "collect+tracemalloc":
            import tracemalloc

            tracemalloc.start()
        started = time.perf_counter()
        with plan_run(config, CollectOptions(), "bench").collection() as zones:
            (snap,) = [item.snapshot for item in zones]
        out["transfer_s"] = time.perf_counter() - started
        if snap.failure is not None:
            out["failure"] = snap.failure.finding.message
            return out
        out["records"] = len(snap.records)
        if mode == "collect":
            from shared.messages import encode

            started = time.perf_counter()
            out["message_bytes"] = len(encode(snap))  # what crosses the queue to the resolver
            out["encode_s"] = time.perf_counter() - started
        if mode == "collect+tracemalloc":
            import tracemalloc

            out["tracemalloc_peak_kib"] = tracemalloc.get_traced_memory()[1] // 1024
            tracemalloc.stop()
        if mode == "resolve":
            from services.resolver.dns_lookup import no_lookup
            from services.resolver.handler import ResolverHandler

            handler = ResolverHandler(config, no_lookup)
            started = time.perf_counter()
            jobs, plan = handler.plan(snap)
            out["resolve_s"] = time.perf_counter() - started
            out["jobs"] = len(jobs)
            out["zone_findings"] = len(plan.findings)
    elif mode == "from_xfr":
        import dns.query
        import dns.rdatatype
        import dns.zone

        started = time.perf_counter()
        zone = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ZONE, port=port, timeout=5, lifetime=120))
        records = [
            (rdtype, str(name), str(rdata), rdataset.ttl)
            for rdtype in ("A", "AAAA", "CNAME")
            for name, node in zone.items()
            for rdataset in [node.get_rdataset(zone.rdclass, dns.rdatatype.from_text(rdtype))]
            if rdataset is not None
            for rdata in rdataset
        ]
        out["transfer_s"] = time.perf_counter() - started
        out["records"] = len(records)
    gc.collect()
    out["rss_peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


def _measure(mode: str, port: int) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        return {"mode": mode, "error": proc.stderr.strip().splitlines()[-1:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _have_resolver() -> bool:
    try:
        import services.resolver.handler  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.port)))
        return 0

    modes = ["collect", "collect+tracemalloc", "from_xfr"]
    if _have_resolver():
        modes.append("resolve")
    else:
        print("services.resolver.handler not found: resolve time not measured")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, zone {ZONE}: {args.records} records")
    text = bulk_zone(ZONE, args.records)
    results = []
    for io_timeout in (5000, 500):
        with tempfile.TemporaryDirectory(prefix="dcc-bench-") as tmp:
            started = time.perf_counter()
            zone = KnotZone(ZONE, text)
            server = start_knot(Path(tmp), [zone], tcp_io_timeout_ms=io_timeout, ready_timeout=60)
            load_s = time.perf_counter() - started
            try:
                print(f"\nknot tcp-io-timeout {io_timeout} ms (started and loaded in {load_s:.2f} s)")
                for mode in modes:
                    # tracemalloc is deterministic and slow (about 6x): once is enough
                    for _ in range(1 if mode == "collect+tracemalloc" else args.repeat):
                        result = _measure(mode, server.port)
                        result["tcp_io_timeout_ms"] = io_timeout
                        results.append(result)
                        print("  " + _line(result))
            finally:
                server.stop()
    return 0 if all("error" not in r and "failure" not in r for r in results) else 1


def _line(r: dict[str, object]) -> str:
    if "error" in r or "failure" in r:
        return f"{r['mode']:<20} FAILED {r.get('error') or r.get('failure')}"
    records = int(r["records"])  # type: ignore[call-overload]
    seconds = float(r["transfer_s"])  # type: ignore[arg-type]
    text = f"{r['mode']:<20} {records} records in {seconds:.2f} s ({records / seconds:,.0f}/s)"
    text += f", peak RSS {int(r['rss_peak_kib']) / 1024:.0f} MiB"  # type: ignore[call-overload]
    text += f" (start {int(r['rss_before_kib']) / 1024:.0f} MiB)"  # type: ignore[call-overload]
    if "tracemalloc_peak_kib" in r:
        text += f", tracemalloc peak {int(r['tracemalloc_peak_kib']) / 1024:.1f} MiB"  # type: ignore[call-overload]
    if "message_bytes" in r:
        text += f", snapshot message {int(r['message_bytes']) / 1e6:.1f} MB"  # type: ignore[call-overload]
        text += f" encoded in {float(r['encode_s']) * 1000:.0f} ms"  # type: ignore[arg-type]
    if "resolve_s" in r:
        text += f"; resolve {float(r['resolve_s']):.2f} s → {r['jobs']} jobs"  # type: ignore[arg-type]
    return text


if __name__ == "__main__":
    sys.exit(main())
