"""A deadline ends the work it bounds: against drip-feeding and silent servers on loopback, the
scanner reports ``SCAN_TIMEOUT`` at ``scan_timeout``, closes every connection the endpoint has open
then, and its worker and address units serve the next endpoints at once; closing the engine ends
everything in progress without waiting for any server.

The drip-feeding server sends its real TLS answer one byte per second: no socket operation ever
waits ``network_timeout``, so only closing the socket at the deadline ends such a connection."""

from __future__ import annotations

import gc
import ssl
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lab import Lab
from services.scanner.handler import ScannerHandler
from services.scanner.scan import Engine, Outcome, ScanSettings, Target
from shared import findings
from shared.config import ScanMode
from shared.messages import ScanJob, job_id
from shared.transport.base import ConnectionLost

from .slow_server import DripConnection, DripServer, SlowServer, wildcard_context

SCAN_TIMEOUT = 3.0
NETWORK_TIMEOUT = 2.0  # per socket operation: a byte every second never trips it
MARGIN = 1.0  # the deadline's work is over "within about a second"
DOMAIN = "drip.lab.test"
TIMED_OUT = [(findings.Code.SCAN_TIMEOUT, f"scan did not finish within {SCAN_TIMEOUT:g}s")]


TLS = tuple[ssl.SSLContext, Path]  # a server context for *.drip.lab.test, and its CA file


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    return wildcard_context(DOMAIN, tmp_path_factory.mktemp("drip"))


def settings(
    ca_file: Path,
    network_timeout: float = NETWORK_TIMEOUT,
    scan_timeout: float = SCAN_TIMEOUT,
    concurrency: int = 100,
    max_connections_per_ip: int = 5,
    mode: ScanMode = "fast",
) -> ScanSettings:
    return ScanSettings(
        network_timeout=network_timeout,
        scan_timeout=scan_timeout,
        concurrency=concurrency,
        max_connections_per_ip=max_connections_per_ip,
        custom_ca_file=ca_file,
        scan_mode=mode,
    )


def collect(engine: Engine, targets: list[Target]) -> tuple[float, dict[int, tuple[Outcome, float]]]:
    """When the batch started, and each outcome with the time it came out after that."""
    start = time.monotonic()
    results = {index: (outcome, time.monotonic() - start) for index, outcome in engine.scan_many(targets)}
    assert sorted(results) == list(range(len(targets)))
    return start, results


def codes(outcome: Outcome) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in outcome.findings]


def cut_off_by_the_client(connections: list[DripConnection], by: float) -> None:
    """Every dripping connection was closed by the scanner (not by the server giving up) before ``by``."""
    dripping = [c for c in connections if c.dripping]
    assert dripping
    assert all(not c.gave_up and c.closed_at is not None for c in dripping), connections
    assert max(c.closed_at or 0.0 for c in dripping) <= by, connections


