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
  most one ``network_timeout`` turns away silent, refusing and plaintext endpoints first. The
  clock measures the endpoint's own scan: endpoints queue per address and one starts only when a
  connection slot of its address is reserved for it (so at most ``max_connections_per_ip`` of an
  address are in progress, none ever waits on another), and 100 names behind one ingress IP take
  their turns instead of timing out while they wait.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import queue
import re
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
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
        return findings.error(findings.Code.SCAN_ERROR, f"cannot scan: {target.ip!r} is not an IP address")
    if not 0 < target.port < 65536:
        return findings.error(findings.Code.SCAN_ERROR, f"cannot scan: {target.port} is not a TCP port")
    name = target.sni.rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return findings.error(findings.Code.SCAN_ERROR, f"cannot scan with SNI {target.sni!r}: not a host name")
    return None


def connection_failure(exc: ConnectionToServerFailed) -> Finding:
    """SSLyze's connection errors as findings that name the cause."""
    if isinstance(exc, ConnectionToServerTimedOut):
        return findings.error(findings.Code.CONNECT_TIMEOUT, probing.CONNECT_TIMED_OUT)
    if isinstance(exc, TlsHandshakeTimedOut):
        return findings.error(findings.Code.CONNECT_TIMEOUT, probing.HANDSHAKE_TIMED_OUT)
    if isinstance(exc, ServerRejectedConnection):
        return findings.error(findings.Code.CONNECT_REFUSED, probing.REFUSED)
    if isinstance(exc, TlsHandshakeFailed):
        return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, f"TLS handshake failed: {exc.error_message}")
    return findings.error(findings.Code.CONNECT_ERROR, f"connection failed: {exc.error_message}")


class _Address:
    """One address's budget of ``limit`` connections. Each unit is free, reserved by an admitted
    endpoint (its own connection, which it alone uses) or lent to an admitted endpoint for one more
    connection at once. Endpoints wait for admission here, in order, before they start."""

    def __init__(self, ip: str, limit: int, lock: threading.Lock) -> None:
        self.ip = ip
        self.free = limit
        self.changed = threading.Condition(lock)  # a unit was freed: wakes connections waiting for one
        self.waiting: deque[Callable[[_Lease], None]] = deque()  # never non-empty while ``free`` > 0


