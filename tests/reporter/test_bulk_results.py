"""Runs of many results, as scanners send them (50 to a broker message): the reporter stage hands
whole batches to its handler, and its journal keeps entry after entry readable through a failed write."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.reporter import runner as reporter_runner
from services.reporter.journal import RunJournal
from shared.batches import JOBS_PER_BATCH
from shared.config import Config
from shared.messages import Batch, Message, PlannedJob, RunStarted, ScanResult, ZonePlan
from shared.runner import Handler, Stage, StorageUnavailable, serve_stage
from shared.transport import REPORT, InMemoryTransport, Outgoing

RUN = "20261202T120000Z-b0b0b0b0"
ZONE = "bulk.test"
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def results(count: int) -> list[ScanResult]:
    return [
        ScanResult(
            job_id=f"job{i:05d}",
            run_id=RUN,
            zone=ZONE,
            ip_address="192.0.2.1",
            port=443,
            fqdn=f"h{i}.{ZONE}",
            findings=[],
            scanned_at=NOW,
        )
        for i in range(count)
    ]


def plan(found: list[ScanResult]) -> ZonePlan:
    return ZonePlan(run_id=RUN, zone=ZONE, jobs=[PlannedJob(r.job_id, r.ip_address, r.port, r.fqdn) for r in found])


class _Recording(Handler):
    """The stage's own handler, with a note of how many messages each call brought."""

    def __init__(self, inner: Handler) -> None:
        self.inner = inner
        self.calls: list[list[Message]] = []

    def handle(self, message: Message) -> list[Outgoing]:
        self.calls.append([message])
        return self.inner.handle(message)

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        self.calls.append(list(messages))
        for index, message in enumerate(messages):
            yield index, self.inner.handle(message)

    def tick(self) -> list[Outgoing]:
        return self.inner.tick()


def test_the_reporter_stage_takes_each_batch_of_results_whole_not_one_result_per_turn(tmp_path: Path) -> None:
    found = results(20 * JOBS_PER_BATCH)
    transport = InMemoryTransport()
    transport.declare([REPORT])
    transport.publish(REPORT, RunStarted(run_id=RUN, started_at=NOW, zones=[ZONE]))
    transport.publish(REPORT, plan(found))
    for start in range(0, len(found), JOBS_PER_BATCH):
        transport.publish(REPORT, Batch(messages=list(found[start : start + JOBS_PER_BATCH])))
    stage = reporter_runner.directory_stage(Config(), tmp_path)
    recording = _Recording(stage.handler)
    stop = threading.Event()
    worker = threading.Thread(
        target=serve_stage,
        args=(transport, Stage(stage.queue, recording, stage.options, stage.publishes), stop),
        daemon=True,
    )
    worker.start()
    try:
        deadline = time.monotonic() + 120  # a bound on the wait, not a figure under test
        while not (tmp_path / f"{RUN}.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert (tmp_path / f"{RUN}.csv").read_text() == "ip_address,port,fqdn,status,message\n"
    with_results = [call for call in recording.calls if any(isinstance(m, ScanResult) for m in call)]
    handed = [m for call in with_results for m in call if isinstance(m, ScanResult)]
    assert sorted(r.job_id for r in handed) == [r.job_id for r in found]  # each once
    assert len(with_results) <= len(found) // JOBS_PER_BATCH, "a batch's results go to the handler together"


def test_a_journal_entry_cut_short_by_a_full_file_is_cut_back_and_the_next_append_follows_the_last_whole_one(
    tmp_path: Path,
) -> None:
    found = results(30)
    journal = RunJournal(tmp_path)
    journal.append(RUN, RunStarted(run_id=RUN, started_at=NOW, zones=[ZONE]))
    for result in found[:10]:
        journal.append(RUN, result)
    size = (tmp_path / f"{RUN}.journal").stat().st_size
    # A real short write: the kernel refuses to grow the file past 20 more bytes (EFBIG; Python
    # ignores SIGXFSZ), so the entry below is written in part and then fails.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, hard))
    try:
        with pytest.raises(StorageUnavailable, match="cannot journal"):
            journal.append(RUN, plan(found))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (tmp_path / f"{RUN}.journal").stat().st_size == size  # the torn entry is gone
    for result in found[10:]:
        journal.append(RUN, result)
    journal.close()
    replayed = list(RunJournal(tmp_path).replay())
    assert [type(m).__name__ for m in replayed] == ["RunStarted"] + ["ScanResult"] * 30
    assert [m.job_id for m in replayed if isinstance(m, ScanResult)] == [r.job_id for r in found]
