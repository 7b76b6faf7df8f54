"""The checks beyond the original's, through the whole job in one process: zones JSON → CSV and
JSONL, real TLS servers on loopback serving generated certificates (lab/pki_cases.py)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab, start_lab
from lab.pki_cases import CHECK_CASES
from services.cli import main
from shared import findings


@pytest.fixture(scope="module")
def check_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("checks"), cases=[*CHECK_CASES, "valid"], ip_prefix="127.0.13.") as lab:
        yield lab


def run(tmp: Path, lab: Lab) -> tuple[list[list[str]], list[dict[str, object]]]:
    zones, config = tmp / "zones.json", tmp / "config.json"
    zones.write_text(json.dumps(lab.zones_json()))
    config.write_text(json.dumps({"ssl_ports": [lab.port], "custom_ca_file": str(lab.ca_file), "network_timeout": 2}))
    out, jsonl = tmp / "out.csv", tmp / "out.jsonl"
    code = main(
        ["run", "--from-zones-json", str(zones), "-o", str(out), "--config", str(config), "--jsonl", str(jsonl)]
    )
    assert code == 0
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return rows, [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_the_new_findings_appear_in_csv_and_jsonl_with_their_codes(check_lab: Lab, tmp_path: Path) -> None:
    rows, lines = run(tmp_path, check_lab)
    expected = [
        [e.ip, str(e.port), e.hostname, _status(code), message]
        for e in check_lab.endpoints
        for code, message in e.expected
    ]
    assert sorted(rows) == sorted(expected)
    by_name = {(line["fqdn"], line["code"]) for line in lines}
    assert by_name == {(e.hostname, code) for e in check_lab.endpoints for code, _ in e.expected}
    assert {line["code"] for line in lines} >= {
        findings.Code.WEAK_SIGNATURE,
        findings.Code.WEAK_KEY,
        findings.Code.CA_NOT_STRICT,
        findings.Code.CERT_EXPIRING_CRITICAL,
        findings.Code.HOSTNAME_MISMATCH,
    }
    [weak] = [line for line in lines if line["fqdn"].startswith("rsa512.")]
    certificate = weak["certificate"]
    assert isinstance(certificate, dict)
    assert (certificate["key_type"], certificate["key_bits"]) == ("RSA", 512)
    assert len(certificate["chain"]) == 2 and certificate["chain"][0]["sha256"] == certificate["sha256"]


def test_a_lax_private_ca_gives_warnings_and_no_error_row(check_lab: Lab, tmp_path: Path) -> None:
    rows, _ = run(tmp_path, check_lab)
    lax = [row for row in rows if row[2].startswith("lax-ca.")]
    assert lax and {row[3] for row in lax} == {"warning"}


def _status(code: str) -> str:
    warnings = {findings.Code.CA_NOT_STRICT, findings.Code.CERT_EXPIRING, findings.Code.VALIDITY_TOO_LONG}
    return "warning" if code in warnings else "error"
