"""The broker's URL, and the connection parameters every connection of ours uses."""

from __future__ import annotations

import copy
import os

from shared.config import ConfigError

from .client import pika


def parse_amqp_url(url: str) -> pika.URLParameters:
    """``url`` as pika connection parameters; ``ConfigError`` (never quoting the URL) when invalid."""
    bad = ConfigError(
        "AMQP_URL is not a valid amqp:// or amqps:// URL "
        "(percent-encode special characters such as / @ : % in the user name and password)"
    )
    if url.partition("://")[0].lower() not in ("amqp", "amqps"):
        raise bad
    try:
        return pika.URLParameters(url)
    except Exception:  # pika's messages quote parts of the URL, password included
        raise bad from None


def connection_parameters(
    base: pika.URLParameters, *, name: str, role: str, heartbeat: int, blocked_timeout: float
) -> pika.URLParameters:
    """``base`` tuned for one connection; the broker lists it as ``<name>:<role>:<pid>``."""
    params = copy.copy(base)  # shallow: every field set below is replaced, not mutated
    params.heartbeat = heartbeat
    # a broker that blocks publishers (disk/memory alarm) must not hang us forever
    params.blocked_connection_timeout = blocked_timeout
    params.socket_timeout = 10
    params.stack_timeout = 15
    params.connection_attempts = 1  # tenacity does the retrying, with backoff
    params.tcp_options = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
    params.client_properties = {"connection_name": f"{name}:{role}:{os.getpid()}"}
    return params
