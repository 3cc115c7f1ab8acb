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
VerdictsOption = Annotated[Path | None, typer.Option(
    "--verdicts", help="A verdict file (JSON Lines of {trace_id, passed, reason}) applied to the runs' status.")]


def bucket(
    workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only runs started since: 2h, 7d, or ISO time.")] = None,
    rules: RulesOption = None,
    suspects: Annotated[bool, typer.Option("--suspects", help="Also bucket runs not marked failed that carry a "
                                           "strong suspect (flagged as suspected).")] = False,
    verdicts: VerdictsOption = None,
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
    src = open_source(db_path(db), from_, format, verdicts)
    report = bucket_runs(src, flt, chosen, suspects=suspects)
    warn(src.notices)
    if json:
        print_result(report.as_dict(), src.notices)
        return
    render_buckets(report)


def render_buckets(report: Any, *, runs_shown: int = 20) -> None:
    from rich.table import Table

    out = stdout_console()
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


def why(
    trace: Annotated[str | None, typer.Argument(help="Trace id or a unique prefix of one (optional when the "
                                                     "source holds a single trace).", show_default=False)] = None,
    rules: RulesOption = None,
    verdicts: VerdictsOption = None,
    judge: Annotated[bool, typer.Option("--judge", help="Also ask the Gemini judge to name the agent, step and "
                                        "reason (shown beside the rule-based answer). Needs GEMINI_API_KEY.")] = False,
    judge_model: Annotated[str, typer.Option("--judge-model", help="Gemini model of the judge.")] = "gemini-2.5-flash",
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """One run's story: root cause -> hops -> visible failure, with the evidence; and, for every run (failed or
    not), the ranked suspects: the spans most likely to hold its mistake."""
    from agent_debug.analysis.buckets import load_rules
    from agent_debug.analysis.explain import explain_run, load_for_diagnosis
    from agent_debug.analysis.source import open_source
    from agent_debug.cli.analysis import resolve_or_only

    chosen = load_rules(rules)
    src = open_source(db_path(db), from_, format, verdicts)
    tid = resolve_or_only(src, trace)
    ts = load_for_diagnosis(src, tid)  # loaded once: the explanation and its rendering read the same spans
    doc = explain_run(src, tid, chosen, loaded=ts)
    if judge:
        doc["judge"] = ask_judge(ts, doc["failed"], judge_model)
    warn(src.notices)
    if json:
        print_result(doc, src.notices)
        return
    render_why(doc, ts)


def ask_judge(ts: Any, failed: bool, model: str) -> dict[str, Any]:
    """The Gemini judge's blame (cached); `AGENT_DEBUG_JUDGE_BASE_URL` points it elsewhere, as for eval."""
    import os

    from agent_debug.analysis.blame_judge import BlameJudge, judge_run
    from agent_debug.eval.judge_cache import JudgeCache

    judge = BlameJudge(model=model, base_url=os.environ.get("AGENT_DEBUG_JUDGE_BASE_URL") or None,
                       cache=JudgeCache())
    return judge_run(judge, ts, failed).model_dump()


def render_why(doc: dict[str, Any], ts: Any) -> None:
    from rich.panel import Panel
    from rich.text import Text

    out = stdout_console()
    d = doc["diagnosis"]
    body = Text()
    body.append(f"status {doc['status']}", style="dim")
    if doc.get("verdict"):
        v = doc["verdict"]
        body.append(f"  (marked {'passed' if v.get('passed') else 'failed'}"
                    + (f": {v['reason']}" if v.get("reason") else "") + ")", style="dim")
    body.append("\n")
    if d is None:
        body.append(f"{doc['note']}\n", style="bold")
    else:
        by_id = {sid: i for i, sid in enumerate(ts.span_id)}
        body.append("bucket: ", style="bold")
        body.append(f"{d['bucket']}\n", style="bold red")
        if d.get("session"):
            o = d["session"]["origin"]
            body.append(f"root cause in turn {o['turn']} (run {o['trace_id'][:12]}): {o['agent_name']} "
                        f"{o['event_type']} {o['name']} introduced {d['session']['fact']!r}\n", style="bold red")
        chain = [sid for sid in d["chain"] if sid in by_id]  # a session's root cause lies in another run
        for n, sid in enumerate(chain):
            i = by_id[sid]
            first = "surfaced here" if d.get("session") else "root cause"
            mark = first if n == 0 else ("visible failure" if n == len(chain) - 1 else "hop")
            style = "bold red" if n == 0 else ("bold" if n == len(chain) - 1 else "")
            body.append(f"{'  ' if n else ''}{'-> ' if n else ''}{ts.agent_name[i]} {ts.event_type[i]} "
                        f"{ts.name[i]}", style=style)
            body.append(f"  [{mark}]\n", style="dim")
        body.append("evidence:\n", style="bold")
        for e in d["evidence"]:
            body.append(f"  - {e}\n")
    _suspect_lines(body, doc)
    if doc.get("judge"):
        _judge_lines(body, doc)
    if d is not None:
        body.append("next: ", style="bold")
        body.append(d["next_action"])
    out.print(Panel(body, title=f"why {doc['trace_id']}", expand=False))


def _judge_lines(body: Any, doc: dict[str, Any]) -> None:
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
        agree = "agrees with" if j.get("span_id") == top["span_id"] else (
            "names the same agent as" if (j.get("agent") or "").lower() == top["agent_name"].lower() else "differs from")
        body.append(f"  the judge {agree} the top rule-based suspect ({top['agent_name']} {top['name']})\n",
                    style="dim")


def _suspect_lines(body: Any, doc: dict[str, Any]) -> None:
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
    if doc.get("weaker_suspects"):
        names = ", ".join(f"{w['name']} {w['signal']} {w['score']:.2f}" for w in doc["weaker_suspects"][:3])
        body.append(f"  weaker: {names}\n", style="dim")


def session(
    session_id: Annotated[str, typer.Argument(help="The session id shared by the runs (turns).")],
    rules: RulesOption = None,
    verdicts: VerdictsOption = None,
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
    src = open_source(db_path(db), from_, format, verdicts)
    result = analyze_session(src, session_id, chosen)
    warn(src.notices)
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
    sc = result.get("state_corruption")
    if sc:
        out.print(f"[bold]state corruption[/]: {sc['fact']!r} introduced in turn {sc['origin']['turn']} by "
                  f"{sc['origin']['agent_name']} {sc['origin']['name']}; propagation:", highlight=False)
        for step in sc["propagation"]:
            out.print(f"  turn {step['turn']} {step['role']}"
                      + (f" at {step.get('agent_name', '')} {step.get('name', '')} ({step['span_id']})".rstrip()
                         if step.get("span_id") else ""), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bucket")(bucket)
    app.command("why")(why)
    app.command("session")(session)
