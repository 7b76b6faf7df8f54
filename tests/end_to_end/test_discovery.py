"""Zone discovery end to end: the real CLI discovers the zones from a Knot catalog zone and from a
PowerDNS API, scans them against the TLS lab, says which zones are new and which are gone, and
resolves a removed zone's open problems in the alert state as "zone removed"."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from lab import Lab, start_lab
from services.cli import main
from services.collector import catalog
from services.collector.discovery import entry_name
from services.reporter.alerts.events import ZONE_REMOVED, compare
from services.reporter.alerts.formats import slack_digest, webhook_body
from services.reporter.alerts.problems import problems_of
from shared.config import BindServer
from tests.collector.knot import KnotServer, KnotZone, reload_knot, start_knot
from tests.collector.pdns import PdnsServer, start_pdns
from tests.end_to_end.conftest import SECRET_ENV
from tests.reporter.alerts.receiver import Receiver
from tests.reporter.alerts.runs import expired, report

PDNS_KEY_ENV = "DCC_E2E_PDNS_API_KEY"
MISMATCH = "subject does not match hostname"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("discovery-lab"), cases=["valid", "expired"]) as running:
        yield running


def member(zone: str, lab: Lab) -> KnotZone:
    """A catalog member whose apex points at the lab's valid endpoint: a certificate for another name."""
    valid = lab.endpoint("valid")
    text = (
        f"$ORIGIN {zone}.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\n"
        f"ns1 A 127.0.0.1\n@ A {valid.ip}\n"
    )
    return KnotZone(zone, text, catalog_role="member", catalog_zone="catalog.test")


def lab_member(lab: Lab) -> KnotZone:
    lines = [f"$ORIGIN {lab.zone}.", "$TTL 300", "@ SOA ns1 hostmaster 1 3600 600 86400 300", "@ NS ns1"]
    lines += [f"{r['name']} IN {r['type']} {r['target']}" for r in lab.zones_json()[lab.zone]]
    return KnotZone(lab.zone, "\n".join(lines) + "\n", catalog_role="member", catalog_zone="catalog.test")


def knot_zones(lab: Lab, members: list[str]) -> list[KnotZone]:
    return [KnotZone("catalog.test", "", catalog_role="generate"), lab_member(lab), *(member(z, lab) for z in members)]


def write_config(tmp: Path, lab: Lab, sources: dict[str, Any], receiver: Receiver | None = None) -> Path:
    settings: dict[str, Any] = {
        "ssl_ports": [lab.port],
        "custom_ca_file": str(lab.ca_file),
        "network_timeout": 2,
        "scan_timeout": 15,
        "state_dir": str(tmp / "state"),
        "zone_data_sources": sources,
    }
    if receiver is not None:
        settings["alerts"] = {
            "state_file": str(tmp / "state" / "alerts.db"),
            "flush_timeout": 20,
            "receivers": [{"name": "ops", "type": "webhook", "url": receiver.url("/ops"), "secret_env": SECRET_ENV}],
        }
    path = tmp / "config.json"
    path.write_text(json.dumps(settings))
    return path


def catalog_source(knot: KnotServer) -> dict[str, Any]:
    server = {"server_ip": knot.address, "server_port": knot.port, "timeout": 2, "lifetime": 30, "retries": 1}
    return {"type": "BIND", "config": server, "catalog": "catalog.test"}


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))[1:]


def events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    verify = Webhook(secret)
    return [verify.verify(r.body, r.headers) for r in receiver.requests]


