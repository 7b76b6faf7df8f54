"""Fixtures the end-to-end alerting tests share: a real HTTP receiver and its signing secret."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest

from tests.reporter.alerts.receiver import Receiver

SECRET_ENV = "DCC_E2E_WEBHOOK_SECRET"  # the receiver config's secret_env


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """A Standard Webhooks secret, in ``SECRET_ENV`` for this test."""
    value = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv(SECRET_ENV, value)
    return value
