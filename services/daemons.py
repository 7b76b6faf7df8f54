"""The distributed services' process loop (``dns-cert-checker collector|resolver|scanner|reporter``).

Each builds its stage (``services/<stage>/runner.py``), declares the queues it reads and writes,
then serves until ``stop`` is set (SIGTERM/SIGINT, ``shared.signals``): it stops taking
deliveries, lets in-flight work finish for up to the drain deadline, requeues the rest and
closes. Stages are imported lazily so that ``--help`` and the collector never load sslyze or
dnspython they do not need.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from shared.config import Config
from shared.messages import Message
from shared.runner import Handler, Stage, serve_stage
from shared.transport import BrokerRefused, Outgoing, Transport, TransportError

if TYPE_CHECKING:
    from services.collector.service import CollectorOptions

log = logging.getLogger("dcc.daemon")

EXIT_OK = 0
EXIT_BROKER = 1  # the broker stayed away past every retry: let the supervisor restart us
EXIT_REFUSED = 2  # the broker refused our user, password or vhost: a configuration error, as bad input is


def run_resolver(config: Config, transport: Transport, stop: threading.Event) -> int:
    from services.resolver import runner

    return run_stage(transport, runner.stage(config), stop)


def run_scanner(
    config: Config,
    transport: Transport,
    stop: threading.Event,
    segment: str,
    *,
    share: int = 1,
    max_scans: int | None = None,
) -> int:
    """The scanner service; ``share``: how many processes split the per-address connection limit
    (``--processes``), ``max_scans``: stop taking jobs after this many and exit 0 (recycled)."""
    from services.scanner import runner

    if share > 1:
        config = msgspec.structs.replace(config, max_connections_per_ip=max(1, config.max_connections_per_ip // share))
    (stage,) = runner.stages(config, [segment])
    if max_scans is not None:
        stage = dataclasses.replace(stage, handler=_Recycling(stage.handler, max_scans, stop))
    return run_stage(transport, stage, stop)


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
    config: Config, transport: Transport, stop: threading.Event, output_dir: Path, *, metrics_port: int | None = None
) -> int:
    from services.reporter import runner

    with runner.alerting_for(config, metrics_port=metrics_port) as alerting:
        return run_stage(transport, runner.directory_stage(config, output_dir, alerting=alerting), stop)


def run_stage(transport: Transport, stage: Stage[Handler], stop: threading.Event) -> int:
    """Serve ``stage`` until ``stop``; the exit status of the process."""
    return _guarded(transport, stage.queue, stop, lambda: serve_stage(transport, stage, stop))


def run_collector(config: Config, transport: Transport, stop: threading.Event, options: CollectorOptions) -> int:
    from services.collector import service

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
