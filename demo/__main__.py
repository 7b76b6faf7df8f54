"""``python -m demo``: generate a lab of TLS endpoints on loopback and run the whole job on it.

Everything is made at start (private CA, certificates good and broken, servers on 127.0.10.x
and ::1), so the demo needs no network and no preparation. Outputs land in ``demo-out/``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lab import ALL_CASES, start_lab
from services import cli

OUT = Path(os.environ.get("DCC_DEMO_DIR", "demo-out"))
# The original's cases, and a few of the checks it did not have (lab/pki_cases.py).
CASES = [*ALL_CASES, "lax_ca", "sha1", "rsa1024", "no_san", "expiring_critical"]


def demo_zones(
    lab_zones: dict[str, list[dict[str, object]]], zone: str, valid_ip: str
) -> dict[str, list[dict[str, object]]]:
    """The lab's records plus what real zones contain: a CNAME chain, a dangling CNAME, a wildcard."""
    records = list(lab_zones[zone])
    records += [
        {"type": "CNAME", "name": "shop", "ttl": 300, "target": "www"},
        {"type": "CNAME", "name": "www", "ttl": 300, "target": "valid"},
        {"type": "CNAME", "name": "old-blog", "ttl": 300, "target": "retired"},
        {"type": "A", "name": "*.apps", "ttl": 300, "target": valid_ip},
        {"type": "MX", "name": "@", "ttl": 300, "target": "10 mail"},  # ignored, as the original did
    ]
    return {zone: records}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with start_lab(OUT / "lab", cases=CASES) as lab:
        valid = next(e for e in lab.endpoints if e.case == "valid")
        zones_path = OUT / "zones.json"
        zones_path.write_text(json.dumps(demo_zones(lab.zones_json(), lab.zone, valid.ip), indent=2))
        config_path = OUT / "config.json"
        config_path.write_text(
            json.dumps(
                {
                    "log_level": 50,  # the table below is the output; findings are in the CSV too
                    "ssl_ports": [lab.port],
                    "custom_ca_file": str(lab.ca_file),
                    "network_timeout": 2,
                    "scan_timeout": 15,
                },
                indent=2,
            )
        )
        print(f"demo: {len(lab.endpoints)} TLS endpoints on loopback port {lab.port}, zone {lab.zone}")
        code = cli.main(
            [
                "run",
                "--config",
                str(config_path),
                "--from-zones-json",
                str(zones_path),
                "-o",
                str(OUT / "findings.csv"),
                "--jsonl",
                str(OUT / "findings.jsonl"),
            ]
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
