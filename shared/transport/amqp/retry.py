"""What a broken connection looks like, and how long we keep reconnecting."""

from __future__ import annotations

import logging
import threading

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from shared.logging import redact

from .client import pika, px

log = logging.getLogger("dcc.amqp")

# Broken connection or channel: reconnect and retry. Channel errors the broker raises on purpose
# (404, 406) are not in here: retrying them would never help.
TRANSIENT: tuple[type[BaseException], ...] = (
    px.AMQPConnectionError,
    px.ChannelWrongStateError,
    px.ChannelClosedByClient,
    px.NackError,
    ConnectionError,
    OSError,
)


class Broken(Exception):
    """Internal: a link or consumer connection broke, or could not be opened; retried by tenacity.
    (A broker that refuses us raises ``BrokerRefused`` instead, which nothing retries.)"""


def retrying(what: str, *, reconnect_for: float, abort: threading.Event, quick: bool = False) -> Retrying:
    """Retry ``Broken`` for ``reconnect_for`` seconds or until ``abort``; ``quick``: one retry (a stale link)."""

    def before_sleep(state: RetryCallState) -> None:
        # DEBUG: the outage itself is told once per transport, when it starts and when it ends (``health``)
        exc = state.outcome.exception() if state.outcome else None
        log.debug("%s: broker unavailable (%s); retry %d", what, redact(str(exc)), state.attempt_number)

    stop = stop_after_delay(reconnect_for) | stop_when_event_set(abort)
    if quick:
        stop = stop_after_attempt(2) | stop_after_delay(5)
    return Retrying(
        stop=stop,
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type(Broken),
        before_sleep=before_sleep,
        reraise=True,
    )


def quiet_close(connection: pika.BlockingConnection) -> None:
    """Close ``connection`` if it is still open; a broken one has nothing left to release."""
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # broken already: the socket goes with it
        pass
