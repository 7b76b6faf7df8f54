"""Scanning many endpoints at once, politely and with hard deadlines.

Two ways to scan an endpoint (``ScanSettings.mode_for``), both starting with the engine's own
handshake (``handshake``), which is the reachability test: the fast path judges the chain it
received, once per distinct chain (``chain_judge``), falling back to the full scan when the
handshake fails in a way SSLyze explains better; the full scan adds SSLyze's CERTIFICATE_INFO
handshakes, the handshake standing for SSLyze's connectivity test and first job where it can
(``certificate_info``), and judges every chain they received the same way. Both end in the same
analysis (``analysis.analyse``).

For the full scan we drive SSLyze's own building blocks (connectivity test, the CERTIFICATE_INFO
scan jobs) on our own thread pools rather than through ``sslyze.Scanner``, because the
Scanner cannot give what the scanner service needs:
- its limits are per scan request: here every connection to an address takes a unit of that
  address (``admission``, ``max_connections_per_ip``), whichever job it belongs to, so 100 names on
  one server never mean 500 connections to it;
- it returns results only after every connectivity test of the batch and polls every 0.2 s:
  here each endpoint is reported as soon as it is done;
- it has no deadline: here each endpoint has one (``scan_timeout``), and the first handshake,
  costing at most one ``network_timeout``, turns away silent, refusing and plaintext endpoints. The
  clock starts only once the endpoint's address admitted it, so 100 names behind one ingress IP
  take their turns instead of timing out while they wait.

A deadline ends the work it bounds. ``network_timeout`` bounds one socket operation, so a server
that drip-feeds its handshake never trips it; instead every socket an endpoint's work opens (the
handshake's, the connectivity test's, each CERTIFICATE_INFO job's) belongs to the endpoint
(``sockets``), and at the deadline the engine's watcher thread reports the endpoint as timed out,
shuts all its sockets down and closes its lease: its worker threads and its address's units are
free again within moments, whatever the server does. ``Engine.close`` ends every endpoint the same
way, so shutdown never waits for a server.

Where the work runs: an endpoint on a direct TLS port does its handshake on the
``handshake_loop`` (one thread, non-blocking sockets, every such handshake at once), and on the
fast path its chain is judged there; only what still waits on the network afterwards (the full
scan's other handshakes, active revocation checks) goes to a worker. STARTTLS endpoints run on
workers. Either way at most ``concurrency`` endpoints are in progress: a thread per waiting
handshake cost about a third of the fast path's CPU in GIL hand-overs (docs/benchmarks-scanner.md).
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import itertools
import logging
import queue
import re
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning
from sslyze.errors import (
    ConnectionToServerFailed,
    ConnectionToServerTimedOut,
    ServerRejectedConnection,
    ServerTlsConfigurationNotSupported,
    TlsHandshakeFailed,
    TlsHandshakeTimedOut,
)
from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument, CertificateInfoImplementation
from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository
from sslyze.plugins.plugin_base import ScanJob as SslyzeJob
from sslyze.plugins.plugin_base import ScanJobResult
from sslyze.server_connectivity import ServerConnectivityInfo, TlsVersionEnum, check_connectivity_to_server
from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

from services.scanner import certificate_info, handshake, handshake_loop, sockets, starttls
from services.scanner import probe as probing
from services.scanner.admission import AddressSlots, Connection, DeadlineExceeded, Lease
from services.scanner.analysis import CheckPolicy, Deployment, analyse, certificate_facts, combine
from services.scanner.chain_judge import ChainJudge
from services.scanner.chain_memory import ChainMemory
from services.scanner.chain_memory import digest as chain_digest
from services.scanner.revocation import RevocationChecker
from shared import findings
from shared.config import DEFAULT_STARTTLS, Config, RevocationMode, ScanMode
from shared.messages import CertificateFacts, Finding

log = logging.getLogger("dcc.scanner")

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")

Scanned = tuple[list[Finding], CertificateFacts | None]  # an endpoint's findings, and its certificate's facts


def _reraise(exc: Exception) -> Scanned:
    raise exc  # inside ``_outcome``, which words it


@dataclass(frozen=True)
class ScanSettings:
    network_timeout: float = 5.0
    scan_timeout: float = 20.0
    concurrency: int = 100  # endpoints in progress at once
    max_connections_per_ip: int = 5
    min_time_to_expiration: int = 2592000
    custom_ca_file: Path | None = None
    network_max_retries: int = 1  # the first handshake already vetted the endpoint; retries only cost time
    checks: CheckPolicy = CheckPolicy()  # thresholds of the certificate checks beyond trust and name
    starttls: tuple[tuple[int, str], ...] = tuple(DEFAULT_STARTTLS.items())  # port -> STARTTLS protocol
    revocation: RevocationMode = "off"  # active OCSP / CRL checks (stapled OCSP is always read)
    revocation_timeout: float = 5.0
    use_system_resolver: bool = False  # may an OCSP / CRL URL's host name be resolved (by the system)?
    scan_mode: ScanMode = "fast"  # "fast": one handshake, chain judged once; "full": SSLyze's CERTIFICATE_INFO
    scan_mode_by_port: tuple[tuple[int, ScanMode], ...] = ()
    scan_mode_by_segment: tuple[tuple[str, ScanMode], ...] = ()
    # fast path: an endpoint whose served chain changed since it was last seen gets the full scan
    full_scan_on_change: bool = True
    chain_state: Path | None = None  # where the last-seen chains are kept across runs (state_dir)

    @classmethod
    def from_config(cls, config: Config, state_name: str = "scanner-chains.bin") -> ScanSettings:
        """``state_name``: the file under ``state_dir`` remembering served chains (one per segment set)."""
        return cls(
            network_timeout=config.network_timeout,
            scan_timeout=config.scan_timeout,
            concurrency=max(1, config.scan_concurrency),
            max_connections_per_ip=max(1, config.max_connections_per_ip),
            min_time_to_expiration=config.min_time_to_expiration,
            custom_ca_file=Path(config.custom_ca_file) if config.custom_ca_file else None,
            checks=CheckPolicy.from_config(config),
            starttls=tuple(sorted(config.starttls_ports().items())),
            revocation=config.revocation,
            revocation_timeout=config.revocation_timeout,
            use_system_resolver=config.use_system_resolver,
            scan_mode=config.scan_mode,
            scan_mode_by_port=tuple(sorted((int(p), m) for p, m in config.scan_mode_by_port.items())),
            scan_mode_by_segment=tuple(sorted(config.scan_mode_by_segment.items())),
            full_scan_on_change=config.full_scan_on_change,
            chain_state=Path(config.state_dir) / state_name if config.state_dir else None,
        )

    def mode_for(self, port: int, segment: str = "") -> ScanMode:
        """How an endpoint on ``port`` in ``segment`` is scanned: by port, else by segment, else scan_mode."""
        by_port = self._mode_by_port.get(port)
        if by_port is not None:
            return by_port
        return self._mode_by_segment.get(segment, self.scan_mode)

    def starttls_for(self, port: int) -> str | None:
        """The STARTTLS protocol spoken on ``port`` before TLS, or None for direct TLS."""
        return self._starttls_by_port.get(port)

    # Lookups per endpoint: the tuples above as dicts, made once (cached_property writes the
    # instance's __dict__ directly, which a frozen dataclass allows).
    @functools.cached_property
    def _starttls_by_port(self) -> dict[int, str]:
        return dict(self.starttls)

    @functools.cached_property
    def _mode_by_port(self) -> dict[int, ScanMode]:
        return dict(self.scan_mode_by_port)

    @functools.cached_property
    def _mode_by_segment(self) -> dict[str, ScanMode]:
        return dict(self.scan_mode_by_segment)


@dataclass(frozen=True)
class Target:
    ip: str
    port: int
    sni: str
    mode: ScanMode | None = None  # None: ``ScanSettings.mode_for(port)``


@dataclass(frozen=True)
class Outcome:
    findings: list[Finding]
    scanned_at: datetime
    duration_s: float = 0.0
    certificate: CertificateFacts | None = None


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
    """SSLyze's connection errors as findings that name the cause; on a STARTTLS port, in its terms
    (``starttls.failure``: a server that will not start TLS is ``STARTTLS_NOT_OFFERED``)."""
    on_starttls = starttls.failure(exc)
    if on_starttls is not None:
        return on_starttls
    if isinstance(exc, ConnectionToServerTimedOut):
        return findings.error(findings.Code.CONNECT_TIMEOUT, probing.CONNECT_TIMED_OUT)
    if isinstance(exc, TlsHandshakeTimedOut):
        return findings.error(findings.Code.CONNECT_TIMEOUT, probing.HANDSHAKE_TIMED_OUT)
    if isinstance(exc, ServerRejectedConnection):
        return findings.error(findings.Code.CONNECT_REFUSED, probing.REFUSED)
    if isinstance(exc, TlsHandshakeFailed):
        return findings.error(findings.Code.TLS_HANDSHAKE_FAILED, f"TLS handshake failed: {exc.error_message}")
    return findings.error(findings.Code.CONNECT_ERROR, f"connection failed: {exc.error_message}")


def _load_trust_stores() -> None:
    """Parse SSLyze's bundled stores once, up front, rather than racing to in the first scans; one of
    their roots has a negative serial that ``cryptography`` warns about (not ours to fix)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        TrustStoresRepository.get_default()


