"""The collector service: RunStarted first, one snapshot per zone, run ids on stdout, --every."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

import msgspec
import pytest

from services.collector import fetch_zones, service
from shared.config import Config
from shared.messages import Message, RunStarted, ZoneSnapshot, decode
from shared.transport.base import REPORT, RESOLVE
from shared.transport.memory import InMemoryTransport
from tests.collector.knot import KnotServer


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"from_zones_json": None, "once": False, "every": None, "skip_unchanged": False}
    base.update(kw)
    return argparse.Namespace(**base)


def drain(transport: InMemoryTransport, queue: str) -> list[Message]:
    consumer = transport.consumer(queue, prefetch=100_000)
    out = []
    while (delivery := consumer.get(timeout=0)) is not None:
        out.append(decode(delivery.body))
        consumer.ack(delivery)
    consumer.close()
    return out


def knot_config(knot: KnotServer, zones: list[str], **extra: object) -> Config:
    data = {
        "nameserver_zones": {f"{knot.address}:{knot.port}": zones},
        **extra,
    }
    return msgspec.json.decode(msgspec.json.encode(data), type=Config)


def test_once_publishes_run_started_then_snapshots(knot: KnotServer, capsys: pytest.CaptureFixture[str]) -> None:
    transport = InMemoryTransport()
    config = knot_config(knot, ["small.test", "refused.test", "also.test"])
    assert service.main(args(once=True), config, transport) == 0
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
    assert fetch_zones.main(argparse.Namespace(output=str(out)), config) == 0
    axfr_transport, json_transport = InMemoryTransport(), InMemoryTransport()
    assert service.main(args(once=True), config, axfr_transport) == 0
    assert service.main(args(once=True, from_zones_json=str(out)), Config(), json_transport) == 0
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
    assert service.main(args(once=True, from_zones_json=str(bad)), Config(), transport) == 2
    transport.declare([REPORT])
    assert drain(transport, REPORT) == []


def test_every_runs_repeatedly_and_stops_on_sigterm(knot: KnotServer, capsys: pytest.CaptureFixture[str]) -> None:
    transport = InMemoryTransport()
    timer = threading.Timer(0.9, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        status = service.main(args(every="0.3s"), knot_config(knot, ["also.test"]), transport)
    finally:
        timer.cancel()
    assert status == 0
    assert time.monotonic() - started < 3
    ids = capsys.readouterr().out.split()
    assert len(ids) >= 2 and len(set(ids)) == len(ids)
    runs = drain(transport, REPORT)
    assert [r.run_id for r in runs if isinstance(r, RunStarted)] == ids
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored


def test_skip_unchanged_starts_no_run_when_nothing_changed(
    knot: KnotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = knot_config(knot, ["small.test", "also.test"], state_dir=str(tmp_path))
    transport = InMemoryTransport()
    assert service.main(args(once=True, skip_unchanged=True), config, transport) == 0
    assert service.main(args(once=True, skip_unchanged=True), config, transport) == 0
    assert len(capsys.readouterr().out.split()) == 1
    assert len(drain(transport, REPORT)) == 1 and len(drain(transport, RESOLVE)) == 2


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("45", 45), ("1d", 86400)]
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert service.parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "0s", "-1h", "1h2x"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        service.parse_interval(text)


def test_bad_interval_is_exit_2() -> None:
    assert service.main(args(every="soon"), Config(), InMemoryTransport()) == 2
