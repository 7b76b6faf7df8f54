"""AMQP transport (RabbitMQ through pika). The only module that imports pika.

Topology, declared from one place (``Topology.declare``), every name behind an optional prefix
(``DCC_QUEUE_PREFIX``, so test runs and tenants never collide):

- direct exchange ``dcc``: routing key = logical queue name (``resolve``, ``report``, ``scan.dmz``);
- durable queue ``dcc.<logical>`` bound to it with that key;
- direct exchange ``dcc.dead`` and durable queue ``dcc.<logical>.dead`` per queue: dead letters,
  with the reason in the ``x-dcc-reason`` header and the origin in ``x-dcc-queue``.

Queues carry no ``x-`` arguments on purpose: arguments cannot change after declaration
(PRECONDITION_FAILED), so limits and TTLs belong in broker policies.

Threading (pika connections are not thread-safe, and BlockingConnection only heartbeats while its
thread is inside a pika call):

- a consumer owns one connection, used only by the thread that calls ``get``; acks and nacks
  from worker threads travel back through ``add_callback_threadsafe``;
- publishing uses a pool of publisher connections ("links"); a thread takes one for the duration
  of a publish, so no link is ever used by two threads at once. A pump thread services idle links
  so their heartbeats never lapse.

Delivery guarantees: persistent messages, publisher confirms, ``mandatory`` (an unroutable message
raises instead of vanishing), manual acks. A redelivered message is counted in the
``x-dcc-redeliveries`` header (classic queues do not count for us): past ``max_redeliveries`` it is
dead-lettered, so a message that kills its consumer every time cannot loop forever.

Only involuntary redeliveries count: the broker sets ``redelivered`` after a nack too, so a
consumer that *gives a message back* (``requeue``, ``cancel`` with prefetched messages, ``close``
with unsettled ones: a SIGTERM drain, a scale-down, publishing that gave up) republishes it with
its counter unchanged (and ``x-dcc-returned`` + 1) and acks the original: it goes to the back of the
queue, as a counted redelivery does. Only when that republish fails (the broker is away) is it
nacked, and then it counts. A message whose redelivery was not counted yet when it is given back is
nacked, so it is counted exactly once.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pika
import pika.exceptions as px
from pika.adapters.blocking_connection import BlockingChannel
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from shared.config import ConfigError
from shared.logging import redact
from shared.messages import Message, encode
from shared.transport.base import ConnectionLost, Consumer, Delivery, Outgoing, Transport, TransportError

log = logging.getLogger("dcc.amqp")

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REASON_HEADER = "x-dcc-reason"
QUEUE_HEADER = "x-dcc-queue"
DEAD_AT_HEADER = "x-dcc-dead-at"
REDELIVERIES_HEADER = "x-dcc-redeliveries"
RETURNED_HEADER = "x-dcc-returned"  # times a consumer gave it back unprocessed (informational)

# Broken connection or channel: reconnect and retry. Channel errors the broker raises on purpose
# (404, 406) are not in here: retrying them would never help.
_TRANSIENT: tuple[type[BaseException], ...] = (
    px.AMQPConnectionError,
    px.ChannelWrongStateError,
    px.ChannelClosedByClient,
    px.NackError,
    ConnectionError,
    OSError,
)

T = TypeVar("T")
_REPUBLISH_BACKOFF = 30.0  # seconds without republish attempts after giving back by republish failed


class _Broken(Exception):
    """Internal: a link or consumer connection broke; retried by tenacity."""


@dataclass(frozen=True)
class DeadLetter:
    """A parked message as an operator (or a test) sees it."""

    body: bytes
    reason: str
    headers: Mapping[str, object]


@dataclass(frozen=True)
class Topology:
    """Every broker name the project uses, in one place."""

    prefix: str = ""

    @property
    def exchange(self) -> str:
        return f"{self.prefix}dcc"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}dcc.dead"

    def queue(self, logical: str) -> str:
        return f"{self.prefix}dcc.{logical}"

    def dead_queue(self, logical: str) -> str:
        return f"{self.prefix}dcc.{logical}.dead"

    def declare(self, channel: BlockingChannel, logical_queues: Sequence[str]) -> None:
        channel.exchange_declare(self.exchange, exchange_type="direct", durable=True)
        channel.exchange_declare(self.dead_exchange, exchange_type="direct", durable=True)
        for logical in logical_queues:
            channel.queue_declare(self.queue(logical), durable=True)
            channel.queue_bind(self.queue(logical), self.exchange, routing_key=logical)
            channel.queue_declare(self.dead_queue(logical), durable=True)
            channel.queue_bind(self.dead_queue(logical), self.dead_exchange, routing_key=logical)


def amqp_url_from_env() -> str:
    return os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL


def parse_amqp_url(url: str) -> pika.URLParameters:
    """``url`` as pika connection parameters; ``ConfigError`` (never quoting the URL) when invalid."""
    bad = ConfigError(
        "AMQP_URL is not a valid amqp:// or amqps:// URL "
        "(percent-encode special characters such as / @ : % in the user name and password)"
    )
    if url.partition("://")[0].lower() not in ("amqp", "amqps"):
        raise bad
    try:
        return pika.URLParameters(url)
    except Exception:  # pika's messages quote parts of the URL, password included
        raise bad from None


def open_transport(url: str | None = None, **kwargs: Any) -> AmqpTransport:
    """The transport the service processes use: ``AMQP_URL`` and ``DCC_QUEUE_PREFIX`` from env."""
    return AmqpTransport(url or amqp_url_from_env(), **kwargs)


def _properties(headers: Mapping[str, object] | None) -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type="application/json",
        headers=dict(headers) if headers else None,
    )


class _Link:
    """One publisher connection with a confirm channel. Used by one thread at a time."""

    def __init__(self, params: pika.URLParameters) -> None:
        self.connection = pika.BlockingConnection(params)
        try:
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
        except BaseException:
            self.close()
            raise
        self.used = time.monotonic()

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, object] | None) -> None:
        self.channel.basic_publish(exchange, routing_key, body, properties=_properties(headers), mandatory=True)
        self.used = time.monotonic()

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:  # already broken: nothing to release
            pass


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
        self.topology = Topology(os.environ.get("DCC_QUEUE_PREFIX", "") if prefix is None else prefix)
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Link] = []
        self._closed = threading.Event()
        self._abort = threading.Event()
        self._pump: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AmqpTransport({redact(self._url)!r}, prefix={self.topology.prefix!r})"

    # -- connections --------------------------------------------------------------
    def parameters(self, role: str) -> pika.URLParameters:
        params = copy.copy(self._params)  # shallow: every field set below is replaced, not mutated
        params.heartbeat = self._heartbeat
        # a broker that blocks publishers (disk/memory alarm) must not hang us forever
        params.blocked_connection_timeout = self._confirm_timeout
        params.socket_timeout = 10
        params.stack_timeout = 15
        params.connection_attempts = 1  # tenacity does the retrying, with backoff
        params.tcp_options = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
        params.client_properties = {"connection_name": f"{self._name}:{role}:{os.getpid()}"}
        return params

    def interrupt_on(self, event: threading.Event) -> None:
        """Give up reconnecting as soon as ``event`` is set (a SIGTERM during a broker outage)."""

        def watch() -> None:
            event.wait()
            self._abort.set()

        threading.Thread(target=watch, daemon=True, name="dcc-amqp-abort").start()

    def _retrying(self, what: str, *, quick: bool = False) -> Retrying:
        """Retry broken connections for ``reconnect_for``; ``quick``: one retry (a stale link)."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: broker unavailable (%s); retry %d", what, redact(str(exc)), state.attempt_number)

        stop = stop_after_delay(self._reconnect_for) | stop_when_event_set(self._abort)
        if quick:
            stop = stop_after_attempt(2) | stop_after_delay(5)
        return Retrying(
            stop=stop,
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(_Broken),
            before_sleep=before_sleep,
            reraise=True,
        )

    def _take(self) -> _Link:
        if self._closed.is_set():
            raise ConnectionLost("transport is closed")
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            link = _Link(self.parameters("publish"))
        except _TRANSIENT as exc:
            raise _Broken(f"cannot connect: {exc}") from exc
        self._start_pump()
        return link

    def _give_back(self, link: _Link) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._idle.append(link)
                return
        link.close()

    def _with_link(self, what: str, fn: Callable[[_Link], T], *, quick: bool = False) -> T:
        """Run ``fn`` on a publisher link; reconnect and retry when the connection breaks."""
        try:
            for attempt in self._retrying(what, quick=quick):
                with attempt:
                    link = self._take()
                    try:
                        result = fn(link)
                    except px.UnroutableError:
                        self._give_back(link)
                        raise TransportError(f"{what}: not routed to any queue (is it declared?)") from None
                    except px.ChannelClosedByBroker as exc:
                        link.close()
                        raise TransportError(f"{what}: refused by the broker: {exc}") from None
                    except _TRANSIENT as exc:
                        link.close()
                        raise _Broken(f"{what}: {exc!r}") from exc
                    self._give_back(link)
                    return result
        except _Broken as exc:
            raise ConnectionLost(f"{what}: gave up: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_pump(self) -> None:
        with self._lock:
            if self._pump is not None:
                return
            self._pump = threading.Thread(target=self._pump_idle, daemon=True, name="dcc-amqp-pump")
        self._pump.start()

    def _pump_idle(self) -> None:
        """Keep idle publisher links alive: they only heartbeat while inside a pika call."""
        interval = max(0.5, self._heartbeat / 4) if self._heartbeat else 5.0
        while not self._closed.wait(interval):
            now = time.monotonic()
            with self._lock:
                stale = [link for link in self._idle if now - link.used >= interval]
                self._idle = [link for link in self._idle if now - link.used < interval]
            for link in stale:
                try:
                    link.connection.process_data_events(0)
                    link.used = time.monotonic()
                except Exception:
                    link.close()  # dead: the next publish opens a new one
                    continue
                self._give_back(link)

    # -- Transport API ------------------------------------------------------------
    def declare(self, queues: Sequence[str]) -> None:
        self._with_link("declare", lambda link: self.topology.declare(link.channel, list(queues)))

    def publish(self, destination: str, message: Message) -> None:
        self.publish_raw(destination, encode(message))

    def publish_raw(self, destination: str, body: bytes, headers: Mapping[str, object] | None = None) -> None:
        """Publish bytes as they are (tests use it for poison messages)."""
        exchange = self.topology.exchange
        self._with_link(f"publish to {destination}", lambda link: link.publish(exchange, destination, body, headers))

    def publish_many(self, items: Sequence[Outgoing]) -> None:
        batch = [(item.destination, encode(item.message), None) for item in items]
        if batch:
            self._send_all(batch, f"publish {len(batch)} messages")

    def _republish(self, queue: str, items: Sequence[tuple[bytes, Mapping[str, object]]]) -> int:
        """Put messages back on ``queue`` as they are; how many made it (a quick try, no long retry)."""
        batch = [(queue, body, headers) for body, headers in items]
        done, failure = self._send_all(batch, f"give back {len(items)} messages to {queue}", quick=True)
        if failure is not None:
            log.warning("cannot give %d messages back to %s (%s)", len(items) - done, queue, failure)
        return done

    def _send_all(
        self, batch: Sequence[tuple[str, bytes, Mapping[str, object] | None]], what: str, quick: bool = False
    ) -> tuple[int, TransportError | None]:
        """Publish in order, resuming after a reconnect where the confirms stopped.

        How many were sent; a quick batch returns its failure instead of raising it.
        """
        done = 0
        exchange = self.topology.exchange

        def send(link: _Link) -> None:
            nonlocal done
            while done < len(batch):
                destination, body, headers = batch[done]
                link.publish(exchange, destination, body, headers)
                done += 1

        try:
            self._with_link(what, send, quick=quick)
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
        self._with_link(f"dead-letter from {queue}", lambda link: link.publish(exchange, queue, body, parked))

    def consumer(self, queue: str, prefetch: int) -> Consumer:
        return AmqpConsumer(self, queue, max(1, prefetch))

    def close(self) -> None:
        self._closed.set()
        self._abort.set()
        with self._lock:
            links, self._idle = self._idle, []
        for link in links:
            link.close()

    # -- operator and test helpers ------------------------------------------------
    def depth(self, queue: str) -> int:
        """Ready messages on a logical queue."""
        name = self.topology.queue(queue)
        return self._with_link(
            f"depth of {queue}", lambda link: link.channel.queue_declare(name, passive=True).method.message_count
        )

    def dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        """Peek at a queue's dead letters (they stay parked)."""
        name = self.topology.dead_queue(queue)

        def peek(link: _Link) -> list[DeadLetter]:
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
            if last is not None:
                link.channel.basic_nack(delivery_tag=last, multiple=True, requeue=True)
            return found

        return self._with_link(f"peek at dead letters of {queue}", peek)

    def delete(self, queues: Sequence[str], *, exchanges: bool = False) -> None:
        """Delete logical queues and their dead-letter queues (tests; retiring a segment)."""

        def drop(link: _Link) -> None:
            for logical in queues:
                link.channel.queue_delete(self.topology.queue(logical))
                link.channel.queue_delete(self.topology.dead_queue(logical))
            if exchanges:
                link.channel.exchange_delete(self.topology.exchange)
                link.channel.exchange_delete(self.topology.dead_exchange)

        self._with_link("delete", drop)


@dataclass(frozen=True)
class _Held:
    """A delivery handed out by ``get`` and not settled yet."""

    delivery: Delivery
    uncounted: bool  # redelivered by the broker but not counted: give it back by nack, so it counts once


class AmqpConsumer(Consumer):
    """Deliveries of one queue over one connection owned by the thread that calls ``get``."""

    def __init__(self, transport: AmqpTransport, queue: str, prefetch: int) -> None:
        self._t = transport
        self.queue = queue
        self._prefetch = prefetch
        self._buffer: deque[tuple[Delivery, bool]] = deque()  # (delivery, redelivered by the broker)
        self._settles: deque[tuple[object, str]] = deque()  # acks/nacks from any thread
        self._unsettled: set[int] = set()  # tags of the current channel; settling twice closes it
        # Handed out and not settled. Whoever takes an entry out (ack, requeue, dead_letter, close)
        # settles it, so a worker's late requeue and close() never give the same message back twice.
        self._held: dict[object, _Held] = {}
        self._held_lock = threading.Lock()
        self._generation = 0  # delivery tags are per channel: settles of older channels are void
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._consumer_tag: str | None = None
        self._cancelled = False
        self._closed = False
        self._hold_settles = False  # while cancelling: an ack now would let the broker push another message
        # When giving back by republishing just failed, do not wait on the broker again for a while
        # (a shutdown gives back several times: cancel, each requeue, close): nack at once instead.
        self._republish_failed_at = -_REPUBLISH_BACKOFF
        self._connect()

    # -- connection management (owner thread) -------------------------------------
    def _open(self) -> None:
        try:
            connection = pika.BlockingConnection(self._t.parameters(f"consume:{self.queue}"))
        except _TRANSIENT as exc:
            raise _Broken(f"cannot connect: {exc!r}") from exc
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self._prefetch)
            generation = self._generation + 1
            tag = channel.basic_consume(
                self._t.topology.queue(self.queue),
                on_message_callback=lambda ch, method, props, body: self._on_message(generation, method, props, body),
                auto_ack=False,
            )
        except px.ChannelClosedByBroker as exc:
            _quiet_close(connection)
            raise TransportError(f"cannot consume {self.queue}: {exc}") from None
        except _TRANSIENT as exc:
            _quiet_close(connection)
            raise _Broken(f"cannot consume: {exc!r}") from exc
        self._connection, self._channel, self._consumer_tag = connection, channel, tag
        self._generation = generation
        self._buffer.clear()
        self._unsettled.clear()
        self._forget_held()

    def _connect(self) -> None:
        try:
            for attempt in self._t._retrying(f"consume {self.queue}"):
                with attempt:
                    self._open()
        except _Broken as exc:
            raise ConnectionLost(f"consume {self.queue}: gave up: {exc}") from None

    def _lost(self, exc: BaseException) -> None:
        log.warning("connection for %s lost (%s); reconnecting", self.queue, redact(repr(exc)))
        if self._connection is not None:
            _quiet_close(self._connection)
        self._connection = self._channel = None
        # Those deliveries went back to the queue with the channel; the broker marks them
        # redelivered and their next consumer counts it: a lost consumer is what the count is for.
        self._buffer.clear()
        self._forget_held()
        if not self._cancelled and not self._closed:
            self._connect()
            log.warning("consuming %s again", self.queue)

    def _forget_held(self) -> None:
        with self._held_lock:
            self._held.clear()

    def _on_message(self, generation: int, method: Any, props: pika.BasicProperties, body: bytes) -> None:
        headers = dict(props.headers or {})
        redelivered = bool(method.redelivered)
        earlier = _count(headers, REDELIVERIES_HEADER) > 0 or _count(headers, RETURNED_HEADER) > 0
        delivery = Delivery(body, (generation, method.delivery_tag), redelivered or earlier, headers)
        self._buffer.append((delivery, redelivered))
        self._unsettled.add(method.delivery_tag)

    # -- Consumer API -------------------------------------------------------------
    def get(self, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + timeout
        while True:
            self._flush_settles()
            while self._buffer and not self._cancelled:
                screened = self._screen(*self._buffer.popleft())
                if screened is not None:
                    delivery, uncounted = screened
                    with self._held_lock:
                        self._held[delivery.tag] = _Held(delivery, uncounted)
                    return delivery
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._connection is None:  # cancelled or closed after a loss: nothing more comes
                time.sleep(remaining)
                return None
            try:
                self._connection.process_data_events(time_limit=remaining)
            except _TRANSIENT + (px.ChannelClosedByBroker,) as exc:
                self._lost(exc)

    def _screen(self, delivery: Delivery, broker_redelivered: bool) -> tuple[Delivery, bool] | None:
        """Count broker redeliveries in a header; past the limit, dead-letter instead of handling.

        Returns the delivery to hand out and whether its redelivery is still uncounted, or None
        when it was dealt with here (republished with the count, or dead-lettered).
        """
        headers = dict(delivery.headers)
        limit = self._t.max_redeliveries
        if not broker_redelivered or limit is None:
            return delivery, False
        count = _count(headers, REDELIVERIES_HEADER) + 1
        try:
            if count > limit:
                reason = f"redelivered {count} times: its consumer died or lost the broker while handling it"
                log.error("dead-lettering a message on %s: %s", self.queue, reason)
                self._t.publish_dead(self.queue, delivery.body, reason, headers)
            else:
                # back of the queue with the count in a header; the original is acked below
                headers[REDELIVERIES_HEADER] = count
                self._t.publish_raw(self.queue, delivery.body, headers)
        except TransportError as exc:
            log.warning("cannot count a redelivery on %s (%s); handling it as is", self.queue, exc)
            return Delivery(delivery.body, delivery.tag, True, delivery.headers), True
        self._settle_here(delivery.tag, "ack")
        return None

    def _settle_here(self, tag: object, how: str) -> None:
        """Ack/nack on the owner thread; a tag of an older channel is void (already requeued)."""
        generation, delivery_tag = cast(tuple[int, int], tag)
        channel = self._channel
        if generation != self._generation or channel is None or not channel.is_open:
            return
        if delivery_tag not in self._unsettled:
            return
        self._unsettled.discard(delivery_tag)
        try:
            if how == "ack":
                channel.basic_ack(delivery_tag)
            else:
                channel.basic_nack(delivery_tag, requeue=True)
        except _TRANSIENT as exc:
            log.debug("could not %s on %s: %s", how, self.queue, exc)

    def _settle(self, tag: object, how: str) -> None:
        # Queued here and applied by the owner thread (deque appends are thread-safe); the
        # callback only wakes the owner if it is waiting inside pika.
        self._settles.append((tag, how))
        connection = self._connection
        if connection is None:
            return  # connection gone: the broker has requeued it already
        with contextlib.suppress(*_TRANSIENT):  # closed meanwhile: the broker requeued it
            connection.add_callback_threadsafe(self._flush_settles)

    def _flush_settles(self) -> None:
        if self._hold_settles:
            return
        while self._settles:
            tag, how = self._settles.popleft()
            self._settle_here(tag, how)

    def _claim(self, delivery: Delivery) -> _Held | None:
        """Take a handed-out delivery for settling; None if settled already or its channel is gone."""
        with self._held_lock:
            return self._held.pop(delivery.tag, None)

    def _hand_back(self, held: Sequence[_Held]) -> None:
        """Return unprocessed deliveries to the queue without counting them as redeliveries.

        A nack would make the broker flag them ``redelivered``, which is how a crash looks. So they
        are republished as they came (counter unchanged, ``x-dcc-returned`` + 1) and acked; only
        those that cannot be republished, and those with a redelivery still to count, are nacked.
        Any thread.
        """
        channel = self._channel
        live = [
            h
            for h in held
            if cast(tuple[int, int], h.delivery.tag)[0] == self._generation and channel is not None and channel.is_open
        ]
        if not live:
            return  # their channel is gone: the broker has them back already
        back = [h for h in live if not h.uncounted]
        done = 0
        if back and time.monotonic() - self._republish_failed_at >= _REPUBLISH_BACKOFF:
            done = self._t._republish(self.queue, [(h.delivery.body, _returned(h.delivery.headers)) for h in back])
            if done < len(back):
                self._republish_failed_at = time.monotonic()
                log.warning(
                    "%d messages go back to %s by nack: they count as redelivered", len(back) - done, self.queue
                )
        for h in back[:done]:
            self._settle(h.delivery.tag, "ack")
        for h in back[done:] + [h for h in live if h.uncounted]:
            self._settle(h.delivery.tag, "nack")

    def ack(self, delivery: Delivery) -> None:
        if self._claim(delivery) is not None:
            self._settle(delivery.tag, "ack")

    def requeue(self, delivery: Delivery) -> None:
        held = self._claim(delivery)
        if held is not None:
            self._hand_back([held])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        held = self._claim(delivery)
        if held is None:
            return  # settled already, or its channel is gone and it will come back
        try:
            self._t.publish_dead(self.queue, delivery.body, reason, delivery.headers)
        except TransportError as exc:
            log.error("cannot dead-letter a message on %s (%s); requeueing it", self.queue, exc)
            self._hand_back([held])
            return
        self._settle(delivery.tag, "ack")

    def cancel(self) -> None:
        """Stop receiving; what was prefetched but not handed out goes back at once, uncounted."""
        if self._cancelled:
            return
        self._cancelled = True
        channel = self._channel
        # No acks until the broker confirms the cancel: each would free a prefetch slot, the broker
        # would push another message, and pika rejects (requeue) what arrives before cancel-ok,
        # which would count as a redelivery. (Pika also calls _flush_settles from inside its waits.)
        self._hold_settles = True
        try:
            if channel is not None and channel.is_open and self._consumer_tag is not None:
                if self._connection is not None:
                    self._connection.process_data_events(0)  # what pika holds, into our buffer
                channel.basic_cancel(self._consumer_tag)
            self._hold_settles = False
            buffered, self._buffer = list(self._buffer), deque()
            limit = self._t.max_redeliveries
            self._hand_back([_Held(d, redelivered and limit is not None) for d, redelivered in buffered])
            self._flush_settles()
        except _TRANSIENT + (px.ChannelClosedByBroker,) as exc:
            log.debug("cancel on %s: %s", self.queue, exc)
        finally:
            self._hold_settles = False

    def close(self) -> None:
        """Stop; whatever is still unsettled (work that outlived a drain) goes back uncounted."""
        if self._closed:
            return
        try:
            self.cancel()
            self._closed = True
            with self._held_lock:
                held, self._held = list(self._held.values()), {}
            self._hand_back(held)
            self._flush_settles()  # the acks workers already sent back, and the give-backs
            if self._connection is not None:
                self._connection.process_data_events(0)  # and send them
        except Exception as exc:
            log.debug("closing %s: %s", self.queue, exc)
        self._closed = True
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        _quiet_close(connection)  # the broker requeues whatever is still unacked (counted)


def _count(headers: Mapping[str, object], name: str) -> int:
    value = headers.get(name)
    return value if isinstance(value, int) else 0


def _returned(headers: Mapping[str, object]) -> dict[str, object]:
    """The headers of a given-back message: unchanged, except one more ``x-dcc-returned``."""
    again = dict(headers)
    again[RETURNED_HEADER] = _count(headers, RETURNED_HEADER) + 1
    return again


def _quiet_close(connection: pika.BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # broken already: the socket goes with it
        pass
