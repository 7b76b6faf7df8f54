"""``dns-cert-checker report``: the open problems, served certificates or deliveries, from the state.

Reads the state file through a read-only SQLite connection: it works while a reporter owns the
file, and never changes it.
"""

from __future__ import annotations

import csv
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal, TextIO

import msgspec

from services.reporter.alerts.problems import endpoint_text
from services.reporter.alerts.state import open_read_only, read_inventory, read_problems
from services.reporter.outputs import spreadsheet_rows
from shared.config import Config, ConfigError

Format = Literal["table", "json", "csv"]
By = Literal["endpoint", "certificate"]
Record = dict[str, object]

_TABLE_LIMIT = 50  # rows per section in a table; json and csv list everything
_MESSAGE_WIDTH = 70


def _iso(seconds: object) -> str:
    if not isinstance(seconds, float | int):
        return ""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _urgency(record: Record) -> tuple[int, float, str, str]:
    not_after = record["not_after_ts"]
    return (
        0 if record["severity"] == "error" else 1,
        not_after if isinstance(not_after, float) else float("inf"),
        str(record["fqdn"]),
        str(record["endpoint"]),
    )


def problem_records(db: sqlite3.Connection) -> list[Record]:
    """Open problems, most urgent first: errors, then the soonest expiry."""
    records: list[Record] = []
    for p in read_problems(db).values():
        cert = p.certificate
        records.append(
            {
                "severity": p.severity,
                "code": p.code,
                "endpoint": p.endpoint(),
                "ip_address": p.ip_address,
                "port": p.port,
                "fqdn": p.fqdn,
                "zone": p.zone,
                "segment": p.segment,
                "message": p.message,
                "not_after": _iso(cert.not_after.timestamp()) if cert else "",
                "not_after_ts": cert.not_after.timestamp() if cert else None,
                "sha256": cert.sha256 if cert else "",
                "first_seen": _iso(p.first_seen),
                "last_seen": _iso(p.last_seen),
                "id": p.id,
            }
        )
    records.sort(key=_urgency)
    for record in records:
        del record["not_after_ts"]
    return records


def certificate_records(db: sqlite3.Connection) -> list[Record]:
    """Every served certificate with the endpoints serving it and their open problems' codes."""
    codes: dict[tuple[str, int | None, str], list[str]] = {}
    severities: dict[str, int] = {}
    for p in read_problems(db).values():
        codes.setdefault((p.ip_address, p.port, p.fqdn), []).append(p.code)
        if p.certificate and p.severity == "error":
            severities[p.certificate.sha256] = severities.get(p.certificate.sha256, 0) + 1
    by_cert: dict[str, Record] = {}
    for s in sorted(read_inventory(db).values(), key=lambda s: (s.fqdn, s.ip_address, s.port)):
        record = by_cert.setdefault(
            s.sha256,
            {"sha256": s.sha256, "subject": s.subject, "issuer": s.issuer, "not_after": _iso(s.not_after),
             "not_after_ts": s.not_after, "endpoints": []},
        )  # fmt: skip
        endpoints = record["endpoints"]
        assert isinstance(endpoints, list)
        endpoints.append(
            {"ip_address": s.ip_address, "port": s.port, "fqdn": s.fqdn, "zone": s.zone, "segment": s.segment,
             "problems": sorted(codes.get(s.endpoint, []))}
        )  # fmt: skip
    records = sorted(
        by_cert.values(), key=lambda r: (0 if severities.get(str(r["sha256"])) else 1, r["not_after_ts"], r["sha256"])
    )
    for record in records:
        del record["not_after_ts"]
    return records


def delivery_records(db: sqlite3.Connection) -> tuple[list[Record], list[Record]]:
    """(per-receiver summary, every pending and dead delivery oldest first)."""
    rows = db.execute(
        "SELECT receiver, state, id, what, created_at, attempts, last_attempt_at, last_error FROM outbox"
        " ORDER BY receiver, state DESC, seq"
    ).fetchall()
    deliveries: list[Record] = [
        {"receiver": r[0], "state": r[1], "id": r[2], "what": r[3], "created_at": _iso(r[4]), "attempts": r[5],
         "last_attempt_at": _iso(r[6]), "last_error": r[7] or ""}
        for r in rows
    ]  # fmt: skip
    disabled = {r[0]: (r[1], r[2]) for r in db.execute("SELECT receiver, disabled_at, reason FROM disabled_receivers")}
    names = sorted({str(d["receiver"]) for d in deliveries} | set(disabled))
    summary: list[Record] = []
    for name in names:
        mine = [d for d in deliveries if d["receiver"] == name]
        pending = [d for d in mine if d["state"] == "pending"]
        summary.append(
            {
                "receiver": name,
                "pending": len(pending),
                "dead": len(mine) - len(pending),
                "oldest_pending": pending[0]["created_at"] if pending else "",
                "disabled": f"{disabled[name][1]} at {_iso(disabled[name][0])}" if name in disabled else "",
            }
        )
    return summary, deliveries


