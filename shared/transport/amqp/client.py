"""Pika, imported once for the whole package, and what pika may say in our logs.

Pika 1.4 ships no type information (no ``py.typed``, no stubs), so to mypy everything from it is
``Any``; importing it in one place keeps that to one ``type: ignore``. ``import pika`` loads its
``exceptions`` and ``adapters.blocking_connection`` modules too (its ``__init__`` imports the
adapters), so they are reached as attributes rather than imported again.

Pika logs every connection failure itself, several times over and with tracebacks (a failed
connect is six ERROR lines, a lost one three): that is how a seven-second outage became hundreds
of ERROR lines. The transport says what matters once, in its own words (``health``), so pika's
records are turned into one-line DEBUG records without tracebacks, shown only when ``dcc.amqp``
logs at DEBUG. The exception: the broker's ``Connection.Blocked`` notice (a disk or memory alarm
holding our publishers) keeps its level, as nothing else tells it.
"""

from __future__ import annotations

import logging
from typing import TypeAlias

import pika  # type: ignore[import-untyped]  # no stubs nor py.typed in pika 1.4: it is Any to mypy

px = pika.exceptions
BlockingChannel: TypeAlias = pika.adapters.blocking_connection.BlockingChannel

_KEPT = frozenset({"Received %s from broker"})  # Connection.Blocked / Unblocked: the broker's alarm


class PikaAsDebug(logging.Filter):
    """Pika's records as one-line DEBUG records without tracebacks (see the module's docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or record.msg in _KEPT:
            return True
        first_line = record.getMessage().split("\n", 1)[0]  # some of pika's messages carry a stack
        record.msg, record.args = first_line, None
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return logging.getLogger("dcc.amqp").isEnabledFor(logging.DEBUG)


def quieten_pika() -> None:
    """Put ``PikaAsDebug`` on every logger pika has made (a logger's filters are its own: the
    records of ``pika.connection`` never pass the filters of ``pika``). Idempotent."""
    names = [name for name in logging.root.manager.loggerDict if name == "pika" or name.startswith("pika.")]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PikaAsDebug) for f in logger.filters):
            logger.addFilter(PikaAsDebug())


quieten_pika()

__all__ = ["BlockingChannel", "PikaAsDebug", "pika", "px", "quieten_pika"]