class _AddressSlots:
    """At most ``limit`` connections to one address at a time, across every scan of this process, and
    at most ``limit`` endpoints of an address in progress: an endpoint starts only once a unit of its
    address is reserved for it, so its deadline measures its own scan, never its wait for its turn."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._addresses: dict[str, _Address] = {}
        self._lock = threading.Lock()

    def admit(self, ip: str, start: Callable[[_Lease], None]) -> None:
        """Call ``start`` with a lease on ``ip`` now if it has a free unit, else when one comes back
        (first come, first served)."""
        with self._lock:
            address = self._addresses.get(ip)
            if address is None:
                address = self._addresses[ip] = _Address(ip, self._limit, self._lock)
            if address.free == 0:
                address.waiting.append(start)
                return
            address.free -= 1
        start(_Lease(self, address))

    def unit_returned(self, address: _Address) -> Callable[[_Lease], None] | None:
        """A unit comes back (the caller holds the lock): to the endpoint waiting longest, whose
        ``start`` the caller then calls with a new lease outside the lock, else to the free ones."""
        if address.waiting:
            return address.waiting.popleft()
        address.free += 1
        address.changed.notify_all()
        if address.free == self._limit:  # idle: forget it (nothing holds a unit, nobody waits)
            del self._addresses[address.ip]
        return None


class _Lease:
    """An admitted endpoint's hold on its address: the reserved unit for its own connections, plus
    free units borrowed one connection at a time, so alone at its address it runs its handshakes at
    once, and among others it still never waits on anyone but itself. ``close`` (when the endpoint
    is done) returns the reserved unit as soon as its last connection ends."""

    def __init__(self, slots: _AddressSlots, address: _Address) -> None:
        self._slots = slots
        self._address = address
        self._own_busy = False
        self._closed = False

    def connection(self, deadline: float) -> _Connection:
        return _Connection(self, deadline)

    def acquire(self, deadline: float) -> bool:
        """Wait for a unit until ``deadline``: True for the reserved one, False for a borrowed one."""
        address = self._address
        with address.changed:
            while True:
                if self._closed:  # the endpoint is done (timed out): its late connections are not made
                    raise _DeadlineExceeded
                if not self._own_busy:
                    self._own_busy = True
                    return True
                if address.free > 0:
                    address.free -= 1
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _DeadlineExceeded
                address.changed.wait(remaining)

    def release(self, own: bool) -> None:
        address = self._address
        start: Callable[[_Lease], None] | None = None
        with address.changed:
            if not own:
                start = self._slots.unit_returned(address)
            else:
                self._own_busy = False
                if self._closed:
                    start = self._slots.unit_returned(address)
                else:
                    address.changed.notify_all()  # the endpoint's own other connections may wait for it
        if start is not None:
            start(_Lease(self._slots, address))

    def close(self) -> None:
        address = self._address
        start: Callable[[_Lease], None] | None = None
        with address.changed:
            if self._closed:
                return
            self._closed = True
            if self._own_busy:  # a connection still uses it: ``release`` gives it back
                address.changed.notify_all()  # wakes the endpoint's waiting connections: they give up
            else:
                start = self._slots.unit_returned(address)
        if start is not None:
            start(_Lease(self._slots, address))


class _Connection:
    """Holds one connection unit of a lease (a plain class: sslyze's exceptions are frozen
    dataclasses, and ``contextlib.contextmanager`` fails re-raising them through a generator)."""

    def __init__(self, lease: _Lease, deadline: float) -> None:
        self._lease = lease
        self._deadline = deadline
        self._own = False

    def __enter__(self) -> None:
        self._own = self._lease.acquire(self._deadline)

    def __exit__(self, *exc: object) -> None:
        self._lease.release(self._own)


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
        self._closed = False
        _load_trust_stores()

    def close(self) -> None:
        self._closed = True
        self._endpoints.shutdown(wait=False, cancel_futures=True)
        self._connections.shutdown(wait=False, cancel_futures=True)

    def scan_many(self, targets: Sequence[Target]) -> Iterator[tuple[int, Outcome]]:
        """Yield ``(index, outcome)`` for every target as soon as it is done; never more than ``scan_timeout``
        after its scan started. A scan starts when its address can take it (fewer than
        ``max_connections_per_ip`` scans of that address in progress) and a worker is free: n names on
        one address take about ceil(n / max_connections_per_ip) scan times, none of them timing out
        for waiting."""
        if self._closed:
            raise RuntimeError("the scan engine is closed")
        done: queue.Queue[tuple[int, Outcome]] = queue.Queue()
        started: dict[int, tuple[float, datetime]] = {}
        for index, target in enumerate(targets):
            problem = target_problem(target)
            if problem is not None:  # needs no connection, so no turn at its address
                done.put((index, Outcome([problem], datetime.now(UTC))))
                continue
            # Queued per address: it reaches a worker (and its clock starts) only once its address has
            # a unit reserved for it, so names sharing an address wait their turn without a deadline.
            self._slots.admit(target.ip, functools.partial(self._start, index, target, started, done))
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
        finding = findings.error(findings.Code.SCAN_TIMEOUT, f"scan did not finish within {limit:g}s")
        return Outcome([finding], scanned_at, limit)

    def _start(
        self,
        index: int,
        target: Target,
        started: dict[int, tuple[float, datetime]],
        done: queue.Queue[tuple[int, Outcome]],
        lease: _Lease,
    ) -> None:
        """The target's address has a unit for it: hand it to a worker (called by whoever freed the unit)."""
        try:
            self._endpoints.submit(self._run, index, target, lease, started, done)
        except RuntimeError:  # the engine is closed (as before, what it had not started never finishes)
            lease.close()

    def _run(
        self,
        index: int,
        target: Target,
        lease: _Lease,
        started: dict[int, tuple[float, datetime]],
        done: queue.Queue[tuple[int, Outcome]],
    ) -> None:
        start, scanned_at = time.monotonic(), datetime.now(UTC)
        started[index] = (start, scanned_at)
        certificate: CertificateFacts | None = None
        try:
            found, certificate = self._scan(target, start + self.settings.scan_timeout, lease)
        except _Aborted as exc:
            found = [exc.finding]
        except _DeadlineExceeded:
            found = self._timed_out(scanned_at).findings
        except Exception as exc:  # a bug here or in sslyze must become a row, not a lost endpoint
            log.exception("scanning %s failed", target)
            found = [findings.error(findings.Code.SCAN_ERROR, f"scan failed: {type(exc).__name__}: {exc}")]
        finally:
            lease.close()  # the next endpoint of this address may start (once this one's connections end)
        done.put((index, Outcome(found, scanned_at, time.monotonic() - start, certificate)))

    def _scan(self, target: Target, deadline: float, lease: _Lease) -> tuple[list[Finding], CertificateFacts | None]:
        settings = self.settings
        with lease.connection(deadline):
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
        with lease.connection(deadline):
            try:
                probing_result = check_connectivity_to_server(location, network)
            except ConnectionToServerFailed as exc:
                raise _Aborted(connection_failure(exc)) from None
        server = ServerConnectivityInfo(
            server_location=location, network_configuration=network, tls_probing_result=probing_result
        )
        jobs = CertificateInfoImplementation.scan_jobs_for_scan_command(server, self._extra)
        futures = [self._connections.submit(self._run_job, lease, job, deadline) for job in jobs]
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

    @staticmethod
    def _run_job(lease: _Lease, job: SslyzeJob, deadline: float) -> ScanJobResult:
        try:
            with lease.connection(deadline):
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
