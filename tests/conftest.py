"""Suite-wide conventions: which tests are slow.

A test is ``slow`` when it needs a real server process (RabbitMQ, Knot, the TLS lab,
Alertmanager) or several processes: it says so by using one of the fixtures below, or by an
explicit ``@pytest.mark.slow``. ``make unit`` (``pytest -m "not slow"``) runs everything else.
A missing server is never a skip: the fixtures fail with what to install.
"""

from __future__ import annotations

import pytest

SLOW_FIXTURES = frozenset(
    {
        "amqp",  # RabbitMQ
        "bind",  # Knot
        "bind_tsig",
        "fleet",  # service processes over RabbitMQ
        "knot",
        "lab",  # TLS servers with generated certificates
        "nameserver",  # Knot as a resolver's upstream
        "vhost",
        "world",  # lab + Knot
        "alertmanager",  # prometheus-alertmanager
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        on_broker = "harness" in fixtures and "[amqp" in item.nodeid
        if fixtures & SLOW_FIXTURES or on_broker:
            item.add_marker(pytest.mark.slow)