def _no_tls_version_found(exc: ConnectionToServerFailed) -> bool:
    """SSLyze's connectivity test completed no handshake with any TLS version and cipher suite: what it
    also says when every handshake died of OpenSSL's "excessive message size"."""
    return isinstance(exc, ServerTlsConfigurationNotSupported) and "could not find a TLS version" in exc.error_message


class EngineClosed(RuntimeError):
    """The engine was closed: targets it had not reported by then never will be."""


class _Batch:
    """One ``scan_many`` call: its targets' outcomes in the order they were settled."""

    def __init__(self, size: int) -> None:
        self._done: queue.SimpleQueue[tuple[int, Outcome] | None] = queue.SimpleQueue()
        self._pending = set(range(size))

    def put(self, index: int, outcome: Outcome) -> None:
        self._done.put((index, outcome))

    def close(self) -> None:
        """The engine closed: what is not settled by now never will be."""
        self._done.put(None)

    def outcomes(self) -> Iterator[tuple[int, Outcome]]:
        """Each target's outcome once, as it is settled (a timeout at its deadline, by the watcher)."""
        while self._pending:
            item = self._done.get()
            if item is None:
                raise EngineClosed(f"the scan engine closed with {len(self._pending)} targets not scanned")
            index, outcome = item
            self._pending.discard(index)  # each target is settled once (``_Endpoint.settle``)
            yield index, outcome