# -- rendering --------------------------------------------------------------------------------------
def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def _records_table(records: Sequence[Record], columns: Sequence[str], out: TextIO) -> None:
    head = [c.upper().replace("_", " ") for c in columns]
    _table([head, *[[_cut(str(r[c]), _MESSAGE_WIDTH) for c in columns] for r in records]], out)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _more(total: int, out: TextIO) -> None:
    if total > _TABLE_LIMIT:
        out.write(f"… and {total - _TABLE_LIMIT} more (--format json or csv lists all)\n")


def _problems_table(records: list[Record], out: TextIO) -> None:
    if not records:
        out.write("no open problems\n")
        return
    columns = ("severity", "code", "endpoint", "fqdn", "message", "not_after", "first_seen", "last_seen")
    _records_table(records[:_TABLE_LIMIT], columns, out)
    _more(len(records), out)


def _certificates_table(records: list[Record], out: TextIO) -> None:
    if not records:
        out.write("no certificates recorded\n")
        return
    for record in records[:_TABLE_LIMIT]:
        endpoints = record["endpoints"]
        assert isinstance(endpoints, list)
        out.write(f"{record['sha256']}  not after {record['not_after']}  {record['subject']}\n")
        rows = [
            ["   ", endpoint_text(e["ip_address"], e["port"]), e["fqdn"], " ".join(e["problems"]) or "ok"]
            for e in endpoints
        ]
        _table(rows, out)
    _more(len(records), out)


def _deliveries_table(summary: list[Record], deliveries: list[Record], out: TextIO) -> None:
    if not summary:
        out.write("no pending or dead deliveries\n")
        return
    _records_table(summary, ("receiver", "pending", "oldest_pending", "dead", "disabled"), out)
    out.write("\n")
    columns = ("receiver", "state", "id", "what", "created_at", "attempts", "last_error")
    _records_table(deliveries[:_TABLE_LIMIT], columns, out)
    _more(len(deliveries), out)


def _csv(records: list[Record], out: TextIO) -> None:
    if not records:
        return
    # opened in spreadsheets too: no cell may be a formula (names come from whoever edits the zone)
    columns = list(records[0])
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(spreadsheet_rows([_cell(r.get(c)) for c in columns] for r in records))


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _flat_certificates(records: list[Record]) -> list[Record]:
    """One CSV row per (certificate, endpoint)."""
    flat: list[Record] = []
    for record in records:
        endpoints = record["endpoints"]
        assert isinstance(endpoints, list)
        cert = {k: v for k, v in record.items() if k != "endpoints"}
        flat += [{**cert, **e, "problems": " ".join(e["problems"])} for e in endpoints]
    return flat


def report_main(
    config: Config,
    *,
    format: Format = "table",
    by: By = "endpoint",
    deliveries: bool = False,
    out: TextIO | None = None,
) -> int:
    """Print the state (to ``out``, default: the current ``sys.stdout``); exit status 0.
    ConfigError without ``alerts`` or when the state file is missing or unreadable."""
    out = out or sys.stdout
    if config.alerts is None:
        raise ConfigError("report needs alerts.state_file in the config")
    db = open_read_only(config.alerts.state_file)
    try:
        if deliveries:
            summary, rows = delivery_records(db)
            if format == "json":
                out.write(msgspec.json.encode({"receivers": summary, "deliveries": rows}).decode() + "\n")
            elif format == "csv":
                _csv(rows, out)
            else:
                _deliveries_table(summary, rows, out)
        elif by == "certificate":
            certs = certificate_records(db)
            if format == "json":
                out.write(msgspec.json.encode(certs).decode() + "\n")
            elif format == "csv":
                _csv(_flat_certificates(certs), out)
            else:
                _certificates_table(certs, out)
        else:
            problems = problem_records(db)
            if format == "json":
                out.write(msgspec.json.encode(problems).decode() + "\n")
            elif format == "csv":
                _csv(problems, out)
            else:
                _problems_table(problems, out)
    finally:
        db.close()
    return 0
