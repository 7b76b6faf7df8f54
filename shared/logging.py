"""Logging set-up shared by every service: the one place secrets are masked and outside text is made
one line."""

from __future__ import annotations

import logging
import re
import string
import sys
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import TextIO

# Where a second URL starts inside one whitespace-free token (``a:x@h1/,amqp://b:y@h2/``). Only
# well-known schemes, after a non-scheme character: a password containing ``xyz://`` must not
# split its own URL (that would leave the rest of it unmasked).
_NEXT_URL = r"(?<![a-z0-9+.-])(?:amqps?|https?)://"
# ``scheme://user:`` then the rest of the token. The password ends at the *last* ``@`` of that
# rest: a raw ``@`` or ``/`` in a pasted secret makes the URL ambiguous, and we would rather mask
# some of the host than leave some of the password.
_URL_WITH_USER = re.compile(
    rf"(?P<head>[a-z][a-z0-9+.-]*://[^\s:@]*:)(?P<rest>(?:(?!{_NEXT_URL})\S)*)",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    rest = match["rest"]
    at = rest.rfind("@")
    if at < 0:  # ``scheme://host:port/...``: no credentials here
        return match[0]
    return f"{match['head']}***{rest[at:]}"


# What ``[a-z]`` / ``[a-z0-9+.-]`` match under ``re.IGNORECASE``: ASCII, plus the few non-ASCII
# letters whose case folding is ASCII (dotted and dotless i, long s, the Kelvin sign).
_FOLDED = "\u0130\u0131\u017f\u212a"
_SCHEME_FIRST = frozenset(string.ascii_letters + _FOLDED)
_SCHEME_CHARS = frozenset(string.ascii_letters + string.digits + "+.-" + _FOLDED)


def redact(text: str) -> str:
    """Mask passwords in URLs (``amqp://user:secret@host`` → ``amqp://user:***@host``).

    Conservative on purpose: everything from ``user:`` to the last ``@`` of the URL (a URL ends at
    whitespace or where another ``amqp://``/``http://`` URL starts) is masked, so a password
    with a raw ``@`` or ``/`` in it never shows, even though such a URL is ambiguous.

    Linear in the length of ``text``: rather than let the regex try a scheme at every position
    (quadratic on a long run of scheme characters), each ``://`` is found once, its scheme start is
    found by walking back over the run before it (runs of different ``://`` never overlap), and the
    pattern is matched there only. Same leftmost, non-overlapping matches as ``_URL_WITH_USER.sub``.
    """
    pieces: list[str] = []
    copied = 0  # text[:copied] is in pieces already
    scanned = 0  # no match may start before this (the end of the previous one)
    separator = text.find("://")
    while separator >= 0:
        start = _scheme_start(text, scanned, separator)
        match = _URL_WITH_USER.match(text, start) if start >= 0 else None
        if match is None:  # no credentials after this ``://``: whatever its scheme, nothing to mask
            separator = text.find("://", separator + 1)
            continue
        pieces += (text[copied:start], _mask(match))
        copied = scanned = match.end()
        separator = text.find("://", scanned)
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def _scheme_start(text: str, floor: int, separator: int) -> int:
    """Where the scheme before ``text[separator:]`` (``://``) starts: the first letter of the run of
    scheme characters that ends there (not before ``floor``); -1 when that run has no letter."""
    run = separator
    while run > floor and text[run - 1] in _SCHEME_CHARS:
        run -= 1
    for index in range(run, separator):
        if text[index] in _SCHEME_FIRST:
            return index
    return -1


# -- one record, one line ---------------------------------------------------------------------

# C0 controls (newline, carriage return, tab, ESC, ...), DEL, C1 controls (including NEL), the
# Unicode line and paragraph separators, and the bidirectional overrides and isolates (they make a
# line read in another order than it is written).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as its Python escape (``\\n``, ``\\x1b``,
    ``\\u2028``), so text from outside can neither start a line of its own nor drive a terminal.

    Everything else is left as it is (backslashes too): escaping twice changes nothing more.
    """
    return _CONTROL.sub(_escaped, text)


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class SafeFormatter(logging.Formatter):
    """One line per record, secrets masked.

    The message (with its ``%s`` arguments: names, certificate fields, server messages) has its
    control characters escaped, so no name can forge a second log line. A traceback stays
    multi-line, as Python prints it (the frames are ours), but each exception's own text, which
    may quote a server or a name, is escaped onto its line. Redaction runs last, over it all.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        _, value, tb = ei
        if value is None:
            return super().formatException(ei)
        exception = traceback.TracebackException(type(value), value, tb, compact=True)
        return "".join(_traceback_lines(exception)).removesuffix("\n")

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info:
            record.exc_text = None  # another handler's formatter may have cached an unescaped one
        return redact(super().format(record))


def _traceback_lines(exception: traceback.TracebackException) -> Iterator[str]:
    """``exception.format()``, except that each exception's own text is one escaped line."""
    chain: list[tuple[str | None, traceback.TracebackException]] = []
    current: traceback.TracebackException | None = exception
    while current is not None:  # the same walk as ``TracebackException.format``
        if current.__cause__ is not None:
            chain.append((_CAUSE, current))
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            chain.append((_CONTEXT, current))
            current = current.__context__
        else:
            chain.append((None, current))
            current = None
    for link, item in reversed(chain):
        if link is not None:  # how this exception follows the one printed before it
            yield link
        if item.exceptions is not None:  # an exception group: Python's layout, each part on one line
            yield from (escape_controls(part.removesuffix("\n")) + "\n" for part in item.format(chain=False))
        else:
            if item.stack:
                yield "Traceback (most recent call last):\n"
                yield from item.stack.format()
            own = "".join(item.format_exception_only())  # ``Type: message``, then any notes
            yield escape_controls(own.removesuffix("\n")) + "\n"


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def setup_logging(level: int = logging.WARNING, stream: TextIO | None = None) -> None:
    """Configure the root logger once: ``LEVEL name: message`` lines on stderr."""
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # third-party chatter stays at WARNING unless we debug
    for noisy in ("pika", "sslyze", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
