"""The handshake loop (one thread driving every fast-path handshake) against real servers: it says
what the blocking handshake says, ends connections at their timeout, deadline, abort or stop, and
starts what its own callbacks submit."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from lab import Lab, LabEndpoint
from services.scanner import handshake
from services.scanner.handshake_loop import HandshakeLoop, Request
from services.scanner.sockets import SocketOwner
from shared import findings

from .slow_server import SlowServer


def request(
    endpoint: LabEndpoint | SlowServer,
    done: queue.Queue[handshake.Fetched] | None = None,
    timeout: float = 1.0,
    deadline_in: float = 10.0,
    owner: SocketOwner | None = None,
    sni: str = "hung.lab.test",
) -> Request:
    outcomes = done if done is not None else queue.Queue()
    name = endpoint.hostname if isinstance(endpoint, LabEndpoint) else sni
    return Request(
        ip=endpoint.ip,
        port=endpoint.port,
        sni=name,
        timeout=timeout,
        deadline=time.monotonic() + deadline_in,
        owner=owner or SocketOwner(),
        done=outcomes.put,
    )


def comparable(fetched: handshake.Fetched) -> object:
    """A chain compares by its certificates and whether a response was stapled (nassl's object has no ==)."""
    if isinstance(fetched, handshake.Served):
        return ("served", fetched.chain_pem, fetched.ocsp is None)
    return fetched


@pytest.fixture
def loop() -> Iterator[HandshakeLoop]:
    running = HandshakeLoop(name="test-handshakes")
    yield running
    running.stop()


def test_every_lab_case_gets_on_the_loop_what_the_blocking_handshake_gets(lab: Lab, loop: HandshakeLoop) -> None:
    outcomes: dict[int, queue.Queue[handshake.Fetched]] = {}
    for index, endpoint in enumerate(lab.endpoints):
        outcomes[index] = queue.Queue()
        assert loop.submit(request(endpoint, outcomes[index]))
    on_loop = {index: comparable(done.get(timeout=10)) for index, done in outcomes.items()}
    blocking = {i: comparable(handshake.fetch(e.ip, e.port, e.hostname, 1.0)) for i, e in enumerate(lab.endpoints)}
    assert on_loop == blocking
    kinds = {lab.endpoints[i].case: outcome for i, outcome in on_loop.items()}
    assert isinstance(kinds["valid"], tuple) and kinds["valid"][0] == "served"
    failures = {"refused": "CONNECT_REFUSED", "hung": "CONNECT_TIMEOUT", "plaintext": "TLS_HANDSHAKE_FAILED"}
    for case, code in failures.items():
        outcome = kinds[case]
        assert isinstance(outcome, findings.Finding) and outcome.code == code, case


def test_two_hundred_handshakes_at_once_run_on_the_one_loop_thread(lab: Lab, loop: HandshakeLoop) -> None:
    valid = next(e for e in lab.endpoints if e.case == "valid")
    done: queue.Queue[handshake.Fetched] = queue.Queue()
    threads_before = threading.active_count()
    for _ in range(200):
        assert loop.submit(request(valid, done))
    threads_during = threading.active_count()
    outcomes = [done.get(timeout=20) for _ in range(200)]
    assert all(isinstance(o, handshake.Served) and o.chain_pem for o in outcomes)
    assert threads_during <= threads_before  # no thread per connection
    assert loop.in_flight() == 0


@pytest.fixture
def silent() -> Iterator[SlowServer]:
    """A server that accepts and never answers."""
    with SlowServer(None, delay=0.0) as server:
        yield server


def accepted(server: SlowServer, count: int) -> None:
    deadline = time.monotonic() + 5
    while server.accepted < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the ClientHellos are out: the loop waits for the server


def is_finding(outcome: handshake.Fetched, code: str) -> bool:
    return isinstance(outcome, findings.Finding) and outcome.code == code


def test_a_silent_server_costs_one_timeout_and_the_loop_closes_the_connection(
    loop: HandshakeLoop, silent: SlowServer
) -> None:
    done: queue.Queue[handshake.Fetched] = queue.Queue()
    start = time.monotonic()
    loop.submit(request(silent, done, timeout=0.3))
    outcome = done.get(timeout=5)
    assert 0.25 <= time.monotonic() - start < 1.5
    assert is_finding(outcome, findings.Code.CONNECT_TIMEOUT)
    time.sleep(0.2)
    assert silent.accepted == 1 and silent.open_now() == 0


def test_the_deadline_ends_a_handshake_that_keeps_within_its_timeout(loop: HandshakeLoop, silent: SlowServer) -> None:
    done: queue.Queue[handshake.Fetched] = queue.Queue()
    start = time.monotonic()
    loop.submit(request(silent, done, timeout=30.0, deadline_in=0.4))
    outcome = done.get(timeout=5)
    assert time.monotonic() - start < 1.4
    assert is_finding(outcome, findings.Code.CONNECT_TIMEOUT)


def test_aborting_the_owner_ends_its_handshake_at_once(loop: HandshakeLoop, silent: SlowServer) -> None:
    owner = SocketOwner()
    done: queue.Queue[handshake.Fetched] = queue.Queue()
    loop.submit(request(silent, done, timeout=30.0, deadline_in=30.0, owner=owner))
    accepted(silent, 1)
    start = time.monotonic()
    owner.abort()
    outcome = done.get(timeout=5)
    assert time.monotonic() - start < 1.0
    assert outcome is None or isinstance(outcome, findings.Finding)  # the engine settled it already
    time.sleep(0.2)
    assert silent.open_now() == 0


def test_a_request_its_own_timeout_callback_submits_starts_at_once(loop: HandshakeLoop, silent: SlowServer) -> None:
    """A place freed by a timeout goes to the next endpoint from the loop thread itself; that request
    must start this turn even when nothing else is pending (it once waited for a wake that never came)."""
    second: queue.Queue[handshake.Fetched] = queue.Queue()

    def then(_: handshake.Fetched) -> None:
        loop.submit(request(silent, second, timeout=0.2))

    first = request(silent, timeout=0.2)
    loop.submit(Request(first.ip, first.port, first.sni, first.timeout, first.deadline, first.owner, then))
    assert is_finding(second.get(timeout=3), findings.Code.CONNECT_TIMEOUT)
    assert silent.accepted == 2


def test_stopping_the_loop_ends_every_handshake_and_refuses_new_ones(loop: HandshakeLoop, silent: SlowServer) -> None:
    done: queue.Queue[handshake.Fetched] = queue.Queue()
    for _ in range(5):
        loop.submit(request(silent, done, timeout=30.0, deadline_in=30.0))
    accepted(silent, 5)
    loop.stop()
    outcomes = [done.get(timeout=2) for _ in range(5)]
    assert all(is_finding(o, findings.Code.CONNECT_ERROR) for o in outcomes)
    assert not loop.submit(request(silent, done))
    time.sleep(0.2)
    assert silent.open_now() == 0
