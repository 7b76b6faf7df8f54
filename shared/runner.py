"""The thin runner every service shares: consume, decode, handle, publish, then settle.

Order matters: outputs are published (and confirmed, on the broker) before the input is
acked, so a crash anywhere redelivers rather than loses. Handlers stay pure: they take a
message and return ``Outgoing`` items; they never touch the transport.

- undecodable body, or ``PermanentError`` from a handler → dead-letter with the reason;
- any other exception → retried in place with backoff (tenacity), dead-lettered when spent;
- ``ConnectionLost`` while publishing → left unsettled; the broker redelivers it;
- ``StorageUnavailable`` from a handler → the queue pauses (no new work, the message stays
  unsettled) and the message is offered again until the handler's storage works again.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from shared.batches import Parts, pack
from shared.messages import Batch, DecodeError, Envelope, Message, decode_envelope, message_kind
from shared.monitor import Monitor
from shared.transport.base import BrokerRefused, ConnectionLost, Consumer, Delivery, Outgoing, Transport

log = logging.getLogger("dcc.runner")
BUSY_POLL = 0.005  # s: how soon the loop looks again while handed-out work waits for a worker


class PermanentError(Exception):
    """This message can never be handled: dead-letter it, do not retry."""


class StorageUnavailable(Exception):
    """The handler's own storage failed (disk full, read-only, gone): not the message's fault.

    The runner neither retries it away nor dead-letters it: it stops taking new work, keeps the
    message unsettled and offers it again with backoff until the storage takes it, then resumes.
    """


class Handler:
    """What ``serve`` runs: one class every stage's handler derives from, so the runner never probes.

    Override ``handle`` (one message at a time) or ``handle_batch`` (several at once, results in
    any order); the other is derived from it. ``tick`` is called about every ``tick_interval``
    seconds on a worker (deadlines, flushes); ``close`` once, when ``serve`` returns.
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.handle is Handler.handle and cls.handle_batch is Handler.handle_batch:
            raise TypeError(f"{cls.__name__} must override handle or handle_batch")

    def handle(self, message: Message) -> list[Outgoing]:
        """The outputs of one message (default: a batch of one)."""
        return [out for _, outputs in self.handle_batch([message]) for out in outputs]

    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        """Yield ``(index, outputs)`` for each input as soon as it is done (default: one by one)."""
        for index, message in enumerate(messages):
            yield index, self.handle(message)

    def tick(self) -> list[Outgoing]:
        """Periodic work; nothing by default."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook: most handlers hold nothing to release
        """Release what the handler holds (engines, files); called once by ``serve``."""


@dataclass(frozen=True)
class ServeOptions:
    workers: int = 1  # concurrent handler calls (batches)
    batch_size: int = 1  # >1: the handler's handle_batch gets up to this many at once
    batch_linger: float = 0.05  # wait this long to fill a batch once its first message is in
    prefetch: int | None = None  # default: workers × batch_size × 2
    attempts: int = 3  # tries of a failing message before it is dead-lettered
    tick_interval: float = 1.0
    # StorageUnavailable pauses the queue until storage works again (a service); False: it is an
    # ordinary failure, retried then dead-lettered (one process, where nobody would free the disk)
    wait_for_storage: bool = True
    drain_timeout: float = 30.0  # on stop: how long in-flight work may take to finish
    poll: float = 0.2
    # Outputs go out in batches of up to ``pack`` messages per queue (shared.batches), in at least
    # ``spread`` batches when there are enough. With handle_batch, finished inputs are held until
    # ``pack`` outputs are ready or the oldest has waited ``pack_linger`` s, then published and acked.
    pack: int = 1
    spread: int = 1
    pack_linger: float = 0.25


H = TypeVar("H", bound=Handler, covariant=True)


@dataclass(frozen=True)
class Stage(Generic[H]):
    """A handler and all ``serve`` needs to run it: the queue it consumes, the queues it publishes
    to (declared first), and how. Each stage's ``runner`` module builds it; the daemons and the
    in-process pipeline serve the very same object."""

    queue: str
    handler: H
    options: ServeOptions
    publishes: Sequence[str] = ()

    def queues(self) -> list[str]:
        return list(dict.fromkeys([self.queue, *self.publishes]))


def serve_stage(
    transport: Transport, stage: Stage[Handler], stop: threading.Event, monitor: Monitor | None = None
) -> None:
    """Declare the stage's queues, then serve it until ``stop`` (see ``serve``)."""
    transport.declare(stage.queues())
    serve(transport, stage.queue, stage.handler, stop, stage.options, monitor)


def serve(
    transport: Transport,
    queue: str,
    handler: Handler,
    stop: threading.Event,
    options: ServeOptions | None = None,
    monitor: Monitor | None = None,
) -> None:
    """Consume ``queue`` until ``stop`` is set, finish in-flight work, then close the handler.
    ``monitor`` hears of the loop's beats, its consumer and its work (``shared.monitor``)."""
    server = _Server(transport, queue, handler, options or ServeOptions(), monitor or Monitor())
    try:
        server.run(stop)
    finally:
        try:
            server.drain()
        finally:
            handler.close()


