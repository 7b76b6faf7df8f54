"""A finished run: its rows in the original's CSV shape, and its summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from shared.logging import escape_controls
from shared.messages import CertificateFacts, Finding, ScanResult

CSV_COLUMNS = ("ip_address", "port", "fqdn", "status", "message")


@dataclass(frozen=True)
class Row:
    """One CSV row (and one JSONL line, which also carries code, zone and run)."""

    zone: str
    ip_address: str
    port: int | None
    fqdn: str
    finding: Finding
    certificate: CertificateFacts | None = None  # what the endpoint served, even when invalid
    segment: str = ""  # the segment that scanned the endpoint; empty for name and zone findings

    def csv(self) -> tuple[str, str, str, str, str]:
        port = "" if self.port is None else str(self.port)
        return (self.ip_address, port, self.fqdn, self.finding.status, self.finding.message)

    def endpoint(self) -> str:
        """``ip:port`` (``[v6]:port``); empty for findings about a name rather than an endpoint."""
        if not self.ip_address:
            return ""
        host = f"[{self.ip_address}]" if ":" in self.ip_address else self.ip_address
        return host if self.port is None else f"{host}:{self.port}"

    def log_line(self) -> str:
        """The original's log format: ``ip:port - fqdn - message`` (name findings: ``fqdn - message``).

        One line whatever the name or the certificate says: control characters are escaped.
        """
        prefix = f"{self.endpoint()} - " if self.ip_address else ""
        return escape_controls(f"{prefix}{self.fqdn} - {self.finding.message}")


@dataclass
class RunReport:
    run_id: str
    # When the run started as the reporter saw it: its RunStarted's time, but never later than the
    # reporter received that message (a run cannot start in the future). Orders ``latest.csv``.
    started_at: datetime | None
    finished_at: datetime
    complete: bool
    zones: list[str]
    rows: list[Row]
    results: list[ScanResult]
    failed_zones: list[str] = field(default_factory=list)
    missing_jobs: int = 0
    missing_zones: list[str] = field(default_factory=list)
    # zone discovery (from RunStarted): zones new since the last run, and zones no source has any more
    new_zones: list[str] = field(default_factory=list)
    removed_zones: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    def counts_by_code(self) -> Counter[str]:
        return Counter(row.finding.code for row in self.rows)

    def counts_by_status(self) -> Counter[str]:
        return Counter(row.finding.status for row in self.rows)

    def summary_line(self) -> str:
        status = self.counts_by_status()
        state = (
            "complete"
            if self.complete
            else f"INCOMPLETE ({self.missing_jobs} jobs, {len(self.missing_zones)} zones missing)"
        )
        failed = f", failed zones: {', '.join(self.failed_zones)}" if self.failed_zones else ""
        changes = _listed("new zones", self.new_zones) + _listed("removed zones", self.removed_zones)
        return (
            f"run {self.run_id} {state}: {len(self.zones)} zones, {len(self.results)} endpoints scanned, "
            f"{status.get('error', 0)} errors, {status.get('warning', 0)} warnings in {self.duration_s:.1f}s"
            f"{failed}{changes}"
        )


ZONES_LISTED = 10  # names of new/removed zones in a summary line; beyond that, a count


def _listed(what: str, zones: list[str]) -> str:
    """``; new zones: a.test, b.test`` (nothing when there are none)."""
    if not zones:
        return ""
    shown = ", ".join(zones[:ZONES_LISTED])
    more = f" and {len(zones) - ZONES_LISTED} more" if len(zones) > ZONES_LISTED else ""
    return f"; {what}: {shown}{more}"
