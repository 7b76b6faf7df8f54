"""Where the broker is and what our names on it start with, from the environment.

Free of pika, so the CLI can name the default broker without loading the broker client.
"""

from __future__ import annotations

import os

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def amqp_url_from_env() -> str:
    """``AMQP_URL``, or the local default broker."""
    return os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL


def queue_prefix_from_env() -> str:
    """``DCC_QUEUE_PREFIX``: every broker name starts with it, so test runs and tenants never collide."""
    return os.environ.get("DCC_QUEUE_PREFIX", "")
