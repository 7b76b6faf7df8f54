"""The whole job in one process, as a user of the original runs it: zones JSON → CSV.

Real TLS servers on loopback (tests/../lab), real SSLyze, the real CLI entry point.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab import Lab, start_lab
from services.cli import main
from shared import findings

HEADER = ["ip_address", "port", "fqdn", "status", "message"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with start_lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


def status_of(code: str) -> str:
    return "warning" if code == findings.Code.CERT_EXPIRING else "error"


def expected_lab_rows(lab: Lab) -> list[list[str]]:
    return [
        [e.ip, str(e.port), e.hostname, status_of(code), message] for e in lab.endpoints for code, message in e.expected
    ]


def write_inputs(tmp: Path, lab: Lab, extra_records=(), extra_zones=None, **config) -> tuple[Path, Path]:
    zones = lab.zones_json()
    zones[lab.zone] = list(zones[lab.zone]) + list(extra_records)
    zones.update(extra_zones or {})
    zones_path = tmp / "zones.json"
    zones_path.write_text(json.dumps(zones))
    config_path = tmp / "config.json"
    settings = {"ssl_ports": [lab.port], "custom_ca_file": str(lab.ca_file), "network_timeout": 2, "scan_timeout": 15}
    settings.update(config)
    config_path.write_text(json.dumps(settings))
    return zones_path, config_path


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == HEADER
    return rows[1:]


def test_zones_json_to_csv_has_every_expected_row_and_nothing_for_healthy_endpoints(lab, tmp_path, capsys):
    valid = next(e for e in lab.endpoints if e.case == "valid")
    extra = [
        {"type": "CNAME", "name": "www", "ttl": 300, "target": "valid"},  # scanned as www.lab.test: misnamed
        {"type": "CNAME", "name": "old", "ttl": 300, "target": "retired"},  # dangling
        {"type": "CNAME", "name": "internal-only", "ttl": 300, "target": "valid"},  # filtered out
        {"type": "TXT", "name": "@", "ttl": 300, "target": "ignored"},
    ]
    second = {"second.test": [{"type": "A", "name": "@", "ttl": None, "target": valid.ip}]}
    zones_path, config_path = write_inputs(tmp_path, lab, extra, second, name_filters=["^internal-"])
    out = tmp_path / "out.csv"
    jsonl = tmp_path / "out.jsonl"

    code = main(
        ["--from-zones-json", str(zones_path), "-o", str(out), "--config", str(config_path), "--jsonl", str(jsonl)]
    )

    assert code == 0
    rows = read_rows(out)
    mismatch = "subject does not match hostname"
    expected = expected_lab_rows(lab) + [
        [valid.ip, str(lab.port), "www.lab.test", "error", mismatch],
        ["", "", "old.lab.test", "error", "CNAME target retired.lab.test does not exist in zone lab.test"],
        [valid.ip, str(lab.port), "second.test", "error", mismatch],
    ]
    assert sorted(rows) == sorted(expected)
    healthy = {e.hostname for e in lab.endpoints if not e.expected}
    assert healthy and not healthy & {row[2] for row in rows}
    assert all(row[2] != "internal-only.lab.test" for row in rows)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == len(rows)
    assert {line["code"] for line in lines} >= {
        findings.Code.CERT_EXPIRED,
        findings.Code.HOSTNAME_MISMATCH,
        findings.Code.DANGLING_CNAME,
    }
    # facts of what was served come with the finding, even for an invalid certificate
    [expired] = [line for line in lines if line["code"] == findings.Code.CERT_EXPIRED]
    assert expired["certificate"]["not_after"] < datetime.now(UTC).isoformat()
    assert "expired.lab.test" in expired["certificate"]["san"]
    assert all(line["certificate"] is None for line in lines if line["code"] == findings.Code.DANGLING_CNAME)
    shown = capsys.readouterr().out
    assert "endpoints scanned" in shown and "complete" in shown


def test_csv_is_the_same_on_a_second_run(lab, tmp_path):
    zones_path, config_path = write_inputs(tmp_path, lab)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert (
        main(["run", "--from-zones-json", str(zones_path), "-o", str(first), "--config", str(config_path), "--quiet"])
        == 0
    )
    assert (
        main(["run", "--from-zones-json", str(zones_path), "-o", str(second), "--config", str(config_path), "--quiet"])
        == 0
    )
    assert first.read_text() == second.read_text()
    assert read_rows(first) != []


def test_without_the_custom_ca_the_private_chain_is_untrusted(lab, tmp_path):
    zones_path, config_path = write_inputs(tmp_path, lab)
    settings = json.loads(config_path.read_text())
    del settings["custom_ca_file"]
    config_path.write_text(json.dumps(settings))
    out = tmp_path / "out.csv"
    assert (
        main(["run", "--from-zones-json", str(zones_path), "-o", str(out), "--config", str(config_path), "--quiet"])
        == 0
    )
    valid = next(e for e in lab.endpoints if e.case == "valid")
    valid_rows = [row for row in read_rows(out) if row[2] == valid.hostname]
    assert valid_rows == [[valid.ip, str(lab.port), valid.hostname, "error", "unable to get local issuer certificate"]]
