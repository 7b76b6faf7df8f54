"""Alerting end to end: the real CLI against the TLS lab, a real HTTP receiver, and the same
deliveries whether the reporter runs in process (``run``) or as a service over RabbitMQ."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from lab import Lab, start_lab
from services.cli import main
from tests.distributed.broker import Vhost
from tests.distributed.fleet import Fleet
from tests.end_to_end.conftest import SECRET_ENV
from tests.reporter.alerts.receiver import Receiver


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with start_lab(tmp_path_factory.mktemp("alert-lab")) as running:
        yield running


def write_inputs(tmp: Path, lab: Lab, receiver: Receiver) -> tuple[Path, Path]:
    zones = tmp / "zones.json"
    zones.write_text(json.dumps(lab.zones_json()))
    config = tmp / "config.json"
    settings: dict[str, Any] = {
        "ssl_ports": [lab.port],
        "custom_ca_file": str(lab.ca_file),
        "network_timeout": 2,
        "scan_timeout": 15,
        "alerts": {
            "state_file": str(tmp / "state" / "alerts.db"),
            "flush_timeout": 20,
            "receivers": [{"name": "ops", "type": "webhook", "url": receiver.url("/ops"), "secret_env": SECRET_ENV}],
        },
    }
    config.write_text(json.dumps(settings))
    return zones, config


def events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every delivered event, its signature checked as a receiver would."""
    verify = Webhook(secret)
    return [verify.verify(r.body, r.headers) for r in receiver.requests]


def problem_key(event: dict[str, Any]) -> tuple[str, str, str, str, str]:
    data = event["data"]
    return (event["type"], data["ip_address"], str(data["port"]), data["fqdn"], data["code"])


def csv_problems(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1


@pytest.mark.slow
def test_two_identical_runs_alert_each_problem_once_and_report_lists_them(
    lab: Lab, receiver: Receiver, secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zones, config = write_inputs(tmp_path, lab, receiver)
    out, metrics = tmp_path / "out.csv", tmp_path / "dcc.prom"
    args = ["run", "--config", str(config), "--from-zones-json", str(zones), "-o", str(out), "--quiet"]
    assert main([*args, "--metrics-file", str(metrics)]) == 0
    first = events(receiver, secret)
    assert first and {e["type"] for e in first} == {"problem.opened"}
    assert len(first) == csv_problems(out)  # one event per CSV row: each row is a problem
    assert len({problem_key(e) for e in first}) == len(first)
    assert "dcc_problem{" in metrics.read_text()

    assert main(args) == 0
    assert len(receiver.requests) == len(first)  # nothing new on an identical second run

    capsys.readouterr()
    assert main(["report", "--config", str(config), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == len(first)


@pytest.mark.slow
def test_the_reporter_service_sends_the_same_deliveries_as_the_in_process_run(
    lab: Lab, receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    in_process, distributed = tmp_path / "in-process", tmp_path / "distributed"
    in_process.mkdir()
    distributed.mkdir()
    zones, config = write_inputs(in_process, lab, receiver)
    assert main(["run", "--config", str(config), "--from-zones-json", str(zones), "-o", str(in_process / "o.csv")]) == 0
    expected = sorted(problem_key(e) for e in events(receiver, secret))
    assert expected
    receiver.requests.clear()

    zones, config = write_inputs(distributed, lab, receiver)
    vhost = Vhost()
    fleet = Fleet(distributed, config, vhost.url())
    try:
        fleet.start_pipeline({"scanner": "default"})
        run_id = fleet.submit(zones)
        fleet.wait_for_report(run_id)
        deadline = time.monotonic() + 30
        while len(receiver.requests) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # and nothing more comes
        assert sorted(problem_key(e) for e in events(receiver, secret)) == expected
    finally:
        fleet.stop()
        vhost.delete()
