"""The health server of ``scanner --processes N --health-port P``: one port for the whole group.

Child ``i`` serves its own ``/healthz``, ``/readyz`` and ``/metrics`` on loopback port ``P + 1 + i``;
the supervisor answers on ``P`` for all of them: alive while every child runs, ready while every
child says it is ready, and the children's series with a ``process`` label (``0`` … ``N-1``), so
one scrape target and one probe cover the group.
"""

from __future__ import annotations

import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

ASK_TIMEOUT = 2.0  # a probe answers within seconds; a child that does not is not ready


def child_port(port: int, index: int) -> int:
    return port + 1 + index


def ask(port: int, path: str) -> tuple[int, bytes]:
    """``GET path`` of a child on loopback: its status and body (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=ASK_TIMEOUT) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


class Children:
    """``shared.health.Answers`` for a supervisor; ``children()`` gives the current processes."""

    def __init__(
        self, port: int, children: Callable[[], Mapping[int, subprocess.Popen[bytes]]], stop: threading.Event
    ) -> None:
        self._port = port
        self._children = children
        self._stop = stop
        self._registry = CollectorRegistry()
        self._registry.register(_Relabelled(self))

    def ports(self) -> dict[int, int]:
        return {index: child_port(self._port, index) for index in sorted(self._children())}

    def alive(self) -> str | None:
        exited = sorted(i for i, child in self._children().items() if child.poll() is not None)
        return f"scanner process {', '.join(map(str, exited))} exited" if exited else None

    def unready(self) -> str | None:
        if self._stop.is_set():
            return "stopping"
        for index, port in self.ports().items():
            status, body = ask(port, "/readyz")
            if status != 200:
                return f"scanner process {index}: {body.decode(errors='replace') or 'no answer'}"
        return None

    def exposition(self) -> bytes:
        return generate_latest(self._registry)


class _Relabelled(Collector):
    """Every child's series, each with its ``process`` label."""

    def __init__(self, children: Children) -> None:
        self._children = children

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for index, port in self._children.ports().items():
            status, body = ask(port, "/metrics")
            if status != 200:
                continue  # a child starting or recycling: its series are back at the next scrape
            for family in text_string_to_metric_families(body.decode()):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "process": str(index)}, sample.value)
        yield from merged.values()
