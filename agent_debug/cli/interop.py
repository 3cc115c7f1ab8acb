"""`agent-debug export`: write our traces in a format other tools read (OTLP/JSON)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer

from agent_debug.cli.common import DbOption, FromOption, db_path, stderr_console
from agent_debug.errors import UsageError

EXPORT_FORMATS = ("otlp",)


def load_records(from_paths: list[Path] | None, notices: list[str], db: Path | None = None,
                 prefixes: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Where export reads records from: files (`--from`), else the store (only the traces asked for)."""
    from agent_debug.formats.reader import ReadReport, read_paths

    if not from_paths:
        from agent_debug.analysis.source import StoreSource

        src = StoreSource(db_path(db))
        wanted = [p for p in (prefixes or []) if p and p != "all"]
        for summary in src.list():
            if not wanted or any(summary.trace_id.startswith(p) for p in wanted):
                ts = src.load(summary.trace_id, records=True)
                yield from ts.records or []
        return
    report = ReadReport(keep_rejects=False)
    yield from read_paths(from_paths, report)
    notices.extend(report.notices)
    if report.rejected:
        notices.append(f"{report.rejected} records could not be read and were not exported")


def _write(lines: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    n = 0
    for doc in lines:
        out.write(orjson.dumps(doc) + b"\n")
        n += 1
    return n


def export(
    traces: Annotated[list[str], typer.Argument(help="Trace ids or id prefixes to export, or `all`.")],
    format: Annotated[
        str, typer.Option("--format", help="Output format: otlp (OTLP/JSON, one TracesData per line).")
    ] = "otlp",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    from_: FromOption = None,
    db: DbOption = None,
) -> None:
    """Export traces as OTLP/JSON lines (one TracesData per trace) for OpenTelemetry tools."""
    from agent_debug.formats.otlp_export import export_otlp, select_traces

    if format not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {format!r}; known: {', '.join(EXPORT_FORMATS)}")
    notices: list[str] = []
    selected = select_traces(load_records(from_, notices, db, traces), traces)
    docs = export_otlp(selected)
    if output is None:
        _write(docs, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        with open(output, "wb") as fh:
            _write(docs, fh)
    if notices:
        from rich.markup import escape

        err = stderr_console()
        for note in notices:
            err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
