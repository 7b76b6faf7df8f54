"""Publisher connections ("links") in a pool shared by every publishing thread.

A thread takes a link for the duration of one call, so no link is ever used by two threads at once
(pika connections are not thread-safe). BlockingConnection only heartbeats while its thread is
inside a pika call, so a pump thread services idle links before their heartbeats lapse.
Publishes are persistent, confirmed (a batch: committed as one transaction) and ``mandatory``: an
unroutable message raises instead of vanishing. Breaks and reconnects are told through the
transport's ``BrokerHealth`` (once per outage).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from shared.transport.base import ConnectionLost, TransportError

from .client import BlockingChannel, pika, px
from .health import BrokerHealth, brief
from .retry import TRANSIENT, Broken, quiet_close, retrying

T = TypeVar("T")

log = logging.getLogger("dcc.amqp")


def message_properties(headers: Mapping[str, object] | None) -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type="application/json",
        headers=dict(headers) if headers else None,
    )


class Link:
    """One publisher connection with a confirm channel. Used by one thread at a time.

    ``epoch``: the outage it was opened after (``BrokerHealth``), so its break can be told apart
    from a new outage."""

    def __init__(self, connection: pika.BlockingConnection, epoch: int) -> None:
        self.connection = connection
        self.epoch = epoch
        try:
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
        except BaseException:
            self.close()
            raise
        self.used = time.monotonic()
        self._batch: BlockingChannel | None = None  # a transactional channel, opened by the first batch
        self._returned: list[bytes] = []  # bodies the broker returned (mandatory, unroutable)

    def publish(self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, object] | None) -> None:
        self.channel.basic_publish(exchange, routing_key, body, properties=message_properties(headers), mandatory=True)
        self.used = time.monotonic()

    def publish_batch(self, exchange: str, items: Sequence[tuple[str, bytes, Mapping[str, object] | None]]) -> None:
        """Publish ``items`` in one broker transaction: one round trip for all of them instead of a
        confirm per message. Nothing of an uncommitted batch is delivered, so a break mid-way means
        the whole batch again on a fresh link. Raises ``UnroutableError`` when one had no queue (the
        others are delivered, as a confirmed publish of each would have done before it raised)."""
        channel = self._batch_channel()
        for routing_key, body, headers in items:
            channel.basic_publish(exchange, routing_key, body, properties=message_properties(headers), mandatory=True)
        channel.tx_commit()
        # A channel's frames come in order: an unroutable message's return arrived before the commit's
        # answer; pika hands buffered returns to the callback when it next processes events.
        self.connection.process_data_events(0)
        self.used = time.monotonic()
        if self._returned:
            self._returned.clear()
            raise px.UnroutableError([])

    def _batch_channel(self) -> BlockingChannel:
        if self._batch is None:
            channel = self.connection.channel()
            channel.tx_select()
            channel.add_on_return_callback(lambda _ch, _method, _props, body: self._returned.append(body))
            self._batch = channel
        return self._batch

    def close(self) -> None:
        quiet_close(self.connection)


class LinkPool:
    """Idle links, opened on demand; ``run`` lends one to a call and reconnects when it breaks."""

    def __init__(
        self,
        parameters: Callable[[], pika.URLParameters],
        *,
        heartbeat: int,
        reconnect_for: float,
        abort: threading.Event,
        health: BrokerHealth,
    ) -> None:
        self._parameters = parameters
        self._health = health
        self._heartbeat = heartbeat
        self._reconnect_for = reconnect_for
        self._abort = abort
        self._lock = threading.Lock()
        self._idle: list[Link] = []
        self._closed = threading.Event()
        self._pump: threading.Thread | None = None

    def run(self, what: str, fn: Callable[[Link], T], *, quick: bool = False) -> T:
        """``fn`` on a link; when the connection breaks, again on a fresh one until the retries are
        spent (``ConnectionLost``). ``quick``: a single retry, for a stale link."""
        try:
            for attempt in retrying(what, reconnect_for=self._reconnect_for, abort=self._abort, quick=quick):
                with attempt:
                    return self._run_once(what, fn)
        except Broken as exc:
            raise ConnectionLost(f"{what}: gave up: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_once(self, what: str, fn: Callable[[Link], T]) -> T:
        """One try: a link that breaks is dropped (``Broken``), a refusal is final (``TransportError``;
        ``BrokerRefused`` when the user lacks the permission)."""
        link = self._take(what)
        try:
            result = fn(link)
        except px.UnroutableError:
            self._give_back(link)  # the link is fine: only the message had nowhere to go
            raise TransportError(f"{what}: not routed to any queue (is it declared?)") from None
        except px.ChannelClosedByBroker as exc:
            link.close()
            refused = self._health.refusal(exc, what)
            if refused is not None:
                raise refused from None
            raise TransportError(f"{what}: refused by the broker: {exc}") from None
        except TRANSIENT as exc:
            gone = isinstance(exc, (px.AMQPConnectionError, OSError)) or not link.connection.is_open
            link.close()
            if gone:
                self._health.broke(exc, link.epoch)
            else:  # the channel only (a nack, a channel in the wrong state): a fresh link will do
                log.debug("%s: publisher channel failed (%s); on a new link", what, brief(exc))
            raise Broken(f"{what}: {brief(exc)}") from exc
        self._give_back(link)
        return result

    def close(self) -> None:
        """Close every idle link; links lent out are closed when they come back."""
        self._closed.set()
        with self._lock:
            links, self._idle = self._idle, []
        for link in links:
            link.close()

    def _take(self, what: str) -> Link:
        if self._closed.is_set():
            raise ConnectionLost("transport is closed")
        self._health.check()  # refused once: refused for good, without asking the broker again
        with self._lock:
            if self._idle:
                return self._idle.pop()
        connection, epoch = self._health.connect(self._parameters())  # BrokerRefused, or Broken to retry
        try:
            link = Link(connection, epoch)
        except px.ChannelClosedByBroker as exc:
            refused = self._health.refusal(exc, what)
            if refused is not None:
                raise refused from None
            raise TransportError(f"{what}: refused by the broker: {exc}") from None
        except TRANSIENT as exc:
            self._health.broke(exc, epoch)
            raise Broken(f"cannot open a publisher channel: {brief(exc)}") from exc
        self._start_pump()
        return link

    def _give_back(self, link: Link) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._idle.append(link)
                return
        link.close()

    def _start_pump(self) -> None:
        with self._lock:
            if self._pump is not None:
                return
            self._pump = threading.Thread(target=self._pump_idle, daemon=True, name="dcc-amqp-pump")
        self._pump.start()

    def _pump_idle(self) -> None:
        """Keep idle links alive: they only heartbeat while inside a pika call."""
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
                except Exception as exc:  # dead: the next publish opens a new one (and tells of an outage)
                    log.debug("idle publisher link gone (%s)", brief(exc))
                    link.close()
                    continue
                self._give_back(link)
