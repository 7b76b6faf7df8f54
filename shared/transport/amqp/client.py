"""Pika, imported once for the whole package.

Pika 1.4 ships no type information (no ``py.typed``, no stubs), so to mypy everything from it is
``Any``; importing it in one place keeps that to one ``type: ignore``. ``import pika`` loads its
``exceptions`` and ``adapters.blocking_connection`` modules too (its ``__init__`` imports the
adapters), so they are reached as attributes rather than imported again.
"""

from __future__ import annotations

from typing import TypeAlias

import pika  # type: ignore[import-untyped]  # no stubs nor py.typed in pika 1.4: it is Any to mypy

px = pika.exceptions
BlockingChannel: TypeAlias = pika.adapters.blocking_connection.BlockingChannel

__all__ = ["BlockingChannel", "pika", "px"]
