"""Names longer than DNS allows, through the real entry point (issue 10, defect 6).

A record name (or CNAME target) over 253 characters, or with a label over 63, is an
``INVALID_RECORD`` row whose text quotes only the start of it; a zone name over the limits is one
row for that zone; every other record and zone is reported as usual; no megabyte ever reaches a
log line, a CSV cell or a JSONL field.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from services.cli import EXIT_BAD_INPUT, main
from shared import findings

MEGA = 2**20


def run_zones(tmp_path: Path, capsys: pytest.CaptureFixture[str], zones: dict[str, list[dict[str, object]]]):
    zones_path = tmp_path / "zones.json"
    zones_path.write_text(json.dumps(zones))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"log_level": 10}))  # every log line, to see none of them carries a megabyte
    out, jsonl = tmp_path / "o.csv", tmp_path / "o.jsonl"
    args = ["run", "--config", str(config), "--from-zones-json", str(zones_path), "-o", str(out)]
    code = main([*args, "--jsonl", str(jsonl), "--no-progress"])
    captured = capsys.readouterr()
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    entries = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return code, rows, entries, captured.out + captured.err


def test_over_long_record_names_are_invalid_records_quoted_short_and_the_rest_goes_on(tmp_path, capsys):
    huge = "a" * MEGA
    zone = "names.test"
    records = [
        {"type": "A", "name": huge, "ttl": 60, "target": "192.0.2.1"},
        {"type": "A", "name": "l" * 64, "ttl": 60, "target": "192.0.2.2"},
        {"type": "CNAME", "name": "far", "ttl": 60, "target": "t" * 300 + "."},
        # valid on its own (243 characters), too long under the zone (254)
        {"type": "CNAME", "name": ".".join(["x" * 63] * 3) + "." + "y" * 51, "ttl": 60, "target": "nowhere"},
        {"type": "A", "name": "addr", "ttl": 60, "target": "9" * MEGA},
        {"type": "CNAME", "name": "dangling", "ttl": 60, "target": "nowhere"},
    ]
    code, rows, entries, output = run_zones(tmp_path, capsys, {zone: records})
    assert code == 0
    invalid = [r for r in rows if "DNS allows" in r["message"] or "invalid address" in r["message"]]
    assert len(invalid) == 5, rows
    assert all(r["status"] == "error" for r in invalid)
    by_code = [e for e in entries if e["code"] == findings.Code.INVALID_RECORD]
    assert len(by_code) == 5
    huge_row = next(r for r in invalid if r["fqdn"].startswith("aaaa"))
    assert "longer than DNS allows" in huge_row["message"]
    label_row = next(r for r in invalid if r["fqdn"].startswith("llll"))
    assert "label" in label_row["message"] and "63" in label_row["message"]
    far_row = next(r for r in invalid if r["fqdn"] == f"far.{zone}")
    assert "CNAME target" in far_row["message"]
    assert any(r["fqdn"] == f"addr.{zone}" for r in invalid)
    assert any(r["fqdn"] == f"dangling.{zone}" and "does not exist" in r["message"] for r in rows)
    # nothing anywhere quotes more than a short prefix of a rejected name
    assert max(len(v) for r in rows for v in r.values()) < 300
    assert max(len(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()) < 1000
    assert "a" * 300 not in output and "9" * 300 not in output
    assert len(output) < 20_000


def test_an_over_long_zone_name_is_one_finding_for_that_zone_and_the_others_go_on(tmp_path, capsys):
    zones = {
        "z" * MEGA + ".test": [{"type": "CNAME", "name": "x", "ttl": 60, "target": "nowhere"}],
        "q" * 64 + ".test": [{"type": "CNAME", "name": "x", "ttl": 60, "target": "nowhere"}],
        "fine.test": [{"type": "CNAME", "name": "x", "ttl": 60, "target": "nowhere"}],
    }
    code, rows, entries, output = run_zones(tmp_path, capsys, zones)
    assert code == 0
    bad = [e for e in entries if e["code"] == findings.Code.ZONE_FILE_INVALID]
    assert len(bad) == 2, entries
    assert {e["zone"][:4] for e in bad} == {"zzzz", "qqqq"}
    assert all("DNS allows" in e["message"] for e in bad)
    assert [r["fqdn"] for r in rows if "does not exist" in r["message"]] == ["x.fine.test"]
    assert max(len(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()) < 1000
    assert "z" * 300 not in output
    assert len(output) < 20_000


@pytest.mark.parametrize(
    "where",
    [
        lambda zone: {"nameserver_zones": {"127.0.0.1": ["ok.test", zone]}},
        lambda zone: {
            "zone_data_sources": {"ns": {"type": "BIND", "config": {"server_ip": "127.0.0.1"}, "zones": [zone]}}
        },
        lambda zone: {"zone_data_sources": {"git": {"type": "FILE", "files": {zone: "some.zone"}}}},
    ],
    ids=["nameserver_zones", "bind", "file"],
)
@pytest.mark.parametrize("zone", ["z" * MEGA + ".test", "q" * 64 + ".test"], ids=["huge", "long-label"])
def test_an_over_long_configured_zone_is_one_config_error(tmp_path, capsys, where, zone):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(where(zone)))
    code = main(["run", "--config", str(config), "-o", str(tmp_path / "o.csv")])
    lines = capsys.readouterr().err.splitlines()
    assert code == EXIT_BAD_INPUT
    assert len(lines) == 1 and len(lines[0]) < 500, lines
    assert "DNS allows" in lines[0] and zone[:20] in lines[0]
