"""Compare a finished run with the open problems: opened, changed, reminder, resolved. Pure.

Only a run that covered a problem can resolve it (DESIGN.md, "Alerting"):

- an incomplete run resolves nothing, nor does anything in a zone that failed to transfer;
- an endpoint problem (certificate, connection) is covered when the endpoint was scanned, or when
  this complete run collected its zone cleanly and resolved its name without error and the
  endpoint is no longer among its jobs: the DNS no longer points there;
- a name or zone problem is covered when its zone was collected cleanly in this complete run;
- every problem of a zone that zone discovery says is gone (``RunStarted.removed_zones``: no
  catalog or API lists it any more) is resolved with the reason "zone removed", complete run or
  not: the catalog said so, no scan could.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import msgspec

from services.reporter.alerts.problems import Endpoint, Problem, category, problems_of
from services.reporter.report import RunReport
from shared import findings

EventKind = Literal["opened", "changed", "reminder", "resolved"]
ZONE_REMOVED = "zone removed"  # why a problem of a zone discovery no longer finds was resolved


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    problem: Problem  # as it is now (resolved: as it was last seen)
    previous: Problem | None = None  # changed: as it was before
    reason: str = ""  # resolved: why, when not simply "no longer found" (ZONE_REMOVED)


@dataclass(frozen=True)
class Coverage:
    complete: bool
    scanned: frozenset[Endpoint]
    clean_zones: frozenset[str]  # collected and planned with no collection finding
    unresolved_names: frozenset[str]  # names with a resolution finding in this run
    removed_zones: frozenset[str] = frozenset()  # zones discovery no longer finds: all covered

    @classmethod
    def of(cls, report: RunReport) -> Coverage:
        troubled = {r.zone for r in report.rows if category(r.finding.code) is findings.Category.COLLECTION}
        missing = set(report.failed_zones) | set(report.missing_zones) | troubled
        return cls(
            complete=report.complete,
            scanned=frozenset((r.ip_address, r.port, r.fqdn) for r in report.results),
            clean_zones=frozenset(z for z in report.zones if z not in missing),
            unresolved_names=frozenset(
                r.fqdn for r in report.rows if category(r.finding.code) is findings.Category.RESOLUTION
            ),
            removed_zones=frozenset(report.removed_zones),
        )

    def covers(self, problem: Problem) -> bool:
        if problem.zone in self.removed_zones:
            return True
        if not self.complete:
            return False
        kind = category(problem.code)
        endpoint_level = kind in (findings.Category.CERTIFICATE, findings.Category.CONNECTION) or (
            kind is None and problem.port is not None
        )
        if endpoint_level and problem.port is not None:
            return self.covers_endpoint(problem.zone, (problem.ip_address, problem.port, problem.fqdn))
        return problem.zone in self.clean_zones

    def covers_endpoint(self, zone: str, endpoint: Endpoint) -> bool:
        """Scanned in this complete run, or gone from the DNS of a zone it collected cleanly, or in a
        zone that is gone."""
        if zone in self.removed_zones:
            return True
        if not self.complete:
            return False
        return endpoint in self.scanned or (zone in self.clean_zones and endpoint[2] not in self.unresolved_names)


@dataclass(frozen=True)
class Comparison:
    coverage: Coverage
    events: list[Event]
    open: dict[str, Problem]  # every problem still open after the run
    rewritten: list[Problem]  # open problems whose stored row changes beyond last_seen
    seen: list[Problem]  # open problems seen again unchanged (only last_seen and run move)
    resolved: list[Problem]

    def count(self, kind: EventKind) -> int:
        return sum(1 for e in self.events if e.kind == kind)


def _differs(old: Problem, new: Problem) -> bool:
    return old.severity != new.severity or old.message != new.message or old.sha256 != new.sha256


def compare(report: RunReport, open_problems: Mapping[str, Problem], now: float, renotify_after: float) -> Comparison:
    coverage = Coverage.of(report)
    found = problems_of(report.rows, report.run_id, now)
    events: list[Event] = []
    still_open: dict[str, Problem] = {}
    rewritten: list[Problem] = []
    seen: list[Problem] = []
    resolved: list[Problem] = []
    due = now - renotify_after
    for pid, fresh in found.items():
        old = open_problems.get(pid)
        if old is None:
            events.append(Event("opened", fresh))
            problem = fresh
            rewritten.append(problem)
        elif _differs(old, fresh):
            problem = msgspec.structs.replace(fresh, first_seen=old.first_seen)
            events.append(Event("changed", problem, old))
            rewritten.append(problem)
        elif old.last_notified <= due:
            problem = msgspec.structs.replace(old, last_seen=now, last_notified=now, run_id=report.run_id)
            events.append(Event("reminder", problem))
            rewritten.append(problem)
        else:
            problem = msgspec.structs.replace(old, last_seen=now, run_id=report.run_id)
            seen.append(problem)
        still_open[pid] = problem
    for pid, old in open_problems.items():
        if pid in found:
            continue
        if coverage.covers(old):
            events.append(Event("resolved", old, reason=ZONE_REMOVED if old.zone in coverage.removed_zones else ""))
            resolved.append(old)
            continue
        if old.last_notified <= due:  # not seen, not covered: still open, so still reminded
            old = msgspec.structs.replace(old, last_notified=now)
            events.append(Event("reminder", old))
            rewritten.append(old)
        still_open[pid] = old
    return Comparison(
        coverage=coverage, events=events, open=still_open, rewritten=rewritten, seen=seen, resolved=resolved
    )
