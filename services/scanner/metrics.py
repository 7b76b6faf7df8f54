"""The scanner's own series on ``/metrics`` (``shared.health``): scans by segment and outcome,
their duration, endpoints in flight, and the busiest address's connections.

Labels stay bounded: segments come from the config, outcomes are the four below.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.findings import Category, category
from shared.messages import ScanResult

OUTCOMES = ("ok", "warning", "error", "unreachable")


def outcome_of(result: ScanResult) -> str:
    """``unreachable`` when the endpoint could not be analysed at all, else its worst finding."""
    statuses = set()
    for finding in result.findings:
        if category(finding.code) is Category.CONNECTION:
            return "unreachable"
        statuses.add(finding.status)
    return "error" if "error" in statuses else "warning" if "warning" in statuses else "ok"


class ScanMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.scans = Counter(
            "dcc_scans", "Endpoints scanned, by segment and outcome.", ["segment", "outcome"], registry=r
        )
        self.duration = Histogram(
            "dcc_scan_duration_seconds",
            "Time to scan one endpoint.",
            ["segment"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 60),
            registry=r,
        )
        self.in_flight = Gauge("dcc_endpoints_in_flight", "Endpoints being scanned.", ["segment"], registry=r)
        self._busiest = Gauge(
            "dcc_scanner_busiest_address_connections",
            "Connections open to the address this scanner uses most (max_connections_per_ip bounds it).",
            registry=r,
        )

    def busiest_from(self, read: Callable[[], int]) -> None:
        """Read the busiest address's connections from ``read`` at each scrape."""
        self._busiest.set_function(lambda: float(read()))

    def scanned(self, segment: str, result: ScanResult) -> None:
        self.scans.labels(segment, outcome_of(result)).inc()
        self.duration.labels(segment).observe(result.duration_s)
