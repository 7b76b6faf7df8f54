"""The first stop signal drains, the second exits: counted in signals, not in who set the stop."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from shared.signals import stop_on_signals


def test_a_first_sigterm_sets_stop_and_a_second_exits_now() -> None:
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set()
        with pytest.raises(SystemExit) as exited:
            os.kill(os.getpid(), signal.SIGTERM)
    assert exited.value.code == 128 + signal.SIGTERM


def test_a_sigterm_after_the_service_stopped_itself_still_drains() -> None:
    # a scanner recycling after --max-scans sets stop; its supervisor's SIGTERM is not a second signal
    stop = threading.Event()
    with stop_on_signals(stop):
        stop.set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.is_set()


def test_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(threading.Event()):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