def _timed_out(scanned_at: datetime, scan_timeout: float) -> Outcome:
    finding = findings.error(findings.Code.SCAN_TIMEOUT, f"scan did not finish within {scan_timeout:g}s")
    return Outcome([finding], scanned_at, scan_timeout)


class _Endpoint:
    """One admitted target's scan: its clock, its lease, its sockets and its one outcome.

    Whoever settles it first wins: its worker with the scan's outcome, the deadline watcher with a
    timeout, or ``Engine.close`` with none at all. Whatever of its work still runs then is ended
    (``end``): every socket it has open is shut down and its lease closed."""

    def __init__(self, batch: _Batch, index: int, target: Target, lease: Lease, scan_timeout: float) -> None:
        self.batch = batch
        self.index = index
        self.target = target
        self.lease = lease
        self.scan_timeout = scan_timeout
        self.started = time.monotonic()
        self.scanned_at = datetime.now(UTC)
        self.deadline = self.started + scan_timeout
        self.sockets = sockets.SocketOwner()
        self._lock = threading.Lock()
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    def settle(self, outcome: Outcome | None) -> bool:
        """Report ``outcome`` (None: report nothing) unless the endpoint was settled already."""
        with self._lock:
            if self._settled:
                return False
            self._settled = True
        if outcome is not None:
            self.batch.put(self.index, outcome)
        return True

    def expire(self) -> None:
        """The deadline passed (on the watcher): report the timeout now, then end the work."""
        if self.settle(_timed_out(self.scanned_at, self.scan_timeout)):
            log.warning("scan of %s exceeded %gs", self.target, self.scan_timeout)
        self.end()

    def cancel(self) -> None:
        """The engine closes: nothing is reported (the job goes back to its queue); the work ends."""
        self.settle(None)
        self.end()

    def end(self) -> None:
        """Shut every socket of the endpoint down and close its lease: its worker threads wake from
        whatever they were waiting on, its connections' units go back. Any thread; idempotent."""
        self.sockets.abort()
        self.lease.close()

    def check(self) -> None:
        """Between steps on the worker: raise when the endpoint is already settled."""
        if self._settled:
            raise DeadlineExceeded


