"""Senders: one thread per receiver drains its outbox rows in order, at least once.

- 2xx delivered; 3xx and other failures retried with exponential backoff and jitter (tenacity),
  ``Retry-After`` honoured on 429 and 503; timeouts and connection errors retried;
- 410 Gone disables the receiver (its pending deliveries are given up; a new URL re-enables it);
- a delivery still failing ``max_delivery_age`` after it was committed is given up: dead.

A failing receiver only ever delays itself: every receiver has its own thread and HTTP client.
Nothing here logs or raises a URL or a secret: reasons are status codes and exception types.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential, wait_random

from services.reporter.alerts.metrics import AlertMetrics
from services.reporter.alerts.receivers import Target
from services.reporter.alerts.state import Delivery, StateStore

log = logging.getLogger("dcc.alerts")

MAX_RETRY_AFTER = 86400.0  # a receiver asking for more is asking for too much
SLACK_INTERVAL = 1.0  # Slack takes about one message per second per channel
IDLE_POLL = 1.0  # senders also look for work this often without being woken


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts: ``initial × base^(n-1)`` capped at ``maximum``, plus up to ``initial``
    of jitter. The defaults give 5 s, 15 s, 45 s, 2 min, 7 min, 20 min, 1 h, 3 h, then every 5 h."""

    initial: float = 5.0
    base: float = 3.0
    maximum: float = 5 * 3600.0


class Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ReceiverGone(Exception):
    """HTTP 410: the receiver asks never to be called again."""


class _Stopping(Exception):
    """Alerting is closing: leave the delivery pending for the next owner."""


class SecretFilter(logging.Filter):
    """Masks the receivers' URLs and secrets in the records of the HTTP libraries and our own.

    httpx logs every request line with its URL at INFO, httpcore headers at DEBUG; a Slack URL is
    a credential. Our own messages never contain them; this catches a library's, at any level.
    A filter only sees records of the logger it is on, so it goes on every httpx/httpcore logger.
    """

    PACKAGES = ("httpx", "httpcore")
    # httpcore makes these at import, some lazily (http2, socks): named so the filter is on them first
    LOGGERS = (
        "dcc.alerts",
        "httpx",
        "httpcore",
        *(f"httpcore.{m}" for m in ("connection", "http11", "http2", "proxy", "socks")),
    )

    def __init__(self, targets: Iterable[Target]) -> None:
        super().__init__()
        secrets: set[str] = set()
        for target in targets:
            parts = urlsplit(target.url)
            secrets |= {target.url, parts.path + (f"?{parts.query}" if parts.query else "")}
            if target.secret:
                secrets |= {target.secret, target.secret.removeprefix("whsec_")}
        self._secrets = sorted((s for s in secrets if len(s) > 1), key=len, reverse=True)
        self._loggers: list[logging.Logger] = []

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(secret in text for secret in self._secrets):
            for secret in self._secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
        return True

    def attach(self) -> None:
        names = set(self.LOGGERS)
        names |= {n for n in logging.root.manager.loggerDict if n.split(".")[0] in self.PACKAGES}
        self._loggers = [logging.getLogger(name) for name in sorted(names)]
        for logger in self._loggers:
            logger.addFilter(self)

    def detach(self) -> None:
        for logger in self._loggers:
            logger.removeFilter(self)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max(0.0, moment.timestamp() - now), MAX_RETRY_AFTER)


