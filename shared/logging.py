"""Logging set-up shared by every service, and the one place secrets are masked."""

from __future__ import annotations

import logging
import re
import sys

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


def redact(text: str) -> str:
    """Mask passwords in URLs (``amqp://user:secret@host`` → ``amqp://user:***@host``).

    Conservative on purpose: everything from ``user:`` to the last ``@`` of the URL (a URL ends at
    whitespace or where another ``amqp://``/``http://`` URL starts) is masked, so a password
    with a raw ``@`` or ``/`` in it never shows, even though such a URL is ambiguous.
    """
    return _URL_WITH_USER.sub(_mask, text)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: int = logging.WARNING, stream: object = None) -> None:
    """Configure the root logger once: ``LEVEL name: message`` lines on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # third-party chatter stays at WARNING unless we debug
    for noisy in ("pika", "sslyze", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
