"""Scanning many endpoints at once with SSLyze's CERTIFICATE_INFO, politely and with hard deadlines.

We drive SSLyze's own building blocks (connectivity test, the CERTIFICATE_INFO scan jobs and their
result analysis) on our own thread pools rather than through ``sslyze.Scanner``, because the
Scanner cannot give what the scanner service needs:
- its limits are per scan request: here every connection to an address takes a slot of that
  address (``max_connections_per_ip``), whichever job it belongs to, so 100 names on one
  server never mean 500 connections to it;
- it returns results only after every connectivity test of the batch and polls every 0.2 s:
  here each endpoint is reported as soon as it is done;
- it has no deadline: here each endpoint has one (``scan_timeout``), and a fast probe costing at
  most one ``network_timeout`` turns away silent, refusing and plaintext endpoints first.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import re
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning
from sslyze import CertificateInfoExtraArgument, ServerNetworkConfiguration, ServerNetworkLocation
from sslyze.errors import (
    ConnectionToServerFailed,
    ConnectionToServerTimedOut,
    ServerRejectedConnection,
    TlsHandshakeFailed,
    TlsHandshakeTimedOut,
)
from sslyze.plugins.certificate_info.implementation import CertificateInfoImplementation, CertificateInfoScanResult
from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository
from sslyze.plugins.plugin_base import ScanJob as SslyzeJob
from sslyze.plugins.plugin_base import ScanJobResult
from sslyze.server_connectivity import ServerConnectivityInfo, check_connectivity_to_server

from services.scanner import probe as probing
from services.scanner.analysis import analyse, certificate_facts
from services.scanner.chains import deployments_from
from shared import findings
from shared.config import Config
from shared.messages import CertificateFacts, Finding

log = logging.getLogger("dcc.scanner")

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


@dataclass(frozen=True)
class ScanSettings:
    network_timeout: float = 5.0
    scan_timeout: float = 20.0
    concurrency: int = 100  # endpoints in progress at once
    max_connections_per_ip: int = 5
    min_time_to_expiration: int = 2592000
    custom_ca_file: Path | None = None
    network_max_retries: int = 1  # the probe already vetted the endpoint; retries only cost time

    @classmethod
    def from_config(cls, config: Config) -> ScanSettings:
        return cls(
            network_timeout=config.network_timeout,
            scan_timeout=config.scan_timeout,
            concurrency=max(1, config.scan_concurrency),
            max_connections_per_ip=max(1, config.max_connections_per_ip),
            min_time_to_expiration=config.min_time_to_expiration,
            custom_ca_file=Path(config.custom_ca_file) if config.custom_ca_file else None,
        )


@dataclass(frozen=True)
class Target:
    ip: str
    port: int
    sni: str


@dataclass(frozen=True)
class Outcome:
    findings: list[Finding]
    scanned_at: datetime
    duration_s: float = 0.0
    certificate: CertificateFacts | None = None


class _DeadlineExceeded(Exception):
    pass


class _Aborted(Exception):
    """The endpoint cannot be analysed; ``finding`` says why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def target_problem(target: Target) -> Finding | None:
    """Inputs SSLyze must never see: a wildcard or invalid SNI breaks it, a missing IP makes it resolve."""
    try:
        ipaddress.ip_address(target.ip)
    except ValueError:
        return findings.error(findings.SCAN_ERROR, f"cannot scan: {target.ip!r} is not an IP address")
    if not 0 < target.port < 65536:
        return findings.error(findings.SCAN_ERROR, f"cannot scan: {target.port} is not a TCP port")
    name = target.sni.rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return findings.error(findings.SCAN_ERROR, f"cannot scan with SNI {target.sni!r}: not a host name")
    return None


def connection_failure(exc: ConnectionToServerFailed) -> Finding:
    """SSLyze's connection errors as findings that name the cause."""
    if isinstance(exc, ConnectionToServerTimedOut):
        return findings.error(findings.CONNECT_TIMEOUT, probing.CONNECT_TIMED_OUT)
    if isinstance(exc, TlsHandshakeTimedOut):
        return findings.error(findings.CONNECT_TIMEOUT, probing.HANDSHAKE_TIMED_OUT)
    if isinstance(exc, ServerRejectedConnection):
        return findings.error(findings.CONNECT_REFUSED, probing.REFUSED)
    if isinstance(exc, TlsHandshakeFailed):
        return findings.error(findings.TLS_HANDSHAKE_FAILED, f"TLS handshake failed: {exc.error_message}")
    return findings.error(findings.CONNECT_ERROR, f"connection failed: {exc.error_message}")


class _Slot:
    """Holds one connection slot of an address (a plain class: sslyze's exceptions are frozen
    dataclasses, and ``contextlib.contextmanager`` fails re-raising them through a generator)."""

    def __init__(self, semaphore: threading.BoundedSemaphore, deadline: float) -> None:
        self._semaphore = semaphore
        self._deadline = deadline

    def __enter__(self) -> None:
        if not self._semaphore.acquire(timeout=max(0.0, self._deadline - time.monotonic())):
            raise _DeadlineExceeded

    def __exit__(self, *exc: object) -> None:
        self._semaphore.release()


class _AddressSlots:
    """At most ``limit`` connections to one address at a time, across every scan of this process."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def slot(self, ip: str, deadline: float) -> _Slot:
        with self._lock:
            semaphore = self._slots.get(ip)
            if semaphore is None:
                semaphore = self._slots[ip] = threading.BoundedSemaphore(self._limit)
        return _Slot(semaphore, deadline)


def _load_trust_stores() -> None:
    """Parse SSLyze's bundled stores once, up front, rather than racing to in the first scans; one of
    their roots has a negative serial that ``cryptography`` warns about (not ours to fix)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        TrustStoresRepository.get_default()


