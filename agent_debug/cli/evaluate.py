"""`agent-debug eval` (cases over runs, multi-run pass rates, JUnit), `agent-debug eval calibrate` (judge vs
human labels) and `agent-debug dataset add` (a recorded run becomes a regression case).

`eval` is a group whose own callback evaluates the case files given as arguments; `calibrate` is its one
sub-command. Click cannot mix a variadic argument with sub-commands on its own (the argument swallows the
sub-command's name), so `_EvalGroup` dispatches to a sub-command only when the first argument names one, and
otherwise parses everything as the callback's arguments. A case file literally named `calibrate` can still be
given as `./calibrate`.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from agent_debug.cli.common import (
    DbOption,
    FromOption,
    JsonOption,
    db_path,
    fail,
    print_result,
    stdout_console,
    visible,
    warn,
)

if TYPE_CHECKING:
    from rich.console import Console

    from agent_debug.analysis.source import Source
    from agent_debug.eval.calibrate import CalibrationResult
    from agent_debug.eval.dataset import AddedCase
    from agent_debug.eval.harness import CaseResult, EvalResult
    from agent_debug.eval.judge import GeminiJudge

JUDGE_BASE_URL_ENV = "AGENT_DEBUG_JUDGE_BASE_URL"
DEFAULT_JUDGE_MODEL = "gemini-2.5-flash"  # agent_debug.eval.judge.DEFAULT_MODEL, not imported to keep --help light
STATUS_STYLE = {"pass": "green", "fail": "red", "unscored": "yellow", "skipped": "dim", "no_runs": "yellow"}
CHECK_HEADERS = {"correctness": "output", "efficiency": "budget", "topology": "graph", "nonempty_tools": "tools",
                 "output_schema": "schema"}


class _EvalGroup(TyperGroup):
    """`eval CASES... [OPTIONS]` and `eval calibrate LABELS [OPTIONS]` from one group (see the module doc)."""

    allow_interspersed_args = True  # options may follow the case files

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            for param in self.get_params(ctx):  # the callback still runs: give its parameters their defaults
                param.handle_parse_result(ctx, {}, [])
            rest: list[str] = args[1:]
            ctx._protected_args, ctx.args = args[:1], rest
            return rest
        rest = super(TyperGroup, self).parse_args(ctx, args)
        ctx._protected_args, ctx.args = [], rest
        return rest

    def get_params(self, ctx: Any) -> list[Any]:
        """Without the CASES argument once a sub-command runs, so its usage line reads `eval calibrate ...`."""
        params = super().get_params(ctx)
        if ctx.command is not self:  # asked while building a sub-command's usage line
            return [p for p in params if not isinstance(p, TyperArgument)]
        return params


eval_app = typer.Typer(
    cls=_EvalGroup,
    invoke_without_command=True,
    no_args_is_help=True,
    rich_markup_mode=None,
    subcommand_metavar="| calibrate LABELS.jsonl",
)
dataset_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Regression datasets: recorded runs kept as eval cases in a versioned TOML file.",
)


class Label(str, Enum):
    passed = "pass"
    failed = "fail"


# --- eval ---------------------------------------------------------------------------------------------------


@eval_app.callback()
def evaluate(
    ctx: typer.Context,
    cases: Annotated[list[Path] | None, typer.Argument(
        help="Case files (TOML with [[case]] tables); regression datasets are case files too.",
        show_default=False)] = None,
    db: DbOption = None,
    from_: FromOption = None,
    judge: Annotated[bool, typer.Option("--judge", help="Grade every case's output with the Gemini judge "
                                        "(cases with judge = true always are). Needs GEMINI_API_KEY.")] = False,
    judge_model: Annotated[str, typer.Option("--judge-model", help="Gemini model of the judge.")] = DEFAULT_JUDGE_MODEL,
    runs: Annotated[int | None, typer.Option("--runs", min=1, max=10_000, help="Re-execute each case's workflow "
                                             "N times through its entrypoint (seed + i) instead of reading "
                                             "recorded runs.")] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="k of pass@k and pass^k (default: the number of "
                                          "scored runs).")] = None,
    min_pass_rate: Annotated[float | None, typer.Option("--min-pass-rate", min=0.0, max=1.0, help="Gate: a case "
                                                        "passes when its pass rate reaches this (default 1.0, or "
                                                        "the case's min_pass_rate).")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write a JUnit XML report here.")] = None,
    json: JsonOption = False,
) -> None:
    """Evaluate cases over runs: correctness (regex or Gemini judge), token/latency budgets, agent topology,
    deterministic checks; pass rates, pass@k and pass^k. Exit codes: 0 every gate passed, 1 a gate failed,
    2 usage error or bad case file, 3 could not run (no runs for a case, nothing scored, judge without key),
    8 the --junit report could not be written.
    `agent-debug eval calibrate LABELS.jsonl` measures the judge against human labels."""
    if ctx.invoked_subcommand is not None:
        return
    from agent_debug.eval.cases import load_case_files
    from agent_debug.eval.harness import evaluate as run_eval

    if not cases:
        fail("give at least one case file: agent-debug eval CASES.toml [...]")
    if k is not None and runs is not None and k > runs:
        fail(f"--k {k} is more than --runs {runs}")
    files = load_case_files(cases)
    wants_judge = judge or any(c.judge for f in files for c in f.cases)
    opened: list[Source] = []
    result = run_eval(files, lambda: _open(db, from_, opened), judge=make_judge(judge_model) if wants_judge else None,
                      judge_all=judge, runs=runs, k=k, min_pass_rate=min_pass_rate, on_run=_progress(json))
    notices = [n for src in opened for n in src.notices]
    warn(notices)
    if junit is not None:
        from agent_debug.eval.junit import write_junit

        write_junit(result, junit)
    if json:
        print_result(result.model_dump(mode="json"), notices)
    else:
        render_eval(stdout_console(), result, junit)
    incomplete = [c for c in result.cases if c.status in ("no_runs", "unscored")]
    if result.exit_code == 3 and incomplete:
        c = incomplete[0]
        more = f" (and {len(incomplete) - 1} more)" if len(incomplete) > 1 else ""
        sys.stderr.write(f"Error: {visible(f'case {c.name!r} could not be evaluated: {c.reason}{more}')}\n")
    raise typer.Exit(result.exit_code)


def _open(db: str | None, from_: list[Path] | None, opened: list[Source]) -> Source:
    from agent_debug.analysis.source import open_source

    src = open_source(db_path(db), from_)
    opened.append(src)
    return src


def make_judge(model: str) -> GeminiJudge:
    """A cached judge; `AGENT_DEBUG_JUDGE_BASE_URL` points it at another endpoint (a proxy, a local server)."""
    from agent_debug.eval.judge import GeminiJudge
    from agent_debug.eval.judge_cache import JudgeCache

    return GeminiJudge(model=model, base_url=os.environ.get(JUDGE_BASE_URL_ENV) or None, cache=JudgeCache())


def _progress(quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return None
    from agent_debug.cli.common import stderr_console

    err = stderr_console()

    def on_run(case: str, i: int, total: int) -> None:
        if i % max(1, total // 10) == 0 or i + 1 == total:  # about ten lines per case, whatever N is
            err.print(f"[dim]{case}: run {i + 1}/{total}[/]", highlight=False)

    return on_run


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}" if round(value * 100, 6).is_integer() else f"{value:.1%}"


def _fmt_prob(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/]"


def render_eval(out: Console, result: EvalResult, junit: Path | None) -> None:
    for case in result.cases:
        _render_case(out, case)
    s = result.summary
    verdict = {0: "[bold green]PASSED[/]", 1: "[bold red]FAILED[/]"}.get(result.exit_code, "[bold yellow]INCOMPLETE[/]")
    out.print(f"{verdict}: {_n(s['cases'], 'case')}, {s['passed']} passed, {s['failed']} failed, {s['unscored']} "
              f"unscored, {s['no_runs']} without runs; {_n(s['runs'], 'run')} evaluated (exit {result.exit_code})",
              highlight=False)
    if result.judge:
        out.print(f"judge: {result.judge['model']} (prompt {result.judge['prompt_version']})", highlight=False)
    if junit is not None:
        out.print(f"JUnit report: {junit}", highlight=False)


def _render_case(out: Console, case: CaseResult) -> None:
    from rich import box
    from rich.table import Table

    from agent_debug.cli.render import fmt_ns
    from agent_debug.eval.harness import CHECKS

    origin = "re-executed" if case.origin == "simulated" else "recorded"
    plural = "" if case.runs_total == 1 else "s"
    out.print(f"[bold]case {case.name}[/]  {_styled(case.status)}  ({case.file}; workflow {case.workflow or '-'}; "
              f"{case.runs_total} {origin} run{plural})", highlight=False)
    if not case.runs:
        out.print(f"  [yellow]{case.reason}[/]", highlight=False)
        return
    seeds = case.origin == "simulated"
    table = Table("run", *(["seed"] if seeds else []), "verdict", *(CHECK_HEADERS[c] for c in CHECKS), "tokens",
                  "latency", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    for run in case.runs:
        eff = run.checks.efficiency
        table.add_row((run.trace_id or "-")[:8], *([str(run.seed)] if seeds else []), _styled(run.verdict),
                      *(_cell(getattr(run.checks, name).status) for name in CHECKS),
                      str(eff.tokens), fmt_ns(eff.latency_ms * 1e6))
    out.print(table)
    unscored = f", {case.runs_unscored} unscored" if case.runs_unscored else ""
    line = (f"  pass rate {_fmt_rate(case.pass_rate)} ({case.runs_passed}/{case.runs_scored} scored runs"
            f"{unscored}); gate {_fmt_rate(case.min_pass_rate)}")
    if case.k:
        line += f"; pass@{case.k} {_fmt_prob(case.pass_at_k)}, pass^{case.k} {_fmt_prob(case.pass_pow_k)}"
    out.print(line, highlight=False)
    if case.label_agrees is not None:
        out.print(f"  labelled {case.label}: the checks {'agree' if case.label_agrees else 'DISAGREE'}",
                  highlight=False)
    if case.reason:
        out.print(f"  [red]{case.reason}[/]" if case.status == "fail" else f"  {case.reason}", highlight=False)
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}  # runs failing for the same reasons, together
    for run in case.runs:
        if run.verdict != "pass":
            groups.setdefault((run.verdict, tuple(run.reasons)), []).append(run.trace_id or "-")
    for (verdict, reasons), ids in groups.items():
        who = ids[0] if len(ids) == 1 else f"{len(ids)} runs ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"
        out.print(f"  {_styled(verdict)} {who}: " + _escape("; ".join(reasons)), highlight=False)


def _cell(status: str) -> str:
    return "[dim]-[/]" if status == "skipped" else _styled(status)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# --- eval calibrate -----------------------------------------------------------------------------------------


@eval_app.command("calibrate")
def calibrate(
    labels: Annotated[Path, typer.Argument(help="JSONL, one case a line: task, expected (optional), actual, "
                                           "label pass|fail (or human_score 1-5).", show_default=False)],
    model: Annotated[str, typer.Option("--model", help="Gemini model of the judge.")] = DEFAULT_JUDGE_MODEL,
    threshold: Annotated[int, typer.Option("--threshold", min=1, max=5, help="Judge (and human_score) passes "
                                           "at this score.")] = 3,
    json: JsonOption = False,
) -> None:
    """Measure the judge against human labels: agreement, Cohen's kappa, confusion matrix, TPR and TNR.
    Exit 0 when computed, 2 bad labels file, 3 no key or nothing could be scored."""
    from agent_debug.eval.calibrate import calibrate as run_calibration, read_labels

    read_labels(labels, threshold=threshold)  # a bad file is a usage error, before any key is needed
    result = run_calibration(labels, make_judge(model), threshold=threshold)
    if json:
        print_result(result.model_dump(mode="json"), [])
    else:
        render_calibration(stdout_console(), result)
    if result.scored == 0:
        sys.stderr.write(f"Error: none of the {result.n} labelled cases could be scored by the judge\n")
        raise typer.Exit(3)


def render_calibration(out: Console, result: CalibrationResult) -> None:
    from rich.table import Table

    out.print(f"[bold]judge calibration[/]: {result.model} (prompt {result.prompt_version}), pass at score >= "
              f"{result.threshold}; {result.n} cases, {result.scored} scored, {result.unscored} unscored",
              highlight=False)
    c = result.confusion
    table = Table("", "judge pass", "judge fail", title="confusion (human label is the truth)")
    table.add_row("human pass", f"{c['tp']} (TP)", f"{c['fn']} (FN)")
    table.add_row("human fail", f"{c['fp']} (FP)", f"{c['tn']} (TN)")
    out.print(table)
    out.print(f"agreement {_fmt_prob(result.agreement)}  Cohen's kappa {_fmt_prob(result.kappa)}  "
              f"TPR {_fmt_prob(result.tpr)}  TNR {_fmt_prob(result.tnr)}", highlight=False)
    for item in result.items:
        if item.judge_pass is not None and item.judge_pass != item.human_pass:
            out.print(f"  line {item.line}: human {'pass' if item.human_pass else 'fail'}, judge "
                      f"{item.score.score}/5: {item.score.rationale}", highlight=False)
        elif item.judge_pass is None:
            out.print(f"  line {item.line}: unscored ({item.score.error})", highlight=False)


# --- dataset add --------------------------------------------------------------------------------------------


@dataset_app.command("add")
def dataset_add(
    trace: Annotated[str, typer.Argument(help="Trace id or a unique prefix of one.", show_default=False)],
    case: Annotated[str, typer.Option("--case", help="Name of the new case (unique in the dataset).",
                                      show_default=False)],
    label: Annotated[Label, typer.Option("--label", help="Your verdict on the recorded run.", show_default=False)],
    expected: Annotated[str | None, typer.Option("--expected", help="Text the output must contain (becomes "
                                                 "expected and a re.escape'd pattern).")] = None,
    dataset: Annotated[Path, typer.Option("--dataset", help="The dataset file; created if missing.")] = Path(
        "datasets/regressions.toml"),
    no_packet: Annotated[bool, typer.Option("--no-packet", help="Do not write the run's replay packet.")] = False,
    db: DbOption = None,
    from_: FromOption = None,
    json: JsonOption = False,
) -> None:
    """Append a regression case pinned to a recorded run to a versioned dataset (version + 1), with the run's
    replay packet beside it (DATASET_DIR/packets/); `agent-debug eval DATASET` then runs it."""
    from agent_debug.analysis.source import open_source
    from agent_debug.eval.dataset import add_regression

    src = open_source(db_path(db), from_)
    warn(src.notices)
    added = add_regression(src, trace, name=case, label=label.value, expected=expected, dataset=dataset,
                           packet=not no_packet)
    if json:
        print_result(added.model_dump(mode="json"), src.notices)
        return
    render_dataset_added(stdout_console(), added, label.value, expected)


def render_dataset_added(out: Console, added: AddedCase, label: str, expected: str | None) -> None:
    out.print(f"added case {added.case['name']!r} ({label}, run {added.case['trace_id']}) to {added.dataset}, "
              f"now version {added.version}", highlight=False)
    if added.packet is not None:
        out.print(f"  replay packet: {added.packet}", highlight=False)
    for key in ("expected_output_pattern", "forbidden_output_pattern"):
        if key in added.case:
            shown = added.case[key] if len(added.case[key]) <= 80 else added.case[key][:77] + "..."
            out.print(f"  {key}: {shown}", highlight=False, markup=False)
    if label == Label.failed.value and expected is None:
        out.print("  note: the case forbids the recorded output only; if the fault is not in the output (a skipped "
                  "agent, an empty tool result, ...), add the check that catches it to the case (docs/eval.md)",
                  highlight=False, style="yellow")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
    app.add_typer(dataset_app, name="dataset")
