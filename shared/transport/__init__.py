"""Transports: how messages move between services (in-memory by default, AMQP when distributed)."""

from shared.transport.base import (
    REPORT,
    RESOLVE,
    Consumer,
    Delivery,
    Outgoing,
    Transport,
    TransportError,
    scan_queue,
)

__all__ = [
    "REPORT",
    "RESOLVE",
    "Consumer",
    "Delivery",
    "Outgoing",
    "Transport",
    "TransportError",
    "scan_queue",
]
