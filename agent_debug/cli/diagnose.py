"""`agent-debug bucket`, `agent-debug why`, `agent-debug session`: which subsystem to blame, and why."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent_debug.cli.common import (
    DbOption,
    FormatOption,
    FromOption,
    JsonOption,
    RulesOption,
    VerdictsOption,
    inputs,
    show,
)
from agent_debug.cli.render import parse_since
from agent_debug.errors import StoreError

if TYPE_CHECKING:
    from agent_debug.columns import TraceSpans


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
    from agent_debug.analysis.commands import bucket_of
    from agent_debug.cli.views import render_buckets
    from agent_debug.store.query import TraceFilter

    flt = TraceFilter(workflow=workflow, since_ns=parse_since(since) if since else None)
    report = bucket_of(inputs(db, from_, format, verdicts), flt, rules, suspects=suspects)
    show(report, json, lambda out: render_buckets(out, report))
    if report.unreadable:  # the others are above; this one line names what could not be read, exit 5
        first = report.unreadable[0]["error"]
        more = len(report.unreadable) - 1
        raise StoreError(f"{first}" + (f" (and {more} other run(s): see unreadable_runs in --json)" if more else "")
                         + "; every other run is bucketed above")


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
    from agent_debug.analysis.commands import why_of
    from agent_debug.cli.views import render_why

    exp = why_of(inputs(db, from_, format, verdicts), trace, rules,
                 judge=(lambda ts, failed: ask_judge(ts, failed, judge_model)) if judge else None)
    show(exp, json, lambda out: render_why(out, exp))


def ask_judge(ts: TraceSpans, failed: bool, model: str) -> dict[str, Any]:
    """The Gemini judge's blame (cached); `AGENT_DEBUG_JUDGE_BASE_URL` points it elsewhere, as for eval."""
    from agent_debug.eval.blame_judge import BlameJudge, judge_run
    from agent_debug.eval.judge_cache import JudgeCache

    judge = BlameJudge(model=model, base_url=os.environ.get("AGENT_DEBUG_JUDGE_BASE_URL") or None,
                       cache=JudgeCache())
    return judge_run(judge, ts, failed).model_dump()


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
    from agent_debug.analysis.commands import session_of
    from agent_debug.cli.views import render_session

    report = session_of(inputs(db, from_, format, verdicts), session_id, rules)
    show(report, json, lambda out: render_session(out, report))


def register(app: typer.Typer) -> None:
    app.command("bucket")(bucket)
    app.command("why")(why)
    app.command("session")(session)
