"""/healthz, /readyz and /metrics of a served stage, over real HTTP, on the in-memory transport.

The broker side (readiness lost and regained with the connection, metrics after a distributed
run) is in tests/distributed/test_health.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from services.daemons import health
from shared.config import ConfigError
from shared.health import HealthServer, ServiceMonitor
from shared.messages import Batch, Message, RunStarted
from shared.runner import Handler, ServeOptions, StorageUnavailable, serve
from shared.transport import InMemoryTransport, Outgoing
from tests.http_probe import get, samples
from tests.loopback import free_port

IN, OUT = "work", "done"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def started(run_id: str) -> RunStarted:
    return RunStarted(run_id=run_id, started_at=datetime.now(UTC), zones=[], source="test")


class Forward(Handler):
    """Each message goes on to OUT; ``gate`` (when given) holds every call until it is set."""

    def __init__(self, gate: threading.Event | None = None, failures: int = 0) -> None:
        self.gate = gate
        self.failures = failures  # the first calls fail as a full disk does
        self.calls = 0

    def handle(self, message: Message) -> list[Outgoing]:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.calls <= self.failures:
            raise StorageUnavailable("disk full")
        return [Outgoing(OUT, message)]


@dataclass
class Served:
    transport: InMemoryTransport
    monitor: ServiceMonitor
    stop: threading.Event
    port: int
    thread: threading.Thread


@contextmanager
def served(handler: Handler, *, stale_after: float = 60.0) -> Iterator[Served]:
    transport = InMemoryTransport()
    transport.declare([IN, OUT])
    stop = threading.Event()
    monitor = ServiceMonitor(transport, stop, stale_after=stale_after)
    with HealthServer(monitor, free_port(), host="127.0.0.1") as server:
        thread = threading.Thread(target=serve, args=(transport, IN, handler, stop, ServeOptions(), monitor))
        thread.start()
        try:
            wait_for(lambda: get(server.port, "/readyz")[0] == 200, "the stage to be ready")
            yield Served(transport, monitor, stop, server.port, thread)
        finally:
            stop.set()
            thread.join(15)


def test_a_stage_consuming_its_queue_is_alive_and_ready() -> None:
    with served(Forward()) as s:
        assert get(s.port, "/healthz") == (200, "ok")
        assert get(s.port, "/readyz") == (200, "ready")
        assert samples(s.port)[("dcc_ready", ())] == 1.0


def test_readyz_says_stopping_as_soon_as_the_stop_is_set_while_work_still_drains() -> None:
    gate = threading.Event()
    with served(Forward(gate)) as s:
        s.transport.publish(IN, started("r1"))
        wait_for(lambda: samples(s.port).get(("dcc_messages_in_flight", (("queue", IN),))) == 1.0, "work in flight")
        s.stop.set()
        assert get(s.port, "/readyz") == (503, "stopping")
        assert s.thread.is_alive(), "the stage is still draining its in-flight message"
        gate.set()
        s.thread.join(10)
        assert [d.body for d in s.transport.dead_letters(IN)] == []
        assert s.transport.depth(OUT) == 1, "the drained message was finished, not dropped"


def test_a_stage_whose_storage_refuses_writes_is_unready_until_it_takes_the_work() -> None:
    handler = Forward(failures=2)  # two refusals: the runner retries after 0.5 s, then 1 s
    with served(handler) as s:
        s.transport.publish(IN, started("r1"))
        wait_for(lambda: get(s.port, "/readyz")[0] == 503, "unready while storage is down")
        assert get(s.port, "/readyz") == (503, f"cannot store the work of {IN}")
        assert get(s.port, "/healthz") == (200, "ok"), "a full disk is no reason to restart the service"
        wait_for(lambda: get(s.port, "/readyz")[0] == 200, "ready once the storage works", timeout=15)
        assert s.transport.depth(OUT) == 1


def test_metrics_count_what_each_queue_consumed_published_and_dead_lettered() -> None:
    with served(Forward()) as s:
        s.transport.publish(IN, started("single"))
        s.transport.publish(IN, Batch(messages=[started(f"b{n}") for n in range(5)]))
        s.transport.publish_raw(IN, b"not a message")
        wait_for(lambda: s.transport.depth(OUT) == 6, "every decodable message forwarded")
        wait_for(lambda: samples(s.port).get(("dcc_messages_dead_lettered_total", (("queue", IN),))) == 1.0, "dlq")
        got = samples(s.port)
        assert got[("dcc_messages_consumed_total", (("queue", IN),))] == 6.0, "a batch counts by its messages"
        assert got[("dcc_messages_published_total", (("queue", OUT),))] == 6.0
        assert got[("dcc_handler_duration_seconds_count", (("queue", IN),))] == 6.0
        assert got[("dcc_messages_in_flight", (("queue", IN),))] == 0.0
        assert got[("dcc_broker_reconnects_total", ())] == 0.0


def test_a_loop_that_stops_beating_is_no_longer_alive() -> None:
    transport = InMemoryTransport()
    monitor = ServiceMonitor(transport, threading.Event(), stale_after=0.2)
    monitor.beat("consume work")
    assert monitor.alive() is None
    time.sleep(0.3)
    assert monitor.alive() == "no progress in consume work for over 0 s"
    monitor.beat("consume work")
    assert monitor.alive() is None


def test_a_check_a_service_adds_gives_its_reason_when_it_fails() -> None:
    full = threading.Event()
    with served(Forward()) as s:
        s.monitor.add_check("report directory", lambda: "cannot write in /reports" if full.is_set() else None)
        assert get(s.port, "/readyz")[0] == 200
        full.set()
        assert get(s.port, "/readyz") == (503, "report directory: cannot write in /reports")
        assert samples(s.port)[("dcc_ready", ())] == 0.0


def test_an_unknown_path_is_not_found() -> None:
    with served(Forward()) as s:
        assert get(s.port, "/status")[0] == 404


def test_a_health_port_already_taken_is_one_clear_config_error() -> None:
    port = free_port()
    transport = InMemoryTransport()
    taken = HealthServer(ServiceMonitor(transport, threading.Event()), port)
    try:
        with (
            pytest.raises(ConfigError, match=f"health_port {port}: cannot listen"),
            health(transport, threading.Event(), port),
        ):
            pass
    finally:
        taken.close()


def test_without_a_health_port_the_monitor_keeps_nothing() -> None:
    with health(InMemoryTransport(), threading.Event(), None) as monitor:
        assert monitor.registry is None
