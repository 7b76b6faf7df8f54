"""Entry points of the distributed services (``dns-cert-checker resolver|scanner|reporter``).

Each one declares the queues it reads and writes, then serves its queue until ``stop`` is set
(SIGTERM/SIGINT): it stops taking deliveries, lets in-flight work finish for up to the drain
deadline, requeues the rest and closes. Handlers are imported lazily so that ``--help`` and the
collector never load sslyze or dnspython they do not need.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from shared.config import Config
from shared.runner import ServeOptions, serve
from shared.transport.base import REPORT, RESOLVE, Transport, TransportError, scan_queue

log = logging.getLogger("dcc.daemon")

EXIT_OK = 0
EXIT_BROKER = 1  # the broker stayed away past every retry: let the supervisor restart us

RESOLVER_OPTIONS = ServeOptions(workers=1, prefetch=4)
# The reporter is single-threaded by design; a deeper prefetch keeps it busy between acks.
REPORTER_OPTIONS = ServeOptions(workers=1, prefetch=200, tick_interval=1.0)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT start a graceful stop; a second one exits at once."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            raise SystemExit(128 + signum)
        log.warning("%s: finishing in-flight work, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_resolver(config: Config, transport: Transport, stop: threading.Event) -> int:
    from services.resolver.dns_lookup import make_lookup
    from services.resolver.handler import ResolverHandler

    handler = ResolverHandler(config, make_lookup(config))
    return _serve(transport, RESOLVE, [RESOLVE, *handler.queues()], handler, stop, RESOLVER_OPTIONS)


def run_scanner(config: Config, transport: Transport, stop: threading.Event, segment: str) -> int:
    from services.scanner.runner import make_handler, serve_options

    queue = scan_queue(segment)
    return _serve(transport, queue, [queue, REPORT], make_handler(config), stop, serve_options(config))


def run_reporter(config: Config, transport: Transport, stop: threading.Event, output_dir: Path) -> int:
    from services.reporter.handler import ReporterHandler
    from services.reporter.journal import RunJournal
    from services.reporter.outputs import DirectorySink

    output_dir.mkdir(parents=True, exist_ok=True)
    # the journal lets a restarted reporter finish the runs it had begun (their messages are acked)
    handler = ReporterHandler(config, DirectorySink(output_dir), journal=RunJournal(output_dir / ".journal"))
    return _serve(transport, REPORT, [REPORT], handler, stop, REPORTER_OPTIONS)


def _serve(
    transport: Transport,
    queue: str,
    declare: list[str],
    handler: object,
    stop: threading.Event,
    options: ServeOptions,
) -> int:
    interrupt_on = getattr(transport, "interrupt_on", None)
    if interrupt_on is not None:
        interrupt_on(stop)  # a SIGTERM during a broker outage should not wait out the retries
    try:
        transport.declare(declare)
        log.info("serving %s on %r", queue, transport)
        serve(transport, queue, handler, stop, options)  # type: ignore[arg-type]
    except TransportError as exc:
        if stop.is_set():
            log.warning("stopped %s while the broker was away: %s", queue, exc)
            return EXIT_OK
        log.error("giving up on %s: %s", queue, exc)
        return EXIT_BROKER
    log.info("stopped serving %s", queue)
    return EXIT_OK