@pytest.fixture(scope="module")
def tls12(tls: TLS, tmp_path_factory: pytest.TempPathFactory) -> TLS:
    """The same chain from a server that speaks TLS 1.2 at most: full mode runs SSLyze's connectivity test."""
    context, ca_file = wildcard_context(DOMAIN, tmp_path_factory.mktemp("drip12"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context, ca_file


@pytest.mark.parametrize(
    ("mode", "tls_1_3", "honest", "dripping"),
    [
        pytest.param("fast", True, 0, 1, id="the-one-handshake-drips"),
        pytest.param("full", True, 0, 1, id="full-modes-handshake-drips"),
        # our handshake passes (TLS 1.2): SSLyze's connectivity test runs, and its first connection drips
        pytest.param("full", False, 1, 1, id="connectivity-test-drips"),
        # our handshake passes (TLS 1.3: it stands for the connectivity test); the 3 other jobs drip
        pytest.param("full", True, 1, 3, id="certificate-info-jobs-drip"),
    ],
)
def test_a_drip_feeding_server_is_cut_off_at_the_deadline(
    tls: TLS, tls12: TLS, mode: ScanMode, tls_1_3: bool, honest: int, dripping: int
) -> None:
    context, ca_file = tls if tls_1_3 else tls12
    engine = Engine(settings(ca_file, mode=mode))
    try:
        with DripServer(context, honest=honest, give_up=30) as server:
            start, results = collect(engine, [Target(server.ip, server.port, f"a.{DOMAIN}")])
            ((outcome, at),) = results.values()
            assert codes(outcome) == TIMED_OUT
            assert SCAN_TIMEOUT * 0.9 <= at < SCAN_TIMEOUT + MARGIN  # reported at the deadline
            assert server.wait_closed(SCAN_TIMEOUT + 2 * MARGIN)
            cut_off_by_the_client(server.connections, by=start + SCAN_TIMEOUT + MARGIN)
            assert len([c for c in server.connections if c.dripping]) == dripping
    finally:
        closing = time.monotonic()
        idle = engine.close()
    assert idle and time.monotonic() - closing < MARGIN  # no worker is still busy with that server


def test_drip_feeders_do_not_starve_other_names_on_their_address(tls: TLS) -> None:
    """Five drip-feeding names take all five units of their address; at their deadline the units
    come back, and the healthy names behind them on that address are scanned in their own time."""
    context, ca_file = tls
    ip = "127.0.0.7"
    engine = Engine(settings(ca_file, max_connections_per_ip=5))
    try:
        with (
            DripServer(context, ip=ip, give_up=30) as drip,
            SlowServer(context, delay=0.0, ip=ip) as healthy,
        ):
            targets = [Target(ip, drip.port, f"d{i}.{DOMAIN}") for i in range(5)]
            targets += [Target(ip, healthy.port, f"h{i}.{DOMAIN}") for i in range(3)]
            start, results = collect(engine, targets)
            assert drip.wait_closed(2 * MARGIN)
            cut_off_by_the_client(drip.connections, by=start + SCAN_TIMEOUT + MARGIN)
    finally:
        assert engine.close()
    for index in range(5):
        outcome, at = results[index]
        assert codes(outcome) == TIMED_OUT and at < SCAN_TIMEOUT + MARGIN
    for index in range(5, 8):
        outcome, at = results[index]
        assert outcome.findings == [] and outcome.duration_s < SCAN_TIMEOUT
        assert at < 2 * SCAN_TIMEOUT  # not when the drip-feeding server gives up (30 s)


def test_drip_feeders_hold_no_worker_past_their_deadline(tls: TLS) -> None:
    """With two workers, two drip-feeding endpoints occupy both; at their deadline both workers are
    free, and the healthy endpoints on another address are scanned then."""
    context, ca_file = tls
    engine = Engine(settings(ca_file, concurrency=2))
    try:
        with (
            DripServer(context, ip="127.0.0.8", give_up=30) as drip,
            SlowServer(context, delay=0.0, ip="127.0.0.9") as healthy,
        ):
            targets = [Target(drip.ip, drip.port, f"d{i}.{DOMAIN}") for i in range(2)]
            targets += [Target(healthy.ip, healthy.port, f"h{i}.{DOMAIN}") for i in range(4)]
            start, results = collect(engine, targets)
            assert drip.wait_closed(2 * MARGIN)
            cut_off_by_the_client(drip.connections, by=start + SCAN_TIMEOUT + MARGIN)
    finally:
        assert engine.close()
    assert all(codes(results[i][0]) == TIMED_OUT and results[i][1] < SCAN_TIMEOUT + MARGIN for i in range(2))
    for index in range(2, 6):
        outcome, at = results[index]
        assert outcome.findings == [] and outcome.duration_s < SCAN_TIMEOUT
        assert at < 2 * SCAN_TIMEOUT


# (mode, handshake delay): scans through one slow address take >= 4.5 s for 32 names: full mode makes
# 4 connections of 0.2 s per scan, the fast path one of 0.75 s; 5 at a time
STREAMS = [pytest.param("fast", 0.75, id="fast"), pytest.param("full", 0.2, id="full")]


@pytest.mark.parametrize(("mode", "delay"), STREAMS)
def test_a_timeout_is_reported_at_its_deadline_while_results_stream_in(tls: TLS, mode: ScanMode, delay: float) -> None:
    """The consumer is busy (publishing, say) while results keep coming: the timeout takes its place
    among them at its deadline, never behind results that finished after it."""
    context, ca_file = tls
    engine = Engine(settings(ca_file, mode=mode))
    names = 32
    order: list[int] = []
    try:
        with (
            DripServer(context, ip="127.0.0.10", give_up=30) as drip,
            SlowServer(context, delay=delay, ip="127.0.0.11") as slow,
        ):
            targets = [Target(drip.ip, drip.port, f"d.{DOMAIN}")]
            targets += [Target(slow.ip, slow.port, f"s{i}.{DOMAIN}") for i in range(names)]
            outcomes: dict[int, Outcome] = {}
            start = time.monotonic()
            for index, outcome in engine.scan_many(targets):
                if not order:
                    time.sleep(max(0.0, start + SCAN_TIMEOUT + 1.5 - time.monotonic()))  # busy elsewhere
                order.append(index)
                outcomes[index] = outcome
    finally:
        assert engine.close()
    assert codes(outcomes[0]) == TIMED_OUT
    deadline = outcomes[0].scanned_at + timedelta(seconds=SCAN_TIMEOUT)

    def finished(index: int) -> datetime:
        return outcomes[index].scanned_at + timedelta(seconds=outcomes[index].duration_s)

    assert all(outcomes[i].findings == [] for i in range(1, names + 1))
    later = [i for i in range(1, names + 1) if finished(i) > deadline + timedelta(seconds=0.5)]
    assert later, "the stream should go on past the deadline"
    before = order[: order.index(0)]
    assert all(finished(i) <= deadline + timedelta(seconds=0.25) for i in before), "reported late"


def test_closing_ends_every_connection_without_waiting_for_the_server(tls: TLS) -> None:
    """Shutdown mid-scan: the handler's engine closes the probe's connection to a silent server at
    once (network_timeout is 5 s), its workers are free, and the batch ends so that its jobs go
    back to the queue (``ConnectionLost``, as when the broker connection is lost)."""
    _, ca_file = tls
    handler = ScannerHandler(settings(ca_file, network_timeout=5.0, scan_timeout=20.0))
    raised: list[BaseException] = []
    with DripServer(None, ip="127.0.0.12", give_up=30) as silent:
        job = ScanJob(
            job_id=job_id("run", silent.ip, silent.port, f"s.{DOMAIN}", f"s.{DOMAIN}"),
            run_id="run",
            zone=DOMAIN,
            ip_address=silent.ip,
            port=silent.port,
            fqdn=f"s.{DOMAIN}",
            sni=f"s.{DOMAIN}",
        )

        def consume() -> None:
            try:
                list(handler.handle_batch([job]))
            except BaseException as exc:
                raised.append(exc)

        consumer = threading.Thread(target=consume)
        consumer.start()
        until = time.monotonic() + 5
        while not silent.connections and time.monotonic() < until:
            time.sleep(0.02)
        assert silent.connections, "the probe should have connected"
        closing = time.monotonic()
        assert handler.engine.close()  # what ScannerHandler.close does, with its answer
        consumer.join(timeout=MARGIN)
        assert not consumer.is_alive()
        assert silent.wait_closed(MARGIN)
        cut_off_by_the_client(silent.connections, by=closing + MARGIN)
    assert time.monotonic() - closing < 2 * MARGIN
    assert len(raised) == 1 and isinstance(raised[0], ConnectionLost)


def test_an_endpoint_that_finished_in_time_is_not_kept_until_its_deadline(lab: Lab, settings: ScanSettings) -> None:
    """The watcher holds finished endpoints only weakly: a scanner's memory stays flat instead of
    growing by scan rate x scan_timeout (bench/scanner_throughput.py: +16 % from 1k to 10k scans)."""
    engine = Engine(settings)  # scan_timeout 10 s: every deadline is still ahead below
    try:
        valid = lab.endpoint("valid")
        for _ in range(20):
            assert engine.scan_one(Target(valid.ip, valid.port, valid.hostname)).findings == []
        gc.collect()
        watched = [ref() for _, _, ref in engine._deadlines._heap]
        assert len(watched) == 20, "each deadline is still queued"
        assert [e for e in watched if e is not None] == [], "but no finished endpoint is alive"
    finally:
        engine.close()
