"""Fixtures of the alert tests: a real HTTP receiver, a real Alertmanager, a factory of Alertings."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from services.reporter.alerts import Alerting, RetryPolicy
from shared.alerts_config import AlertsConfig, Receiver, WebhookReceiver
from shared.config import Config
from tests.reporter.alerts.alertmanager import Alertmanager
from tests.reporter.alerts.receiver import Receiver as HttpReceiver
from tests.reporter.alerts.runs import Clock

SECRET_ENV = "DCC_TEST_WEBHOOK_SECRET"
FAST = RetryPolicy(initial=0.02, base=2.0, maximum=0.1)  # backoff in tens of milliseconds

OpenAlerting = Callable[..., Alerting]


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv(SECRET_ENV, value)
    return value


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    server = Alertmanager(tmp_path_factory.mktemp("alertmanager"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "alerts.db"


@pytest.fixture
def open_alerting(state_file: Path, clock: Clock) -> Iterator[OpenAlerting]:
    """``open_alerting([receivers], **alerts_keys)``: an Alerting on the test's state file, closed at the end.

    Its clock is the test's ``clock`` unless ``now=`` gives another (Alertmanager needs the real time).
    """
    opened: list[Alerting] = []

    def open_(
        receivers: list[Receiver],
        *,
        retry: RetryPolicy = FAST,
        now: Callable[[], datetime] = clock,
        **alerts: object,
    ) -> Alerting:
        config = Config(alerts=AlertsConfig(state_file=str(state_file), receivers=receivers, **alerts))
        alerting = Alerting.from_config(config, clock=now, retry=retry)
        assert alerting is not None
        opened.append(alerting)
        return alerting

    try:
        yield open_
    finally:
        for alerting in opened:
            alerting.close()


def webhook(receiver: HttpReceiver, name: str = "ops", **options: object) -> WebhookReceiver:
    options.setdefault("timeout", 2.0)
    return WebhookReceiver(name=name, url=receiver.url(f"/{name}"), secret_env=SECRET_ENV, **options)
