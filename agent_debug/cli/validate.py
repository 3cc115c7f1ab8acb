"""`agent-debug validate`: does this file follow the trace format, and what does it hold?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent_debug.cli.common import (
    FormatOption,
    JsonOption,
    fail,
    print_result,
    stderr_console,
    stdout_console,
    warn,
)


def validate(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or directories (recursively).")],
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """Read trace files and report files, records, traces and rejects by reason. Exits 1 if anything was
    rejected, cut or damaged, 3 if nothing could be read."""
    from agent_debug.formats.validate import validate_paths

    result = validate_paths(paths, format=format)
    warn(result.notices)
    if json:
        print_result(result.as_dict(), result.notices)
    else:
        from rich.table import Table

        err = stderr_console()
        table = Table(show_header=False, box=None)
        for key in ("files", "records", "traces", "failed_runs", "orphans", "rejected"):
            table.add_row(key.replace("_", " "), str(getattr(result, key)))
        stdout_console().print(table)
        for reason, n in sorted(result.rejects_by_reason.items(), key=lambda kv: -kv[1]):
            stdout_console().print(f"  rejected {n}: {reason}", highlight=False)
        for r in result.rejects[:10]:
            err.print(f"  {r['source']} {r['location']}: {r['reason']}", highlight=False, markup=False,
                      soft_wrap=True)
    if result.records == 0 and (result.rejected or result.damaged or result.files == 0):
        where = ", ".join(map(str, paths))
        fail(f"no trace files found in {where}" if result.files == 0 else f"nothing could be read from {where}", 3)
    if not result.complete:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
