"""``dns-cert-checker scanner --processes N``: N scanner processes on one segment's queue, supervised.

One scanner process is bound by Python's GIL to about one core; N processes on one queue share
its jobs as N consumers (the broker hands each its prefetch), so on an N-core machine they add up.
Each child is the plain scanner service (the same command with ``--processes 1``), so it behaves,
drains and logs exactly as a scanner does alone. The per-address connection limit is a promise per
machine, so each child gets ``max_connections_per_ip / N`` of it (at least 1).

``--max-scans M`` recycles a child after M scans (it stops taking jobs, finishes what it has, and
exits 0; a fresh one takes its place): SSLyze and OpenSSL state grow in long-lived processes.

The supervisor forwards SIGTERM/SIGINT to every child and waits for their drains. A child that
exits otherwise (the broker gave up: 1; refused us: 2; a crash) stops the others, and its status is
the supervisor's: restarting what the broker refuses would never help, and the orchestrator
(Kubernetes, systemd) restarts the whole for an outage.

In Kubernetes prefer one process per pod and more replicas (KEDA scales them on the queue, and a
pod's CPU limit is then one process's share); ``--processes`` is for a VM or a host.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from services.scanner_health import Children, child_port
from shared.health import HealthServer

log = logging.getLogger("dcc.daemon")

RECYCLED = 0  # a child that ran its --max-scans and drained exits 0: it is replaced
POLL = 0.2  # seconds between looks at the children


def child_command(argv: Sequence[str], index: int, processes: int, health_port: int | None = None) -> list[str]:
    """The scanner command line of one child: the parent's, as one process with its share (and
    its own health port beside the supervisor's, ``services.scanner_health``)."""
    health = [] if health_port is None else ["--health-port", str(child_port(health_port, index))]
    return [
        sys.executable,
        "-m",
        "services.cli",
        *argv,
        "--processes",
        "1",
        "--connection-share",
        str(processes),
        "--process-index",
        str(index),
        *health,
    ]


def supervise(argv: Sequence[str], processes: int, stop: threading.Event, health_port: int | None = None) -> int:
    """Run ``processes`` scanner children until ``stop``; replace the ones that recycle themselves.
    With ``health_port``, answer there for all of them (``services.scanner_health``)."""
    children: dict[int, subprocess.Popen[bytes]] = {}
    starts = 0

    def start(index: int) -> None:
        nonlocal starts
        children[index] = subprocess.Popen(child_command(argv, index, processes, health_port))
        starts += 1

    with contextlib.ExitStack() as stack:
        if health_port is not None:
            stack.enter_context(HealthServer.open(Children(health_port, lambda: dict(children), stop), health_port))
        return _run(children, start, processes, stop, lambda: starts)


def _run(
    children: dict[int, subprocess.Popen[bytes]],
    start: Callable[[int], None],
    processes: int,
    stop: threading.Event,
    starts: Callable[[], int],
) -> int:
    for index in range(processes):
        start(index)
    log.info("supervising %d scanner processes", processes)
    status = 0
    try:
        while not stop.is_set():
            for index, child in list(children.items()):
                code = child.poll()
                if code is None:
                    continue
                if code == RECYCLED:
                    log.info("scanner process %d (pid %d) recycled; starting another", index, child.pid)
                    start(index)
                    continue
                log.error(
                    "scanner process %d (pid %d) exited with status %d: stopping the others", index, child.pid, code
                )
                del children[index]
                status = code
                stop.set()
                break
            stop.wait(POLL)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()  # SIGTERM: each drains as a scanner does
        for child in children.values():
            code = child.wait()
            # -SIGTERM: a child just started had not set up its handler yet; it held no work
            if code not in (RECYCLED, -signal.SIGTERM) and status == 0:
                status = code
        log.info("scanner processes stopped (%d started in all)", starts())
    return status
