"""`agent-debug mark` (a human verdict on runs) and `agent-debug patterns` (what failing runs have in common)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agent_debug.cli.common import DbOption, FormatOption, FromOption, JsonOption, db_path, print_result, stdout_console, warn
from agent_debug.errors import UsageError

VerdictsOption = Annotated[Path | None, typer.Option(
    "--verdicts", help="A verdict file (JSON Lines of {trace_id, passed, reason}) applied to the runs' status.")]


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
    from agent_debug.store import verdicts as vs
    from agent_debug.store.api import open_store

    if clear == (failed or passed) or (failed and passed):
        raise UsageError("give exactly one of --failed, --passed or --clear")
    store = open_store(db_path(db), create=False)
    ids = list(dict.fromkeys(store.resolve(t) for t in traces))
    if clear:
        n = store.clear_verdicts(ids)
        doc: dict[str, Any] = {"cleared": ids, "count": n}
    else:
        marked = [vs.Verdict(t, passed, reason) for t in ids]
        store.put_verdicts(marked)
        doc = {"marked": [{"trace_id": v.trace_id, **v.as_dict()} for v in marked], "count": len(marked)}
    if json:
        print_result(doc, [])
        return
    out = stdout_console()
    if clear:
        out.print(f"cleared {doc['count']} verdict(s) of {len(ids)} run(s)", highlight=False)
        return
    word = "passed" if passed else "failed"
    for t in ids:
        out.print(f"marked {t[:12]} {word}" + (f": {reason}" if reason else ""), highlight=False)


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
    from agent_debug.analysis.patterns import DIMENSIONS, failure_patterns
    from agent_debug.analysis.source import open_source
    from agent_debug.store.query import TraceFilter

    dims = tuple(by or DIMENSIONS)
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise UsageError(f"unknown dimension {unknown[0]!r}; known: {', '.join(DIMENSIONS)}")
    src = open_source(db_path(db), from_, format, verdicts)
    report = failure_patterns(src, TraceFilter(workflow=workflow), dims, min_runs=min_runs)
    warn(src.notices)
    if json:
        print_result(report, src.notices)
        return
    render_patterns(report)


def render_patterns(report: dict[str, Any], shown: int = 25) -> None:
    from rich.table import Table

    out = stdout_console()
    out.print(f"[bold]{report['runs']} runs[/], {report['failed']} failed (overall failure rate "
              f"{report['failure_rate']:.0%})", highlight=False)
    t = Table("dimension", "value", "runs", "failed", "failure rate (95% CI)", "vs the rest", "p (Fisher)",
              title="failure patterns, strongest association first")
    for row in report["patterns"][:shown]:
        lo, hi = row["ci95"]
        t.add_row(row["dimension"], str(row["value"])[:40], str(row["runs"]), str(row["failed"]),
                  f"{row['failure_rate']:.0%} ({lo:.0%}-{hi:.0%})", f"{row['rest_failure_rate']:.0%}",
                  f"{row['p_value']:.3g}" + (" *" if row["significant"] else ""))
    out.print(t)
    out.print("* p < 0.05 after Holm's correction across the rows tested", style="dim", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("mark")(mark)
    app.command("patterns")(patterns)
