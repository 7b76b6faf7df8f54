"""Transports: how messages move between services (in-memory by default, AMQP when distributed).

This is the public surface. The AMQP implementation (``shared.transport.amqp``, the only code that
imports pika) is loaded by ``open_amqp`` when it is first called, so the in-process ``run``, the
CLI's ``--help`` and the handlers never load the broker client.
"""

from __future__ import annotations

from typing import Any

from shared.transport.base import (
    REPORT,
    RESOLVE,
    BrokerRefused,
    BrokerStatus,
    ConnectionLost,
    Consumer,
    DeadLetter,
    Delivery,
    Outgoing,
    Transport,
    TransportError,
    scan_queue,
)
from shared.transport.env import DEFAULT_AMQP_URL, amqp_url_from_env
from shared.transport.memory import InMemoryTransport


def open_amqp(url: str | None = None, **kwargs: Any) -> Transport:
    """The broker transport: ``url`` or ``AMQP_URL`` (else ``DEFAULT_AMQP_URL``), names prefixed
    with ``DCC_QUEUE_PREFIX``; ``kwargs`` as ``AmqpTransport`` takes them. A malformed URL raises
    ``ConfigError`` without quoting it."""
    from shared.transport.amqp import open_transport  # pika only now, when the broker is wanted

    return open_transport(url, **kwargs)


__all__ = [
    "DEFAULT_AMQP_URL",
    "REPORT",
    "RESOLVE",
    "BrokerRefused",
    "BrokerStatus",
    "ConnectionLost",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "InMemoryTransport",
    "Outgoing",
    "Transport",
    "TransportError",
    "amqp_url_from_env",
    "open_amqp",
    "scan_queue",
]