class _Deadlines:
    """The engine's deadline watcher: one thread that ends each endpoint's work at its deadline,
    whatever its threads are blocked on, and reports its timeout then (not when the consumer next
    finds the time to look)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        # Weak references: an endpoint that finished in time is gone with its lease, sockets and
        # address at once, not kept for the rest of its scan_timeout (memory grew by rate x timeout).
        self._heap: list[tuple[float, int, weakref.ref[_Endpoint]]] = []
        self._order = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._watch, name="dcc-scan-deadlines", daemon=True)
        self._thread.start()

    def watch(self, endpoint: _Endpoint) -> None:
        with self._changed:
            first = not self._heap or endpoint.deadline < self._heap[0][0]
            heapq.heappush(self._heap, (endpoint.deadline, next(self._order), weakref.ref(endpoint)))
            if first:  # else the watcher already wakes in time: deadlines mostly come in order
                self._changed.notify()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=1.0)

    def _due(self) -> list[_Endpoint] | None:
        """Wait for the next deadline; the endpoints due then, or None once stopped."""
        with self._changed:
            while not self._stopped:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    due: list[_Endpoint] = []
                    while self._heap and self._heap[0][0] <= now:
                        endpoint = heapq.heappop(self._heap)[2]()
                        if endpoint is not None:  # None: it finished, and nothing holds it any more
                            due.append(endpoint)
                    return due
                self._changed.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _watch(self) -> None:
        while (due := self._due()) is not None:
            for endpoint in due:
                try:
                    endpoint.expire()  # a no-op report for an endpoint that finished in time
                except Exception:
                    log.exception("ending the scan of %s at its deadline failed", endpoint.target)


class Engine:
    """Scans endpoints; thread pools, the handshake loop, per-address limits and the deadline watcher
    are shared by every batch.

    At most ``concurrency`` endpoints are in progress at once, however they are scanned: an admitted
    endpoint waits for one of those places before its clock starts. An endpoint on a direct TLS port
    spends its handshake on the handshake loop (one thread for all of them), and a fast-path one has
    its chain judged there; what still waits on the network after that (the full scan: full mode,
    a handshake that says so, a chain that changed; active revocation checks) and every STARTTLS
    endpoint runs on a worker thread."""

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        sockets.install()  # SSLyze's sockets become the endpoint's, so that its deadline can close them
        self._endpoints = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="dcc-scan")
        # CERTIFICATE_INFO runs 4 handshakes per endpoint, concurrently so latency is one handshake.
        self._connections = ThreadPoolExecutor(max_workers=settings.concurrency * 4, thread_name_prefix="dcc-tls")
        self._slots = AddressSlots(settings.max_connections_per_ip)
        self._extra = (
            CertificateInfoExtraArgument(custom_ca_file=settings.custom_ca_file) if settings.custom_ca_file else None
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when no worker runs any more
        self._busy = 0  # endpoints in progress and scan jobs running
        self._live: set[_Endpoint] = set()
        self._batches: set[_Batch] = set()
        self._closed = False
        # the places of ``concurrency`` (endpoints in progress), and the admitted endpoints waiting for one
        self._places_lock = threading.Lock()
        self._in_progress = 0
        self._waiting: deque[tuple[_Batch, int, Target, Lease]] = deque()
        self._revocation = (
            RevocationChecker(
                settings.revocation, settings.revocation_timeout, resolve_names=settings.use_system_resolver
            )
            if settings.revocation != "off"
            else None
        )
        _load_trust_stores()
        self._judge = ChainJudge(settings.custom_ca_file, settings.checks)
        self._chains = ChainMemory(settings.chain_state) if settings.full_scan_on_change else None
        self._deadlines = _Deadlines()
        self._loop = handshake_loop.HandshakeLoop()

    def busiest_address(self) -> int:
        """Connections open (or about to be) to the address this engine uses most; metrics."""
        return self._slots.busiest()

    def close(self, timeout: float = 2.0) -> bool:
        """Stop: nothing new starts, every endpoint in progress is ended (sockets shut down, not
        reported), every ``scan_many`` still iterating raises ``EngineClosed`` after what it had.
        Waits up to ``timeout`` seconds for the workers to return; True when they all did."""
        with self._lock:
            self._closed = True
            live, batches = list(self._live), list(self._batches)
        with self._places_lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        self._slots.close()
        self._endpoints.shutdown(wait=False, cancel_futures=True)
        self._connections.shutdown(wait=False, cancel_futures=True)
        for _, _, _, lease in waiting:  # admitted, never started
            lease.close()
        for endpoint in live:
            endpoint.cancel()
        for batch in batches:
            batch.close()
        self._loop.stop()
        self._deadlines.stop()
        if self._revocation is not None:
            self._revocation.close()
        if self._chains is not None:
            self._chains.save()
        until = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def scan_many(self, targets: Sequence[Target]) -> Iterator[tuple[int, Outcome]]:
        """Yield ``(index, outcome)`` for every target as soon as it is done; never more than ``scan_timeout``
        after its scan started. A scan starts when its address admits it and a place is free: n names
        on one address take about ceil(n / max_connections_per_ip) scan times, none of them timing out
        for waiting. Raises ``EngineClosed`` when the engine is (or gets) closed first."""
        batch = _Batch(len(targets))
        with self._lock:
            if self._closed:
                raise EngineClosed("the scan engine is closed")
            self._batches.add(batch)
        try:
            for index, target in enumerate(targets):
                problem = target_problem(target)
                if problem is not None:  # needs no connection, so no turn at its address
                    batch.put(index, Outcome([problem], datetime.now(UTC)))
                else:
                    self._slots.admit(target.ip, functools.partial(self._start, batch, index, target))
            yield from batch.outcomes()
        finally:
            with self._lock:
                self._batches.discard(batch)

    def scan_one(self, target: Target) -> Outcome:
        return next(outcome for _, outcome in self.scan_many([target]))

    def _start(self, batch: _Batch, index: int, target: Target, lease: Lease) -> None:
        """The target's address admitted it (on whichever thread freed the unit): it starts when one
        of the ``concurrency`` places is free, now or when an endpoint in progress is done."""
        with self._places_lock:
            if self._in_progress >= self.settings.concurrency:
                self._waiting.append((batch, index, target, lease))
                return
            self._in_progress += 1
        self._launch(batch, index, target, lease)

    def _place_freed(self) -> None:
        """An endpoint in progress is done: its place goes to the endpoint waiting longest, if any."""
        with self._places_lock:
            if not self._waiting or self._closed:
                self._in_progress -= 1
                return
            waiting = self._waiting.popleft()
        self._launch(*waiting)

    def _launch(self, batch: _Batch, index: int, target: Target, lease: Lease) -> None:
        """Start an endpoint that has its place: on the handshake loop, or on a worker."""
        if self.settings.starttls_for(target.port) is None:  # either mode: the handshake comes first
            self._begin_handshake(batch, index, target, lease)
            return
        try:
            self._endpoints.submit(self._run, batch, index, target, lease)
        except RuntimeError:  # the engine is closed: what it had not started never finishes
            lease.close()
            self._place_freed()

    def _enter(self, endpoint: _Endpoint | None = None) -> bool:
        """A worker starts (with its endpoint, for an endpoint's worker); False if the engine is closed."""
        with self._lock:
            self._busy += 1
            if endpoint is not None and not self._closed:
                self._live.add(endpoint)
            return not self._closed

    def _leave(self, endpoint: _Endpoint | None = None) -> None:
        with self._lock:
            self._busy -= 1
            if endpoint is not None:
                self._live.discard(endpoint)
            if not self._busy:
                self._idle.notify_all()

    def _done_with(self, endpoint: _Endpoint) -> None:
        """The endpoint's work is over (settled or not): whatever of it still runs ends (the next
        endpoint of its address may start) and its place goes to the next endpoint."""
        endpoint.end()
        self._leave(endpoint)
        self._place_freed()

    def _run(self, batch: _Batch, index: int, target: Target, lease: Lease) -> None:
        """One endpoint on a worker: its clock starts now; it settles the endpoint unless the deadline
        watcher (or ``close``) did first, then ends whatever of its work is left."""
        endpoint = _Endpoint(batch, index, target, lease, self.settings.scan_timeout)
        try:
            if not self._enter(endpoint):
                endpoint.cancel()
                return
            self._deadlines.watch(endpoint)
            endpoint.settle(self._outcome(endpoint, functools.partial(self._scan, endpoint)))
        finally:
            self._done_with(endpoint)

    def _begin_handshake(self, batch: _Batch, index: int, target: Target, lease: Lease) -> None:
        """One fast-path endpoint on the handshake loop (any thread; never blocks): its clock starts now."""
        endpoint = _Endpoint(batch, index, target, lease, self.settings.scan_timeout)
        if not self._enter(endpoint):
            endpoint.cancel()
            self._done_with(endpoint)
            return
        self._deadlines.watch(endpoint)
        unit = lease.connection(endpoint.deadline)
        try:
            unit.__enter__()  # the lease's own unit, free: its first connection never waits
        except DeadlineExceeded:
            endpoint.settle(_timed_out(endpoint.scanned_at, self.settings.scan_timeout))
            self._done_with(endpoint)
            return
        request = handshake_loop.Request(
            ip=target.ip,
            port=target.port,
            sni=target.sni,
            timeout=self.settings.network_timeout,  # the loop caps each wait at the deadline
            deadline=endpoint.deadline,
            owner=endpoint.sockets,
            done=functools.partial(self._handshake_done, endpoint, unit),
        )
        if self._loop.submit(request):
            return
        # the loop has stopped: the engine is closing, or the loop failed (logged); then the
        # blocking handshake on a worker still scans the endpoint
        unit.__exit__(None, None, None)
        try:
            self._endpoints.submit(self._finish, endpoint, functools.partial(self._scan, endpoint))
        except RuntimeError:  # closed: nobody hears of this endpoint any more
            endpoint.cancel()
            self._done_with(endpoint)

    def _handshake_done(self, endpoint: _Endpoint, unit: Connection, fetched: handshake.Fetched) -> None:
        """On the loop thread: settle the endpoint from its handshake, or hand what is left to a worker."""
        unit.__exit__(None, None, None)
        if not endpoint.settled and time.monotonic() >= endpoint.deadline:
            # the loop ended it at the deadline before the watcher did: it is the deadline's finding
            endpoint.settle(_timed_out(endpoint.scanned_at, self.settings.scan_timeout))
        if not endpoint.settled:
            try:
                rest, blocks = self._after_handshake(endpoint, fetched)
            except Exception as exc:  # a bug: the endpoint's SCAN_ERROR (``_outcome``), not a lost endpoint
                rest, blocks = functools.partial(_reraise, exc), False
            if blocks:
                try:
                    self._endpoints.submit(self._finish, endpoint, rest)
                    return
                except RuntimeError:  # closed meanwhile: nobody hears of this endpoint any more
                    endpoint.cancel()
            else:
                endpoint.settle(self._outcome(endpoint, rest))
        self._done_with(endpoint)

    def _finish(self, endpoint: _Endpoint, rest: Callable[[], Scanned]) -> None:
        """On a worker: the rest of a fast-path scan whose handshake ran on the loop."""
        try:
            endpoint.settle(self._outcome(endpoint, rest))
        finally:
            self._done_with(endpoint)

    def _outcome(self, endpoint: _Endpoint, work: Callable[[], Scanned]) -> Outcome:
        certificate: CertificateFacts | None = None
        try:
            with endpoint.sockets.claim():  # the sockets ``work`` opens are the endpoint's
                found, certificate = work()
        except _Aborted as exc:
            found = [exc.finding]
        except DeadlineExceeded:
            found = _timed_out(endpoint.scanned_at, self.settings.scan_timeout).findings
        except Exception as exc:  # a bug here or in sslyze must become a row, not a lost endpoint
            if not endpoint.settled:  # else its work was cut off, and this is how it broke: nobody hears of it
                log.exception("scanning %s failed", endpoint.target)
            found = [findings.error(findings.Code.SCAN_ERROR, f"scan failed: {type(exc).__name__}: {exc}")]
        return Outcome(found, endpoint.scanned_at, time.monotonic() - endpoint.started, certificate)

    def _scan(self, endpoint: _Endpoint) -> Scanned:
        """One endpoint's whole scan, on a worker: a STARTTLS endpoint, or any endpoint once the
        handshake loop is gone. The handshake first (after the STARTTLS exchange), except in full
        mode on a STARTTLS port: there SSLyze's connectivity test speaks the protocol itself, after a
        TCP connect that turns refused and unreachable endpoints away in one timeout."""
        target = endpoint.target
        if self.settings.starttls_for(target.port) is None or self._mode(target) == "fast":
            rest, _ = self._after_handshake(endpoint, self._handshake(endpoint))
            return rest()
        failure = self._reachable(endpoint)
        if failure is not None:
            return [failure], None
        return self._full(endpoint, None)

    def _mode(self, target: Target) -> ScanMode:
        return target.mode or self.settings.mode_for(target.port)

    def _after_handshake(self, endpoint: _Endpoint, fetched: handshake.Fetched) -> tuple[Callable[[], Scanned], bool]:
        """What is left of a scan once its handshake is done, and whether it waits on the network:
        nothing (a finding: the handshake is the reachability test in both modes), judging the chain
        (revocation checks wait), or the full scan, which reuses the handshake (``certificate_info``):
        in full mode, after a handshake failure SSLyze explains better, or for a chain that changed
        since it was last seen."""
        if isinstance(fetched, Finding):
            return (lambda: ([fetched], None)), False
        full = self._mode(endpoint.target) == "full"
        if fetched is None or full or self._chain_changed(endpoint.target, fetched):
            return functools.partial(self._full, endpoint, fetched), True
        return functools.partial(self._judged, endpoint, fetched), self._revocation is not None

    def _judged(self, endpoint: _Endpoint, served: handshake.Served) -> Scanned:
        judged = self._judge.judge(served.chain_pem, served.ocsp, endpoint.target.sni)
        return self._findings(endpoint, [judged.deployment], judged.facts)

    def _full(self, endpoint: _Endpoint, served: handshake.Served | None) -> Scanned:
        """SSLyze's CERTIFICATE_INFO handshakes, every distinct chain they received judged as the fast
        path judges one (``ChainJudge``). ``served``, the engine's own handshake, stands for SSLyze's
        connectivity test and for CERTIFICATE_INFO's first job when it tells what they would
        (``certificate_info.probing_from``: TLS 1.3, no client certificate asked for); otherwise
        SSLyze's connectivity test runs first and all four jobs after it."""
        endpoint.check()
        probed = certificate_info.probing_from(served) if served is not None else None
        first: ScanJobResult | None = None
        if served is None or probed is None:
            server = self._connectivity(endpoint)
        else:
            location, network = self._server_settings(endpoint.target)
            server = ServerConnectivityInfo(
                server_location=location, network_configuration=network, tls_probing_result=probed
            )
            first = certificate_info.first_job_result(served)
        endpoint.check()
        chains = self._certificate_info(server, endpoint, first)
        endpoint.check()
        judged = [self._judge.judge(chain.chain_pem, chain.ocsp, endpoint.target.sni) for chain in chains]
        return self._findings(endpoint, [j.deployment for j in judged], judged[0].facts if judged else None)

    def _chain_changed(self, target: Target, served: handshake.Served) -> bool:
        if self._chains is None:
            return False
        changed = self._chains.changed((target.ip, target.port, target.sni), chain_digest(served.chain_pem))
        if changed:
            log.info("%s:%d (%s) serves a new chain: scanning it in full once", target.ip, target.port, target.sni)
        return changed

    def _handshake(self, endpoint: _Endpoint) -> handshake.Fetched:
        """The fast path's one connection on a worker (after STARTTLS): the chain as served, or why
        there is none (None: fall back)."""
        target = endpoint.target
        protocol = self.settings.starttls_for(target.port)
        with endpoint.lease.connection(endpoint.deadline):
            timeout = min(self.settings.network_timeout, max(0.01, endpoint.deadline - time.monotonic()))
            return handshake.fetch(target.ip, target.port, target.sni, timeout, protocol)

    def _findings(
        self, endpoint: _Endpoint, deployments: list[Deployment], facts: CertificateFacts | None = None
    ) -> Scanned:
        endpoint.check()
        if facts is None and deployments:
            facts = certificate_facts(deployments[0].received_chain)
        found = analyse(deployments, self.settings.min_time_to_expiration, datetime.now(UTC), self.settings.checks)
        if self._revocation is not None and deployments and deployments[0].deciding_verdict() is not None:
            # opt-in: ask the CA about the chain clients verify (an untrusted one has its error already)
            found = combine(found, self._revocation.check(deployments[0].relied_chain(), endpoint.deadline))
        return found, facts

    def _reachable(self, endpoint: _Endpoint) -> Finding | None:
        """A TCP connect before SSLyze's connectivity test on a STARTTLS port (a ClientHello first is
        not the protocol): refused and unreachable endpoints cost one timeout, not SSLyze's retries."""
        target = endpoint.target
        with endpoint.lease.connection(endpoint.deadline):
            timeout = min(self.settings.network_timeout, max(0.01, endpoint.deadline - time.monotonic()))
            return probing.reachable(target.ip, target.port, timeout)

    def _connectivity(self, endpoint: _Endpoint) -> ServerConnectivityInfo:
        """SSLyze's connectivity test: which TLS versions and ciphers its scan jobs may use. On a STARTTLS
        port the network configuration carries the protocol, so the test and every scan job made from
        its result run the exchange first. When no TLS version worked at all, one handshake of our own
        tells a certificate list too large for OpenSSL (``_diagnose``) from a server without TLS."""
        target = endpoint.target
        protocol = self.settings.starttls_for(target.port)
        location, network = self._server_settings(target)
        with endpoint.lease.connection(endpoint.deadline):
            try:
                tls_probing = check_connectivity_to_server(location, network)
            except ConnectionToServerFailed as exc:
                finding = connection_failure(exc)
                if _no_tls_version_found(exc):
                    finding = self._diagnose(endpoint, protocol) or finding
                raise _Aborted(finding) from None
            except UnicodeDecodeError:  # sslyze's SMTP helper decodes a non-SMTP answer as UTF-8
                if protocol is None:  # only a STARTTLS exchange decodes the server's words: a bug elsewhere
                    raise
                failed = f"STARTTLS failed on port {target.port} ({protocol}): the server's answer is not {protocol}"
                raise _Aborted(findings.error(findings.Code.CONNECT_ERROR, failed)) from None
        return ServerConnectivityInfo(
            server_location=location, network_configuration=network, tls_probing_result=tls_probing
        )

    def _server_settings(self, target: Target) -> tuple[ServerNetworkLocation, ServerNetworkConfiguration]:
        """Where SSLyze connects: the resolved address (it never resolves), SNI = the name, the
        STARTTLS exchange first on such a port."""
        location = ServerNetworkLocation(hostname=target.sni, port=target.port, ip_address=target.ip)
        network = ServerNetworkConfiguration(
            tls_server_name_indication=target.sni,
            # sslyze annotates network_timeout as int but only hands it to socket timeouts, which take floats
            network_timeout=self.settings.network_timeout,  # type: ignore[arg-type]
            network_max_retries=self.settings.network_max_retries,
        )
        protocol = self.settings.starttls_for(target.port)
        return location, network if protocol is None else starttls.configure(network, protocol)

    def _diagnose(self, endpoint: _Endpoint, protocol: str | None) -> Finding | None:
        """The one handshake of our own after a connectivity test that found no TLS version (on the
        connectivity test's unit and claim, so inside the endpoint's lease and deadline):
        ``CERT_TOO_LARGE`` when OpenSSL refused the server's certificate list for its size. Its socket
        timeout is ``network_timeout`` uncut: at the deadline the watcher reports the timeout first and
        then shuts the socket down, so a diagnosis cut off by the deadline never reports anything."""
        target = endpoint.target
        endpoint.check()  # the deadline passed during the connectivity test: no new connection
        prepare = functools.partial(starttls.prepare, protocol=protocol, sni=target.sni) if protocol else None
        timeout = self.settings.network_timeout
        return probing.diagnose_handshake(target.ip, target.port, target.sni, timeout, prepare)

    def _certificate_info(
        self, server: ServerConnectivityInfo, endpoint: _Endpoint, first: ScanJobResult | None
    ) -> list[handshake.Served]:
        """CERTIFICATE_INFO's handshakes at once (each on a unit of the lease), but the first when
        ``first`` is its result already; the distinct chains they received with SNI."""
        jobs = CertificateInfoImplementation.scan_jobs_for_scan_command(server, self._extra)
        done = []
        if first is not None:
            assert jobs[0].function_arguments[2:] == (TlsVersionEnum.TLS_1_3, None, True), "SSLyze's first job"
            jobs, done = jobs[1:], [first]
        futures = [self._connections.submit(self._run_job, endpoint, job) for job in jobs]
        results = done + [self._wait(future, endpoint.deadline) for future in futures]
        try:
            return certificate_info.sni_chains(results)
        except ConnectionToServerFailed as exc:
            raise _Aborted(connection_failure(exc)) from None

    def _run_job(self, endpoint: _Endpoint, job: SslyzeJob) -> ScanJobResult:
        """One scan job on a connection thread; its socket is the endpoint's (``claim``)."""
        self._enter()
        try:
            with endpoint.sockets.claim(), endpoint.lease.connection(endpoint.deadline):
                value: Any = job.function_to_call(*job.function_arguments)
        except Exception as exc:  # handed to sslyze's analysis, which knows which ones are fatal
            return ScanJobResult(_return_value=None, _exception=exc)
        finally:
            self._leave()
        return ScanJobResult(_return_value=value, _exception=None)

    @staticmethod
    def _wait(future: Future[ScanJobResult], deadline: float) -> ScanJobResult:
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except (FutureTimeout, CancelledError):  # past the deadline, or the engine closed
            raise DeadlineExceeded from None
