"""Health, readiness and metrics of one service process, over HTTP (``--health-port``).

    GET /healthz   200 while the service's loops are alive, else 503 (Kubernetes restarts it)
    GET /readyz    200 while it is connected to the broker, consuming and able to store what it
                   must; 503 with the reason otherwise (Kubernetes stops routing to it; KEDA and
                   the operator see why). A stop (SIGTERM) turns it unready first, then it drains.
    GET /metrics   Prometheus text: the service's own series (``ServiceMetrics``) and any extra
                   registry handed in (the reporter's alert metrics)

``ServiceMonitor`` is the ``shared.monitor.Monitor`` the runner reports to when a service has a
health server: it keeps the beats, the readiness checks and the metrics. Checks are plain
callables returning a reason when not ready (``None``: ready), so each service adds what only it
knows (the reporter's disk).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.config import ConfigError
from shared.monitor import Check, Monitor
from shared.transport.base import Consumer, Outgoing, Transport

log = logging.getLogger("dcc.health")

STALE_AFTER = 60.0  # a loop that has not beaten for this long is hung (the poll is well under 1 s)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServiceMetrics:
    """The series every service exposes; labels are queue names (a handful per service)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.consumed = Counter("dcc_messages_consumed", "Messages taken from a queue.", ["queue"], registry=r)
        self.published = Counter("dcc_messages_published", "Messages published to a queue.", ["queue"], registry=r)
        self.dead_lettered = Counter(
            "dcc_messages_dead_lettered", "Messages sent to a queue's dead-letter queue.", ["queue"], registry=r
        )
        self.duration = Histogram(
            "dcc_handler_duration_seconds",
            "Duration of one handler call (a message or a batch).",
            ["queue"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.in_flight = Gauge("dcc_messages_in_flight", "Messages being handled.", ["queue"], registry=r)
        self.ready = Gauge("dcc_ready", "1 when the service is ready (as /readyz says), else 0.", registry=r)


class _Reconnects(Collector):
    """``dcc_broker_reconnects_total``, read from the transport when scraped."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("dcc_broker_reconnects", "Broker connections reopened after an outage.")
        family.add_metric([], self._transport.status().reconnects)
        yield family


class ServiceMonitor(Monitor):
    """Beats, readiness and metrics of one service process. Thread-safe."""

    def __init__(
        self,
        transport: Transport,
        stop: threading.Event,
        *,
        registry: CollectorRegistry | None = None,
        stale_after: float = STALE_AFTER,
    ) -> None:
        self.transport = transport
        self.stop = stop
        self.registry: CollectorRegistry = registry or CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry)
        self.registry.register(_Reconnects(transport))
        self._stale_after = stale_after
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}
        self._consumers: dict[str, Consumer] = {}
        self._storage_down: set[str] = set()
        self._checks: list[tuple[str, Check]] = []
        self.extra_registries: list[CollectorRegistry] = []

    # -- what services add ------------------------------------------------------------
    def add_check(self, name: str, check: Check) -> None:
        self._checks.append((name, check))

    def also_expose(self, registry: CollectorRegistry) -> None:
        self.extra_registries.append(registry)

    # -- Monitor ----------------------------------------------------------------------
    def beat(self, loop: str) -> None:
        self._beats[loop] = time.monotonic()  # one dict store: no lock needed on the hot path

    def watch_consumer(self, queue: str, consumer: Consumer) -> None:
        with self._lock:
            self._consumers[queue] = consumer

    def forget_consumer(self, queue: str) -> None:
        with self._lock:
            self._consumers.pop(queue, None)
            self._beats.pop(f"consume {queue}", None)

    def storage(self, queue: str, down: bool) -> None:
        with self._lock:
            (self._storage_down.add if down else self._storage_down.discard)(queue)

    def consumed(self, queue: str, count: int) -> None:
        self.metrics.consumed.labels(queue).inc(count)

    def published(self, outputs: Sequence[Outgoing]) -> None:
        counts: dict[str, int] = {}
        for out in outputs:
            counts[out.destination] = counts.get(out.destination, 0) + 1
        for queue, count in counts.items():
            self.metrics.published.labels(queue).inc(count)

    def dead_lettered(self, queue: str) -> None:
        self.metrics.dead_lettered.labels(queue).inc()

    def handled(self, queue: str, seconds: float) -> None:
        self.metrics.duration.labels(queue).observe(seconds)

    def in_flight(self, queue: str, change: int) -> None:
        self.metrics.in_flight.labels(queue).inc(change)

    # -- answers ----------------------------------------------------------------------
    def alive(self) -> str | None:
        """None when every loop beat recently; a loop waiting for the broker counts as alive
        (a broker outage is not cured by restarting us; readiness says it)."""
        if not self.transport.status().connected:
            return None
        now = time.monotonic()
        hung = sorted(loop for loop, at in dict(self._beats).items() if now - at > self._stale_after)
        return f"no progress in {', '.join(hung)} for over {self._stale_after:.0f} s" if hung else None

    def unready(self) -> str | None:
        """None when ready, else why not."""
        if self.stop.is_set():
            return "stopping"
        status = self.transport.status()
        if status.refused:
            return "the broker refused our credentials"
        if not status.connected:
            return "not connected to the broker"
        with self._lock:
            consumers = dict(self._consumers)
            down = sorted(self._storage_down)
        idle = sorted(queue for queue, consumer in consumers.items() if not consumer.consuming())
        if idle:
            return f"not consuming {', '.join(idle)}"
        if down:
            return f"cannot store the work of {', '.join(down)}"
        for name, check in self._checks:
            reason = check()
            if reason is not None:
                return f"{name}: {reason}"
        return None

    def exposition(self) -> bytes:
        self.metrics.ready.set(0 if self.unready() else 1)
        return b"".join(generate_latest(r) for r in [self.registry, *self.extra_registries])


class Answers(Protocol):
    """What the health server asks: ``ServiceMonitor``, or a supervisor speaking for its children."""

    def alive(self) -> str | None: ...

    def unready(self) -> str | None: ...

    def exposition(self) -> bytes: ...


class HealthServer:
    """``monitor`` over HTTP on ``port`` (all interfaces), on a daemon thread, until ``close``."""

    def __init__(self, monitor: Answers, port: int, host: str = "0.0.0.0") -> None:
        self.monitor = monitor
        self._http = ThreadingHTTPServer((host, port), _handler_for(monitor))
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name="dcc-health", daemon=True)
        self._thread.start()
        log.info("health, readiness and metrics on port %d (/healthz, /readyz, /metrics)", self.port)

    @classmethod
    def open(cls, monitor: Answers, port: int) -> HealthServer:
        """The server on ``port``; a port already taken is a ``ConfigError`` (one line, exit 2)."""
        try:
            return cls(monitor, port)
        except OSError as exc:
            raise ConfigError(f"health_port {port}: cannot listen ({exc.strerror or exc})") from None

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(monitor: Answers) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                reason = monitor.alive()
                self._answer(503 if reason else 200, (reason or "ok").encode())
            elif path == "/readyz":
                reason = monitor.unready()
                self._answer(503 if reason else 200, (reason or "ready").encode())
            elif path == "/metrics":
                self._answer(200, monitor.exposition(), CONTENT_TYPE)
            else:
                self._answer(404, b"not found: /healthz, /readyz, /metrics")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            pass  # probes every few seconds would drown the service's own log

    return _Handler
