"""DNS as the source of truth, end to end: Knot serves the zones, `run` transfers and scans them.

And `fetch-zones` → `--from-zones-json` (an export made on a privileged host, scanned elsewhere)
gives the same findings as scanning straight from AXFR.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from lab import start_lab
from services.cli import main
from tests.collector.knot import DENY, TSIG, KnotZone, start_knot

SECRET_ENV = "DCC_E2E_TSIG_SECRET"


def master_file(zone: str, records: list[dict[str, object]], serial: int = 1) -> str:
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 300",
        f"@ SOA ns1.{zone}. hostmaster.{zone}. {serial} 3600 600 86400 300",
        f"@ NS ns1.{zone}.",
        "ns1 A 127.0.0.1",
    ]
    lines += [f"{r['name']} {r['ttl'] or 300} IN {r['type']} {r['target']}" for r in records]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """The TLS lab, and a Knot server whose zones point at it."""
    with start_lab(tmp_path_factory.mktemp("lab")) as lab:
        valid = next(e for e in lab.endpoints if e.case == "valid")
        records = list(lab.zones_json()[lab.zone])
        records.append({"type": "CNAME", "name": "old", "ttl": 60, "target": "gone"})
        knot = start_knot(
            tmp_path_factory.mktemp("knot"),
            [
                KnotZone(lab.zone, master_file(lab.zone, records)),
                KnotZone(
                    "keyed.test",
                    master_file("keyed.test", [{"type": "A", "name": "@", "ttl": 60, "target": valid.ip}]),
                    acl=TSIG,
                ),
                KnotZone("refused.test", master_file("refused.test", []), acl=DENY),
            ],
        )
        os.environ[SECRET_ENV] = knot.tsig_secret
        try:
            yield lab, knot
        finally:
            os.environ.pop(SECRET_ENV, None)
            knot.stop()


def config_for(tmp: Path, lab, knot) -> Path:
    server = {"server_ip": knot.address, "server_port": knot.port, "timeout": 2, "lifetime": 30, "retries": 1}
    keyed = dict(server, tsig_key={"name": knot.tsig_name, "algorithm": knot.tsig_algorithm, "secret_env": SECRET_ENV})
    config = {
        "ssl_ports": [lab.port],
        "custom_ca_file": str(lab.ca_file),
        "network_timeout": 2,
        "scan_timeout": 15,
        "zone_data_sources": {
            "main": {"type": "BIND", "config": server, "zones": [lab.zone, "refused.test"]},
            "keyed": {"type": "BIND", "config": keyed, "zones": ["keyed.test"]},
        },
    }
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))[1:]


def test_run_from_axfr_and_from_an_exported_zones_json_agree(world, tmp_path, capsys):
    lab, knot = world
    config = config_for(tmp_path, lab, knot)

    assert main(["run", "--config", str(config), "-o", str(tmp_path / "axfr.csv"), "--quiet"]) == 0
    from_axfr = rows(tmp_path / "axfr.csv")
    refused = [r for r in from_axfr if r[2] == "refused.test"]
    assert refused == [[knot.address, str(knot.port), "refused.test", "error", refused[0][4]]]
    assert "refused" in refused[0][4]
    expected_lab = {(e.ip, e.hostname, message) for e in lab.endpoints for _, message in e.expected}
    assert expected_lab <= {(r[0], r[2], r[4]) for r in from_axfr}
    valid = next(e for e in lab.endpoints if e.case == "valid")
    # the TSIG-protected zone was transferred with its key: its name points at a cert for another name
    assert [r for r in from_axfr if r[2] == "keyed.test"] == [
        [valid.ip, str(lab.port), "keyed.test", "error", "subject does not match hostname"]
    ]
    assert ["", "", "old.lab.test", "error", "CNAME target gone.lab.test does not exist in zone lab.test"] in from_axfr

    # the privileged host exports; the refused zone is reported and left out, the others written
    assert main(["fetch-zones", "--config", str(config), "-o", str(tmp_path / "zones.json")]) == 1
    exported = json.loads((tmp_path / "zones.json").read_text())
    assert sorted(exported) == sorted([lab.zone, "keyed.test"])
    assert knot.tsig_secret not in capsys.readouterr().err

    assert (
        main(
            [
                "--from-zones-json",
                str(tmp_path / "zones.json"),
                "-o",
                str(tmp_path / "file.csv"),
                "--config",
                str(config),
            ]
        )
        == 0
    )
    assert rows(tmp_path / "file.csv") == [r for r in from_axfr if r[2] != "refused.test"]