class Engine:
    """Scans endpoints; thread pools and per-address limits are shared by every batch."""

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self._endpoints = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="dcc-scan")
        # CERTIFICATE_INFO runs 4 handshakes per endpoint, concurrently so latency is one handshake.
        self._connections = ThreadPoolExecutor(max_workers=settings.concurrency * 4, thread_name_prefix="dcc-tls")
        self._slots = _AddressSlots(settings.max_connections_per_ip)
        self._extra = (
            CertificateInfoExtraArgument(custom_ca_file=settings.custom_ca_file) if settings.custom_ca_file else None
        )
        _load_trust_stores()

    def close(self) -> None:
        self._endpoints.shutdown(wait=False, cancel_futures=True)
        self._connections.shutdown(wait=False, cancel_futures=True)

    def scan_many(self, targets: Sequence[Target]) -> Iterator[tuple[int, Outcome]]:
        """Yield ``(index, outcome)`` for every target as soon as it is done; never more than ``scan_timeout``
        after its scan started (a queued scan's clock starts when a worker takes it)."""
        done: queue.Queue[tuple[int, Outcome]] = queue.Queue()
        started: dict[int, tuple[float, datetime]] = {}
        for index, target in enumerate(targets):
            self._endpoints.submit(self._run, index, target, started, done)
        pending = set(range(len(targets)))
        limit = self.settings.scan_timeout
        while pending:
            running = [started[i][0] for i in pending if i in started]
            wait = min(running) + limit - time.monotonic() if running else 0.5
            try:
                index, outcome = done.get(timeout=max(0.01, min(wait, 0.5)))
            except queue.Empty:
                now = time.monotonic()
                for index in sorted(i for i in pending if i in started and now >= started[i][0] + limit):
                    pending.discard(index)
                    log.warning("scan of %s exceeded %gs", targets[index], limit)
                    yield index, self._timed_out(started[index][1])
                continue
            if index in pending:  # else: already reported as timed out
                pending.discard(index)
                yield index, outcome

    def scan_one(self, target: Target) -> Outcome:
        return next(outcome for _, outcome in self.scan_many([target]))

    def _timed_out(self, scanned_at: datetime) -> Outcome:
        limit = self.settings.scan_timeout
        finding = findings.error(findings.SCAN_TIMEOUT, f"scan did not finish within {limit:g}s")
        return Outcome([finding], scanned_at, limit)

    def _run(
        self,
        index: int,
        target: Target,
        started: dict[int, tuple[float, datetime]],
        done: queue.Queue[tuple[int, Outcome]],
    ) -> None:
        start, scanned_at = time.monotonic(), datetime.now(UTC)
        started[index] = (start, scanned_at)
        certificate: CertificateFacts | None = None
        try:
            found, certificate = self._scan(target, start + self.settings.scan_timeout)
        except _Aborted as exc:
            found = [exc.finding]
        except _DeadlineExceeded:
            found = self._timed_out(scanned_at).findings
        except Exception as exc:  # a bug here or in sslyze must become a row, not a lost endpoint
            log.exception("scanning %s failed", target)
            found = [findings.error(findings.SCAN_ERROR, f"scan failed: {type(exc).__name__}: {exc}")]
        done.put((index, Outcome(found, scanned_at, time.monotonic() - start, certificate)))

    def _scan(self, target: Target, deadline: float) -> tuple[list[Finding], CertificateFacts | None]:
        settings = self.settings
        problem = target_problem(target)
        if problem is not None:
            return [problem], None
        with self._slots.slot(target.ip, deadline):
            timeout = min(settings.network_timeout, max(0.01, deadline - time.monotonic()))
            failure = probing.probe(target.ip, target.port, target.sni, timeout)
        if failure is not None:
            return [failure], None

        location = ServerNetworkLocation(hostname=target.sni, port=target.port, ip_address=target.ip)
        network = ServerNetworkConfiguration(
            tls_server_name_indication=target.sni,
            network_timeout=settings.network_timeout,  # type: ignore[arg-type]  # annotated int, used as float
            network_max_retries=settings.network_max_retries,
        )
        with self._slots.slot(target.ip, deadline):
            try:
                probing_result = check_connectivity_to_server(location, network)
            except ConnectionToServerFailed as exc:
                raise _Aborted(connection_failure(exc)) from None
        server = ServerConnectivityInfo(
            server_location=location, network_configuration=network, tls_probing_result=probing_result
        )
        jobs = CertificateInfoImplementation.scan_jobs_for_scan_command(server, self._extra)
        futures = [self._connections.submit(self._run_job, target.ip, job, deadline) for job in jobs]
        results = [self._wait(future, deadline) for future in futures]
        try:
            result: CertificateInfoScanResult = CertificateInfoImplementation.result_for_completed_scan_jobs(
                server, results
            )
        except ConnectionToServerFailed as exc:
            raise _Aborted(connection_failure(exc)) from None
        deployments = deployments_from(result, target.sni, settings.custom_ca_file)
        facts = certificate_facts(deployments[0].received_chain) if deployments else None
        found = analyse(deployments, target.sni, settings.min_time_to_expiration, datetime.now(UTC))
        return found, facts

    def _run_job(self, ip: str, job: SslyzeJob, deadline: float) -> ScanJobResult:
        try:
            with self._slots.slot(ip, deadline):
                value: Any = job.function_to_call(*job.function_arguments)
        except Exception as exc:  # handed to sslyze's analysis, which knows which ones are fatal
            return ScanJobResult(_return_value=None, _exception=exc)
        return ScanJobResult(_return_value=value, _exception=None)

    @staticmethod
    def _wait(future: Future[ScanJobResult], deadline: float) -> ScanJobResult:
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise _DeadlineExceeded from None
