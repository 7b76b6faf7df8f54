"""Writing reports: CSV (the original's five columns) and JSONL, always atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Protocol

import msgspec

from services.reporter.report import CSV_COLUMNS, RunReport
from shared.files import write_atomically
from shared.messages import CertificateFacts, valid_run_id


class ReportSink(Protocol):
    def write(self, report: RunReport) -> None: ...


def render_csv(report: RunReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(row.csv() for row in report.rows)
    return buffer.getvalue()


class _JsonlRow(msgspec.Struct):
    run_id: str
    zone: str
    ip_address: str
    port: int | None
    fqdn: str
    status: str
    severity: str
    code: str
    message: str
    certificate: CertificateFacts | None = None


def render_jsonl(report: RunReport) -> bytes:
    encoder = msgspec.json.Encoder()
    lines = [
        encoder.encode(
            _JsonlRow(
                run_id=report.run_id,
                zone=row.zone,
                ip_address=row.ip_address,
                port=row.port,
                fqdn=row.fqdn,
                status=row.finding.status,
                severity=row.finding.severity,
                code=row.finding.code,
                message=row.finding.message,
                certificate=row.certificate,
            )
        )
        for row in report.rows
    ]
    return b"".join(line + b"\n" for line in lines)


class CsvFileSink:
    """``-o out.csv`` (and optionally ``--jsonl out.jsonl``): one file for all zones."""

    def __init__(self, csv_path: Path | None, jsonl_path: Path | None = None) -> None:
        self.csv_path = csv_path
        self.jsonl_path = jsonl_path

    def write(self, report: RunReport) -> None:
        if self.csv_path is not None:
            write_atomically(self.csv_path, render_csv(report).encode())
        if self.jsonl_path is not None:
            write_atomically(self.jsonl_path, render_jsonl(report))


class DirectorySink:
    """The reporter service: ``DIR/<run-id>.jsonl``, ``DIR/latest.csv``, then ``DIR/<run-id>.csv``.

    ``latest.csv`` only ever moves forward: run ids sort by start time, so an older run written
    late (e.g. incomplete at its deadline) does not replace a newer run's report.
    """

    LATEST_MARKER = ".latest-run"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def written(self, run_id: str) -> bool:
        """Whether this run's report exists (a reporter restarted since it was written)."""
        return valid_run_id(run_id) and (self.directory / f"{run_id}.csv").is_file()

    def write(self, report: RunReport) -> None:
        if not valid_run_id(report.run_id):
            raise ValueError(f"invalid run id {report.run_id[:80]!r}")
        text = render_csv(report).encode()
        write_atomically(self.directory / f"{report.run_id}.jsonl", render_jsonl(report))
        marker = self.directory / self.LATEST_MARKER
        current = marker.read_text().strip() if marker.is_file() else ""
        if report.run_id >= current:
            write_atomically(self.directory / "latest.csv", text)
            write_atomically(marker, report.run_id.encode())
        # Last, because its existence means "this run is written": whoever waits for it (and
        # ``written`` after a restart) then finds the .jsonl and latest.csv already in place.
        write_atomically(self.directory / f"{report.run_id}.csv", text)
