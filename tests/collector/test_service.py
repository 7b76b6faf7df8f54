"""The collector service: RunStarted first, one snapshot per zone, run ids on stdout, --every."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from services import cli
from services.collector import fetch_zones, service
from services.collector.runs import CollectOptions
from services.collector.service import CollectorOptions
from shared.config import Config
from shared.messages import RunStarted, ZoneSnapshot
from shared.signals import stop_on_signals
from shared.transport.base import REPORT, RESOLVE
from shared.transport.memory import InMemoryTransport
from tests.collector.collecting import drain
from tests.collector.knot import KnotServer, KnotZone, start_knot
from tests.configs import config_from


def options(
    from_zones_json: str | None = None, every: float | None = None, skip_unchanged: bool = False
) -> CollectorOptions:
    return CollectorOptions(CollectOptions(zones_json=from_zones_json, skip_unchanged=skip_unchanged), every=every)


def collector(config: Config, transport: InMemoryTransport, opts: CollectorOptions) -> int:
    return service.serve(config, transport, opts, threading.Event())


def knot_config(knot: KnotServer, zones: list[str], **extra: object) -> Config:
    data = {
        "nameserver_zones": {f"{knot.address}:{knot.port}": zones},
        **extra,
    }
    return config_from(data)


def test_once_publishes_run_started_then_snapshots(knot: KnotServer, capsys: pytest.CaptureFixture[str]) -> None:
    transport = InMemoryTransport()
    config = knot_config(knot, ["small.test", "refused.test", "also.test"])
    assert collector(config, transport, options()) == 0
    run_id = capsys.readouterr().out.strip()
    (started,) = drain(transport, REPORT)
    assert isinstance(started, RunStarted)
    assert started.run_id == run_id and started.zones == ["small.test", "refused.test", "also.test"]
    snaps = drain(transport, RESOLVE)
    assert all(isinstance(s, ZoneSnapshot) and s.run_id == run_id for s in snaps)
    assert [s.zone for s in snaps] == started.zones  # type: ignore[union-attr]
    refused = snaps[1]
    assert isinstance(refused, ZoneSnapshot) and refused.failure is not None and refused.records == []


def test_from_zones_json_same_snapshots_as_axfr(
    knot: KnotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = knot_config(knot, ["small.test", "bulk.test"])
    out = tmp_path / "zones.json"
    assert fetch_zones.main(config, str(out)) == 0
    axfr_transport, json_transport = InMemoryTransport(), InMemoryTransport()
    assert collector(config, axfr_transport, options()) == 0
    assert collector(Config(), json_transport, options(from_zones_json=str(out))) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == 2 and ids[0] != ids[1]

    def content(transport: InMemoryTransport) -> dict[str, list[tuple[str, str, str, int | None]]]:
        return {
            s.zone: sorted((r.type, r.name, r.target, r.ttl) for r in s.records)
            for s in drain(transport, RESOLVE)
            if isinstance(s, ZoneSnapshot)
        }

    assert content(axfr_transport) == content(json_transport)
    (started,) = drain(json_transport, REPORT)
    assert isinstance(started, RunStarted) and started.run_id == ids[1]
    assert started.zones == ["small.test", "bulk.test"] and started.source.startswith("zones-json:")


def test_bad_zones_json_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "zones.json"
    bad.write_text("{not json")
    transport = InMemoryTransport()
    assert collector(Config(), transport, options(from_zones_json=str(bad))) == 2
    transport.declare([REPORT])
    assert drain(transport, REPORT) == []


def test_every_runs_repeatedly_and_stops_on_sigterm(knot: KnotServer, capsys: pytest.CaptureFixture[str]) -> None:
    transport = InMemoryTransport()
    timer = threading.Timer(0.9, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        stop = threading.Event()
        with stop_on_signals(stop):  # as the CLI serves the collector
            status = service.serve(knot_config(knot, ["also.test"]), transport, options(every=0.3), stop)
    finally:
        timer.cancel()
    assert status == 0
    assert time.monotonic() - started < 3
    ids = capsys.readouterr().out.split()
    assert len(ids) >= 2 and len(set(ids)) == len(ids)
    runs = drain(transport, REPORT)
    assert [r.run_id for r in runs if isinstance(r, RunStarted)] == ids
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored


def test_skip_unchanged_saves_the_transfer_not_the_run(
    knot: KnotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = knot_config(knot, ["small.test", "also.test"], state_dir=str(tmp_path))
    caplog.set_level("INFO", logger="dcc")

    def run() -> tuple[RunStarted, list[ZoneSnapshot], dict[str, int]]:
        transport = InMemoryTransport()
        before = {zone: knot.transfers(zone) for zone in ("small.test", "also.test")}
        assert collector(config, transport, options(skip_unchanged=True)) == 0
        transfers = {zone: knot.transfers(zone) - count for zone, count in before.items()}
        (started,) = drain(transport, REPORT)
        snaps = drain(transport, RESOLVE)
        assert isinstance(started, RunStarted) and all(isinstance(s, ZoneSnapshot) for s in snaps)
        assert started.zones == ["small.test", "also.test"] == [s.zone for s in snaps]  # type: ignore[union-attr]
        assert {s.run_id for s in snaps} == {started.run_id}  # type: ignore[union-attr]
        return started, snaps, transfers  # type: ignore[return-value]

    def content(snaps: list[ZoneSnapshot]) -> dict[str, list[tuple[str, str, str, int | None]]]:
        return {s.zone: sorted((r.type, r.name, r.target, r.ttl) for r in s.records) for s in snaps}

    first, first_snaps, transfers = run()
    assert transfers == {"small.test": 1, "also.test": 1}
    caplog.clear()
    second, second_snaps, transfers = run()
    assert transfers == {"small.test": 0, "also.test": 0}  # no AXFR: served from state_dir
    assert second.run_id != first.run_id
    assert content(second_snaps) == content(first_snaps) and all(s.records for s in second_snaps)
    assert [s.serial for s in second_snaps] == [s.serial for s in first_snaps] == [2024010101, 5]
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split()[1] for line in lines if line.startswith("zone ") and "from the cache" in line] == [
        "small.test",
        "also.test",
    ]
    assert any("2 zone(s) collected (2 unchanged, from the cache), 0 failed" in line for line in lines)

    # a state_dir from before the cache existed (serials only): transferred, then cached
    for cached in (tmp_path / "collector-zones").iterdir():
        cached.unlink()
    third, third_snaps, transfers = run()
    assert transfers == {"small.test": 1, "also.test": 1} and content(third_snaps) == content(first_snaps)
    fourth, _, transfers = run()
    assert transfers == {"small.test": 0, "also.test": 0}
    assert capsys.readouterr().out.split() == [first.run_id, second.run_id, third.run_id, fourth.run_id]


def test_expiring_certificate_on_a_stable_zone_is_reported_every_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The review finding: with --skip-unchanged, a zone whose DNS never changes is still scanned."""
    from lab import start_lab
    from services.collector.runs import PlannedRun
    from services.pipeline import run_in_process
    from services.reporter.outputs import ReportSink
    from services.reporter.report import RunReport

    with start_lab(tmp_path / "lab", cases=["expiring"], ip_prefix="127.0.31.") as lab:
        records = " ".join(f"{r['name']} A {r['target']}\n" for r in lab.zones_json()[lab.zone])
        zone_text = f"$ORIGIN {lab.zone}.\n$TTL 300\n@ SOA ns.invalid. hostmaster 7 3600 600 86400 300\n"
        server = start_knot(tmp_path / "knot", [KnotZone(lab.zone, zone_text + "@ NS ns.invalid.\n" + records)])
        try:
            config = knot_config(
                server,
                [lab.zone],
                state_dir=str(tmp_path / "state"),
                ssl_ports=[lab.port],
                custom_ca_file=str(lab.ca_file),
                network_timeout=2,
                scan_timeout=15,
            )
            reports: list[RunReport] = []

            class Sink(ReportSink):
                def write(self, report: RunReport) -> None:
                    reports.append(report)

            for _ in range(2):
                transport = InMemoryTransport()
                assert collector(config, transport, options(skip_unchanged=True)) == 0
                (started,) = drain(transport, REPORT)
                assert isinstance(started, RunStarted) and started.zones == [lab.zone]
                snaps = [s for s in drain(transport, RESOLVE) if isinstance(s, ZoneSnapshot)]
                run_in_process(config, PlannedRun.of_snapshots(started.run_id, snaps), Sink())
            assert server.transfers(lab.zone) == 1  # the second run did not transfer the zone ...
        finally:
            server.stop()
    # ... and still scanned it: the expiring certificate is in both reports
    assert len(reports) == 2 and all(r.complete for r in reports)
    for report in reports:
        assert [(row.fqdn, row.finding.code) for row in report.rows] == [
            (lab.endpoint("expiring").hostname, "CERT_EXPIRING")
        ]
    assert len(capsys.readouterr().out.split()) == 2


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("45", 45), ("1d", 86400)]
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert service.parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "0s", "-1h", "1h2x"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        service.parse_interval(text)


def test_bad_interval_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["collector", "--every", "soon"]) == 2  # before any broker connection
    assert "--every 'soon'" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_mid_publish_finishes_the_run_and_exits_0(tmp_path: Path) -> None:
    """The collector stops like every other service: a SIGTERM while it publishes finishes the run."""
    import json
    import subprocess
    import sys
    import uuid

    from shared.transport import open_amqp

    zones = {f"z{i}.test": [{"type": "A", "name": "www", "ttl": 60, "target": "192.0.2.1"}] for i in range(1500)}
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(zones))
    prefix = f"test-{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "DCC_QUEUE_PREFIX": prefix}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "collector", "--once", "--from-zones-json", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    transport = open_amqp(prefix=prefix)
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()  # printed before publishing starts
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "SIGTERM" in err
        assert transport.depth(REPORT) == 1 and transport.depth(RESOLVE) == len(zones), run_id
    finally:
        if proc.poll() is None:
            proc.kill()
        transport.delete([REPORT, RESOLVE], exchanges=True)  # type: ignore[attr-defined]
        transport.close()
