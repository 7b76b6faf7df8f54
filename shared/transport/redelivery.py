"""Redelivery bookkeeping both transports share; it travels in the message headers.

A delivery whose consumer died (or lost its connection) before settling it comes back, and its
next delivery counts that in ``x-dcc-redeliveries``. Past the transport's ``max_redeliveries`` the
message is dead-lettered instead of handed out, so a message that kills its consumer every time
cannot loop forever. Giving a message back (``requeue``; ``cancel`` or ``close`` returning
unprocessed work) is not a redelivery: the count stays as it is, and ``x-dcc-returned`` goes up.
"""

from __future__ import annotations

from collections.abc import Mapping

REDELIVERIES_HEADER = "x-dcc-redeliveries"
RETURNED_HEADER = "x-dcc-returned"  # times a consumer gave it back unprocessed (informational)


def header_count(headers: Mapping[str, object], name: str) -> int:
    """A counter header's value; 0 when absent or not a number."""
    value = headers.get(name)
    return value if isinstance(value, int) else 0


def delivered_before(headers: Mapping[str, object]) -> bool:
    """Whether a message was handed out before (so it may have been partly handled)."""
    return header_count(headers, REDELIVERIES_HEADER) > 0 or header_count(headers, RETURNED_HEADER) > 0


def given_back(headers: Mapping[str, object]) -> dict[str, object]:
    """The headers of a given-back message: unchanged, except one more ``x-dcc-returned``."""
    again = dict(headers)
    again[RETURNED_HEADER] = header_count(headers, RETURNED_HEADER) + 1
    return again


def too_many_redeliveries(count: int) -> str:
    """The dead-letter reason of a message redelivered ``count`` times, past the limit."""
    return f"redelivered {count} times: its consumer died or lost the broker while handling it"
