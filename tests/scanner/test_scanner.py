"""The scanner against the lab: real TLS servers on loopback, real SSLyze, the real handler."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab import Lab, LabEndpoint
from services.scanner.handler import ScannerHandler
from services.scanner.probe import CLOSED
from services.scanner.runner import make_handler, serve_options
from services.scanner.scan import Engine, ScanSettings, Target
from shared import findings
from shared.batches import JOBS_PER_BATCH
from shared.config import Config, ScanMode
from shared.messages import ScanJob, ScanResult, ZonePlan, job_id
from shared.runner import PermanentError
from shared.transport.base import REPORT

from .conftest import NETWORK_TIMEOUT
from .slow_server import SlowServer, wildcard_context

RUN = "20260301T000000Z-test"


def scan_job(endpoint: LabEndpoint, sni: str | None = None, fqdn: str | None = None) -> ScanJob:
    name = sni or endpoint.hostname
    return ScanJob(
        job_id=job_id(RUN, endpoint.ip, endpoint.port, fqdn or name, name),
        run_id=RUN,
        zone="lab.test",
        ip_address=endpoint.ip,
        port=endpoint.port,
        fqdn=fqdn or name,
        sni=name,
    )


def run_batch(handler: ScannerHandler, jobs: list[ScanJob]) -> dict[int, tuple[ScanResult, float]]:
    """Results by input index, with the time each one came out after the batch started."""
    start = time.monotonic()
    results: dict[int, tuple[ScanResult, float]] = {}
    for index, outputs in handler.handle_batch(jobs):
        assert index not in results, "every job is answered exactly once"
        (out,) = outputs
        assert out.destination == REPORT and isinstance(out.message, ScanResult)
        results[index] = (out.message, time.monotonic() - start)
    assert sorted(results) == list(range(len(jobs)))
    return results


def test_every_lab_endpoint_gets_exactly_its_expected_findings(lab: Lab, handler: ScannerHandler) -> None:
    jobs = [scan_job(e) for e in lab.endpoints]
    results = run_batch(handler, jobs)
    for index, endpoint in enumerate(lab.endpoints):
        result, _ = results[index]
        assert (result.job_id, result.ip_address, result.port, result.fqdn) == (
            jobs[index].job_id,
            endpoint.ip,
            endpoint.port,
            endpoint.hostname,
        )
        got = tuple((f.code, f.message) for f in result.findings)
        assert got == endpoint.expected, endpoint.case
        assert all(
            f.status == ("warning" if f.code == findings.Code.CERT_EXPIRING else "error") for f in result.findings
        )
        assert result.scanned_at.tzinfo is not None and result.scanned_at <= datetime.now(UTC)
    healthy = [e for e in lab.endpoints if not e.expected]
    assert {e.case for e in healthy} == {"valid", "valid6"}


def test_certificate_facts_come_even_for_invalid_certificates(lab: Lab, handler: ScannerHandler) -> None:
    cases = ["valid", "expired", "self_signed", "mismatch", "refused"]
    results = run_batch(handler, [scan_job(lab.endpoint(c)) for c in cases])
    facts = {case: results[i][0].certificate for i, case in enumerate(cases)}
    assert facts["valid"] is not None and facts["valid"].subject == "CN=valid.lab.test,O=dns-cert-checker lab"
    assert facts["valid"].chain_length == 2 and facts["valid"].san == ["valid.lab.test"]
    assert facts["expired"] is not None and facts["expired"].not_after < datetime.now(UTC)
    assert facts["self_signed"] is not None and facts["self_signed"].subject == facts["self_signed"].issuer
    assert facts["mismatch"] is not None and facts["mismatch"].san == ["other-name.example.test"]
    assert facts["refused"] is None


def test_a_silent_endpoint_costs_about_one_timeout_and_delays_nobody(lab: Lab, handler: ScannerHandler) -> None:
    hung, valid, refused = lab.endpoint("hung"), lab.endpoint("valid"), lab.endpoint("refused")
    results = run_batch(handler, [scan_job(hung), scan_job(valid), scan_job(refused)])
    hung_result, hung_at = results[0]
    assert [f.code for f in hung_result.findings] == [findings.Code.CONNECT_TIMEOUT]
    assert hung_at < 3 * NETWORK_TIMEOUT and hung_result.duration_s < 3 * NETWORK_TIMEOUT
    # the others come out as soon as they are done, not after the silent one
    assert results[1][1] < hung_at and results[2][1] < hung_at
    assert results[1][0].findings == [] and [f.code for f in results[2][0].findings] == [findings.Code.CONNECT_REFUSED]


def test_the_name_scanned_is_the_sni_and_the_row_keeps_the_fqdn(lab: Lab, handler: ScannerHandler) -> None:
    valid = lab.endpoint("valid")
    wildcard = scan_job(valid, sni="*.lab.test")  # the resolver never sends this; guard anyway
    other_name = scan_job(valid, sni="www.lab.test")
    synthetic = scan_job(valid, sni="dcc-wildcard-probe.lab.test", fqdn="*.lab.test")
    results = run_batch(handler, [wildcard, other_name, synthetic])
    (error,) = results[0][0].findings
    assert error.code == findings.Code.SCAN_ERROR and "*.lab.test" in error.message
    assert [f.code for f in results[1][0].findings] == [findings.Code.HOSTNAME_MISMATCH]
    assert results[2][0].fqdn == "*.lab.test"
    assert [f.code for f in results[2][0].findings] == [findings.Code.HOSTNAME_MISMATCH]


def test_without_the_custom_ca_a_private_chain_is_one_untrusted_row(lab: Lab) -> None:
    handler = ScannerHandler(ScanSettings(network_timeout=NETWORK_TIMEOUT, scan_timeout=10.0))
    try:
        results = run_batch(handler, [scan_job(lab.endpoint("valid")), scan_job(lab.endpoint("untrusted_root"))])
    finally:
        handler.close()
    assert [(f.code, f.message) for f in results[0][0].findings] == [
        (findings.Code.MISSING_ISSUER, "unable to get local issuer certificate")
    ]
    assert [f.code for f in results[1][0].findings] == [findings.Code.UNTRUSTED_ROOT]


def test_connections_per_address_stay_within_the_limit(lab: Lab) -> None:
    valid = lab.endpoint("valid")
    settings = ScanSettings(
        network_timeout=2.0, scan_timeout=20.0, max_connections_per_ip=2, custom_ca_file=lab.ca_file
    )
    handler = ScannerHandler(settings)
    lab.reset_peaks()
    try:
        results = run_batch(handler, [scan_job(valid, sni=valid.hostname, fqdn=f"n{i}.lab.test") for i in range(12)])
    finally:
        handler.close()
    assert all(r.findings == [] for r, _ in results.values())
    # Seen from the server, a closed connection lingers until its thread reads the EOF, so allow
    # that lag; without the limit, 12 scans × (1 + 4 handshakes) would reach far beyond it.
    assert 1 <= lab.peak_connections(valid.ip) <= 2 + 2


def test_silent_endpoints_are_probed_within_the_per_address_limit() -> None:
    """Each probe of a silent server holds its connection for the whole timeout: with 2 slots,
    6 probes need 3 rounds, and the server never sees more than 2 at once (counted exactly)."""
    timeout = 0.4
    settings = ScanSettings(network_timeout=timeout, scan_timeout=10.0, max_connections_per_ip=2)
    handler = ScannerHandler(settings)
    with SlowServer(None, delay=0.0) as silent:
        hung = LabEndpoint("hung", "hung.lab.test", silent.ip, silent.port, ())
        try:
            start = time.monotonic()
            results = run_batch(handler, [scan_job(hung, fqdn=f"n{i}.lab.test") for i in range(6)])
            elapsed = time.monotonic() - start
        finally:
            handler.close()
    assert all([f.code for f in r.findings] == [findings.Code.CONNECT_TIMEOUT] for r, _ in results.values())
    assert elapsed >= 3 * timeout * 0.9
    assert 1 <= silent.peak <= 2 and silent.accepted == 6


def test_no_more_than_concurrency_endpoints_are_in_progress_on_the_loop_and_the_workers_together() -> None:
    """Fast-path handshakes run on the handshake loop, full scans on workers: ``concurrency`` bounds
    both together. 9 silent endpoints (fast and full mixed), 3 places, a 0.3 s timeout: 3 rounds, and
    the server never holds more than 3 connections."""
    timeout = 0.3
    settings = ScanSettings(network_timeout=timeout, scan_timeout=10.0, concurrency=3, max_connections_per_ip=20)
    engine = Engine(settings)
    with SlowServer(None, delay=0.0) as silent:
        modes: list[ScanMode] = ["fast", "full", "fast"] * 3
        targets = [Target(silent.ip, silent.port, f"n{i}.lab.test", mode=m) for i, m in enumerate(modes)]
        try:
            start = time.monotonic()
            outcomes = dict(engine.scan_many(targets))
            elapsed = time.monotonic() - start
        finally:
            engine.close()
    assert all([f.code for f in o.findings] == [findings.Code.CONNECT_TIMEOUT] for o in outcomes.values())
    assert sorted(outcomes) == list(range(9))
    assert elapsed >= 3 * timeout * 0.9
    assert 1 <= silent.peak <= 3 and silent.accepted == 9


@pytest.mark.parametrize(("mode", "connections"), [("fast", 1), ("full", 4)])
def test_many_names_on_one_slow_address_take_turns_without_timing_out(
    tmp_path: Path, mode: ScanMode, connections: int
) -> None:
    """Names sharing an address (an ingress IP, shared hosting) wait for their address's turn, and
    that wait is not their scan's time. Here 48 names sit behind one address where every handshake
    takes 0.1 s: a scan makes 1 (fast) or 4 (full) connections, the address takes 5 at once, so the
    batch needs up to ~4 s.
    When every scan's clock started with the batch, the 4 s deadline turned about half of the rows
    into SCAN_TIMEOUT; now a scan starts only once its address has room for it."""
    context, ca_file = wildcard_context("slow.lab.test", tmp_path)
    settings = ScanSettings(network_timeout=2.0, scan_timeout=4.0, custom_ca_file=ca_file, scan_mode=mode)
    names = 48
    handler = ScannerHandler(settings)
    with SlowServer(context, delay=0.1) as server:
        jobs = [scan_job(LabEndpoint("slow", f"n{i}.slow.lab.test", server.ip, server.port, ())) for i in range(names)]
        try:
            results = run_batch(handler, jobs)
        finally:
            handler.close()
    codes = Counter(tuple(f.code for f in r.findings) for r, _ in results.values())
    assert codes == {(): names}  # healthy, every one: no SCAN_TIMEOUT
    assert all(r.duration_s < settings.scan_timeout for r, _ in results.values())
    assert 2 <= server.peak <= settings.max_connections_per_ip
    # fast: the one handshake; full: that handshake (TLS 1.3: also the connectivity test and
    # CERTIFICATE_INFO's first job), then its 3 other handshakes
    assert server.accepted >= connections * names
    came_out = sorted(at for _, at in results.values())
    assert came_out[0] < came_out[-1] / 2  # each reported when done, not all at the end of the batch


def test_each_scan_has_a_hard_deadline(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    # a STARTTLS port: the scan runs on a worker (a handshake on a direct TLS port runs on the
    # handshake loop, whose deadline tests/scanner/test_handshake_loop.py checks)
    engine = Engine(ScanSettings(network_timeout=5.0, scan_timeout=0.5, starttls=((9, "smtp"),)))
    release = threading.Event()

    def stuck(endpoint: object) -> tuple[list[findings.Finding], None]:
        release.wait(10)  # a scan that never returns by itself
        return [], None

    monkeypatch.setattr(engine, "_scan", stuck)
    try:
        start = time.monotonic()
        outcome = engine.scan_one(Target("127.0.0.1", 9, "x.lab.test"))
        elapsed = time.monotonic() - start
    finally:
        release.set()
        engine.close()
    assert [(f.code, f.message) for f in outcome.findings] == [
        (findings.Code.SCAN_TIMEOUT, "scan did not finish within 0.5s")
    ]
    assert elapsed < 2.0


def test_a_scan_that_raises_becomes_a_scan_error(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(ScanSettings(network_timeout=1.0, scan_timeout=5.0, starttls=((9, "smtp"),)))  # on a worker

    def broken(endpoint: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "_scan", broken)
    try:
        outcome = engine.scan_one(Target("127.0.0.1", 9, "x.lab.test"))
    finally:
        engine.close()
    assert [(f.code, f.message) for f in outcome.findings] == [
        (findings.Code.SCAN_ERROR, "scan failed: RuntimeError: boom")
    ]


@pytest.mark.parametrize("broken_step", ["judging the chain", "deciding what follows the handshake"])
def test_a_fast_path_step_that_raises_on_the_handshake_loop_becomes_a_scan_error(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, broken_step: str
) -> None:
    """Each endpoint gets its SCAN_ERROR row: not lost, not a SCAN_TIMEOUT at the deadline."""
    engine = Engine(ScanSettings(network_timeout=1.0, scan_timeout=5.0, custom_ca_file=lab.ca_file))

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    if broken_step == "judging the chain":
        monkeypatch.setattr(engine._judge, "judge", broken)
    else:
        monkeypatch.setattr(engine, "_chain_changed", broken)
    valid = next(e for e in lab.endpoints if e.case == "valid")
    try:
        outcomes = dict(engine.scan_many([Target(valid.ip, valid.port, valid.hostname)] * 3))
    finally:
        engine.close()
    assert [[(f.code, f.message) for f in outcomes[i].findings] for i in range(3)] == [
        [(findings.Code.SCAN_ERROR, "scan failed: RuntimeError: boom")]
    ] * 3


def test_a_handshake_the_loop_ends_at_the_deadline_is_a_scan_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop and the deadline watcher both end a handshake at its deadline; whichever comes first,
    the row is the deadline's (here the watcher never comes, so the loop is first)."""
    engine = Engine(ScanSettings(network_timeout=5.0, scan_timeout=0.5))
    monkeypatch.setattr(engine._deadlines, "watch", lambda endpoint: None)
    with SlowServer(None, delay=0.0) as silent:
        try:
            outcome = engine.scan_one(Target(silent.ip, silent.port, "x.lab.test"))
        finally:
            engine.close()
    assert [(f.code, f.message) for f in outcome.findings] == [
        (findings.Code.SCAN_TIMEOUT, "scan did not finish within 0.5s")
    ]


