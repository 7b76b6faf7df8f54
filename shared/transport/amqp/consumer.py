"""The AMQP consumer: one connection per consumer, owned by the thread that calls ``get``.

Acks and nacks may come from worker threads; they are queued and applied by the owner thread,
woken through ``add_callback_threadsafe`` (pika connections are not thread-safe). A lost
connection is reopened on the next ``get``; delivery tags are per channel, so settles of a
delivery from an older channel are void (the broker requeued it with the channel). A lost
connection is told through the transport's ``BrokerHealth`` (once per outage, not per consumer);
a refusal (``BrokerRefused``) comes out of ``get``, even one a publisher of the transport met.

Redeliveries (``shared.transport.redelivery``): the broker sets ``redelivered`` but classic
queues do not count, so the consumer counts. A delivery the broker redelivered is republished
with ``x-dcc-redeliveries`` + 1 and the original acked, or dead-lettered past ``max_redeliveries``.

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
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from shared.transport.base import ConnectionLost, Consumer, Delivery, TransportError
from shared.transport.redelivery import (
    REDELIVERIES_HEADER,
    delivered_before,
    given_back,
    header_count,
    too_many_redeliveries,
)

from .client import BlockingChannel, pika, px
from .health import brief
from .retry import TRANSIENT, Broken, quiet_close

if TYPE_CHECKING:
    from .transport import AmqpTransport

log = logging.getLogger("dcc.amqp")

_REPUBLISH_BACKOFF = 30.0  # seconds without republish attempts after giving back by republish failed


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
        self._epoch = 0  # the outage the connection was opened after (``BrokerHealth``)
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
    def _connect(self) -> None:
        try:
            for attempt in self._t.retrying(f"consume {self.queue}"):
                with attempt:
                    self._open()
        except Broken as exc:
            raise ConnectionLost(f"consume {self.queue}: gave up: {exc}") from None

    def _open(self) -> None:
        health = self._t.health
        connection, epoch = health.connect(self._t.parameters(f"consume:{self.queue}"))  # or Broken, BrokerRefused
        generation = self._generation + 1
        try:
            channel, tag = self._start_consuming(connection, generation)
        except px.ChannelClosedByBroker as exc:
            quiet_close(connection)
            refused = health.refusal(exc, f"consume {self.queue}")
            if refused is not None:
                raise refused from None
            raise TransportError(f"cannot consume {self.queue}: {exc}") from None
        except TRANSIENT as exc:
            quiet_close(connection)
            health.broke(exc, epoch)
            raise Broken(f"cannot consume: {brief(exc)}") from exc
        self._connection, self._channel, self._consumer_tag = connection, channel, tag
        self._generation, self._epoch = generation, epoch
        self._buffer.clear()
        self._unsettled.clear()
        self._forget_held()

    def _start_consuming(self, connection: pika.BlockingConnection, generation: int) -> tuple[BlockingChannel, str]:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self._prefetch)
        tag = channel.basic_consume(
            self._t.topology.queue(self.queue),
            on_message_callback=lambda ch, method, props, body: self._on_message(generation, method, props, body),
            auto_ack=False,
        )
        return channel, tag

    def _lost(self, exc: BaseException) -> None:
        connection = self._connection
        if isinstance(exc, px.ChannelClosedByBroker) or (connection is not None and connection.is_open):
            # the broker closed our channel only (a consumer timeout, a deleted queue): ours to say
            log.warning("consumer of %s closed by the broker (%s); reopening", self.queue, brief(exc))
        else:
            self._t.health.broke(exc, self._epoch)  # the outage, told once for the whole transport
        if connection is not None:
            quiet_close(connection)
        self._connection = self._channel = None
        # Those deliveries went back to the queue with the channel; the broker marks them
        # redelivered and their next consumer counts it: a lost consumer is what the count is for.
        self._buffer.clear()
        self._forget_held()
        if not self._cancelled and not self._closed:
            self._connect()
            log.debug("consuming %s again", self.queue)

    def _forget_held(self) -> None:
        with self._held_lock:
            self._held.clear()

    def _on_message(self, generation: int, method: Any, props: pika.BasicProperties, body: bytes) -> None:
        headers = dict(props.headers or {})
        redelivered = bool(method.redelivered)
        delivery = Delivery(body, (generation, method.delivery_tag), redelivered or delivered_before(headers), headers)
        self._buffer.append((delivery, redelivered))
        self._unsettled.add(method.delivery_tag)

    # -- Consumer API -------------------------------------------------------------
    def get(self, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + timeout
        while True:
            refused = self._t.health.refused
            if refused is not None and not self._cancelled:
                raise refused  # the service has to stop: nothing it does would be let through
            self._flush_settles()
            delivery = self._next_buffered()
            if delivery is not None:
                return delivery
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._connection is None:  # cancelled or closed after a loss: nothing more comes
                time.sleep(remaining)
                return None
            connection = self._connection
            try:
                connection.process_data_events(time_limit=remaining)
            except TRANSIENT + (px.ChannelClosedByBroker,) as exc:
                self._lost(exc)
            except ValueError as exc:
                # pika's "Timeout closed before call": the connection's I/O loop was closed under
                # us, as when the connection is lost mid-call. A lost connection, not a bug of ours.
                if connection.is_open:
                    raise
                self._lost(exc)

    def _next_buffered(self) -> Delivery | None:
        """The first buffered delivery that is to be handled here (see ``_screen``), now held."""
        while self._buffer and not self._cancelled:
            screened = self._screen(*self._buffer.popleft())
            if screened is not None:
                delivery, uncounted = screened
                with self._held_lock:
                    self._held[delivery.tag] = _Held(delivery, uncounted)
                return delivery
        return None

    def _screen(self, delivery: Delivery, broker_redelivered: bool) -> tuple[Delivery, bool] | None:
        """Count broker redeliveries in a header; past the limit, dead-letter instead of handling.

        Returns the delivery to hand out and whether its redelivery is still uncounted, or None
        when it was dealt with here (republished with the count, or dead-lettered).
        """
        headers = dict(delivery.headers)
        limit = self._t.max_redeliveries
        if not broker_redelivered or limit is None:
            return delivery, False
        count = header_count(headers, REDELIVERIES_HEADER) + 1
        try:
            if count > limit:
                reason = too_many_redeliveries(count)
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
        except TRANSIENT as exc:
            log.debug("could not %s on %s: %s", how, self.queue, exc)

    def _settle(self, tag: object, how: str) -> None:
        # Queued here and applied by the owner thread (deque appends are thread-safe); the
        # callback only wakes the owner if it is waiting inside pika.
        self._settles.append((tag, how))
        connection = self._connection
        if connection is None:
            return  # connection gone: the broker has requeued it already
        with contextlib.suppress(*TRANSIENT):  # closed meanwhile: the broker requeued it
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
        live = self._of_this_channel(held)
        if not live:
            return  # their channel is gone: the broker has them back already
        back = [h for h in live if not h.uncounted]
        done = self._republish(back)
        for h in back[:done]:
            self._settle(h.delivery.tag, "ack")
        for h in back[done:] + [h for h in live if h.uncounted]:
            self._settle(h.delivery.tag, "nack")

    def _of_this_channel(self, held: Sequence[_Held]) -> list[_Held]:
        channel = self._channel
        if channel is None or not channel.is_open:
            return []
        return [h for h in held if cast(tuple[int, int], h.delivery.tag)[0] == self._generation]

    def _republish(self, back: Sequence[_Held]) -> int:
        """Give ``back`` to the queue by republishing; how many made it (none while backing off)."""
        if not back or time.monotonic() - self._republish_failed_at < _REPUBLISH_BACKOFF:
            return 0
        if self._t.health.refused is not None:
            return 0  # the broker refuses us: nack them, without asking (or logging) again
        done = self._t.republish(self.queue, [(h.delivery.body, given_back(h.delivery.headers)) for h in back])
        if done < len(back):
            self._republish_failed_at = time.monotonic()
            log.warning("%d messages go back to %s by nack: they count as redelivered", len(back) - done, self.queue)
        return done

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
            if self._t.health.refused is None:  # a refusal is told once, by whoever stops the service
                log.error("cannot dead-letter a message on %s (%s); requeueing it", self.queue, exc)
            self._hand_back([held])
            return
        self._settle(delivery.tag, "ack")

    def park(self, body: bytes, reason: str, headers: Mapping[str, object]) -> None:
        self._t.publish_dead(self.queue, body, reason, headers)

    def consuming(self) -> bool:
        connection = self._connection  # None while reconnecting (``_lost``); read once: another thread asks
        return connection is not None and connection.is_open and not (self._cancelled or self._closed)

    def cancel(self) -> None:
        """Stop receiving; what was prefetched but not handed out goes back at once, uncounted."""
        if self._cancelled:
            return
        self._cancelled = True
        # No acks until the broker confirms the cancel: each would free a prefetch slot, the broker
        # would push another message, and pika rejects (requeue) what arrives before cancel-ok,
        # which would count as a redelivery. (Pika also calls _flush_settles from inside its waits.)
        self._hold_settles = True
        try:
            self._cancel_on_broker()
            self._hold_settles = False
            buffered, self._buffer = list(self._buffer), deque()
            limit = self._t.max_redeliveries
            self._hand_back([_Held(d, redelivered and limit is not None) for d, redelivered in buffered])
            self._flush_settles()
        except TRANSIENT + (px.ChannelClosedByBroker,) as exc:
            log.debug("cancel on %s: %s", self.queue, exc)
        finally:
            self._hold_settles = False

    def _cancel_on_broker(self) -> None:
        """basic.cancel, after taking into the buffer whatever pika holds already."""
        channel = self._channel
        if channel is not None and channel.is_open and self._consumer_tag is not None:
            if self._connection is not None:
                self._connection.process_data_events(0)
            channel.basic_cancel(self._consumer_tag)

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
        quiet_close(connection)  # the broker requeues whatever is still unacked (counted)
