"""The distributed services' process loop (``dns-cert-checker collector|resolver|scanner|reporter``).

Each builds its stage (``services/<stage>/runner.py``), declares the queues it reads and writes,
then serves until ``stop`` is set (SIGTERM/SIGINT, ``shared.signals``): it stops taking
deliveries, lets in-flight work finish for up to the drain deadline, requeues the rest and
closes. Stages are imported lazily so that ``--help`` and the collector never load sslyze or
dnspython they do not need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from shared.config import Config
from shared.messages import Message
from shared.monitor import Monitor
from shared.runner import Handler, Stage, serve_stage
from shared.transport import BrokerRefused, Outgoing, Transport, TransportError

if TYPE_CHECKING:
    from services.collector.service import CollectorOptions

log = logging.getLogger("dcc.daemon")

EXIT_OK = 0
EXIT_BROKER = 1  # the broker stayed away past every retry: let the supervisor restart us
EXIT_REFUSED = 2  # the broker refused our user, password or vhost: a configuration error, as bad input is


@contextlib.contextmanager
def health(transport: Transport, stop: threading.Event, port: int | None) -> Iterator[Monitor]:
    """The process's monitor, served on ``port`` (``/healthz``, ``/readyz``, ``/metrics``) for as
    long as the block runs; without a port, a monitor that keeps nothing. A port already taken is
    a ``ConfigError``: one line, exit 2."""
    if port is None:
        yield Monitor()
        return
    from shared.health import HealthServer, ServiceMonitor

    monitor = ServiceMonitor(transport, stop)
    with HealthServer.open(monitor, port):
        yield monitor


def run_resolver(config: Config, transport: Transport, stop: threading.Event, *, health_port: int | None = None) -> int:
    from services.resolver import runner

    with health(transport, stop, health_port) as monitor:
        stage: Stage[Handler] = runner.stage(config)
        if monitor.registry is not None:
            from services.resolver.metrics import CountedJobs

            stage = dataclasses.replace(stage, handler=CountedJobs(stage.handler, monitor.registry))
        return run_stage(transport, stage, stop, monitor)


def run_scanner(
    config: Config,
    transport: Transport,
    stop: threading.Event,
    segment: str,
    *,
    share: int = 1,
    max_scans: int | None = None,
    health_port: int | None = None,
) -> int:
    """The scanner service; ``share``: how many processes split the per-address connection limit
    (``--processes``), ``max_scans``: stop taking jobs after this many and exit 0 (recycled)."""
    from services.scanner import runner

    if share > 1:
        config = msgspec.structs.replace(config, max_connections_per_ip=max(1, config.max_connections_per_ip // share))
    with health(transport, stop, health_port) as monitor:
        metrics = None
        if monitor.registry is not None:
            from services.scanner.metrics import ScanMetrics

            metrics = ScanMetrics(monitor.registry)
        (stage,) = runner.stages(config, [segment], metrics)
        if max_scans is not None:
            stage = dataclasses.replace(stage, handler=_Recycling(stage.handler, max_scans, stop))
        return run_stage(transport, stage, stop, monitor)


class _Recycling(Handler):
    """A scanner handler that sets ``stop`` once it has answered ``limit`` jobs: the service then
    drains and exits 0, and its supervisor starts a fresh process (SSLyze state grows)."""

    def __init__(self, inner: Handler, limit: int, stop: threading.Event) -> None:
        self._inner, self._limit, self._stop = inner, limit, stop
        self._done = 0
        self._lock = threading.Lock()

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        for answered in self._inner.handle_batch(messages):
            yield answered
            with self._lock:
                self._done += 1
                reached = self._done == self._limit
            if reached:
                log.info("recycling this scanner process after %d scans", self._limit)
                self._stop.set()

    def close(self) -> None:
        self._inner.close()


def run_reporter(
    config: Config,
    transport: Transport,
    stop: threading.Event,
    output_dir: Path,
    *,
    metrics_port: int | None = None,
    health_port: int | None = None,
) -> int:
    from services.reporter import runner

    with (
        runner.alerting_for(config, metrics_port=metrics_port) as alerting,
        health(transport, stop, health_port) as monitor,
    ):
        stage = runner.directory_stage(config, output_dir, alerting=alerting)
        monitor.add_check("report directory", lambda: writable(output_dir))
        if alerting is not None:
            monitor.also_expose(alerting.registry)
        return run_stage(transport, stage, stop, monitor)


def writable(directory: Path) -> str | None:
    """None when a file can be made in ``directory`` (a readiness check), else why not."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".ready-"):
            return None
    except OSError as exc:
        return f"cannot write in {directory} ({exc.strerror or exc})"


def run_stage(
    transport: Transport, stage: Stage[Handler], stop: threading.Event, monitor: Monitor | None = None
) -> int:
    """Serve ``stage`` until ``stop``; the exit status of the process."""
    return _guarded(transport, stage.queue, stop, lambda: serve_stage(transport, stage, stop, monitor))


def run_collector(
    config: Config,
    transport: Transport,
    stop: threading.Event,
    options: CollectorOptions,
    *,
    health_port: int | None = None,
) -> int:
    """The collector service. Its readiness is the broker's (it consumes nothing); a run in
    progress may take as long as its zone transfers, which have their own deadlines."""
    from services.collector import service

    with health(transport, stop, health_port):
        return _guarded(transport, "collector", stop, lambda: service.serve(config, transport, options, stop))


def _guarded(transport: Transport, what: str, stop: threading.Event, body: Callable[[], int | None]) -> int:
    transport.interrupt_on(stop)  # a SIGTERM during a broker outage should not wait out the retries
    try:
        log.info("serving %s on %r", what, transport)
        status = body()
    except BrokerRefused as exc:  # never retried: one line, and a status that says "fix the config"
        log.error("cannot serve %s: %s", what, exc)
        return EXIT_REFUSED
    except TransportError as exc:
        if stop.is_set():
            log.warning("stopped %s while the broker was away: %s", what, exc)
            return EXIT_OK
        log.error("giving up on %s: %s", what, exc)
        return EXIT_BROKER
    log.info("stopped serving %s", what)
    return status or EXIT_OK
