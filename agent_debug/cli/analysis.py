"""`agent-debug tree` and `agent-debug critical-path`: what happened in one run, and what made it slow."""

from __future__ import annotations

from typing import Annotated

import typer

from agent_debug.cli.common import DbOption, FormatOption, FromOption, JsonOption, inputs, show
from agent_debug.cli.render import parse_duration

TraceArg = Annotated[str | None, typer.Argument(help="Trace id or a unique prefix of one (optional when the source "
                                                      "holds a single trace).", show_default=False)]


def tree(
    trace: TraceArg = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only error spans and the spans leading to them.")] = False,
    depth: Annotated[int | None, typer.Option("--depth", min=0, help="Collapse below this depth.")] = None,
    min_duration: Annotated[str | None, typer.Option("--min-duration",
                                                     help="Hide spans shorter than this (e.g. 5ms).")] = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """The causal tree of a run with a latency waterfall; the critical path is highlighted."""
    from agent_debug.analysis.commands import tree_of
    from agent_debug.cli.views import render_tree

    min_ns = parse_duration(min_duration) if min_duration else 0
    result = tree_of(inputs(db, from_, format), trace, errors_only=errors, max_depth=depth, min_duration_ns=min_ns,
                     records=json)
    show(result, json, lambda out: render_tree(out, result))


def critical_path(
    trace: TraceArg = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """The chain of span segments that determines end-to-end latency, the bottleneck, per-agent hotspots, and
    sequential steps that could have run in parallel (latency stacking)."""
    from agent_debug.analysis.commands import critical_path_of
    from agent_debug.cli.views import render_critical_path

    report = critical_path_of(inputs(db, from_, format), trace)
    show(report, json, lambda out: render_critical_path(out, report))


def register(app: typer.Typer) -> None:
    app.command("tree")(tree)
    app.command("critical-path")(critical_path)
