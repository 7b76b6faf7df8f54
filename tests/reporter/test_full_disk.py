"""A full disk under the reporter is its own storage failing, not a poison message: the service
pauses with the work still on the queue and finishes the run, every finding once, when space
comes back. A real filesystem (a tmpfs the test mounts, so the test needs root, as CI has) and
the real broker."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.reporter import runner as reporter_runner
from shared import findings
from shared.config import Config
from shared.messages import Message, PlannedJob, RunStarted, ScanResult, ZonePlan
from shared.runner import Handler, ServeOptions, StorageUnavailable, serve, serve_stage
from shared.transport import REPORT, InMemoryTransport, Outgoing, Transport
from tests.transport.conftest import new_amqp

RUN = "20261201T120000Z-0d15cf00"
ZONE = "disk.test"
JOBS = 300


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real filesystem that runs out of space."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write until the filesystem says ENOSPC; the filler file is returned to free it later."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def messages() -> list[Message]:
    ids = [f"job{i:04d}" for i in range(JOBS)]
    out: list[Message] = [
        RunStarted(run_id=RUN, started_at=datetime.now(UTC), zones=[ZONE]),
        ZonePlan(run_id=RUN, zone=ZONE, jobs=[PlannedJob(j, "192.0.2.1", 443, f"{j}.{ZONE}") for j in ids]),
    ]
    expired = findings.error(findings.Code.CERT_EXPIRED)
    out += [
        ScanResult(
            job_id=j,
            run_id=RUN,
            zone=ZONE,
            ip_address="192.0.2.1",
            port=443,
            fqdn=f"{j}.{ZONE}",
            findings=[expired],
            scanned_at=datetime.now(UTC),
        )
        for j in ids
    ]
    return out


@pytest.mark.slow
def test_a_full_disk_pauses_the_reporter_and_the_run_completes_with_every_finding_once_space_is_back(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dcc.runner")
    transport = new_amqp(reconnect_for=20)
    reports = small_disk / "reports"
    stage = reporter_runner.directory_stage(Config(), reports)
    filler = fill(small_disk)
    stop = threading.Event()
    worker = threading.Thread(target=serve_stage, args=(transport, stage, stop), daemon=True)
    try:
        transport.declare([REPORT])
        worker.start()
        for message in messages():
            transport.publish(REPORT, message)
        time.sleep(4)  # long enough for every retry the old code made before dead-lettering
        assert transport.dead_letters(REPORT) == []
        assert not (reports / f"{RUN}.csv").exists()
        assert transport.depth(REPORT) > 0  # the rest waits on the queue, not in a dead-letter queue

        filler.unlink()
        deadline = time.monotonic() + 60
        while not (reports / f"{RUN}.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        rows = list(csv.DictReader((reports / f"{RUN}.csv").open()))
        assert sorted(r["fqdn"] for r in rows) == sorted(f"job{i:04d}.{ZONE}" for i in range(JOBS))
        assert {r["message"] for r in rows} == {"certificate has expired"}
        assert transport.dead_letters(REPORT) == []
        paused = [r for r in caplog.records if "paused" in r.getMessage()]
        assert len(paused) == 1, "a storage outage is logged once, not per message"
        assert any("resumed" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        worker.join(timeout=30)
        transport.delete([REPORT], exchanges=True)
        transport.close()


class _FlakyStore(Handler):
    """Its storage refuses ``failures`` writes, then works."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.handled: list[Message] = []

    def handle(self, message: Message) -> list[Outgoing]:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("No space left on device")
        self.handled.append(message)
        return []


def _run_until(transport: Transport, handler: _FlakyStore, count: int) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(transport, REPORT, handler, stop, ServeOptions()), daemon=True)
    worker.start()
    deadline = time.monotonic() + 20
    while len(handler.handled) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(timeout=10)


def test_storage_that_refuses_writes_is_waited_for_never_retried_away_or_dead_lettered() -> None:
    transport = InMemoryTransport()
    transport.declare([REPORT])
    sent = messages()[:5]
    for message in sent:
        transport.publish(REPORT, message)
    handler = _FlakyStore(failures=4)  # more failures than the runner's retry attempts
    _run_until(transport, handler, len(sent))
    assert handler.handled == sent  # in order, each once
    assert transport.dead_letters(REPORT) == []


def test_a_stop_during_a_storage_outage_gives_the_held_message_back() -> None:
    transport = InMemoryTransport()
    transport.declare([REPORT])
    transport.publish(REPORT, messages()[0])
    handler = _FlakyStore(failures=10_000)
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(transport, REPORT, handler, stop, ServeOptions()), daemon=True)
    worker.start()
    time.sleep(1.0)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert transport.dead_letters(REPORT) == [] and transport.depth(REPORT) == 1
