"""`agent-debug validate`: does this file follow the trace format, and what does it hold?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent_debug.cli.common import FormatOption, JsonOption, fail, show, stderr_console


def validate(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or directories (recursively).")],
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """Read trace files and report files, records, traces and rejects by reason. Exits 1 if anything was
    rejected, cut or damaged, 3 if nothing could be read."""
    from agent_debug.formats.validate import validate_paths

    result = validate_paths(paths, format=format)
    from agent_debug.cli.views import render_validation

    show(result, json, lambda out: render_validation(out, stderr_console(), result))
    if result.records == 0 and (result.rejected or result.damaged or result.files == 0):
        where = ", ".join(map(str, paths))
        fail(f"no trace files found in {where}" if result.files == 0 else f"nothing could be read from {where}", 3)
    if not result.complete:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
