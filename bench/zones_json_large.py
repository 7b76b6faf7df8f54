"""Benchmark: ``dns-cert-checker run --from-zones-json`` on a large zones JSON of dangling CNAMEs.

    .venv/bin/python bench/zones_json_large.py [--rows 1000000] [--zones 1] [--repeat 1]

Generates, in a temporary directory, a zones JSON of ``--rows`` CNAME records spread over
``--zones`` zones. Every record dangles: half point at a name that does not exist in their zone
(``DANGLING_CNAME``), half at a name outside every zone, which a config without
``lookup_nameservers`` (and without ``use_system_resolver``) cannot look up (``LOOKUP_FAILED``), so
nothing leaves the machine and nothing is scanned. Then runs the real command line in a fresh
subprocess per repetition and reports its wall time and its peak RSS (``ru_maxrss`` of the child,
from ``resource.getrusage(RUSAGE_CHILDREN)``; each repetition is measured in its own wrapper
process so the figure is that run's own), plus the CSV's row count as a sanity check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 900  # seconds per run: a regression shows as a failure, never as a hang

# Runs the CLI as a child and prints its own wall time and the child's peak RSS as JSON; being a
# fresh process, its RUSAGE_CHILDREN covers exactly that one child.
_MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": proc.returncode, "wall_s": wall, "max_rss_kib": usage.ru_maxrss,
                  "stderr_tail": proc.stderr.strip().splitlines()[-3:]}))
"""


def write_zones_json(path: Path, rows: int, zones: int) -> None:
    """``rows`` dangling CNAMEs over ``zones`` zones, written as the original's export spells it."""
    per_zone = -(-rows // zones)
    written = 0
    with path.open("w") as out:
        out.write("{")
        for z in range(zones):
            count = min(per_zone, rows - written)
            if count <= 0:
                break
            zone = f"zone{z}.bench.test"
            out.write(("," if z else "") + json.dumps(zone) + ":[")
            for i in range(count):
                target = f"missing-{i}" if i % 2 else f"gone-{i}.elsewhere.invalid."
                record = {"type": "CNAME", "name": f"h{i}", "ttl": 300, "target": target}
                out.write(("," if i else "") + json.dumps(record, separators=(",", ":")))
            out.write("]")
            written += count
        out.write("}")


def run_once(workdir: Path, zones_json: Path, config: Path) -> dict[str, object]:
    out_csv = workdir / "out.csv"
    out_csv.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "services.cli",
        "run",
        "--from-zones-json",
        str(zones_json),
        "--config",
        str(config),
        "-o",
        str(out_csv),
        "--quiet",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wrapper = [sys.executable, "-c", _MEASURE, str(RUN_TIMEOUT), *command]
    proc = subprocess.run(wrapper, capture_output=True, text=True, cwd=workdir, env=env, timeout=RUN_TIMEOUT + 30)
    if proc.returncode != 0:
        raise SystemExit(f"measuring wrapper failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(proc.stdout)
    with out_csv.open() as csv:
        result["csv_rows"] = sum(1 for _ in csv) - 1 if out_csv.exists() else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CNAME records in the zones JSON")
    parser.add_argument("--zones", type=int, default=1, help="zones the records are spread over")
    parser.add_argument("--repeat", type=int, default=1, help="runs (each in a fresh process)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcc-bench-zones-json-") as tmp:
        workdir = Path(tmp)
        zones_json = workdir / "zones.json"
        started = time.perf_counter()
        write_zones_json(zones_json, args.rows, args.zones)
        size_mib = zones_json.stat().st_size / 2**20
        print(
            f"zones JSON: {args.rows} rows in {args.zones} zone(s), {size_mib:.1f} MiB, "
            f"generated in {time.perf_counter() - started:.1f} s"
        )
        config = workdir / "config.json"
        config.write_text("{}")  # the defaults: no lookup_nameservers, no system resolver
        for n in range(args.repeat):
            result = run_once(workdir, zones_json, config)
            rss_mib = int(str(result["max_rss_kib"])) / 1024
            print(
                f"run {n + 1}: exit {result['returncode']}, {float(str(result['wall_s'])):.1f} s wall, "
                f"peak RSS {rss_mib:.0f} MiB, {result['csv_rows']} CSV rows"
            )
            if result["returncode"] not in (0, 1):
                print("  stderr:", result["stderr_tail"])


if __name__ == "__main__":
    main()
