"""One fully populated example of every wire message: what the golden files under golden/ hold."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.messages import (
    Batch,
    CertificateFacts,
    Envelope,
    Finding,
    LocatedFinding,
    PlannedJob,
    RunStarted,
    ScanJob,
    ScanResult,
    ZonePlan,
    ZoneRecord,
    ZoneSnapshot,
)

RUN = "20261201T101500Z-0a1b2c3d"
AT = datetime(2026, 12, 1, 10, 15, 0, tzinfo=UTC)
FACTS = CertificateFacts(
    subject="CN=www.example.test",
    issuer="CN=Example CA",
    not_before=datetime(2026, 1, 1, tzinfo=UTC),
    not_after=datetime(2027, 1, 1, tzinfo=UTC),
    sha256="ab" * 32,
    san=["www.example.test", "192.0.2.10"],
    chain_length=2,
)
LOOP = LocatedFinding(
    fqdn="a.example.test",
    finding=Finding(code="CNAME_LOOP", status="error", message="CNAME loop: a -> b -> a"),
)

EXAMPLES: dict[str, Envelope] = {
    "run_started.v1": RunStarted(run_id=RUN, started_at=AT, zones=["example.test", "other.test"], source="config"),
    "zone_snapshot.v1": ZoneSnapshot(
        run_id=RUN,
        zone="example.test",
        records=[ZoneRecord("A", "www", "192.0.2.10", 300), ZoneRecord("CNAME", "*", "@", None)],
        serial=2026120101,
    ),
    "scan_job.v1": ScanJob(
        job_id="0123456789abcdef01234567",
        run_id=RUN,
        zone="example.test",
        ip_address="192.0.2.10",
        port=443,
        fqdn="www.example.test",
        sni="www.example.test",
        segment="dmz",
    ),
    "zone_plan.v1": ZonePlan(
        run_id=RUN,
        zone="example.test",
        jobs=[PlannedJob("0123456789abcdef01234567", "192.0.2.10", 443, "www.example.test")],
        findings=[LOOP],
        serial=2026120101,
        records=2,
    ),
    "scan_result.v1": ScanResult(
        job_id="0123456789abcdef01234567",
        run_id=RUN,
        zone="example.test",
        ip_address="192.0.2.10",
        port=443,
        fqdn="www.example.test",
        findings=[Finding(code="CERT_EXPIRED", status="error", message="certificate has expired")],
        scanned_at=AT,
        duration_s=0.25,
        certificate=FACTS,
        segment="dmz",
    ),
}
# A scanner's results and a resolver's jobs travel in batches (shared.batches)
EXAMPLES["batch.v1"] = Batch(messages=[EXAMPLES["scan_result.v1"], EXAMPLES["scan_job.v1"]])  # type: ignore[list-item]
