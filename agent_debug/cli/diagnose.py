"""`agent-debug bucket`, `agent-debug why`, `agent-debug session`: which subsystem to blame, and why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from agent_debug.cli.common import (
    DbOption,
    FormatOption,
    FromOption,
    JsonOption,
    db_path,
    print_result,
    stdout_console,
    warn,
)
from agent_debug.cli.render import parse_since

RulesOption = Annotated[Path | None, typer.Option("--rules", help="A TOML file merged over the default rules.")]


def bucket(
    workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only runs started since: 2h, 7d, or ISO time.")] = None,
    rules: RulesOption = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """Give every failed run one bucket and a root cause; a table per bucket and clusters ranked by impact."""
    from agent_debug.analysis.buckets import bucket_runs, load_rules
    from agent_debug.analysis.source import open_source
    from agent_debug.store.query import TraceFilter

    flt = TraceFilter(workflow=workflow, since_ns=parse_since(since) if since else None)
    chosen = load_rules(rules)
    src = open_source(db_path(db), from_, format)
    warn(src.notices)
    report = bucket_runs(src, flt, chosen)
    if json:
        print_result(report.as_dict(), src.notices)
        return
    render_buckets(report)


def render_buckets(report: Any, *, runs_shown: int = 20) -> None:
    from rich.table import Table

    out = stdout_console()
    total = len(report.runs)
    out.print(f"[bold]{total} failed runs[/] bucketed ({report.passing} passing runs not bucketed)", highlight=False)
    t = Table("bucket", "runs", "share", "example run", "first thing to check", title="failure buckets")
    for b in report.buckets:
        if b["count"] or b["bucket"] != "unclassified":
            t.add_row(b["bucket"], str(b["count"]), f"{b['share']:.0%}", (b["example"] or "-")[:12], b["next_action"])
    out.print(t)
    if report.clusters:
        c = Table("#", "runs", "cluster", "representative", "last seen", title="clusters (by impact)")
        for n, cl in enumerate(report.clusters[:10], 1):
            seen = datetime.fromtimestamp(cl["last_seen_ns"] / 1e9, UTC).strftime("%m-%d %H:%M:%S")
            c.add_row(str(n), str(cl["count"]), cl["label"], cl["representative"][:12], seen)
        out.print(c)
    if report.runs and runs_shown:
        r = Table("run", "bucket", "root cause", "evidence", title="runs")
        for d in report.runs[:runs_shown]:
            rc = d.root_cause
            r.add_row(d.trace_id[:12], d.bucket, f"{rc['agent_name']} {rc['name']}", d.evidence[0][:70])
        out.print(r)


def why(
    trace: Annotated[str | None, typer.Argument(help="Trace id or a unique prefix of one (optional when the "
                                                     "source holds a single trace).", show_default=False)] = None,
    rules: RulesOption = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """One run's story: root cause -> hops -> visible failure, with the evidence."""
    from agent_debug.analysis.buckets import diagnose, load_rules
    from agent_debug.analysis.source import open_source

    from agent_debug.cli.analysis import resolve_or_only

    chosen = load_rules(rules)
    src = open_source(db_path(db), from_, format)
    warn(src.notices)
    tid = resolve_or_only(src, trace)
    summary = src.summary(tid)
    d = diagnose(src.load(tid, records=True), summary, chosen)
    if json:
        print_result({"trace_id": tid, "status": summary.status, "diagnosis": d.as_dict() if d else None},
                     src.notices)
        return
    from rich.panel import Panel
    from rich.text import Text

    out = stdout_console()
    if d is None:
        out.print(f"run {tid} did not fail (status {summary.status}): nothing to explain", highlight=False)
        return
    ts = src.load(tid, records=True)
    by_id = {sid: i for i, sid in enumerate(ts.span_id)}
    body = Text()
    body.append(f"{summary.workflow or '-'}  status {summary.status}\n", style="dim")
    body.append("bucket: ", style="bold")
    body.append(f"{d.bucket}\n", style="bold red")
    for n, sid in enumerate(d.chain):
        i = by_id[sid]
        mark = "root cause" if n == 0 else ("visible failure" if n == len(d.chain) - 1 else "hop")
        style = "bold red" if n == 0 else ("bold" if n == len(d.chain) - 1 else "")
        body.append(f"{'  ' if n else ''}{'-> ' if n else ''}{ts.agent_name[i]} {ts.event_type[i]} {ts.name[i]}",
                    style=style)
        body.append(f"  [{mark}]\n", style="dim")
    body.append("evidence:\n", style="bold")
    for e in d.evidence:
        body.append(f"  - {e}\n")
    if len(d.suspects) > 1:
        body.append("other suspects:\n", style="bold")
        for s in d.suspects[1:6]:
            body.append(f"  - {s['agent_name']} {s['name']}: {s['reason']} ({s['bucket']})\n")
    body.append("next: ", style="bold")
    body.append(d.next_action)
    out.print(Panel(body, title=f"why {tid}", expand=False))


def session(
    session_id: Annotated[str, typer.Argument(help="The session id shared by the runs (turns).")],
    rules: RulesOption = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """The turns of one conversation with each one's outcome and bucket, and the earliest turn where things
    went wrong."""
    from agent_debug.analysis.buckets import load_rules
    from agent_debug.analysis.sessions import analyze_session
    from agent_debug.analysis.source import open_source

    chosen = load_rules(rules)
    src = open_source(db_path(db), from_, format)
    warn(src.notices)
    result = analyze_session(src, session_id, chosen)
    if json:
        print_result(result, src.notices)
        return
    from rich.table import Table

    out = stdout_console()
    t = Table("turn", "run", "status", "bucket", "anomalies", title=f"session {session_id}")
    for turn in result["turns"]:
        t.add_row(str(turn["turn"]), turn["trace_id"][:12], turn["status"], turn["bucket"] or "-",
                  "; ".join(turn["anomalies"][:2]) or "-")
    out.print(t)
    first = result["first_bad_turn"]
    if first is None:
        out.print("no turn went wrong")
    else:
        out.print(f"[bold red]things first went wrong in turn {first['turn']}[/] ({first['trace_id'][:12]}): "
                  f"{first['reason']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bucket")(bucket)
    app.command("why")(why)
    app.command("session")(session)
