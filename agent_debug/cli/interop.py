"""`agent-debug export`: write our traces in a format other tools read (OTLP/JSON)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer

from agent_debug.cli.common import DbOption, FromOption, db_path, warn
from agent_debug.errors import OutputError, UsageError

EXPORT_FORMATS = ("otlp",)


def _write(docs: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    n = 0
    for doc in docs:
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
    from agent_debug.analysis.source import open_source, resolve_traces
    from agent_debug.formats.otlp_export import export_otlp

    if format not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {format!r}; known: {', '.join(EXPORT_FORMATS)}")
    src = open_source(db_path(db), from_)
    warn(src.notices)
    ids = resolve_traces(src, traces)  # an unknown or ambiguous prefix fails before anything is written
    docs = (doc for tid in ids for doc in export_otlp(src.load(tid, records=True).records or []))
    if output is None:
        _write(docs, sys.stdout.buffer)
        sys.stdout.flush()
        return
    try:  # the records are in memory or in SQLite: an OSError here is the output's (a full disk, no permission)
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "wb") as fh:
            _write(docs, fh)
    except OSError as exc:
        raise OutputError.from_os(output, exc) from None


def register(app: typer.Typer) -> None:
    app.command("export")(export)
