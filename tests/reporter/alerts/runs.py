"""Finished runs for the alert tests: RunReports built the way the reporter builds them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.reporter.report import Row, RunReport
from shared import findings
from shared.messages import CertificateFacts, Finding, ScanResult

T0 = datetime(2026, 11, 29, 3, 40, tzinfo=UTC)


class Clock:
    """The injected clock: moves only when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def certificate(fqdn: str, serial: int = 1, *, days_left: float = 300, now: datetime = T0) -> CertificateFacts:
    """A leaf for ``fqdn``; another ``serial`` is another certificate (another fingerprint)."""
    return CertificateFacts(
        subject=f"CN={fqdn}",
        issuer="CN=Test CA",
        not_before=now - timedelta(days=30),
        not_after=now + timedelta(days=days_left),
        sha256=f"{serial:02x}" * 32,
        san=[fqdn],
    )


@dataclass(frozen=True)
class Endpoint:
    """One scanned endpoint of a run: what it served and what was wrong with it."""

    fqdn: str
    ip: str = "127.0.0.1"
    port: int = 443
    found: Sequence[Finding] = ()
    cert: CertificateFacts | None = None
    segment: str = "default"

    @property
    def zone(self) -> str:
        return self.fqdn.split(".", 1)[1]


def expired(fqdn: str, ip: str = "127.0.0.1", segment: str = "default") -> Endpoint:
    cert = certificate(fqdn, days_left=-2)
    return Endpoint(fqdn, ip, found=[findings.error(findings.Code.CERT_EXPIRED)], cert=cert, segment=segment)


def healthy(fqdn: str, ip: str = "127.0.0.1", serial: int = 2) -> Endpoint:
    return Endpoint(fqdn, ip, cert=certificate(fqdn, serial))


def report(
    run_id: str,
    endpoints: Iterable[Endpoint],
    *,
    zones: Sequence[str] | None = None,
    name_rows: Iterable[Row] = (),
    complete: bool = True,
    failed_zones: Sequence[str] = (),
    finished_at: datetime = T0,
) -> RunReport:
    """A finished run: one ScanResult per endpoint, one row per finding (as ``build_report`` makes them)."""
    endpoints = list(endpoints)
    results = [
        ScanResult(
            job_id=f"{run_id}-{i}", run_id=run_id, zone=e.zone, ip_address=e.ip, port=e.port, fqdn=e.fqdn,
            findings=list(e.found), scanned_at=finished_at, certificate=e.cert, segment=e.segment,
        )
        for i, e in enumerate(endpoints)
    ]  # fmt: skip
    rows = [Row(r.zone, r.ip_address, r.port, r.fqdn, f, r.certificate, r.segment) for r in results for f in r.findings]
    rows += list(name_rows)
    all_zones = list(zones) if zones is not None else sorted({e.zone for e in endpoints} | set(failed_zones))
    return RunReport(
        run_id=run_id,
        started_at=finished_at - timedelta(minutes=5),
        finished_at=finished_at,
        complete=complete,
        zones=all_zones,
        rows=rows,
        results=results,
        failed_zones=list(failed_zones),
    )


def zone_failure(zone: str) -> Row:
    return Row(zone, "", None, zone, findings.error(findings.Code.ZONE_TRANSFER_REFUSED, "zone transfer refused"))


def dangling(fqdn: str) -> Row:
    zone = fqdn.split(".", 1)[1]
    return Row(
        zone, "", None, fqdn, findings.error(findings.Code.DANGLING_CNAME, f"{fqdn}: CNAME target has no address")
    )
