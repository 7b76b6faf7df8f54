"""Distributed mode end to end: every service its own OS process, a real RabbitMQ, real TLS servers.

Each test gets its own RabbitMQ virtual host (nothing shared with other runs, and connections can
be force-closed without touching anyone else's). The reference is the in-process ``run`` on the
same zones and config: the distributed CSV must be byte-for-byte the same.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import start_lab
from shared.transport.amqp import AmqpTransport
from shared.transport.base import REPORT, RESOLVE, scan_queue

from .broker import Vhost
from .fleet import CLI, REPO, Fleet

SEGMENTS = ("dmz", "office")


@dataclass
class Inputs:
    zones: Path
    config: Path
    settings: dict[str, object]
    reference: bytes
    segment_ips: dict[str, list[str]]
    unclaimed: str
    hung_ip: str  # in dmz


def patient_config(tmp_path: Path, inputs: Inputs, network_timeout: float) -> Path:
    """The run's config with a longer network_timeout: a scanner using it holds the hung endpoint's job
    that long, a window that rabbitmqctl polling (about a second a call) cannot miss. The hung row's
    message names no timeout, so the CSV stays the reference's."""
    path = tmp_path / f"config-timeout-{network_timeout:g}.json"
    scan_timeout = network_timeout + 30
    path.write_text(json.dumps({**inputs.settings, "network_timeout": network_timeout, "scan_timeout": scan_timeout}))
    return path


def _quick(endpoint: object) -> bool:
    """Answers at once (no timeout to wait out)."""
    codes = " ".join(code for code, _ in getattr(endpoint, "expected", ()))
    return not any(word in codes for word in ("TIMEOUT", "REFUSED", "UNREACHABLE", "RESET"))


