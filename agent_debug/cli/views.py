"""How each command's result looks in a terminal: one renderer per result, given the console to print on.

Commands print `--json` from the result itself (`as_dict()`); everything a human reads is here, so other
commands (the demo's tour) and the golden-output tests (tests/test_golden.py) call the same renderers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent_debug.cli.render import bar, fmt_ns, status_text

if TYPE_CHECKING:
    from agent_debug.analysis.buckets import BucketReport
    from agent_debug.analysis.commands import CriticalPathReport, RunList, TreeResult
    from agent_debug.analysis.explain import Explanation
    from agent_debug.analysis.patterns import PatternReport
    from agent_debug.analysis.sessions import SessionReport
    from agent_debug.formats.validate import ValidationResult
    from agent_debug.replay.commands import PacketWritten
    from agent_debug.replay.engine import ReplayResult
    from agent_debug.store.ingest import IngestResult
    from agent_debug.store.verdicts import MarkResult

BAR = 24  # the width of a tree row's latency bar


def render_validation(out: Console, err: Console, result: ValidationResult) -> None:
    table = Table(show_header=False, box=None)
    for key in ("files", "records", "traces", "failed_runs", "orphans", "rejected"):
        table.add_row(key.replace("_", " "), str(getattr(result, key)))
    out.print(table)
    for reason, n in sorted(result.rejects_by_reason.items(), key=lambda kv: -kv[1]):
        out.print(f"  rejected {n}: {reason}", highlight=False)
    for r in result.rejects[:10]:
        err.print(f"  {r['source']} {r['location']}: {r['reason']}", highlight=False, markup=False, soft_wrap=True)


def render_ingest(out: Console, result: IngestResult) -> None:
    out.print(f"ingested into {result.db}: {result.files} files ({result.files_skipped} unchanged), "
              f"{result.records} records kept, {result.duplicates} duplicates, {result.rejected} rejected, "
              f"{result.conflicts} conflicts, {result.traces} traces, {result.seconds:.2f}s", highlight=False)
    for reason, n in sorted(result.rejects_by_reason.items(), key=lambda kv: -kv[1]):
        out.print(f"  rejected {n}: {reason}", highlight=False)
    if result.rejects_file:
        out.print(f"  rejects kept verbatim in {result.rejects_file}", highlight=False)
    for c in result.conflict_list[:10]:
        out.print(f"  conflict: trace {c['trace_id']} span {c['span_id']} seen with different content",
                  highlight=False)


def render_runs(out: Console, result: RunList) -> None:
    rows = result.runs
    table = Table("trace", "workflow", "status", "started", "duration", "spans", "agents", "tokens", "cost",
                  title=f"{len(rows)} runs")
    for r in rows:
        started = datetime.fromtimestamp(r.start_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S") if r.start_ns else "-"
        status = status_text(r.status)
        if r.verdict:
            status.append(" (marked)", style="dim")
        table.add_row(r.trace_id[:12], r.workflow or "-", status, started, fmt_ns(r.duration_ns),
                      str(r.span_count), ",".join(r.agents)[:40], str(r.prompt_tokens + r.completion_tokens),
                      f"${r.cost_usd:.4f}" if r.cost_usd else "-")
    out.print(table)


def render_tree(out: Console, result: TreeResult) -> None:
    view = result.view()
    ts = result.spans
    total = max(1, view.end_ns - view.start_ns)
    out.print(Text.assemble(("trace ", "bold"), view.trace_id, f"  {view.spans} spans  {fmt_ns(total)}  ",
                            ("critical path", "bold yellow"), " in yellow"))
    for row in view.rows:
        line = Text("  " * row.depth)
        if row.kind == "span":
            i = row.index
            assert i is not None
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
            assert i is not None
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


def render_critical_path(out: Console, report: CriticalPathReport) -> None:
    res = report.result
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


def render_buckets(out: Console, report: BucketReport, *, runs_shown: int = 20) -> None:
    flagged = sum(1 for r in report.runs if r.flag)
    total = len(report.runs) - flagged
    more = f" and {flagged} runs not marked failed, bucketed for their suspects" if flagged else ""
    out.print(f"[bold]{total} failed runs[/]{more} ({report.passing - flagged} other runs not bucketed)",
              highlight=False)
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
            r.add_row(d.trace_id[:12] + (" (suspected)" if d.flag else ""), d.bucket,
                      f"{rc['agent_name']} {rc['name']}", d.evidence[0][:70])
        out.print(r)


def render_why(out: Console, exp: Explanation) -> None:
    d = exp.diagnosis
    body = Text()
    body.append(f"status {exp.status}", style="dim")
    if exp.verdict:
        v = exp.verdict
        body.append(f"  (marked {'passed' if v.get('passed') else 'failed'}"
                    + (f": {v['reason']}" if v.get("reason") else "") + ")", style="dim")
    body.append("\n")
    if d is None:
        body.append(f"{exp.note}\n", style="bold")
    else:
        body.append("bucket: ", style="bold")
        body.append(f"{d.bucket}\n", style="bold red")
        if d.session:
            o = d.session["origin"]
            body.append(f"root cause in turn {o['turn']} (run {o['trace_id'][:12]}): {o['agent_name']} "
                        f"{o['event_type']} {o['name']} introduced {d.session['fact']!r}\n", style="bold red")
        chain = exp.chain  # a session's root cause lies in another run: the chain's spans in this one
        for n, span in enumerate(chain):
            first = "surfaced here" if d.session else "root cause"
            mark = first if n == 0 else ("visible failure" if n == len(chain) - 1 else "hop")
            style = "bold red" if n == 0 else ("bold" if n == len(chain) - 1 else "")
            body.append(f"{'  ' if n else ''}{'-> ' if n else ''}{span.agent_name} {span.event_type} {span.name}",
                        style=style)
            body.append(f"  [{mark}]\n", style="dim")
        body.append("evidence:\n", style="bold")
        for e in d.evidence:
            body.append(f"  - {e}\n")
    doc = exp.as_dict()
    _suspect_lines(body, doc)
    if exp.judge:
        _judge_lines(body, doc)
    if d is not None:
        body.append("next: ", style="bold")
        body.append(d.next_action)
    out.print(Panel(body, title=f"why {exp.trace_id}", expand=False))


def _judge_lines(body: Text, doc: dict[str, Any]) -> None:
    j = doc["judge"]
    body.append(f"judge ({j['model']}, beside the rule-based answer above): ", style="bold")
    if j["status"] != "answered":
        body.append(f"no answer ({j.get('error')})\n", style="yellow")
        return
    span = f" [{j['span_id'][:16]}]" if j.get("span_id") else " [no such step]"
    body.append(f"{j['agent']} at step {j['step']}{span}, confidence {j['confidence']}/5"
                + (" (cached)" if j.get("cached") else "") + "\n")
    body.append(f"  {j['reason']}\n", style="dim")
    top = doc["suspects"][0] if doc["suspects"] else None
    if top is not None:
        same_agent = (j.get("agent") or "").lower() == top["agent_name"].lower()
        agree = "agrees with" if j.get("span_id") == top["span_id"] else (
            "names the same agent as" if same_agent else "differs from")
        body.append(f"  the judge {agree} the top rule-based suspect ({top['agent_name']} {top['name']})\n",
                    style="dim")


def _suspect_lines(body: Text, doc: dict[str, Any]) -> None:
    shown = doc["suspects"][:8]
    if not shown:
        body.append("no suspects\n", style="dim")
        return
    body.append(f"suspects ({doc['method']}):\n", style="bold")
    for n, s in enumerate(shown, 1):
        weak = "" if s.get("strong", True) else ", weak"
        step = f" step {s['step']}" if "step" in s else ""
        body.append(f"  {n}. {s['score']:.2f} {s['agent_name']} {s['name']}{step} [{s['span_id'][:16]}] "
                    f"{s['signal']} ({s['bucket']}{weak})\n")
        for e in s["evidence"][:2]:
            body.append(f"       {e[:110]}\n", style="dim")
    if len(doc["suspects"]) > len(shown):
        body.append(f"  ... and {len(doc['suspects']) - len(shown):,} more suspects (--json lists them all)\n",
                    style="dim")
    if doc.get("weaker_suspects"):
        names = ", ".join(f"{w['name']} {w['signal']} {w['score']:.2f}" for w in doc["weaker_suspects"][:3])
        body.append(f"  weaker: {names}\n", style="dim")


def render_session(out: Console, report: SessionReport) -> None:
    t = Table("turn", "run", "status", "bucket", "anomalies", title=f"session {report.session_id}")
    for turn in report.turns:
        t.add_row(str(turn.turn), turn.trace_id[:12], turn.status, turn.bucket or "-",
                  "; ".join(turn.anomalies[:2]) or "-")
    out.print(t)
    first = report.first_bad_turn
    if first is None:
        out.print("no turn went wrong")
    else:
        out.print(f"[bold red]things first went wrong in turn {first.turn}[/] ({first.trace_id[:12]}): "
                  f"{first.reason}", highlight=False)
    sc = report.state_corruption
    if sc:
        out.print(f"[bold]state corruption[/]: {sc['fact']!r} introduced in turn {sc['origin']['turn']} by "
                  f"{sc['origin']['agent_name']} {sc['origin']['name']}; propagation:", highlight=False)
        for step in sc["propagation"]:
            out.print(f"  turn {step['turn']} {step['role']}"
                      + (f" at {step.get('agent_name', '')} {step.get('name', '')} ({step['span_id']})".rstrip()
                         if step.get("span_id") else ""), highlight=False)


def render_mark(out: Console, result: MarkResult) -> None:
    if result.cleared is not None:
        out.print(f"cleared {result.count} verdict(s) of {len(result.cleared)} run(s)", highlight=False)
        return
    for v in result.marked:
        out.print(f"marked {v.trace_id[:12]} {'passed' if v.passed else 'failed'}"
                  + (f": {v.reason}" if v.reason else ""), highlight=False)


def render_patterns(out: Console, report: PatternReport, shown: int = 25) -> None:
    out.print(f"[bold]{report.runs} runs[/], {report.failed} failed (overall failure rate "
              f"{report.failure_rate:.0%})", highlight=False)
    t = Table("dimension", "value", "runs", "failed", "failure rate (95% CI)", "vs the rest", "p (Fisher)",
              title="failure patterns, strongest association first")
    for row in report.patterns[:shown]:
        lo, hi = row.ci95
        t.add_row(row.dimension, str(row.value)[:40], str(row.runs), str(row.failed),
                  f"{row.failure_rate:.0%} ({lo:.0%}-{hi:.0%})", f"{row.rest_failure_rate:.0%}",
                  f"{row.p_value:.3g}" + (" *" if row.significant else ""))
    out.print(t)
    out.print("* p < 0.05 after Holm's correction across the rows tested", style="dim", highlight=False)


def render_packet(out: Console, info: PacketWritten) -> None:
    out.print(f"wrote {info.packet} ({info.bytes} bytes, {info.calls} recorded calls, bucket {info.bucket or 'none'}, "
              f"entrypoint {info.entrypoint or 'none'})", highlight=False)


def render_replay(out: Console, r: ReplayResult, *, counterfactual: bool = False, brief: bool = False) -> None:
    if brief:
        mark = "[green]reproduced[/]" if r.reproduced else "[red]CHANGED[/]"
        out.print(f"{mark}  {r.packet}  {r.failure_bucket or r.outcome.get('status')}  ({r.seconds * 1000:.0f} ms)",
                  highlight=False)
        for d in r.diff:
            out.print(f"    {d['field']}: recorded {d['recorded']!r} -> replayed {d['replayed']!r}", highlight=False,
                      markup=False)
        return
    lines = [f"trace_id: {r.trace_id}", f"workflow: {r.workflow}", f"selected_model: {r.selected_model}",
             f"replayed_steps: {' -> '.join(r.replayed_steps)}", f"failure_bucket: {r.failure_bucket or 'none'}",
             f"next_action: {r.next_action or '-'}"]
    for line in lines:
        out.print(line, highlight=False, markup=False)
    if counterfactual:
        for inj in r.injected:
            out.print(f"injected at hop {inj['hop']} ({inj['agent']}:{inj['name']})", highlight=False, markup=False)
        o = r.original
        out.print(f"outcome: {o.get('status')} -> {r.outcome.get('status')}; bucket: {o.get('bucket')} -> "
                  f"{r.failure_bucket}", highlight=False, markup=False)
    if r.reproduced:
        out.print("reproduced: yes (same output, path and failure bucket)"
                  + ("" if r.executed else " [recorded steps walked: no entrypoint]"), style="green", highlight=False)
    else:
        out.print("changed by the injection:" if counterfactual else "reproduced: no",
                  style="red" if not counterfactual else "yellow")
        for d in r.diff:
            out.print(f"  {d['field']}: recorded {d['recorded']!r}", highlight=False, markup=False)
            out.print(f"  {' ' * len(d['field'])}  replayed {d['replayed']!r}", highlight=False, markup=False)