def post(client: httpx.Client, target: Target, signer: Webhook | None, delivery: Delivery, body: bytes) -> None:
    """One request. Raises Retryable or ReceiverGone; returns when the receiver took it."""
    headers = {"content-type": "application/json"}
    if signer is not None:
        sent = int(time.time())  # the real time, whatever the injected clock: receivers check it
        headers["webhook-id"] = delivery.id
        headers["webhook-timestamp"] = str(sent)
        headers["webhook-signature"] = signer.sign(delivery.id, datetime.fromtimestamp(sent, UTC), body.decode())
    try:
        response = client.post(target.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise Retryable(type(exc).__name__) from None  # the exception's text may quote the URL
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 410:
        raise ReceiverGone()
    after = retry_after(response.headers.get("retry-after"), time.time()) if status in (429, 503) else None
    raise Retryable(f"HTTP {status}", after)


Render = Callable[[Delivery], list[bytes]]  # the request bodies of a delivery, at the time of sending


def as_stored(delivery: Delivery) -> list[bytes]:
    return [delivery.body]


class Sender(threading.Thread):
    def __init__(
        self,
        target: Target,
        store: StateStore,
        *,
        policy: RetryPolicy,
        max_age: float,
        clock: Callable[[], float],
        stopping: threading.Event,
        transport: httpx.BaseTransport | None = None,
        metrics: AlertMetrics,
        render: Render = as_stored,
    ) -> None:
        super().__init__(name=f"dcc-alerts-{target.name}", daemon=True)  # a hung request never holds exit
        self.target = target
        self.wake = threading.Event()
        self._store = store
        self._max_age = max_age
        self._clock = clock
        self._stopping = stopping
        self._metrics = metrics
        self._render = render
        self._signer = Webhook(target.secret) if target.secret else None
        self._client = httpx.Client(transport=transport, timeout=target.timeout, follow_redirects=False)
        self._interval = SLACK_INTERVAL if target.kind == "slack" else 0.0
        self._backoff = wait_exponential(
            multiplier=policy.initial, exp_base=policy.base, max=policy.maximum
        ) + wait_random(0, policy.initial)

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self.wake.clear()
                    delivery = self._store.next_pending(self.target.name)
                    if delivery is None:
                        self.wake.wait(IDLE_POLL)
                    elif not self._deliver(delivery):
                        return
                except _Stopping:
                    return
                except Exception:
                    if self._stopping.is_set():
                        return  # the state closed under us
                    log.exception("alert receiver %s: sender error; retrying", self.target.name)
                    self._stopping.wait(IDLE_POLL)
        finally:
            self._client.close()

    def _deliver(self, delivery: Delivery) -> bool:
        """Until delivered, dead or stopping; False when the receiver disabled itself."""
        retrying = Retrying(
            retry=retry_if_exception_type(Retryable),
            stop=lambda state: self._clock() - delivery.created_at >= self._max_age,
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._failed(delivery, state),
            reraise=True,
        )
        try:
            retrying(self._attempt, delivery)
        except Retryable as exc:
            self._store.give_up(delivery.seq, exc.reason, self._clock())
            self._metrics.outcome(self.target.name, "dead")
            log.error(
                "alert receiver %s: gave up delivery %s (%s) after %.0f s: %s",
                self.target.name, delivery.id, delivery.what, self._max_age, exc.reason,
            )  # fmt: skip
            return True
        except ReceiverGone:
            reason = "receiver answered 410 Gone"
            given_up = self._store.disable(self.target.name, self.target.url_fingerprint, reason, self._clock())
            self._metrics.outcome(self.target.name, "gone", given_up)
            log.error(
                "ALERT RECEIVER %s DISABLED: it answered 410 Gone; %d pending deliveries given up. Nothing more is"
                " sent to it until its URL changes.",
                self.target.name, given_up,
            )  # fmt: skip
            return False
        self._store.delivered(delivery.seq)
        self._metrics.outcome(self.target.name, "delivered")
        if self._interval:
            self._sleep(self._interval)
        return True

    def _attempt(self, delivery: Delivery) -> None:
        for body in self._render(delivery):  # several for Alertmanager; a repeated one is harmless there
            post(self._client, self.target, self._signer, delivery, body)

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, Retryable) and failure.retry_after is not None:
            return failure.retry_after
        return self._backoff(state)

    def _sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _Stopping()

    def _failed(self, delivery: Delivery, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        reason = failure.reason if isinstance(failure, Retryable) else repr(failure)
        self._store.attempt_failed(delivery.seq, reason, self._clock())
        self._metrics.outcome(self.target.name, "failed")
        pause = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "alert receiver %s: delivery %s attempt %d failed (%s); next in %.1f s",
            self.target.name, delivery.id, state.attempt_number, reason, pause,
        )  # fmt: skip
