"""`agent-debug mark` (a human verdict on runs) and `agent-debug patterns` (what failing runs have in common)."""

from __future__ import annotations

from typing import Annotated

import typer

from agent_debug.cli.common import (
    DbOption,
    FormatOption,
    FromOption,
    JsonOption,
    VerdictsOption,
    db_path,
    inputs,
    show,
)
from agent_debug.errors import UsageError


def mark(
    traces: Annotated[list[str], typer.Argument(help="Trace ids or unique prefixes.", show_default=False)],
    failed: Annotated[bool, typer.Option("--failed", help="The runs failed.")] = False,
    passed: Annotated[bool, typer.Option("--passed", help="The runs passed.")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (shown by why, bucket, traces).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Forget the verdicts of these runs instead.")] = False,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Record your verdict on runs (the store keeps it; trace files are never changed): bucket, why, eval, the
    clusters and traces then treat it as the runs' outcome. For `--from` files, write a verdict file instead."""
    from agent_debug.cli.views import render_mark
    from agent_debug.store.api import mark as mark_runs

    if clear == (failed or passed) or (failed and passed):
        raise UsageError("give exactly one of --failed, --passed or --clear")
    result = mark_runs(db_path(db), traces, None if clear else passed, reason)
    show(result, json, lambda out: render_mark(out, result))


def patterns(
    by: Annotated[list[str] | None, typer.Option("--by", help="Dimensions: modality, agent, model, tool, route "
                                                 "(default: all).")] = None,
    min_runs: Annotated[int, typer.Option("--min-runs", min=1, help="Leave out values seen in fewer runs.")] = 3,
    workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    verdicts: VerdictsOption = None,
    json: JsonOption = False,
) -> None:
    """Failure rate by modality, agent, model, tool and route, with counts, 95% Wilson intervals and a test of
    independence (Fisher's exact test), the strongest associations first."""
    from agent_debug.analysis.commands import patterns_of
    from agent_debug.analysis.patterns import DIMENSIONS
    from agent_debug.cli.views import render_patterns
    from agent_debug.store.query import TraceFilter

    report = patterns_of(inputs(db, from_, format, verdicts), TraceFilter(workflow=workflow), tuple(by or DIMENSIONS),
                         min_runs=min_runs)
    show(report, json, lambda out: render_patterns(out, report))


def register(app: typer.Typer) -> None:
    app.command("mark")(mark)
    app.command("patterns")(patterns)
