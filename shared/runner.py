"""The thin runner every service shares: consume, decode, handle, publish, then settle.

Order matters: outputs are published (and confirmed, on the broker) before the input is
acked, so a crash anywhere redelivers rather than loses. Handlers stay pure: they take a
message and return ``Outgoing`` items; they never touch the transport.

- undecodable body, or ``PermanentError`` from a handler → dead-letter with the reason;
- any other exception → retried in place with backoff (tenacity), dead-lettered when spent;
- ``ConnectionLost`` while publishing → left unsettled; the broker redelivers it.
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
from typing import Protocol, runtime_checkable

from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from shared.messages import DecodeError, Message, decode, message_kind
from shared.transport.base import ConnectionLost, Consumer, Delivery, Outgoing, Transport

log = logging.getLogger("dcc.runner")


class PermanentError(Exception):
    """This message can never be handled: dead-letter it, do not retry."""


class Handler(Protocol):
    def handle(self, message: Message) -> list[Outgoing]: ...


class BatchHandler(Protocol):
    def handle_batch(self, messages: Sequence[Message]) -> Iterator[tuple[int, list[Outgoing]]]:
        """Yield ``(index, outputs)`` for each input as soon as it is done, in any order."""
        ...


@runtime_checkable
class Ticking(Protocol):
    def tick(self) -> list[Outgoing]:
        """Called about every ``tick_interval`` seconds on a worker (deadlines, flushes)."""
        ...


@dataclass
class ServeOptions:
    workers: int = 1  # concurrent handler calls (batches)
    batch_size: int = 1  # >1 only for a BatchHandler
    batch_linger: float = 0.05  # wait this long to fill a batch once its first message is in
    prefetch: int | None = None  # default: workers × batch_size × 2
    attempts: int = 3  # tries of a failing message before it is dead-lettered
    tick_interval: float = 1.0
    drain_timeout: float = 30.0  # on stop: how long in-flight work may take to finish
    poll: float = 0.2


class _Work:
    """A batch of decoded deliveries handed to one worker."""

    def __init__(self, items: list[tuple[Delivery, Message]]) -> None:
        self.items = items


def serve(
    transport: Transport,
    queue: str,
    handler: Handler | BatchHandler,
    stop: threading.Event,
    options: ServeOptions | None = None,
) -> None:
    """Consume ``queue`` until ``stop`` is set, then finish in-flight work and return."""
    opts = options or ServeOptions()
    prefetch = opts.prefetch or max(1, opts.workers * opts.batch_size * 2)
    consumer = transport.consumer(queue, prefetch)
    pool = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix=f"dcc-{queue}")
    slots = threading.Semaphore(opts.workers)
    in_flight: set[Future[None]] = set()
    pending: deque[tuple[Delivery, Message]] = deque()
    next_tick = time.monotonic() + opts.tick_interval
    batch_started: float | None = None

    def settled(future: Future[None]) -> None:
        in_flight.discard(future)
        slots.release()

    def submit(fn: Callable[[], None]) -> None:
        slots.acquire()
        future = pool.submit(fn)
        in_flight.add(future)
        future.add_done_callback(settled)

    try:
        while not stop.is_set():
            delivery = consumer.get(timeout=opts.poll if not pending else min(opts.poll, opts.batch_linger))
            if delivery is not None:
                message = _decode_or_dead_letter(consumer, queue, delivery)
                if message is not None:
                    pending.append((delivery, message))
                    if batch_started is None:
                        batch_started = time.monotonic()
            now = time.monotonic()
            full = len(pending) >= opts.batch_size
            lingered = batch_started is not None and now - batch_started >= opts.batch_linger
            if pending and (full or lingered or delivery is None) and _free(slots):
                take = [pending.popleft() for _ in range(min(opts.batch_size, len(pending)))]
                batch_started = time.monotonic() if pending else None
                submit(functools.partial(_run, transport, consumer, queue, handler, take, opts))
            if isinstance(handler, Ticking) and now >= next_tick and _free(slots):
                next_tick = now + opts.tick_interval
                submit(lambda: _tick(transport, handler))
    finally:
        consumer.cancel()  # no new deliveries while draining (the broker would keep pushing them)
        for delivery, _ in pending:
            consumer.requeue(delivery)
        deadline = time.monotonic() + opts.drain_timeout
        while in_flight and time.monotonic() < deadline:
            # keep the connection serviced (heartbeats, acks) while workers finish
            extra = consumer.get(timeout=0.05)
            if extra is not None:
                consumer.requeue(extra)
        pool.shutdown(wait=False, cancel_futures=True)
        consumer.close()


def _free(slots: threading.Semaphore) -> bool:
    if slots.acquire(blocking=False):
        slots.release()
        return True
    return False


def _decode_or_dead_letter(consumer: Consumer, queue: str, delivery: Delivery) -> Message | None:
    try:
        return decode(delivery.body)
    except DecodeError as exc:
        log.error("dead-lettering a message on %s: %s", queue, exc)
        consumer.dead_letter(delivery, str(exc))
        return None


def _retrying(attempts: int) -> Retrying:
    return Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_not_exception_type((PermanentError, ConnectionLost)),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "attempt %d failed (%s); retrying",
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
    )


def _outputs_for_one(handler: Handler | BatchHandler, message: Message) -> list[Outgoing]:
    if hasattr(handler, "handle_batch"):
        outputs: list[Outgoing] = []
        for _, out in handler.handle_batch([message]):
            outputs.extend(out)
        return outputs
    return handler.handle(message)  # type: ignore[union-attr]


def _run(
    transport: Transport,
    consumer: Consumer,
    queue: str,
    handler: Handler | BatchHandler,
    items: list[tuple[Delivery, Message]],
    opts: ServeOptions,
) -> None:
    remaining = dict(enumerate(items))
    if hasattr(handler, "handle_batch") and len(items) > 1:
        try:
            for index, outputs in handler.handle_batch([m for _, m in items]):
                _publish_then_ack(transport, consumer, remaining[index][0], outputs)
                del remaining[index]
        except ConnectionLost:
            _give_back(consumer, [d for d, _ in remaining.values()])
            return
        except Exception as exc:  # the batch broke: what is left is tried one by one
            log.warning("batch on %s failed (%s); retrying %d one by one", queue, exc, len(remaining))
    for key in list(remaining):
        delivery, message = remaining.pop(key)
        try:
            outputs = _retrying(opts.attempts)(_outputs_for_one, handler, message)
            _publish_then_ack(transport, consumer, delivery, outputs)
        except ConnectionLost:
            _give_back(consumer, [delivery, *(d for d, _ in remaining.values())])
            return
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.error("dead-lettering %s on %s: %s", message_kind(message), queue, reason)
            consumer.dead_letter(delivery, reason)


def _give_back(consumer: Consumer, deliveries: Iterable[Delivery]) -> None:
    """Publishing gave up: requeue (a no-op when the consumer's connection died too)."""
    for delivery in deliveries:
        consumer.requeue(delivery)


def _publish_then_ack(
    transport: Transport, consumer: Consumer, delivery: Delivery, outputs: Iterable[Outgoing]
) -> None:
    transport.publish_many(list(outputs))
    consumer.ack(delivery)


def _tick(transport: Transport, handler: Ticking) -> None:
    try:
        transport.publish_many(handler.tick())
    except Exception:
        log.exception("periodic work failed")
