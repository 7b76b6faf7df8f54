"""How the broker transport fails: a broker that refuses us is a configuration error, said once;
a broker that goes away for a while is one line when it goes and one when it is back.

Refusals use throw-away users and vhosts on the shared broker (deleted after); the outage is a
TCP proxy on a loopback port (``proxy.FlakyProxy``) between the transport and the broker, so the
shared broker itself is never stopped.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from shared.messages import Message, ScanJob, ScanResult, decode, result_for
from shared.runner import Handler, ServeOptions, serve
from shared.transport import BrokerRefused, Outgoing, TransportError, amqp_url_from_env
from shared.transport.amqp import AmqpTransport, parse_amqp_url
from tests.distributed.broker import rabbitmqctl

from .conftest import ROOT, AmqpHarness, new_amqp
from .proxy import FlakyProxy
from .test_transport_contract import job

pytestmark = pytest.mark.slow

SECRET = "Wr0ng-Secret-4711"


def with_netloc(url: str, *, user: str | None = None, password: str | None = None, port: int | None = None) -> str:
    """``url`` with another user, password or port (host 127.0.0.1 when the port changes)."""
    parts = urlsplit(url)
    params = parse_amqp_url(url)
    name = quote(user if user is not None else params.credentials.username, safe="")
    secret = quote(password if password is not None else params.credentials.password, safe="")
    where = f"127.0.0.1:{port}" if port is not None else f"{params.host}:{params.port}"
    return urlunsplit((parts.scheme, f"{name}:{secret}@{where}", parts.path or "/", parts.query, ""))


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))


def warnings_and_worse(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.exc_text or r.stack_info or "Traceback" in r.getMessage()]


# -- refused: credentials, vhost, permissions ------------------------------------------------


@pytest.fixture
def stranger() -> Iterator[tuple[str, str]]:
    """A throw-away user (name, password) with no permissions anywhere, and a vhost of its own
    that nobody may use; both deleted after."""
    name = f"dcc-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_user", name, SECRET)
    rabbitmqctl("add_vhost", name)
    yield name, SECRET
    rabbitmqctl("delete_user", name)
    rabbitmqctl("delete_vhost", name)


def test_a_wrong_password_is_refused_at_once_and_never_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = AmqpTransport(with_netloc(amqp_url_from_env(), password=SECRET), reconnect_for=60, prefix="t.")
    started = time.monotonic()
    with pytest.raises(BrokerRefused) as info:
        transport.declare(["resolve"])
    assert time.monotonic() - started < 5  # not the 60 s of reconnecting an outage gets
    message = str(info.value)
    assert "ACCESS_REFUSED" in message and "password" in message and "guest" in message
    assert SECRET not in caplog.text and SECRET not in message
    assert warnings_and_worse(caplog) == []  # the caller says it, once
    assert tracebacks(caplog) == []
    # and it stays refused: no more attempts, no more waiting
    started = time.monotonic()
    with pytest.raises(BrokerRefused):
        transport.consumer("resolve", 1)
    assert time.monotonic() - started < 1
    transport.close()


def test_a_vhost_the_user_may_not_use_is_refused(stranger: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vhost, _ = stranger  # exists, but guest has no permissions on it
    transport = AmqpTransport(with_vhost(amqp_url_from_env(), vhost), reconnect_for=60, prefix="t.")
    started = time.monotonic()
    with pytest.raises(BrokerRefused) as info:
        transport.consumer("resolve", 1)
    assert time.monotonic() - started < 5
    assert "NOT_ALLOWED" in str(info.value) and repr(vhost) in str(info.value)
    assert warnings_and_worse(caplog) == [] and tracebacks(caplog) == []
    transport.close()

    missing = AmqpTransport(with_vhost(amqp_url_from_env(), vhost + "-missing"), reconnect_for=60, prefix="t.")
    with pytest.raises(BrokerRefused, match="NOT_ALLOWED"):
        missing.declare(["resolve"])
    missing.close()


def test_a_user_without_permissions_is_refused_when_declaring(stranger: tuple[str, str]) -> None:
    name, password = stranger
    rabbitmqctl("set_permissions", "-p", name, name, "^$", "^$", "^$")  # may log in, may touch nothing
    url = with_vhost(with_netloc(amqp_url_from_env(), user=name, password=password), name)
    transport = AmqpTransport(url, reconnect_for=60, prefix="t.")
    started = time.monotonic()
    with pytest.raises(BrokerRefused) as info:
        transport.declare(["resolve"])
    assert time.monotonic() - started < 5
    assert "ACCESS_REFUSED" in str(info.value) and password not in str(info.value)
    transport.close()


SERVICES = {
    "resolver": ["resolver"],
    "collector": ["collector", "--once", "--from-zones-json", "{zones}"],
    "reporter": ["reporter", "--output-dir", "{out}"],
    "scanner": ["scanner", "--segment", "dmz"],
}


def wrong_password_env() -> dict[str, str]:
    """A service's environment whose AMQP_URL has the wrong password, on queues of its own."""
    return {
        **os.environ,
        "AMQP_URL": with_netloc(amqp_url_from_env(), password=SECRET),
        "DCC_QUEUE_PREFIX": f"test-{uuid.uuid4().hex[:8]}.",
        "PYTHONPATH": str(ROOT),
    }


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_with_a_wrong_password_exits_2_with_one_line(tmp_path: Path, service: str) -> None:
    config = tmp_path / "config.json"
    config.write_text("{}")
    (tmp_path / "zones.json").write_text('{"example.test": [{"type": "A", "name": "www", "target": "192.0.2.1"}]}')
    args = [a.format(zones=tmp_path / "zones.json", out=tmp_path / "out") for a in SERVICES[service]]
    env = wrong_password_env()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert elapsed < 20, f"took {elapsed:.1f} s: retried as an outage?"
    errors = [line for line in done.stderr.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    assert len(errors) == 1, done.stderr
    assert "refused the login" in errors[0] and "AMQP_URL" in errors[0]
    assert "Traceback" not in output and SECRET not in output
    assert not re.search(r"\bWARNING\b", done.stderr), done.stderr


def test_scanner_processes_refused_by_the_broker_exit_2_without_retrying(tmp_path: Path) -> None:
    """The supervisor of ``--processes`` passes a child's refusal on: restarting would never help."""
    config = tmp_path / "config.json"
    config.write_text("{}")
    env = wrong_password_env()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "scanner", "--processes", "2", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert time.monotonic() - started < 20
    assert "refused the login" in output and "exited with status 2" in output
    assert "Traceback" not in output and SECRET not in output


# -- an outage: one line when the broker goes, one when it is back ----------------------------


class _Echo(Handler):
    """One result per job, counting what it saw."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.seen: Counter[str] = Counter()

    def handle(self, message: Message) -> list[Outgoing]:
        assert isinstance(message, ScanJob)
        self.seen[message.job_id] += 1
        time.sleep(0.01)
        return [Outgoing(self.out, result_for(message, [], datetime(2026, 1, 1, tzinfo=UTC)))]


@pytest.fixture
def amqp() -> Iterator[AmqpHarness]:
    h = AmqpHarness(new_amqp(max_redeliveries=5, reconnect_for=30))
    yield h
    h.cleanup()


@pytest.fixture
def proxy() -> Iterator[FlakyProxy]:
    params = parse_amqp_url(amqp_url_from_env())
    p = FlakyProxy((params.host, params.port))
    yield p
    p.close()


def test_an_outage_is_one_line_down_one_line_back_and_loses_nothing(
    amqp: AmqpHarness, proxy: FlakyProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every record counts: a traceback at DEBUG is still one
    q_in, q_out = amqp.queue("jobs"), amqp.queue("results")
    prefix = amqp.transport.topology.prefix
    flaky = AmqpTransport(
        with_netloc(amqp_url_from_env(), port=proxy.port), prefix=prefix, name=f"dcc-{prefix}flaky", reconnect_for=60
    )
    jobs = [job(n) for n in range(150)]
    handler = _Echo(q_out)
    stop = threading.Event()
    server = threading.Thread(
        target=serve, args=(flaky, q_in, handler, stop, ServeOptions(workers=2, poll=0.05)), daemon=True
    )
    published: list[str] = []

    def publish() -> None:
        for one in jobs:
            flaky.publish(q_in, one)
            published.append(one.job_id)
            time.sleep(0.02)

    publisher = threading.Thread(target=publish, daemon=True)
    server.start()
    publisher.start()
    try:
        deadline = time.monotonic() + 20
        while sum(handler.seen.values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert 0 < len(published) < len(jobs), "the outage has to come while the publisher publishes"
        proxy.cut()
        cut_at = time.monotonic()
        time.sleep(5)
        proxy.restore()
        publisher.join(60)
        assert not publisher.is_alive() and len(published) == len(jobs)
        results = _collect_results(amqp, q_out, {one.job_id for one in jobs}, timeout=60)
        recovered_in = time.monotonic() - cut_at
    finally:
        stop.set()
        server.join(30)
        flaky.close()
    assert not server.is_alive()

    assert set(results) == {one.job_id for one in jobs}  # every job handled, its result delivered
    # at least once: only what was in flight at the cut (prefetch, an unconfirmed publish) repeats
    assert sum(results.values()) - len(jobs) <= 8, results.most_common(10)
    assert amqp.dead_letters(q_in) == [] and amqp.dead_letters(q_out) == []

    lines = warnings_and_worse(caplog)
    assert tracebacks(caplog) == []
    assert len(lines) <= 3, "\n".join(lines)
    lost = [line for line in lines if "broker connection lost" in line]
    back = [line for line in lines if "broker connection back after" in line]
    assert len(lost) == 1 and lost[0].startswith("WARNING") and "reconnecting" in lost[0], lines
    assert len(back) == 1, lines
    downtime = float(re.search(r"back after ([\d.]+) s", back[0]).group(1))  # type: ignore[union-attr]
    assert 4.5 <= downtime <= recovered_in + 1, back[0]
    assert proxy.accepted >= 2  # the clients did come back through the proxy


def _collect_results(h: AmqpHarness, queue: str, expected: set[str], timeout: float) -> Counter[str]:
    """Read results off ``queue`` until every expected job has one, then what else is there."""
    consumer = h.transport.consumer(queue, 100)
    got: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            delivery = consumer.get(0.5)
            if delivery is None:
                if expected <= set(got):
                    break
                continue
            result = decode(delivery.body)
            assert isinstance(result, ScanResult)
            got[result.job_id] += 1
            consumer.ack(delivery)
    finally:
        consumer.close()
    return got


def test_a_broker_that_never_comes_back_is_given_up_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = AmqpTransport("amqp://guest:secret-pw@127.0.0.1:1/", reconnect_for=2)
    with pytest.raises(TransportError) as info:
        transport.declare(["resolve"])
    assert not isinstance(info.value, BrokerRefused)  # nobody there is an outage, not a refusal
    lines = warnings_and_worse(caplog)
    assert len(lines) == 1 and "cannot reach the broker" in lines[0], lines
    assert tracebacks(caplog) == [] and "secret-pw" not in caplog.text
