"""`agent-debug tree` and `agent-debug critical-path`: what happened in one run, and what made it slow."""

from __future__ import annotations

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
from agent_debug.cli.render import bar, fmt_ns, parse_duration

TraceArg = Annotated[str | None, typer.Argument(help="Trace id or a unique prefix of one (optional when the source "
                                                      "holds a single trace).", show_default=False)]
BAR = 24


def _load(trace: str | None, db: Any, from_: Any, format: str | None, records: bool | str) -> tuple[Any, Any]:
    from agent_debug.analysis.source import open_source

    src = open_source(db_path(db), from_, format)
    warn(src.notices)
    tid = resolve_or_only(src, trace)
    return src, src.load(tid, records=records)


def resolve_or_only(src: Any, trace: str | None) -> str:
    """The trace named by id or prefix; with none named, the source's only trace."""
    from agent_debug.analysis.source import only_trace

    return str(src.resolve(trace)) if trace else only_trace(src)


def tree(
    trace: TraceArg = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only error spans and the spans leading to them.")] = False,
    depth: Annotated[int | None, typer.Option("--depth", min=0, help="Collapse below this depth.")] = None,
    min_duration: Annotated[str | None, typer.Option("--min-duration", help="Hide spans shorter than this (e.g. 5ms).")] = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """The causal tree of a run with a latency waterfall; the critical path is highlighted."""
    from agent_debug.analysis.critical import critical_times
    from agent_debug.analysis.tree import build_tree
    from agent_debug.analysis.treeview import build_view, nested_json

    min_ns = parse_duration(min_duration) if min_duration else 0
    src, ts = _load(trace, db, from_, format, records="lazy" if json else False)
    t = build_tree(ts)
    critical = critical_times(t)
    if json:
        print_result(nested_json(t, critical, errors_only=errors, max_depth=depth, min_duration_ns=min_ns),
                     src.notices)
        return
    view = build_view(t, set(critical), errors_only=errors, max_depth=depth, min_duration_ns=min_ns)
    _render_tree(view, ts)


def _render_tree(view: Any, ts: Any) -> None:
    from rich.text import Text

    out = stdout_console()
    total = max(1, view.end_ns - view.start_ns)
    out.print(Text.assemble(("trace ", "bold"), view.trace_id, f"  {view.spans} spans  {fmt_ns(total)}  ",
                            ("critical path", "bold yellow"), " in yellow"))
    for row in view.rows:
        line = Text("  " * row.depth)
        if row.kind == "span":
            i = row.index
            style = "bold yellow" if row.on_path else ""
            if ts.status[i] == "error":
                style = "bold red"
            line.append(f"{ts.agent_name[i]} ", style="cyan")
            line.append(f"{ts.event_type[i]} ", style="dim")
            line.append(ts.name[i], style=style)
            toks = ts.prompt_tokens[i] + ts.completion_tokens[i]
            meta = f"  {fmt_ns(ts.duration_ns[i])}" + (f"  {toks} tok" if toks else "")
            line.append(meta, style="dim")
            if ts.status[i] == "error":
                line.append("  error", style="red")
        elif row.kind == "fold":
            i = row.index
            line.append(f"{ts.agent_name[i]} {ts.event_type[i]} {ts.name[i]} x{row.count}", style="magenta")
            line.append(f"  {fmt_ns(row.total_ns)} total" + (f"  {row.errors} errors" if row.errors else ""),
                        style="dim")
        else:
            line.append(row.label, style="bold magenta" if row.kind != "more" else "dim")
        if row.kind in ("span", "fold"):
            off, length = bar(row.start_ns, max(0, row.end_ns - row.start_ns), view.start_ns, total, BAR)
            pad = max(1, 72 - len(line.plain))
            line.append(" " * pad + "|" + " " * off)
            line.append("█" * length, style="yellow" if row.on_path else ("red" if row.errors else "blue"))
            line.append(" " * (BAR - off - length) + "|")
        out.print(line, highlight=False, soft_wrap=True)
    for note in view.notes:
        out.print(f"note: {note}", style="yellow", highlight=False)
    if view.orphans:
        out.print(f"note: {view.orphans} spans hang under missing parents", style="yellow", highlight=False)


def critical_path(
    trace: TraceArg = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """The chain of span segments that determines end-to-end latency, the bottleneck, per-agent hotspots, and
    sequential steps that could have run in parallel (latency stacking)."""
    from agent_debug.analysis.critical import analyze

    src, ts = _load(trace, db, from_, format, records="lazy")
    res = analyze(ts)
    if json:
        print_result(res.as_dict(), src.notices)
        return
    from rich.table import Table

    out = stdout_console()
    out.print(f"[bold]trace[/] {res.trace_id}  end-to-end {fmt_ns(res.duration_ns)}", highlight=False)
    if res.bottleneck:
        b = res.bottleneck
        out.print(f"[bold red]bottleneck[/]: {b['agent_name']} {b['name']} ({b['span_id']}) "
                  f"{fmt_ns(b['critical_ns'])} on the critical path "
                  f"({b['critical_ns'] / max(1, res.duration_ns):.0%})", highlight=False)
    table = Table("agent", "step", "type", "critical", "share", title="critical path")
    for seg in res.path:
        if seg.critical_ns <= 0:
            continue
        table.add_row(seg.agent_name, seg.name, seg.event_type, fmt_ns(seg.critical_ns),
                      f"{seg.critical_ns / max(1, res.duration_ns):.0%}")
    out.print(table)
    hot = Table("agent", "self time", "critical", "spans", title="hotspots")
    for h in res.hotspots:
        hot.add_row(h.agent_name, fmt_ns(h.total_ns), fmt_ns(h.critical_ns), str(h.spans))
    out.print(hot)
    if res.stacking:
        st = Table("first", "then", "gap", "would save", "why", title="latency stacking")
        for s in res.stacking[:10]:
            st.add_row(f"{s.first['agent_name']} {s.first['name']}", f"{s.second['agent_name']} {s.second['name']}",
                       fmt_ns(s.gap_ns), fmt_ns(s.saving_ns), s.evidence)
        out.print(st)
    else:
        out.print("latency stacking: none found")


def register(app: typer.Typer) -> None:
    app.command("tree")(tree)
    app.command("critical-path")(critical_path)
