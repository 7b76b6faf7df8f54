"""The transport interface every service runner uses; handlers never see it.

Queues have logical names (``resolve``, ``report``, ``scan.<segment>``); an implementation maps
them onto its own topology. Bodies are always ``shared.messages`` encodings, so the in-memory
transport exercises the same codec as the broker.

Contract (tests/transport runs it against every implementation):
- ``publish`` returns only once the message is safely queued (durable, confirmed) and raises
  ``TransportError`` when it cannot be routed to a queue;
- a delivery stays owned by its consumer until ``ack``, ``dead_letter`` or ``requeue``; a consumer
  that closes hands its unsettled deliveries back to the queue;
- a consumer that dies holding deliveries (killed, connection lost) loses them to the queue too:
  they come back marked redelivered and counted in ``x-dcc-redeliveries``, and past the
  transport's ``max_redeliveries`` they are dead-lettered instead (``shared.transport.redelivery``).
  Giving back (``requeue``, ``cancel``/``close`` during a graceful stop) never counts;
- ``ack``/``dead_letter``/``requeue`` may be called from any thread.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.messages import Envelope, encode

RESOLVE = "resolve"
REPORT = "report"
SCAN_PREFIX = "scan."


def scan_queue(segment: str) -> str:
    """The queue a network segment's scanners consume."""
    return SCAN_PREFIX + segment


class TransportError(RuntimeError):
    """The transport could not do what was asked (no route, broker gone past all retries)."""


class ConnectionLost(TransportError):
    """The broker went away mid-work; an unsettled delivery will come back by itself."""


class BrokerRefused(TransportError):
    """The broker refused us: wrong user or password (``ACCESS_REFUSED``), a vhost the user may not
    use (``NOT_ALLOWED``), or a name the user has no permission on. A configuration error: retrying
    cannot help, so nothing retries it; a service exits with a distinct status. Never names the password."""


@dataclass(frozen=True)
class Outgoing:
    """A message a handler wants sent, and where."""

    destination: str
    message: Envelope  # a handler's are single messages; the runner may pack them (shared.batches)


@dataclass
class Delivery:
    """One received message, still unsettled. ``tag`` is the implementation's handle."""

    body: bytes
    tag: object
    redelivered: bool = False
    headers: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """A parked message as an operator (or a test) sees it: its body, why, and its headers."""

    body: bytes
    reason: str
    headers: Mapping[str, object]


class Consumer(ABC):
    """Deliveries from one queue, at most ``prefetch`` unsettled at a time."""

    @abstractmethod
    def get(self, timeout: float) -> Delivery | None:
        """The next delivery, or None after ``timeout`` seconds without one. Owner thread only."""

    @abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """Done with it: the outputs are published. Any thread."""

    @abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Never processable: park it on the queue's dead-letter queue with ``reason``. Any thread."""

    @abstractmethod
    def requeue(self, delivery: Delivery) -> None:
        """Give it back for another consumer (shutdown before it started). Any thread."""

    @abstractmethod
    def park(self, body: bytes, reason: str, headers: Mapping[str, object]) -> None:
        """Put ``body`` on this queue's dead-letter queue with ``reason``, settling nothing: one
        message of a batch that cannot be handled (``shared.batches``). Raises ``TransportError``
        when it cannot. Any thread."""

    def cancel(self) -> None:  # noqa: B027 - optional hook: only a broker pushes deliveries unasked
        """Stop receiving new deliveries (shutdown); settling in-flight ones still works. Owner thread."""

    def consuming(self) -> bool:
        """Whether deliveries can arrive now (connected, not cancelled); readiness asks. Any thread."""
        return True

    @abstractmethod
    def close(self) -> None:
        """Stop; unsettled deliveries go back to the queue."""


@dataclass(frozen=True)
class BrokerStatus:
    """What readiness and metrics ask of a transport: connected now, reopened how often, refused."""

    connected: bool
    reconnects: int = 0
    refused: bool = False


class Transport(ABC):
    """Where messages go and come from. Everything a caller may use is declared here, so the
    implementations swap without casts."""

    @abstractmethod
    def declare(self, queues: Sequence[str]) -> None:
        """Make sure these logical queues (and their dead-letter queues) exist."""

    def publish(self, destination: str, message: Envelope) -> None:
        """Send one message; returns once it is safely queued. Any thread."""
        self.publish_raw(destination, encode(message))

    def publish_many(self, items: Sequence[Outgoing]) -> None:
        """Send several, in order. Any thread."""
        for item in items:
            self.publish(item.destination, item.message)

    @abstractmethod
    def publish_raw(self, destination: str, body: bytes, headers: Mapping[str, object] | None = None) -> None:
        """Send bytes as they are, with optional headers (tests use it for poison messages). Any thread."""

    @abstractmethod
    def consumer(self, queue: str, prefetch: int) -> Consumer:
        """Start consuming ``queue``."""

    @abstractmethod
    def depth(self, queue: str) -> int:
        """Messages ready on ``queue`` (not counting those held by consumers)."""

    @abstractmethod
    def dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        """Peek at up to ``limit`` of ``queue``'s dead letters, oldest first; they stay parked."""

    def status(self) -> BrokerStatus:
        """The broker as this transport last saw it. Any thread; never blocks."""
        return BrokerStatus(connected=True)

    def interrupt_on(self, event: threading.Event) -> None:  # noqa: B027 - only a transport that reconnects waits
        """Give up waiting for a lost broker as soon as ``event`` is set (a SIGTERM during an outage)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
