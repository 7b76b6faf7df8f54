"""Writing reports: CSV (the original's five columns) and JSONL, always atomically.

A CSV is opened in spreadsheets, and the names in it come from zones anyone may edit: every cell
goes through ``spreadsheet_safe``, so none is ever evaluated as a formula. JSONL is for programs
and keeps every value exactly as it came.
"""

from __future__ import annotations

import csv
import io
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from services.reporter.report import CSV_COLUMNS, RunReport
from shared.files import write_atomically
from shared.messages import CertificateFacts, valid_run_id


class ReportSink(ABC):
    """Where finished runs' reports go."""

    @abstractmethod
    def write(self, report: RunReport) -> None:
        """Write the report whole, atomically; raise if it cannot be written (the run stays open)."""

    def written(self, run_id: str) -> bool:
        """Whether this run's report exists already (a reporter restarted after writing it)."""
        return False


# What makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula or as a
# command: the OWASP list (``= + - @``, tab, carriage return) and the full-width forms of the four
# signs, which some locales' spreadsheets take for them.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_safe(cell: str) -> str:
    """``cell`` as a spreadsheet shows it but never evaluates it: prefixed with ``'`` when it starts
    like a formula (``=hyperlink(...)``, ``+cmd``, ``@SUM``), unchanged otherwise. The one rule for
    every CSV we write; none of the original's values (addresses, ports, names, statuses, messages)
    starts that way, so an ordinary report is byte-for-byte what it always was."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def spreadsheet_rows(rows: Iterable[Iterable[str]]) -> Iterable[list[str]]:
    """Every cell of ``rows`` through ``spreadsheet_safe``: give this to ``csv.writer.writerows``."""
    return ([spreadsheet_safe(cell) for cell in row] for row in rows)


def render_csv(report: RunReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(spreadsheet_rows([CSV_COLUMNS, *(row.csv() for row in report.rows)]))
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


class CsvFileSink(ReportSink):
    """``-o out.csv`` (and optionally ``--jsonl out.jsonl``): one file for all zones."""

    def __init__(self, csv_path: Path | None, jsonl_path: Path | None = None) -> None:
        self.csv_path = csv_path
        self.jsonl_path = jsonl_path

    def write(self, report: RunReport) -> None:
        if self.csv_path is not None:
            write_atomically(self.csv_path, render_csv(report).encode())
        if self.jsonl_path is not None:
            write_atomically(self.jsonl_path, render_jsonl(report))


class _Latest(msgspec.Struct, frozen=True):
    """Which run ``latest.csv`` holds, and when that run started."""

    run_id: str
    started_at: datetime

    def key(self) -> tuple[datetime, str]:
        return (self.started_at, self.run_id)


class DirectorySink(ReportSink):
    """The reporter service: ``DIR/<run-id>.jsonl``, ``DIR/latest.csv``, then ``DIR/<run-id>.csv``.

    ``latest.csv`` holds the report of the run that started last among the runs written so far
    (ties: the greater run id), so an older run written late (e.g. incomplete at its deadline) does
    not replace a newer run's report. "Started" is the report's ``started_at``: when this reporter
    saw the run's ``RunStarted``, or what that message said if earlier. It is never the run id, and
    never a time in the future, so no message can pin ``latest.csv``. The marker ``.latest.json``
    remembers it across restarts; the old id-only ``.latest-run`` marker is ignored and removed.
    """

    LATEST_MARKER = ".latest.json"
    LEGACY_MARKER = ".latest-run"  # a run id compared as a string: one from the future pinned latest.csv

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
        started = report.started_at or report.finished_at
        latest = _Latest(report.run_id, started if started.tzinfo else started.replace(tzinfo=UTC))
        current = self._latest()
        if current is None or latest.key() >= current.key():
            write_atomically(self.directory / "latest.csv", text)
            write_atomically(self.directory / self.LATEST_MARKER, msgspec.json.encode(latest))
            (self.directory / self.LEGACY_MARKER).unlink(missing_ok=True)
        # Last, because its existence means "this run is written": whoever waits for it (and
        # ``written`` after a restart) then finds the .jsonl and latest.csv already in place.
        write_atomically(self.directory / f"{report.run_id}.csv", text)

    def _latest(self) -> _Latest | None:
        """What ``latest.csv`` holds; None when nothing (readable) says so: the next report replaces it."""
        try:
            latest = msgspec.json.decode((self.directory / self.LATEST_MARKER).read_bytes(), type=_Latest)
        except (OSError, msgspec.DecodeError):
            return None
        if latest.started_at.tzinfo is None:
            return None
        return latest