def run(config: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``dns-cert-checker run`` with its summary; the summary's text."""
    capsys.readouterr()
    assert main(["run", "--config", str(config), "-o", str(out), "--no-progress"]) == 0
    return capsys.readouterr().out


def wait_for_members(knot: KnotServer, expected: list[str]) -> None:
    server = BindServer(knot.address, knot.port, timeout=2.0)
    deadline = time.monotonic() + 20
    while catalog.read(server, "catalog.test").members != sorted(expected):
        assert time.monotonic() < deadline, f"Knot's catalog does not list {sorted(expected)}"
        time.sleep(0.1)


@pytest.mark.slow
def test_zones_added_and_removed_in_knot_are_scanned_reported_and_their_problems_resolved(
    lab: Lab, receiver: Receiver, secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    knot = start_knot(tmp_path / "knot", knot_zones(lab, ["alpha.test", "beta.test"]))
    try:
        config = write_config(tmp_path, lab, {"cat": catalog_source(knot)}, receiver)
        valid = lab.endpoint("valid")

        # an export made in between records nothing: the first run still finds every zone new
        assert main(["fetch-zones", "--config", str(config), "-o", str(tmp_path / "zones.json")]) == 0
        assert sorted(json.loads((tmp_path / "zones.json").read_text())) == ["alpha.test", "beta.test", lab.zone]

        summary = run(config, tmp_path / "1.csv", capsys)
        first = rows(tmp_path / "1.csv")
        assert [valid.ip, str(lab.port), "alpha.test", "error", MISMATCH] in first
        assert [valid.ip, str(lab.port), "beta.test", "error", MISMATCH] in first
        expected_lab = {(e.ip, e.hostname, message) for e in lab.endpoints for _, message in e.expected}
        assert expected_lab and expected_lab <= {(r[0], r[2], r[4]) for r in first}
        assert f"new zones: alpha.test, beta.test, {lab.zone}" in summary
        opened = events(receiver, secret)
        assert len(opened) == len(first) and {e["type"] for e in opened} == {"problem.opened"}

        reload_knot(knot, knot_zones(lab, ["alpha.test", "beta.test", "gamma.test"]))
        wait_for_members(knot, ["alpha.test", "beta.test", "gamma.test", lab.zone])
        summary = run(config, tmp_path / "2.csv", capsys)
        assert [valid.ip, str(lab.port), "gamma.test", "error", MISMATCH] in rows(tmp_path / "2.csv")
        assert "new zones: gamma.test" in summary and "removed zones" not in summary

        reload_knot(knot, knot_zones(lab, ["alpha.test", "gamma.test"]))
        wait_for_members(knot, ["alpha.test", "gamma.test", lab.zone])
        receiver.requests.clear()
        summary = run(config, tmp_path / "3.csv", capsys)
        assert "beta.test" not in {r[2] for r in rows(tmp_path / "3.csv")}
        assert "removed zones: beta.test" in summary and "new zones" not in summary
        # every problem of beta.test (its name and its ns1) and nothing else: resolved as "zone removed"
        in_beta = sorted((r[2], r[4]) for r in rows(tmp_path / "2.csv") if r[2].endswith("beta.test"))
        resolved = events(receiver, secret)
        assert len(in_beta) == 2 and sorted((e["data"]["fqdn"], e["data"]["message"]) for e in resolved) == in_beta
        assert {(e["type"], e["data"]["zone"], e["data"]["reason"]) for e in resolved} == {
            ("problem.resolved", "beta.test", ZONE_REMOVED)
        }

        receiver.requests.clear()
        summary = run(config, tmp_path / "4.csv", capsys)
        assert "removed zones" not in summary and "new zones" not in summary  # said once
        assert receiver.requests == []
        capsys.readouterr()
        assert main(["report", "--config", str(config), "--format", "json"]) == 0
        still_open = {p["fqdn"] for p in json.loads(capsys.readouterr().out)}
        assert "beta.test" not in still_open and "alpha.test" in still_open
    finally:
        knot.stop()


@pytest.fixture(scope="module")
def pdns(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdnsServer]:
    server = start_pdns(tmp_path_factory.mktemp("discovery-pdns"))
    try:
        for zone, case in (("pdns-one.test", "valid"), ("pdns-two.test", "expired")):
            ip = lab.endpoint(case).ip
            server.create_zone(zone, [{"name": zone + ".", "type": "A", "ttl": 300, "records": [{"content": ip}]}])
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_zones_made_through_the_powerdns_api_are_scanned_and_a_wrong_key_is_one_row(
    lab: Lab, pdns: PdnsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = {"type": "POWERDNS", "api_url": pdns.api_url, "api_key_env": PDNS_KEY_ENV, "timeout": 5}
    config = write_config(tmp_path, lab, {"pdns": source})
    monkeypatch.setenv(PDNS_KEY_ENV, pdns.api_key)
    summary = run(config, tmp_path / "ok.csv", capsys)
    found = rows(tmp_path / "ok.csv")
    valid, old = lab.endpoint("valid"), lab.endpoint("expired")
    assert [valid.ip, str(lab.port), "pdns-one.test", "error", MISMATCH] in found
    assert any(r[:4] == [old.ip, str(lab.port), "pdns-two.test", "error"] for r in found)
    assert {r[2] for r in found} == {"pdns-one.test", "pdns-two.test"}
    assert "new zones: pdns-one.test, pdns-two.test" in summary

    monkeypatch.setenv(PDNS_KEY_ENV, "wrong-" + pdns.api_key)
    summary = run(config, tmp_path / "refused.csv", capsys)
    refused = f"PowerDNS API at {pdns.api_url} refused the key (HTTP 401) for the zone list: check api_key_env"
    assert rows(tmp_path / "refused.csv") == [
        [pdns.address, str(pdns.api_port), entry_name("pdns"), "error", f"{refused} {PDNS_KEY_ENV}"]
    ]
    assert "removed zones" not in summary  # a failed discovery removes nothing
    assert pdns.api_key not in summary and pdns.api_key not in (tmp_path / "refused.csv").read_text()


# --- the reporter's side without servers ---------------------------------------------------------------


def test_a_removed_zones_problems_are_resolved_as_zone_removed_even_by_an_incomplete_run() -> None:
    before = report("r1", [expired("www.gone.test"), expired("www.kept.test")])
    open_problems = problems_of(before.rows, "r1", 1e9)
    now = report("r2", [], zones=["kept.test"], complete=False)
    now.removed_zones = ["gone.test"]
    comparison = compare(now, open_problems, 1e9 + 60, 86400)
    (event,) = comparison.events
    assert (event.kind, event.problem.fqdn, event.reason) == ("resolved", "www.gone.test", ZONE_REMOVED)
    assert set(comparison.open) == {p.id for p in open_problems.values() if p.zone == "kept.test"}
    assert json.loads(webhook_body(event, 1e9 + 60))["data"]["reason"] == ZONE_REMOVED
    digest = slack_digest("r2", False, comparison.events)
    assert digest is not None and b"zone removed" in digest


def test_a_problem_resolved_by_a_scan_carries_no_reason() -> None:
    before = report("r1", [expired("www.a.test")])
    comparison = compare(report("r2", [], zones=["a.test"]), problems_of(before.rows, "r1", 1e9), 1e9 + 60, 86400)
    (event,) = comparison.events
    assert event.kind == "resolved" and event.reason == ""
    assert "reason" not in json.loads(webhook_body(event, 1e9 + 60))["data"]


def test_the_run_summary_names_new_and_removed_zones_and_stays_as_it_was_without_them() -> None:
    plain = report("r1", [expired("www.a.test")])
    assert plain.summary_line().endswith(" in 300.0s")  # as before discovery
    plain.new_zones = [f"z{i}.test" for i in range(12)]
    plain.removed_zones = ["gone.test"]
    line = plain.summary_line()
    assert line.endswith("; new zones: z0.test, z1.test, z2.test, z3.test, z4.test, z5.test, z6.test, z7.test, "
                         "z8.test, z9.test and 2 more; removed zones: gone.test")  # fmt: skip