def _address_order(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)  # the lab has IPv4 and IPv6 (::1) endpoints
    return (address.version, int(address))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inputs]:
    tmp = tmp_path_factory.mktemp("distributed")
    with start_lab(tmp / "lab") as lab:
        # Split the lab's addresses over two segments, healthy ones alternately so that both
        # segments get bulk work. The hung endpoint (accepts, never answers) goes to dmz on
        # purpose: it is what keeps a dmz scanner mid-work for a network_timeout, the window the
        # kill and forced-close tests need (without it dmz finishes in well under a second).
        hung_ip = lab.endpoint("hung").ip
        quick_ips = sorted({e.ip for e in lab.endpoints if _quick(e)}, key=_address_order)
        slow_ips = sorted({e.ip for e in lab.endpoints} - set(quick_ips) - {hung_ip}, key=_address_order)
        segment_ips = {
            "dmz": [*quick_ips[0::2], hung_ip, *slow_ips[1::2]],
            "office": [*quick_ips[1::2], *slow_ips[0::2]],
        }
        assert all(segment_ips.values()), "the lab needs endpoints on at least two addresses"
        ips = [*quick_ips, hung_ip, *slow_ips]
        unclaimed = next(f"127.0.0.{n}" for n in range(254, 1, -1) if f"127.0.0.{n}" not in ips)
        zones = lab.zones_json()
        # Bulk names on healthy endpoints of both segments: enough jobs that a run takes seconds.
        targets = [ip for ip in quick_ips for _ in range(max(3, 24 // max(1, len(quick_ips))))]
        bulk = [{"type": "A", "name": f"bulk{n}", "ttl": 300, "target": ip} for n, ip in enumerate(targets)]
        # An address no segment claims (and no default): reported as a finding, never scanned.
        bulk.append({"type": "A", "name": "unclaimed", "ttl": 300, "target": unclaimed})
        zones[lab.zone] = list(zones[lab.zone]) + bulk
        zones_path = tmp / "zones.json"
        zones_path.write_text(json.dumps(zones))
        settings: dict[str, object] = {
            "ssl_ports": [lab.port],
            "custom_ca_file": str(lab.ca_file),
            "network_timeout": 2,
            "scan_timeout": 15,
            "segments": {
                name: [str(ipaddress.ip_network(ip)) for ip in members] for name, members in segment_ips.items()
            },
            "default_segment": None,
            "log_level": 20,
        }
        config_path = tmp / "config.json"
        config_path.write_text(json.dumps(settings))
        reference = tmp / "reference.csv"
        done = subprocess.run(
            [*CLI, "run", "--config", str(config_path), "--from-zones-json", str(zones_path), "-o", str(reference)],
            cwd=REPO,
            capture_output=True,
            timeout=180,
        )
        assert reference.exists(), done.stderr.decode()[-3000:]
        yield Inputs(zones_path, config_path, settings, reference.read_bytes(), segment_ips, unclaimed, hung_ip)


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    v = Vhost()
    yield v
    v.delete()


@pytest.fixture
def fleet(tmp_path: Path, inputs: Inputs, vhost: Vhost) -> Iterator[Fleet]:
    f = Fleet(tmp_path, inputs.config, vhost.url())
    yield f
    f.stop()


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(data.decode().splitlines()))[1:]


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def in_flight(vhost: Vhost, queue: str) -> bool:
    """The queue's consumer holds unacked deliveries: it is mid-work."""
    return vhost.queues().get(f"dcc.{queue}", (0, 0))[1] > 0


def assert_stopped_cleanly(fleet: Fleet) -> None:
    codes = fleet.stop()
    assert codes and all(code == 0 for code in codes.values()), f"{codes}\n{fleet.all_logs()}"


def test_two_segments_give_the_in_process_csv_and_poison_is_parked(fleet: Fleet, inputs: Inputs, vhost: Vhost) -> None:
    poisoned = [RESOLVE, REPORT, scan_queue("dmz"), scan_queue("office")]
    broker = AmqpTransport(vhost.url())
    try:
        broker.declare(poisoned)
        for queue in poisoned:
            broker.publish_raw(queue, b"\xffthis is not a message")
        fleet.start_pipeline({"scanner-dmz": "dmz", "scanner-office": "office"})
        run_id = fleet.submit(inputs.zones)
        report = fleet.wait_for_report(run_id)
        assert report.read_bytes() == inputs.reference
        assert (fleet.output_dir / "latest.csv").read_bytes() == inputs.reference
        assert (fleet.output_dir / f"{run_id}.jsonl").exists()
        unclaimed = [r for r in rows(report.read_bytes()) if r[0] == inputs.unclaimed]
        assert unclaimed and all(r[3] == "error" for r in unclaimed)  # reported, not dropped
        for queue in poisoned:
            [dead] = broker.dead_letters(queue)
            assert dead.body == b"\xffthis is not a message"
            assert "undecodable" in dead.reason or "invalid" in dead.reason
            assert dead.headers["x-dcc-queue"] == queue
        assert f"run {run_id} complete" in fleet.log("reporter")
    finally:
        broker.close()
    assert_stopped_cleanly(fleet)


def test_kill_9_scanner_mid_run_still_reports_every_job_once(
    fleet: Fleet, inputs: Inputs, vhost: Vhost, tmp_path: Path
) -> None:
    fleet.start_pipeline({"scanner-office": "office"})
    # The first dmz scanner cannot finish: it waits 120 s on the hung endpoint, so it certainly
    # holds an unacked job when killed.
    fleet.start("scanner-dmz-1", "scanner", "--segment", "dmz", config=patient_config(tmp_path, inputs, 120))
    run_id = fleet.submit(inputs.zones)
    wait_until(lambda: in_flight(vhost, "scan.dmz"), 60, "the dmz scanner to hold jobs")
    fleet.kill("scanner-dmz-1")  # SIGKILL: no goodbye, its unacked jobs go back to the queue
    assert f"run {run_id} complete" not in fleet.log("reporter")
    fleet.start("scanner-dmz-2", "scanner", "--segment", "dmz")
    report = fleet.wait_for_report(run_id)
    assert report.read_bytes() == inputs.reference
    assert_stopped_cleanly(fleet)


def test_forced_connection_close_mid_run_services_reconnect(
    fleet: Fleet, inputs: Inputs, vhost: Vhost, tmp_path: Path
) -> None:
    # The dmz scanner holds the hung endpoint's job for 8 s per try: time to close mid-scan.
    fleet.start_pipeline({"scanner-dmz": "dmz", "scanner-office": "office"}, patient_config(tmp_path, inputs, 8))
    run_id = fleet.submit(inputs.zones)
    wait_until(lambda: in_flight(vhost, "scan.dmz"), 60, "scans in flight")
    vhost.close_all_connections()
    time.sleep(1.0)
    vhost.close_all_connections()  # again, while they are reconnecting and redelivering
    report = fleet.wait_for_report(run_id)
    assert report.read_bytes() == inputs.reference
    for name in fleet.procs:
        assert "reconnecting" in fleet.log(name), name
    assert_stopped_cleanly(fleet)


def test_reporter_killed_mid_run_finishes_the_run_after_restart(fleet: Fleet, inputs: Inputs, vhost: Vhost) -> None:
    fleet.start_pipeline({"scanner-dmz": "dmz", "scanner-office": "office"})
    run_id = fleet.submit(inputs.zones)
    journal = fleet.output_dir / ".journal" / f"{run_id}.journal"
    # results already acked by the reporter exist only in its journal from here on
    wait_until(lambda: journal.exists() and journal.stat().st_size > 2000, 60, "the reporter to journal results")
    fleet.kill("reporter")
    assert not (fleet.output_dir / f"{run_id}.csv").exists()
    fleet.start("reporter-2", "reporter", "--output-dir", str(fleet.output_dir))
    report = fleet.wait_for_report(run_id)
    assert report.read_bytes() == inputs.reference
    assert not journal.exists()
    assert_stopped_cleanly(fleet)


def test_a_stalled_run_is_reported_incomplete_after_the_deadline(tmp_path: Path, inputs: Inputs, vhost: Vhost) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**inputs.settings, "run_deadline": 4}))
    fleet = Fleet(tmp_path, config, vhost.url())
    try:
        fleet.start_pipeline({"scanner-dmz": "dmz"})  # nobody scans the office segment
        run_id = fleet.submit(inputs.zones)
        report = fleet.wait_for_report(run_id, timeout=90)
        office = set(inputs.segment_ips["office"])
        missing = [r for r in rows(report.read_bytes()) if r[0] in office]
        assert missing and all(r[3] == "error" and "run deadline" in r[4] for r in missing)
        dmz = set(inputs.segment_ips["dmz"])
        assert [r for r in rows(report.read_bytes()) if r[0] in dmz] == [
            r for r in rows(inputs.reference) if r[0] in dmz
        ]
        assert "INCOMPLETE" in fleet.log("reporter")
    finally:
        codes = fleet.stop()
    assert all(code == 0 for code in codes.values()), codes


def test_scanner_processes_share_a_segment_and_recycle_without_losing_a_job(
    fleet: Fleet, inputs: Inputs, vhost: Vhost
) -> None:
    """``scanner --processes 2 --max-scans 4``: two scanner processes consume each segment; each
    stops after 4 scans and a fresh one takes its place; the report is the in-process one."""
    fleet.start("reporter", "reporter", "--output-dir", str(fleet.output_dir))
    fleet.start("resolver", "resolver")
    for segment in ("dmz", "office"):
        fleet.start(f"scanner-{segment}", "scanner", "--segment", segment, "--processes", "2", "--max-scans", "4")
    run_id = fleet.submit(inputs.zones)
    report = fleet.wait_for_report(run_id, timeout=120)
    assert report.read_bytes() == inputs.reference
    log = fleet.log("scanner-dmz") + fleet.log("scanner-office")
    assert log.count("supervising 2 scanner processes") == 2
    assert "recycled; starting another" in log  # more jobs than 2 × 4 in each segment
    assert_stopped_cleanly(fleet)