def test_a_fast_path_endpoint_is_still_scanned_on_a_worker_when_the_handshake_loop_is_gone(lab: Lab) -> None:
    engine = Engine(ScanSettings(network_timeout=1.0, scan_timeout=5.0, custom_ca_file=lab.ca_file))
    by_case = {e.case: e for e in lab.endpoints}
    try:
        engine._loop.stop()  # as when the loop thread failed: submit refuses from then on
        outcomes = [engine.scan_one(Target(e.ip, e.port, e.hostname)) for e in (by_case["valid"], by_case["expired"])]
    finally:
        engine.close()
    assert [[f.code for f in o.findings] for o in outcomes] == [[], [findings.Code.CERT_EXPIRED]]


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_a_server_that_hangs_up_after_the_client_hello_is_named_in_either_mode(mode: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted = []

        def hang_up() -> None:
            conn, _ = listener.accept()
            accepted.append(conn.recv(1024))
            conn.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        engine = Engine(ScanSettings(network_timeout=2.0, scan_timeout=5.0))
        try:
            outcome = engine.scan_one(Target("127.0.0.1", port, "x.lab.test", mode=mode))  # type: ignore[arg-type]
        finally:
            engine.close()
        thread.join()
    assert [(f.code, f.message) for f in outcome.findings] == [(findings.Code.TLS_HANDSHAKE_FAILED, CLOSED)]
    assert len(accepted) == 1 and accepted[0][:1] == b"\x16"  # one connection, and it began with a ClientHello


def test_a_message_that_is_not_a_scan_job_is_permanent(handler: ScannerHandler) -> None:
    plan = ZonePlan(run_id=RUN, zone="lab.test", jobs=[])
    with pytest.raises(PermanentError):
        list(handler.handle_batch([plan]))


def test_wiring_from_config(lab: Lab) -> None:
    config = Config(scan_concurrency=40, scan_timeout=12.0, network_timeout=2.0, custom_ca_file=str(lab.ca_file))
    options = serve_options(config)
    assert options.batch_size == 40 and options.workers >= 1
    # the prefetch counts broker messages, each up to JOBS_PER_BATCH jobs: two full rounds fit
    assert options.prefetch is not None
    assert options.prefetch * JOBS_PER_BATCH >= 2 * options.workers * options.batch_size
    assert options.pack == JOBS_PER_BATCH  # results leave in batches too
    assert options.drain_timeout > config.scan_timeout
    handler = make_handler(config)
    try:
        assert handler.settings.concurrency == 40 and handler.settings.custom_ca_file == lab.ca_file
        (result,) = [out[0].message for _, out in handler.handle_batch([scan_job(lab.endpoint("valid"))])]
        assert isinstance(result, ScanResult) and result.findings == []
    finally:
        handler.close()
