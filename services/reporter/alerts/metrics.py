"""Prometheus metrics of the alert state, runs and deliveries (prometheus_client).

Per-endpoint series come from a snapshot of the state swapped in after each commit and rendered
at scrape time: 100k endpoints cost nothing between scrapes, and a resolved problem's series
simply is not in the next snapshot. The expiry series stays while a certificate is invalid or
its host unreachable (the last certificate it served), unlike probe-based exporters'.
Labels are bounded: no messages, no run ids, no URLs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.reporter.alerts.inventory import Served
from services.reporter.alerts.problems import Endpoint, Problem
from services.reporter.report import RunReport

_ENDPOINT_LABELS = ["zone", "fqdn", "ip", "port", "segment"]


@dataclass(frozen=True)
class _Snapshot:
    problems: Mapping[str, Problem] = field(default_factory=dict)
    served: Mapping[Endpoint, Served] = field(default_factory=dict)
    findings: Mapping[tuple[str, str], int] | None = None  # None until a run completed
    scanned: Mapping[str, int] | None = None
    last_completed: float | None = None  # absent, not 0, before the first complete run


class _StateCollector(Collector):
    def __init__(self, receivers: list[str], pending: Callable[[], Mapping[str, int]]) -> None:
        self.snapshot = _Snapshot()  # replaced whole: a scrape sees one state or the next
        self._receivers = receivers
        self._pending = pending
        self._last_pending: Mapping[str, int] = {}

    def describe(self) -> Iterable[Metric]:
        return list(self._families(_Snapshot(), {}))

    def collect(self) -> Iterable[Metric]:
        # Counted in the outbox at scrape time: exact. Once the state is closed (a textfile written
        # last), the last count stands.
        with contextlib.suppress(sqlite3.Error):
            self._last_pending = self._pending()
        return self._families(self.snapshot, self._last_pending)

    def _families(self, snap: _Snapshot, pending: Mapping[str, int]) -> Iterator[Metric]:
        not_after = GaugeMetricFamily(
            "dcc_certificate_not_after_timestamp_seconds",
            "Not-after of the leaf certificate each endpoint served at its last handshake (kept while invalid).",
            labels=_ENDPOINT_LABELS,
        )
        for s in snap.served.values():
            not_after.add_metric([s.zone, s.fqdn, s.ip_address, str(s.port), s.segment], s.not_after)
        yield not_after
        problems = GaugeMetricFamily(
            "dcc_problem",
            "Open problems (1 each; more when one code has several rows, e.g. per trust store).",
            labels=[*_ENDPOINT_LABELS, "code", "severity"],
        )
        tally = Tally(
            (p.zone, p.fqdn, p.ip_address, "" if p.port is None else str(p.port), p.segment, p.code, p.severity)
            for p in snap.problems.values()
        )
        for labels, count in tally.items():
            problems.add_metric(list(labels), count)
        yield problems
        found = GaugeMetricFamily("dcc_findings", "Findings in the last completed run.", labels=["code", "severity"])
        for (code, severity), count in (snap.findings or {}).items():
            found.add_metric([code, severity], count)
        yield found
        scanned = GaugeMetricFamily(
            "dcc_endpoints_scanned", "Endpoints scanned in the last completed run.", labels=["segment"]
        )
        for segment, count in (snap.scanned or {}).items():
            scanned.add_metric([segment], count)
        yield scanned
        completed = GaugeMetricFamily(
            "dcc_run_last_completed_timestamp_seconds", "When the last complete run finished."
        )
        if snap.last_completed is not None:
            completed.add_metric([], snap.last_completed)
        yield completed
        waiting = GaugeMetricFamily(
            "dcc_alert_deliveries_pending", "Deliveries waiting to be sent.", labels=["receiver"]
        )
        for name in self._receivers:
            waiting.add_metric([name], pending.get(name, 0))
        yield waiting


class AlertMetrics:
    def __init__(self, receivers: Iterable[str], pending: Callable[[], Mapping[str, int]] = dict) -> None:
        """``pending``: the outbox's pending deliveries per receiver, read at every scrape."""
        self.registry = CollectorRegistry()
        self._receivers = list(receivers)
        self._state = _StateCollector(self._receivers, pending)
        self.registry.register(self._state)
        r = self.registry
        self.duration = Gauge("dcc_run_duration_seconds", "Duration of the last finished run.", registry=r)
        self.runs = Counter("dcc_runs", "Finished runs by outcome (complete, incomplete).", ["outcome"], registry=r)
        self.deliveries = Counter(
            "dcc_alert_deliveries",
            "Delivery attempts by outcome (delivered, failed, dead, gone).",
            ["receiver", "outcome"],
            registry=r,
        )
        self.dead = Counter("dcc_alert_deliveries_dead", "Deliveries given up.", ["receiver"], registry=r)
        for name in self._receivers:  # every receiver's series exist from the start (rate() needs a zero)
            self.dead.labels(name)
            for outcome in ("delivered", "failed"):
                self.deliveries.labels(name, outcome)
        for outcome in ("complete", "incomplete"):
            self.runs.labels(outcome)

    def restore(
        self, problems: Mapping[str, Problem], served: Mapping[Endpoint, Served], last_completed: float | None
    ) -> None:
        """What survives a restart: the open problems, served certificates, last complete run."""
        self._state.snapshot = _Snapshot(problems=problems, served=served, last_completed=last_completed)

    def observe_run(
        self, report: RunReport, problems: Mapping[str, Problem], served: Mapping[Endpoint, Served]
    ) -> None:
        old = self._state.snapshot
        findings, scanned, completed = old.findings, old.scanned, old.last_completed
        if report.complete:
            findings = Tally((row.finding.code, row.finding.status) for row in report.rows)
            scanned = Tally(result.segment for result in report.results)
            completed = report.finished_at.timestamp()
        self._state.snapshot = _Snapshot(problems, served, findings, scanned, completed)
        self.duration.set(report.duration_s)
        self.runs.labels("complete" if report.complete else "incomplete").inc()

    def outcome(self, receiver: str, outcome: str, count: int = 1) -> None:
        """An attempt's outcome; ``count`` > 1 when a 410 gives up several deliveries at once."""
        self.deliveries.labels(receiver, outcome).inc()
        if outcome in ("dead", "gone"):
            self.dead.labels(receiver).inc(count)


def serve_metrics(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> WSGIServer:
    """``/metrics`` on ``addr:port`` in a daemon thread; stop it with ``shutdown()``."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


def write_textfile(registry: CollectorRegistry, path: str | Path) -> None:
    """For node_exporter's textfile collector; written to a temporary file, then renamed."""
    write_to_textfile(str(path), registry)
