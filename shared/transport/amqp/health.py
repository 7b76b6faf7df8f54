"""The transport's view of its broker: there, away since when, or refusing us.

One ``BrokerHealth`` per transport, shared by its publisher links and its consumers, so an outage
is told once per service however many connections notice it: a WARNING when the first connection
breaks (or the first connect fails), a WARNING with the downtime when a connection opens again;
every further break and failed attempt is DEBUG. A connection remembers the outage it was opened
after (``epoch``), so a stale one that only breaks when used after the recovery is not a new outage.

A refusal is different: a wrong user or password (``ACCESS_REFUSED`` at login), a vhost the user
may not use or that does not exist (``NOT_ALLOWED``), or a name the user has no permission on
(``ACCESS_REFUSED`` on a channel) will not get better by reconnecting. It becomes ``BrokerRefused``
(the broker's reply, the user, host and vhost; never the password), and it sticks: every later
call of the transport raises it at once, so a service stops instead of retrying its configuration.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from shared.logging import redact
from shared.transport.base import BrokerRefused, BrokerStatus

from .client import pika, px
from .retry import TRANSIENT, Broken, quiet_close

log = logging.getLogger("dcc.amqp")

ACCESS_REFUSED = 403
NOT_ALLOWED = 530

# What pika puts in ProbableAuthenticationError / ProbableAccessDeniedError: the repr of the error
# that ended the handshake. Only a Connection.Close the broker sent is a refusal; a stream that
# merely broke during the handshake (a broker going down) looks the same to pika otherwise.
_BROKER_CLOSE = re.compile(r"ConnectionClosedByBroker: \((?P<code>\d+)\) (?P<q>['\"])(?P<text>.*?)(?P=q)")


def brief(exc: BaseException) -> str:
    """``exc`` in one short line, for a log message."""
    text = redact(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))  # pika's str() is often empty
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


class BrokerHealth:
    """Outage and refusal bookkeeping of one transport. Thread-safe."""

    def __init__(self, params: pika.URLParameters) -> None:
        self._user = str(getattr(params.credentials, "username", "?"))
        self._where = f"{params.host}:{params.port}"
        self._vhost = str(params.virtual_host)
        self._lock = threading.Lock()
        self._epoch = 0  # outages so far; a connection opened after the n-th belongs to epoch n
        self._down_since: float | None = None
        self._up_since = 0.0  # when a connection last opened (so a slow attempt from before is not news)
        self._ever_connected = False
        self._refused: BrokerRefused | None = None
        self._reconnects = 0  # outages recovered from (a connection opened again)

    def status(self) -> BrokerStatus:
        """Connected (once, and no outage on now), outages recovered from, refused."""
        with self._lock:
            up = self._ever_connected and self._down_since is None and self._refused is None
            return BrokerStatus(connected=up, reconnects=self._reconnects, refused=self._refused is not None)

    # -- refusals -----------------------------------------------------------------
    @property
    def refused(self) -> BrokerRefused | None:
        """The refusal that ended this transport, if one did."""
        return self._refused

    def check(self) -> None:
        """Raise the refusal again, if there was one: nothing is tried after it."""
        if self._refused is not None:
            raise self._refused

    def refusal(self, exc: BaseException, doing: str) -> BrokerRefused | None:
        """``exc`` as a ``BrokerRefused`` (recorded: it sticks) if it is one, else None."""
        refused = self._classify(exc, doing)
        if refused is not None:
            with self._lock:
                if self._refused is None:
                    self._refused = refused
                refused = self._refused
        return refused

    def _classify(self, exc: BaseException, doing: str) -> BrokerRefused | None:
        broker = f"the broker at {self._where}"
        if isinstance(exc, px.AuthenticationError):  # no login mechanism both sides know
            return BrokerRefused(f"{broker} offers no login mechanism we support for user {self._user!r} ({exc})")
        if isinstance(exc, px.ChannelClosedByBroker):
            if exc.reply_code != ACCESS_REFUSED:
                return None
            return BrokerRefused(
                f"{broker} did not let user {self._user!r} {doing} ({exc.reply_text}): give the user configure, "
                f"write and read permissions on the dcc names in vhost {self._vhost!r}"
            )
        code, text = _broker_close(exc)
        if code == ACCESS_REFUSED:
            return BrokerRefused(
                f"{broker} refused the login of user {self._user!r} ({text}): "
                "check the user name and password in AMQP_URL"
            )
        if code == NOT_ALLOWED:
            return BrokerRefused(
                f"{broker} refused user {self._user!r} access to vhost {self._vhost!r} ({text}): "
                "check the vhost in AMQP_URL and the user's permissions on it"
            )
        return None

    # -- connections --------------------------------------------------------------
    def connect(self, params: pika.URLParameters) -> tuple[pika.BlockingConnection, int]:
        """A new connection and the epoch it belongs to. ``BrokerRefused`` when refused (final),
        ``Broken`` when the broker cannot be reached (retried by the caller)."""
        self.check()
        started = time.monotonic()
        try:
            connection = pika.BlockingConnection(params)
        except TRANSIENT as exc:
            refused = self.refusal(exc, "log in")
            if refused is not None:
                raise refused from None
            self._unreachable(exc, started)
            raise Broken(f"cannot connect: {brief(exc)}") from None
        if self._refused is not None:  # another thread was refused meanwhile: this one goes too
            quiet_close(connection)
            raise self._refused
        return connection, self._connected()

    def broke(self, exc: BaseException, epoch: int) -> None:
        """A connection of ``epoch`` broke: the first break of the current epoch is an outage."""
        with self._lock:
            first = self._down_since is None and epoch == self._epoch
            if first:
                self._epoch += 1
                self._down_since = time.monotonic()
        if first:
            log.warning("broker connection lost (%s); reconnecting", brief(exc))
        else:
            log.debug("another broker connection gone (%s)", brief(exc))

    def _unreachable(self, exc: BaseException, started: float) -> None:
        """An attempt begun at ``started`` failed: an outage, unless one is on already or another
        connection has opened since the attempt began (it failed just before the broker came back)."""
        with self._lock:
            first = self._down_since is None and started >= self._up_since
            if first:
                self._epoch += 1
                self._down_since = time.monotonic()
            ever = self._ever_connected
        if not first:
            log.debug("broker still unreachable (%s)", brief(exc))
        elif ever:
            log.warning("broker connection lost (%s); reconnecting", brief(exc))
        else:
            log.warning("cannot reach the broker at %s (%s); retrying", self._where, brief(exc))

    def _connected(self) -> int:
        with self._lock:
            down_since, self._down_since = self._down_since, None
            self._up_since = time.monotonic()
            ever, self._ever_connected = self._ever_connected, True
            if down_since is not None and ever:
                self._reconnects += 1
            epoch = self._epoch
        if down_since is not None:
            downtime = time.monotonic() - down_since
            if ever:
                log.warning("broker connection back after %.1f s", downtime)
            else:
                log.warning("connected to the broker at %s after %.1f s", self._where, downtime)
        return epoch


def _broker_close(exc: BaseException) -> tuple[int | None, str]:
    """The reply code and text of the Connection.Close the broker ended ``exc``'s connection with."""
    if isinstance(exc, px.ConnectionClosedByBroker):
        return int(exc.reply_code), str(exc.reply_text)
    if isinstance(exc, (px.ProbableAuthenticationError, px.ProbableAccessDeniedError)):
        match = _BROKER_CLOSE.search(str(exc))
        if match is not None:
            return int(match["code"]), match["text"]
    return None, ""
