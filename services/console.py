"""What a person sees on a terminal: a progress bar while scanning, then a summary of findings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.reporter.report import RunReport
from shared.logging import escape_controls

MAX_ROWS_SHOWN = 100


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """Yields an ``update(done, total)`` callback, or None when disabled."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("scan", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def _text(cell: str) -> str:
    """Text from the network (names, certificate subjects, server messages) as plain text on one
    line: never Rich markup, never a control character that breaks a table row or drives the terminal."""
    return escape(escape_controls(cell))


def print_report(report: RunReport, csv_path: str | None = None, console: Console | None = None) -> None:
    console = console or Console()
    if report.rows:
        table = Table(title=f"Findings of run {report.run_id}", show_lines=False)
        for column in ("status", "code", "endpoint", "fqdn", "message"):
            table.add_column(column, overflow="fold")
        for row in report.rows[:MAX_ROWS_SHOWN]:
            style = "red" if row.finding.status == "error" else "yellow"
            cells = (row.finding.status, row.finding.code, row.endpoint(), row.fqdn, row.finding.message)
            table.add_row(*(_text(cell) for cell in cells), style=style)
        console.print(table)
        if len(report.rows) > MAX_ROWS_SHOWN:
            console.print(f"... and {len(report.rows) - MAX_ROWS_SHOWN} more rows (see the CSV)")
        by_code = Table(title="Findings by code")
        by_code.add_column("code")
        by_code.add_column("count", justify="right")
        for code, count in sorted(report.counts_by_code().items()):
            by_code.add_row(_text(code), str(count))
        console.print(by_code)
    else:
        console.print("No findings: every endpoint is healthy.")
    console.print(_text(report.summary_line()))  # it names the failed zones
    if csv_path:
        console.print(f"CSV written to {_text(csv_path)}")
