"""``AmqpTransport``: publishing through the link pool, consumers, and the operator helpers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tenacity import Retrying

from shared.logging import redact
from shared.messages import encode
from shared.transport.base import BrokerStatus, Consumer, DeadLetter, Outgoing, Transport, TransportError
from shared.transport.env import amqp_url_from_env, queue_prefix_from_env

from .client import pika
from .consumer import AmqpConsumer
from .health import BrokerHealth
from .links import Link, LinkPool
from .retry import retrying
from .topology import DEAD_AT_HEADER, QUEUE_HEADER, REASON_HEADER, Topology
from .url import connection_parameters, parse_amqp_url

# Messages per transaction: a 100,000-job zone is 200 round trips, and what a break costs again.
PUBLISH_WINDOW = 500

log = logging.getLogger("dcc.amqp")


def open_transport(url: str | None = None, **kwargs: Any) -> AmqpTransport:
    """The transport the service processes use: ``AMQP_URL`` and ``DCC_QUEUE_PREFIX`` from env."""
    return AmqpTransport(url or amqp_url_from_env(), **kwargs)


class AmqpTransport(Transport):
    """RabbitMQ transport. ``publish`` and the consumers' settle calls are thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        heartbeat: int = 30,
        confirm_timeout: float = 30,
        reconnect_for: float = 120.0,
        max_redeliveries: int | None = 5,
        prefix: str | None = None,
        name: str = "dcc",
    ) -> None:
        self._url = url
        self._params = parse_amqp_url(url)  # once, up front: a bad URL is a config error, not a crash
        self._heartbeat = heartbeat
        self._confirm_timeout = confirm_timeout
        self._reconnect_for = reconnect_for
        self.max_redeliveries = max_redeliveries
        self.topology = Topology(queue_prefix_from_env() if prefix is None else prefix)
        self._name = name
        self._abort = threading.Event()  # set: stop waiting for the broker to come back
        self.health = BrokerHealth(self._params)  # outages told once for all connections; refusals stick
        self._links = LinkPool(
            lambda: self.parameters("publish"),
            heartbeat=heartbeat,
            reconnect_for=reconnect_for,
            abort=self._abort,
            health=self.health,
        )

    def __repr__(self) -> str:
        return f"AmqpTransport({redact(self._url)!r}, prefix={self.topology.prefix!r})"

    # -- connections (also what the consumers use) --------------------------------
    def parameters(self, role: str) -> pika.URLParameters:
        return connection_parameters(
            self._params, name=self._name, role=role, heartbeat=self._heartbeat, blocked_timeout=self._confirm_timeout
        )

    def retrying(self, what: str) -> Retrying:
        """Reconnect for ``reconnect_for`` seconds, or until ``interrupt_on``'s event or ``close``."""
        return retrying(what, reconnect_for=self._reconnect_for, abort=self._abort)

    def status(self) -> BrokerStatus:
        return self.health.status()

    def interrupt_on(self, event: threading.Event) -> None:
        """Give up reconnecting as soon as ``event`` is set (a SIGTERM during a broker outage)."""

        def watch() -> None:
            event.wait()
            self._abort.set()

        threading.Thread(target=watch, daemon=True, name="dcc-amqp-abort").start()

    # -- Transport API ------------------------------------------------------------
    def declare(self, queues: Sequence[str]) -> None:
        self._links.run("declare", lambda link: self.topology.declare(link.channel, list(queues)))

    def publish_raw(self, destination: str, body: bytes, headers: Mapping[str, object] | None = None) -> None:
        exchange = self.topology.exchange
        self._links.run(f"publish to {destination}", lambda link: link.publish(exchange, destination, body, headers))

    def publish_many(self, items: Sequence[Outgoing]) -> None:
        batch = [(item.destination, encode(item.message), None) for item in items]
        if batch:
            self._send_all(batch, f"publish {len(batch)} messages")

    def republish(self, queue: str, items: Sequence[tuple[bytes, Mapping[str, object]]]) -> int:
        """Put messages back on ``queue`` as they are; how many made it (a quick try, no long retry)."""
        batch = [(queue, body, headers) for body, headers in items]
        done, failure = self._send_all(batch, f"give back {len(items)} messages to {queue}", quick=True)
        if failure is not None:
            log.warning("cannot give %d messages back to %s (%s)", len(items) - done, queue, failure)
        return done

    def _send_all(
        self, batch: Sequence[tuple[str, bytes, Mapping[str, object] | None]], what: str, quick: bool = False
    ) -> tuple[int, TransportError | None]:
        """Publish in order, ``PUBLISH_WINDOW`` messages per broker transaction (one round trip each,
        not one per message), resuming after a reconnect with the first batch not committed.

        How many were sent; a quick batch returns its failure instead of raising it.
        """
        done = 0
        exchange = self.topology.exchange

        def send(link: Link) -> None:
            nonlocal done
            while done < len(batch):
                if len(batch) - done == 1:  # one message: a confirmed publish is one round trip too
                    destination, body, headers = batch[done]
                    link.publish(exchange, destination, body, headers)
                    done += 1
                    continue
                chunk = batch[done : done + PUBLISH_WINDOW]
                link.publish_batch(exchange, chunk)  # all or nothing: resumed from ``done`` after a break
                done += len(chunk)

        try:
            self._links.run(what, send, quick=quick)
        except TransportError as exc:
            if not quick:
                raise
            return done, exc
        return done, None

    def publish_dead(self, queue: str, body: bytes, reason: str, headers: Mapping[str, object] | None = None) -> None:
        """Park ``body`` on ``queue``'s dead-letter queue with the reason in a header."""
        parked = dict(headers or {})
        parked.update(
            {
                REASON_HEADER: reason[:2000],
                QUEUE_HEADER: queue,
                DEAD_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        exchange = self.topology.dead_exchange
        self._links.run(f"dead-letter from {queue}", lambda link: link.publish(exchange, queue, body, parked))

    def consumer(self, queue: str, prefetch: int) -> Consumer:
        return AmqpConsumer(self, queue, max(1, prefetch))

    def close(self) -> None:
        self._links.close()
        self._abort.set()

    # -- operator and test helpers ------------------------------------------------
    def depth(self, queue: str) -> int:
        name = self.topology.queue(queue)
        count = self._links.run(
            f"depth of {queue}", lambda link: link.channel.queue_declare(name, passive=True).method.message_count
        )
        return int(count)

    def dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        name = self.topology.dead_queue(queue)

        def peek(link: Link) -> list[DeadLetter]:
            found: list[DeadLetter] = []
            last = None
            while len(found) < limit:
                method, props, body = link.channel.basic_get(name, auto_ack=False)
                if method is None:
                    break
                last = method.delivery_tag
                headers = dict(props.headers or {})
                reason = headers.get(REASON_HEADER, "")
                found.append(DeadLetter(body, reason.decode() if isinstance(reason, bytes) else str(reason), headers))
            if last is not None:  # all of them back where they were
                link.channel.basic_nack(delivery_tag=last, multiple=True, requeue=True)
            return found

        return self._links.run(f"peek at dead letters of {queue}", peek)

    def delete(self, queues: Sequence[str], *, exchanges: bool = False) -> None:
        """Delete logical queues and their dead-letter queues (tests; retiring a segment)."""

        def drop(link: Link) -> None:
            for logical in queues:
                link.channel.queue_delete(self.topology.queue(logical))
                link.channel.queue_delete(self.topology.dead_queue(logical))
            if exchanges:
                link.channel.exchange_delete(self.topology.exchange)
                link.channel.exchange_delete(self.topology.dead_exchange)

        self._links.run("delete", drop)