class _Server:
    """The consume loop of one queue: batches deliveries onto a pool of ``workers`` threads."""

    def __init__(
        self, transport: Transport, queue: str, handler: Handler, opts: ServeOptions, monitor: Monitor
    ) -> None:
        self.transport = transport
        self.monitor = monitor
        self.queue = queue
        self.handler = handler
        self.opts = opts
        prefetch = opts.prefetch or max(1, opts.workers * opts.batch_size * 2)
        self.consumer = Parts(transport.consumer(queue, prefetch))
        monitor.watch_consumer(queue, self.consumer)
        self.pool = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix=f"dcc-{queue}")
        self.slots = threading.Semaphore(opts.workers)
        self.in_flight: set[Future[None]] = set()
        self.pending: deque[tuple[Delivery, Message]] = deque()
        self.batch_started: float | None = None
        self.next_tick = time.monotonic() + opts.tick_interval
        self.stop = threading.Event()
        self.storage_down = threading.Event()  # set while a handler's storage refuses writes: paused

    def run(self, stop: threading.Event) -> None:
        self.stop = stop
        beat = f"consume {self.queue}"
        while not stop.is_set():
            self.monitor.beat(beat)
            arrived = self._receive()  # keeps the connection serviced; pending stays within prefetch
            now = time.monotonic()
            if self.storage_down.is_set():
                continue  # no new work, no periodic writes until the storage takes the held message
            # every batch that is ready while a worker is free: a broker message of 50 parts is 50
            # batches of one for a handler that takes one at a time, not one batch per turn
            while self._batch_ready(arrived, now) and self._has_free_worker():
                self._submit(functools.partial(self._handle, self._take_batch()))
            if now >= self.next_tick and self._has_free_worker():
                self.next_tick = now + self.opts.tick_interval
                self._submit(self._tick)

    def _receive(self) -> bool:
        """Wait briefly for one delivery; decode it into the pending batch. True if one came."""
        wait = self.opts.poll if not self.pending else min(self.opts.poll, self.opts.batch_linger)
        if self.pending and not self._has_free_worker():
            wait = min(wait, BUSY_POLL)  # work is waiting for a worker: look again as soon as one may be free
        delivery = self.consumer.get(timeout=wait)
        if delivery is None:
            return False
        message = _decode_or_dead_letter(self.consumer, self.queue, delivery)
        if message is None:
            self.monitor.dead_lettered(self.queue)
        elif isinstance(message, Batch):
            self.pending.extend(self.consumer.split(delivery, message))
            self.monitor.consumed(self.queue, len(message.messages))
        else:
            self.pending.append((delivery, message))
            self.monitor.consumed(self.queue, 1)
        if self.pending and self.batch_started is None:
            self.batch_started = time.monotonic()
        return True

    def _batch_ready(self, arrived: bool, now: float) -> bool:
        """A batch goes when full, when it has lingered long enough, or when the queue went quiet."""
        if not self.pending:
            return False
        full = len(self.pending) >= self.opts.batch_size
        lingered = self.batch_started is not None and now - self.batch_started >= self.opts.batch_linger
        return full or lingered or not arrived

    def _take_batch(self) -> list[tuple[Delivery, Message]]:
        batch = [self.pending.popleft() for _ in range(min(self.opts.batch_size, len(self.pending)))]
        self.batch_started = time.monotonic() if self.pending else None
        return batch

    def _has_free_worker(self) -> bool:
        if self.slots.acquire(blocking=False):
            self.slots.release()
            return True
        return False

    def _submit(self, fn: Callable[[], None]) -> None:
        self.slots.acquire()
        future = self.pool.submit(fn)
        self.in_flight.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: Future[None]) -> None:
        self.in_flight.discard(future)
        self.slots.release()

    def drain(self) -> None:
        """Stop taking deliveries, give back what never started, let in-flight work finish."""
        self.consumer.cancel()  # no new deliveries while draining (the broker would keep pushing them)
        for delivery, _ in self.pending:
            self.consumer.requeue(delivery)
        self.pending.clear()
        deadline = time.monotonic() + self.opts.drain_timeout
        while self.in_flight and time.monotonic() < deadline:
            # keep the connection serviced (heartbeats, acks) while workers finish
            extra = self.consumer.get(timeout=0.05)
            if extra is not None:
                self.consumer.requeue(extra)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.consumer.close()
        self.monitor.forget_consumer(self.queue)

    # -- on a worker thread -------------------------------------------------------------
    def _handle(self, items: list[tuple[Delivery, Message]]) -> None:
        started = time.monotonic()
        self.monitor.in_flight(self.queue, len(items))
        try:
            self._handle_items(items)
        finally:
            self.monitor.in_flight(self.queue, -len(items))
            self.monitor.handled(self.queue, time.monotonic() - started)

    def _handle_items(self, items: list[tuple[Delivery, Message]]) -> None:
        remaining = dict(enumerate(items))
        if len(items) > 1 and not self._handle_as_batch(items, remaining):
            return
        for key in list(remaining):
            delivery, message = remaining.pop(key)
            try:
                try:
                    outputs = _retrying(self.opts.attempts)(self.handler.handle, message)
                except StorageUnavailable as exc:
                    if not self.opts.wait_for_storage:
                        raise
                    outputs = self._when_storage_returns(message, exc)
                self._publish_then_ack(delivery, outputs)
            except (ConnectionLost, BrokerRefused, _Stopped):  # not the message's fault: it goes back
                _give_back(self.consumer, [delivery, *(d for d, _ in remaining.values())])
                return
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.error("dead-lettering %s on %s: %s", message_kind(message), self.queue, reason)
                self.consumer.dead_letter(delivery, reason)
                self.monitor.dead_lettered(self.queue)

    def _handle_as_batch(
        self, items: list[tuple[Delivery, Message]], remaining: dict[int, tuple[Delivery, Message]]
    ) -> bool:
        """Settle what the batch finishes; False when the broker went away (the rest was given back).
        Whatever is left in ``remaining`` after a failure is tried one by one. Finished inputs are
        held for packing (``ServeOptions.pack``) and always published before anything is given back."""
        held: dict[int, list[Outgoing]] = {}  # finished inputs → their outputs, not yet published
        held_since = 0.0
        try:
            try:
                for index, outputs in self.handler.handle_batch([m for _, m in items]):
                    if not held:
                        held_since = time.monotonic()
                    held[index] = outputs
                    if len(held) >= self.opts.pack or time.monotonic() - held_since >= self.opts.pack_linger:
                        self._publish_held(held, remaining)
            finally:
                self._publish_held(held, remaining)  # what finished is sent, whatever stopped the rest
        except (ConnectionLost, BrokerRefused):
            _give_back(self.consumer, [d for d, _ in remaining.values()])
            return False
        except Exception as exc:  # the batch broke: what is left is tried one by one
            log.warning("batch on %s failed (%s); retrying %d one by one", self.queue, exc, len(remaining))
        return True

    def _publish_held(self, held: dict[int, list[Outgoing]], remaining: dict[int, tuple[Delivery, Message]]) -> None:
        """Publish the outputs of the finished inputs ``held`` together, then ack those inputs."""
        if not held:
            return
        outputs = [out for outs in held.values() for out in outs]
        self.transport.publish_many(pack(outputs, self.opts.pack, self.opts.spread))
        self.monitor.published(outputs)
        for index in held:
            self.consumer.ack(remaining.pop(index)[0])
        held.clear()

    def _when_storage_returns(self, message: Message, first: StorageUnavailable) -> list[Outgoing]:
        """Pause the queue and offer ``message`` again, with backoff, until the handler's storage
        takes it; raises ``_Stopped`` when the service stops first (the message goes back)."""
        self.storage_down.set()
        self.monitor.storage(self.queue, down=True)
        down_since = time.monotonic()
        log.error("%s paused: %s; holding the work on the queue until it can be stored", self.queue, first)
        wait = 0.5
        try:
            while not self.stop.wait(wait):
                try:
                    outputs = self.handler.handle(message)
                except StorageUnavailable:
                    wait = min(wait * 2, 10.0)
                    continue
                log.warning("%s resumed: storage works again after %.0f s", self.queue, time.monotonic() - down_since)
                return outputs
            raise _Stopped
        finally:
            self.storage_down.clear()
            self.monitor.storage(self.queue, down=False)

    def _publish_then_ack(self, delivery: Delivery, outputs: Iterable[Outgoing]) -> None:
        items = list(outputs)
        self.transport.publish_many(pack(items, self.opts.pack, self.opts.spread))
        self.monitor.published(items)
        self.consumer.ack(delivery)

    def _tick(self) -> None:
        try:
            items = self.handler.tick()
            self.transport.publish_many(pack(items, self.opts.pack, self.opts.spread))
            self.monitor.published(items)
        except Exception:
            log.exception("periodic work on %s failed", self.queue)


class _Stopped(Exception):
    """The service stopped while a message waited for storage: it goes back to the queue."""


def _decode_or_dead_letter(consumer: Consumer, queue: str, delivery: Delivery) -> Envelope | None:
    try:
        return decode_envelope(delivery.body)
    except DecodeError as exc:
        log.error("dead-lettering a message on %s: %s", queue, exc)
        consumer.dead_letter(delivery, str(exc))
        return None


def _retrying(attempts: int) -> Retrying:
    return Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_not_exception_type((PermanentError, ConnectionLost, BrokerRefused, StorageUnavailable)),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "attempt %d failed (%s); retrying",
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
    )


def _give_back(consumer: Consumer, deliveries: Iterable[Delivery]) -> None:
    """Publishing gave up: requeue (a no-op when the consumer's connection died too)."""
    for delivery in deliveries:
        consumer.requeue(delivery)
