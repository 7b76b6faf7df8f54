"""The one way a service stops on a signal: the first SIGTERM/SIGINT asks for a graceful stop
(finish or hand back in-flight work), a second one exits at once."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger("dcc.signals")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT set ``stop``; a second signal raises ``SystemExit(128 + signum)``.

    Only a signal counts as the first: a service that set ``stop`` itself (a scanner recycling after
    ``--max-scans``) still drains when its supervisor then sends SIGTERM.

    The previous handlers come back when the block ends. Off the main thread (tests, embedding)
    signal handlers cannot be set, and this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    signalled = threading.Event()  # a stop asked for otherwise (a recycling scanner) is not a first signal

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signalled.is_set():
            log.warning("second %s: exiting now", name)
            raise SystemExit(128 + signum)
        signalled.set()
        log.warning("%s: finishing in-flight work, then stopping", name)
        stop.set()

    previous: dict[int, Any] = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
