"""The evaluation harness: run every case's checks over its runs and decide each case's gate.

A case's runs are its recorded runs (every trace of its `workflow` in the source, or its pinned `trace_id`), or,
with `runs=N`, N fresh executions of its entrypoint (see `multirun`). Each run gets five checks, each `pass`,
`fail`, `unscored` or `skipped` (not configured):

- correctness: `expected_output_pattern` searched in the final output (the root's `payload.output`, JSON for
  non-strings), `forbidden_output_pattern` not found in it, and, for judged cases, the Gemini judge's verdict.
  A judge reply that cannot be parsed makes it `unscored`.
- efficiency: total tokens <= `max_tokens` and the root's duration <= `max_latency_ms`.
- topology: every `expected_topology` edge is in the run's interaction graph (A->B when a span of agent B has a
  causal parent span of agent A != B; SEND/RECEIVE included).
- nonempty_tools: every TOOL_CALL/RETRIEVAL span that reports a size returned something.
- output_schema: the final output matches the case's schema (a small JSON-schema subset).

A run passes when it did not error and no check failed; with correctness unscored it neither passed nor failed
(`unscored`) and is left out of the pass rate (passed / scored). A case passes when its pass rate reaches
`min_pass_rate` (default 1.0); a case pinned to a labelled recorded run passes when the verdicts agree with the
label instead (a known-bad run must still be flagged). Nothing evaluated never passes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from agent_debug.analysis.critical import analyze
from agent_debug.columns import TraceSpans, TraceSummary, summarize
from agent_debug.errors import CouldNotRun, TraceNotFound
from agent_debug.eval.cases import Case, CaseFile
from agent_debug.eval.judge import JudgeScore
from agent_debug.eval.multirun import SimulatedRun, pass_at_k, pass_pow_k, simulate
from agent_debug.replay.trust import REMEDY, refusal
from agent_debug.store.query import TraceFilter

if TYPE_CHECKING:
    from agent_debug.analysis.source import Source
    from agent_debug.eval.judge import GeminiJudge

Status = Literal["pass", "fail", "unscored", "skipped"]
Verdict = Literal["pass", "fail", "unscored"]
CaseStatus = Literal["pass", "fail", "unscored", "no_runs"]
CHECKS: tuple[str, ...] = ("correctness", "efficiency", "topology", "nonempty_tools", "output_schema")
TOOL_EVENTS = frozenset({"TOOL_CALL", "RETRIEVAL"})
PREVIEW_CHARS = 300


class Check(BaseModel):
    """What every check reports: its status and, unless it passed, why."""

    status: Status
    reason: str | None = None


class CorrectnessCheck(Check):
    method: Literal["regex", "judge", "regex+judge"] | None = None
    pattern: str | None = None
    forbidden_pattern: str | None = None
    output_preview: str | None = Field(None, description="The final output, cut to a few hundred characters.")
    judge: JudgeScore | None = None


class EfficiencyCheck(Check):
    tokens: int = 0
    max_tokens: int = 0
    latency_ms: float = 0.0
    max_latency_ms: float = 0.0


class TopologyCheck(Check):
    expected_edges: list[str] = Field(default_factory=list)
    missing_edges: list[str] = Field(default_factory=list)
    edges: list[str] = Field(default_factory=list, description="The run's interaction graph, 'a->b'.")


class NonemptyToolsCheck(Check):
    checked: int = 0
    empty_spans: list[dict[str, Any]] = Field(default_factory=list)


class OutputSchemaCheck(Check):
    errors: list[str] = Field(default_factory=list)


class Checks(BaseModel):
    correctness: CorrectnessCheck
    efficiency: EfficiencyCheck
    topology: TopologyCheck
    nonempty_tools: NonemptyToolsCheck
    output_schema: OutputSchemaCheck


class RunResult(BaseModel):
    """One run's verdict and why, with the analysis a reader needs to start debugging it."""

    trace_id: str | None
    origin: Literal["recorded", "simulated"]
    seed: int | None = None
    verdict: Verdict
    passed: bool
    error: str | None = Field(None, description="The run raised or its root span is an error.")
    reasons: list[str] = Field(default_factory=list, description="One line per failed or unscored check.")
    checks: Checks
    hotspots: list[dict[str, Any]] = Field(default_factory=list)
    critical_path: list[dict[str, Any]] = Field(default_factory=list)
    bottleneck: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)


class CaseResult(BaseModel):
    name: str
    file: str
    workflow: str | None
    origin: Literal["recorded", "simulated"]
    status: CaseStatus
    reason: str | None = None
    runs_total: int
    runs_scored: int
    runs_passed: int
    runs_failed: int
    runs_unscored: int
    pass_rate: float | None = Field(description="passed / scored runs; None when nothing was scored.")
    k: int | None
    pass_at_k: float | None
    pass_pow_k: float | None
    min_pass_rate: float
    label: Literal["pass", "fail"] | None = None
    label_agrees: bool | None = Field(None, description="Recorded labelled cases: every verdict matches the label.")
    runs: list[RunResult]


class EvalResult(BaseModel):
    cases: list[CaseResult]
    passed: bool
    exit_code: int = Field(description="0 every gate passed, 1 a gate failed, 3 a case could not be evaluated.")
    summary: dict[str, int]
    judge: dict[str, Any] | None = None


@dataclass
class _RunInput:
    """A run to evaluate, before its checks: the spans (None if nothing was recorded) and where it came from."""

    trace: TraceSpans | None
    origin: Literal["recorded", "simulated"]
    seed: int | None = None
    error: str | None = None
    repeat: int = 0
    notes: list[str] = field(default_factory=list)
    verdict: dict[str, Any] | None = None  # a human verdict on the recorded run (`agent-debug mark`)


@dataclass
class _CaseRuns:
    case: Case
    file: Path
    origin: Literal["recorded", "simulated"]
    runs: list[_RunInput]
    problem: str | None = None  # why there are no runs


@dataclass
class _Options:
    runs: int | None
    k: int | None
    min_pass_rate: float | None
    judge_all: bool


class _LazySource:
    """Open the source only if some case needs recorded runs (a fully specified --runs eval needs no store)."""

    def __init__(self, opener: Callable[[], Source]) -> None:
        self._opener = opener
        self._source: Source | None = None

    def get(self) -> Source:
        if self._source is None:
            self._source = self._opener()
        return self._source


def evaluate(
    files: list[CaseFile],
    open_source: Callable[[], Source],
    *,
    judge: GeminiJudge | None = None,
    judge_all: bool = False,
    runs: int | None = None,
    k: int | None = None,
    min_pass_rate: float | None = None,
    on_run: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    """Evaluate every case of every file. Raises CouldNotRun when there is no case, or a case needs the judge
    and none was given; a case with no runs is reported (status `no_runs`, exit code 3), not raised."""
    pairs = [(f.path, c) for f in files for c in f.cases]
    if not pairs:
        raise CouldNotRun("no cases to evaluate in " + ", ".join(str(f.path) for f in files))
    needs_judge = [c.name for _, c in pairs if judge_all or c.judge]
    if needs_judge and judge is None:
        raise CouldNotRun(f"case {needs_judge[0]!r} needs the Gemini judge, and none is configured")
    opts = _Options(runs, k, min_pass_rate, judge_all)
    source = _LazySource(open_source)
    collected = [_collect(case, path, source, opts, on_run) for path, case in pairs]
    scores = _judge_all(collected, judge, judge_all) if judge is not None and needs_judge else {}
    cases = [_case_result(cr, i, scores, opts) for i, cr in enumerate(collected)]
    return _result(cases, judge if needs_judge else None)


# --- collecting runs ----------------------------------------------------------------------------------------


def _collect(case: Case, path: Path, source: _LazySource, opts: _Options,
             on_run: Callable[[str, int, int], None] | None) -> _CaseRuns:
    if opts.runs:
        return _simulated(case, path, source, opts.runs, on_run)
    return _recorded(case, path, source)


def _recorded(case: Case, path: Path, source: _LazySource) -> _CaseRuns:
    if case.trace_id is None and case.workflow is None:
        return _CaseRuns(case, path, "recorded", [], "the case has only an entrypoint: run it with --runs N")
    src = source.get()
    if case.trace_id is not None:
        try:
            tid = src.resolve(case.trace_id)
        except TraceNotFound:
            return _CaseRuns(case, path, "recorded", [], f"its pinned trace {case.trace_id} is not in the source")
        return _CaseRuns(case, path, "recorded", [_RunInput(src.load(tid, records=True), "recorded",
                                                           verdict=getattr(src.summary(tid), "verdict", None))])
    listed = src.list(TraceFilter(workflow=case.workflow))
    runs = [_RunInput(src.load(s.trace_id, records=True), "recorded", verdict=s.verdict) for s in listed]
    problem = None if runs else f"no recorded runs of workflow {case.workflow!r}"
    return _CaseRuns(case, path, "recorded", runs, problem)


def _simulated(case: Case, path: Path, source: _LazySource, n: int,
               on_run: Callable[[str, int, int], None] | None) -> _CaseRuns:
    entrypoint, inp, problem = case.entrypoint, case.input, None
    if entrypoint is None or (inp is None and (case.workflow or case.trace_id)):
        recorded_ep, recorded_input, problem = _recorded_invocation(case, source.get())
        entrypoint = entrypoint or recorded_ep
        inp = inp if inp is not None else recorded_input
    if entrypoint is None:
        return _CaseRuns(case, path, "simulated", [], problem or "no entrypoint to run")
    if case.entrypoint is None and (why_not := refusal(entrypoint)) is not None:
        # taken from a recorded run, i.e. from data: only the project's own code runs (see replay/trust.py)
        return _CaseRuns(case, path, "simulated", [],
                         f"refusing to run the recorded entrypoint {entrypoint!r}: {why_not}; {REMEDY}")
    progress = (lambda i, total: on_run(case.name, i, total)) if on_run else None
    sims = simulate(entrypoint, inp, n, workflow=case.workflow, on_run=progress)
    runs = [_from_sim(s) for s in sims]
    if problem:  # the case's own entrypoint ran without the recorded input it wanted
        for run in runs:
            run.notes.append(f"ran without a recorded input: {problem}")
    return _CaseRuns(case, path, "simulated", runs)


def _from_sim(sim: SimulatedRun) -> _RunInput:
    return _RunInput(sim.trace, "simulated", sim.seed, sim.error, repeat=sim.index, notes=sim.notes)


def _recorded_invocation(case: Case, src: Source) -> tuple[str | None, Any, str | None]:
    """(entrypoint, input, problem) from the pinned run, else the most recent recorded run of the workflow."""
    if case.trace_id is not None:
        try:
            tid = src.resolve(case.trace_id)
        except TraceNotFound:
            return None, None, f"its pinned trace {case.trace_id} is not in the source"
    else:
        listed = src.list(TraceFilter(workflow=case.workflow))
        if not listed:
            return None, None, f"no recorded run of workflow {case.workflow!r} to take the entrypoint and input from"
        tid = max(listed, key=lambda s: s.start_ns).trace_id
    root = root_record(src.load(tid, records=True), None)
    attrs = (root or {}).get("attributes") or {}
    entrypoint = attrs.get("run.entrypoint")
    if not isinstance(entrypoint, str) or ":" not in entrypoint:
        return None, None, f"run {tid} does not record its entrypoint (root attribute run.entrypoint)"
    return entrypoint, ((root or {}).get("payload") or {}).get("input"), None


# --- judging ------------------------------------------------------------------------------------------------


def _judge_all(collected: list[_CaseRuns], judge: GeminiJudge, judge_all: bool) -> dict[tuple[int, int], JudgeScore]:
    """Judge every run that needs it, concurrently (the judge bounds concurrency), in one event loop."""
    jobs: list[tuple[tuple[int, int], str, str | None, str, int]] = []
    for ci, cr in enumerate(collected):
        if not (judge_all or cr.case.judge):
            continue
        for ri, run in enumerate(cr.runs):
            if run.trace is None:
                continue
            summ = summarize(run.trace)
            root = root_record(run.trace, summ)
            output = final_output(root)
            if output is None or not _regexes_pass(cr.case, output):
                continue  # no output, or the hard pattern already failed: no need to pay for a judgement
            jobs.append(((ci, ri), judge_task(cr.case, root), cr.case.expected, output, run.repeat))

    # identical questions (same task, expected, output, repeat) are asked once: the answer is the same judgement
    unique = list(dict.fromkeys((t, e, a, r) for _, t, e, a, r in jobs))

    async def run_all() -> list[JudgeScore]:
        try:
            return await asyncio.gather(*(judge.score(t, e, a, repeat=r) for t, e, a, r in unique))
        finally:
            await judge.aclose()

    if not jobs:
        return {}
    answers = dict(zip(unique, asyncio.run(run_all()), strict=True))
    return {key: answers[(t, e, a, r)] for key, t, e, a, r in jobs}


def judge_task(case: Case, root: dict[str, Any] | None) -> str:
    """The case's task, else the run's own (see `recorded_task`), else the case name."""
    return case.task or recorded_task(root) or case.name


def recorded_task(root: dict[str, Any] | None) -> str | None:
    """The root's `task.summary` attribute, else its input as JSON; None when the run recorded neither."""
    attrs = (root or {}).get("attributes") or {}
    if isinstance(attrs.get("task.summary"), str):
        return str(attrs["task.summary"])
    inp = ((root or {}).get("payload") or {}).get("input")
    return json.dumps(inp, ensure_ascii=False, default=str) if inp is not None else None


# --- one run ------------------------------------------------------------------------------------------------


def root_record(ts: TraceSpans, summ: TraceSummary | None) -> dict[str, Any] | None:
    summ = summ or summarize(ts)
    if summ.root_span_id is None:
        return None
    return ts.record(ts.span_id.index(summ.root_span_id))


def final_output(root: dict[str, Any] | None) -> str | None:
    """The root's payload.output as text (JSON for non-strings); None when the run recorded none."""
    value = ((root or {}).get("payload") or {}).get("output")
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def evaluate_run(case: Case, run: _RunInput, judge_score: JudgeScore | None, judged: bool) -> RunResult:
    """Every check on one run, and its verdict."""
    if run.trace is None:
        skipped = Check(status="skipped", reason="no trace recorded").model_dump()
        checks = Checks(correctness=CorrectnessCheck(**skipped), efficiency=EfficiencyCheck(**skipped),
                        topology=TopologyCheck(**skipped), nonempty_tools=NonemptyToolsCheck(**skipped),
                        output_schema=OutputSchemaCheck(**skipped))
        return RunResult(trace_id=None, origin=run.origin, seed=run.seed, verdict="fail", passed=False,
                         error=run.error, reasons=[run.error or "no trace recorded"], checks=checks, notes=run.notes)
    ts = run.trace
    summ = summarize(ts)
    root = root_record(ts, summ)
    checks = Checks(
        correctness=check_correctness(case, root, judge_score, judged),
        efficiency=check_efficiency(case, summ),
        topology=check_topology(case, ts),
        nonempty_tools=check_nonempty_tools(case, ts),
        output_schema=check_output_schema(case, root),
    )
    error = run.error or _root_error(root)
    if run.verdict is not None:  # a human verdict is the recorded outcome
        error = None if run.verdict.get("passed") else \
            "marked failed" + (f": {run.verdict['reason']}" if run.verdict.get("reason") else "")
    reasons = [f"{name}: {getattr(checks, name).reason}" for name in CHECKS
               if getattr(checks, name).status in ("fail", "unscored")]
    statuses = {getattr(checks, name).status for name in CHECKS}
    verdict: Verdict = "fail" if error or "fail" in statuses else "unscored" if "unscored" in statuses else "pass"
    cp = analyze(ts)
    return RunResult(
        trace_id=ts.trace_id, origin=run.origin, seed=run.seed, verdict=verdict, passed=verdict == "pass",
        error=error, reasons=([f"error: {error}"] if error else []) + reasons, checks=checks,
        hotspots=[h.__dict__ for h in cp.hotspots],
        critical_path=[seg.__dict__ for seg in cp.path if seg.critical_ns > 0],
        bottleneck=cp.bottleneck, notes=run.notes,
    )


def _root_error(root: dict[str, Any] | None) -> str | None:
    if root is None:
        return "the run has no root span"
    if root.get("status") != "error":
        return None
    err = root.get("error") or {}
    return f"{err.get('type', 'error')}: {err.get('message', '')}".strip()


def _regexes_pass(case: Case, output: str) -> bool:
    if case.expected_output_pattern is not None and not re.search(case.expected_output_pattern, output):
        return False
    return not (case.forbidden_output_pattern is not None and re.search(case.forbidden_output_pattern, output))


def check_correctness(case: Case, root: dict[str, Any] | None, score: JudgeScore | None,
                      judged: bool) -> CorrectnessCheck:
    has_regex = case.expected_output_pattern is not None or case.forbidden_output_pattern is not None
    method = "regex+judge" if has_regex and judged else "judge" if judged else "regex" if has_regex else None
    base: dict[str, Any] = {"method": method, "pattern": case.expected_output_pattern,
            "forbidden_pattern": case.forbidden_output_pattern}
    if method is None:
        return CorrectnessCheck(status="skipped", reason="no expected_output_pattern and no judge", **base)
    output = final_output(root)
    if output is None:
        return CorrectnessCheck(status="fail", reason="the run recorded no final output (root payload.output)", **base)
    base["output_preview"] = output[:PREVIEW_CHARS] + ("..." if len(output) > PREVIEW_CHARS else "")
    if case.expected_output_pattern is not None and not re.search(case.expected_output_pattern, output):
        return CorrectnessCheck(status="fail", reason=f"output does not match /{case.expected_output_pattern}/",
                                **base)
    if case.forbidden_output_pattern is not None and re.search(case.forbidden_output_pattern, output):
        return CorrectnessCheck(status="fail", reason="output matches the forbidden pattern (a known-bad answer)",
                                **base)
    if not judged:
        return CorrectnessCheck(status="pass", **base)
    if score is None or score.status != "scored":
        why = score.error if score is not None else "no judgement"
        return CorrectnessCheck(status="unscored", reason=f"judge gave no usable score: {why}", judge=score, **base)
    if score.passed:
        return CorrectnessCheck(status="pass", judge=score, **base)
    return CorrectnessCheck(status="fail", reason=f"judge scored {score.score}/5: {score.rationale}",
                            judge=score, **base)


def check_efficiency(case: Case, summ: TraceSummary) -> EfficiencyCheck:
    tokens = summ.prompt_tokens + summ.completion_tokens
    latency_ms = round(summ.duration_ns / 1e6, 3)
    over = []
    if tokens > case.max_tokens:
        over.append(f"{tokens} tokens > {case.max_tokens}")
    if latency_ms > case.max_latency_ms:
        over.append(f"{latency_ms:g} ms > {case.max_latency_ms:g} ms")
    return EfficiencyCheck(status="fail" if over else "pass", reason="; ".join(over) or None, tokens=tokens,
                           max_tokens=case.max_tokens, latency_ms=latency_ms, max_latency_ms=case.max_latency_ms)


def interaction_edges(ts: TraceSpans) -> set[tuple[str, str]]:
    """(A, B) for every span of agent B whose causal parent span is of agent A != B."""
    index = {sid: i for i, sid in enumerate(ts.span_id)}
    agents = ts.agent_name
    out: set[tuple[str, str]] = set()
    for i, pid in enumerate(ts.parent_id):
        p = index.get(pid) if pid is not None else None
        if p is not None and agents[p] != agents[i]:
            out.add((agents[p], agents[i]))
    return out


def check_topology(case: Case, ts: TraceSpans) -> TopologyCheck:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_edges_from(interaction_edges(ts))
    edges = sorted(f"{a}->{b}" for a, b in graph.edges)
    if not case.expected_topology:
        return TopologyCheck(status="skipped", reason="no expected_topology", edges=edges)
    expected = nx.DiGraph()
    expected.add_edges_from(case.edges)
    missing = [f"{a}->{b}" for a, b in case.edges if not graph.has_edge(a, b)]
    reason = "missing edges " + ", ".join(missing) if missing else None
    return TopologyCheck(status="fail" if missing else "pass", reason=reason,
                         expected_edges=[f"{a}->{b}" for a, b in expected.edges], missing_edges=missing, edges=edges)


def check_nonempty_tools(case: Case, ts: TraceSpans) -> NonemptyToolsCheck:
    if not case.require_nonempty_tools:
        return NonemptyToolsCheck(status="skipped", reason="require_nonempty_tools is off")
    checked, empty = 0, []
    for i, event in enumerate(ts.event_type):
        if event not in TOOL_EVENTS:
            continue
        attrs = ts.attributes(i)
        key = next((k for k in ("retrieval.doc_count", "tool.result_size") if k in attrs), None)
        if key is None:
            continue
        checked += 1
        if _number(attrs[key]) <= 0:
            empty.append({"span_id": ts.span_id[i], "agent_name": ts.agent_name[i], "name": ts.name[i],
                          "event_type": event, "attribute": key, "value": attrs[key]})
    reason = None
    if empty:
        reason = "empty result from " + ", ".join(f"{e['agent_name']} {e['name']} ({e['attribute']}=0)"
                                                  for e in empty)
    return NonemptyToolsCheck(status="fail" if empty else "pass", reason=reason, checked=checked, empty_spans=empty)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def check_output_schema(case: Case, root: dict[str, Any] | None) -> OutputSchemaCheck:
    schema = case.output_schema
    if schema is None:
        return OutputSchemaCheck(status="skipped", reason="no output_schema")
    value = ((root or {}).get("payload") or {}).get("output")
    if value is None:
        return OutputSchemaCheck(status="fail", reason="the run recorded no final output", errors=["$: no output"])
    types = schema.get("type")
    wants_string = types == "string" or (isinstance(types, list) and "string" in types)
    if isinstance(value, str) and not wants_string:
        try:
            value = json.loads(value)
        except ValueError:
            return OutputSchemaCheck(status="fail", reason="the output is not JSON", errors=["$: not JSON"])
    errors = validate_schema(value, schema)
    return OutputSchemaCheck(status="fail" if errors else "pass", reason="; ".join(errors[:3]) or None,
                             errors=errors)


def validate_schema(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """The subset: type (or a list of types), enum, required, properties, items. Returns every violation."""
    types = schema.get("type")
    if types is not None:
        wanted = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in wanted):
            return [f"{path}: expected {' or '.join(wanted)}, got {_type_name(value)}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if isinstance(value, dict):
        errors += [f"{path}: missing required property {r!r}" for r in schema.get("required", []) if r not in value]
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                errors += validate_schema(value[name], sub, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += validate_schema(item, schema["items"], f"{path}[{i}]")
    return errors


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds: dict[str, type | tuple[type, ...]] = {"string": str, "boolean": bool, "object": dict, "array": list,
                                                 "null": type(None)}
    return isinstance(value, kinds[name])


def _type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


# --- cases and the whole result -----------------------------------------------------------------------------


def _case_result(cr: _CaseRuns, ci: int, scores: dict[tuple[int, int], JudgeScore], opts: _Options) -> CaseResult:
    case = cr.case
    judged = opts.judge_all or case.judge
    runs = [evaluate_run(case, r, scores.get((ci, ri)), judged) for ri, r in enumerate(cr.runs)]
    scored = [r for r in runs if r.verdict != "unscored"]
    passed = sum(1 for r in scored if r.passed)
    n = len(scored)
    k = opts.k if opts.k is not None else (n or None)
    pass_rate = passed / n if n else None
    min_rate = opts.min_pass_rate if opts.min_pass_rate is not None else (
        case.min_pass_rate if case.min_pass_rate is not None else 1.0)
    labelled = case.label is not None and cr.origin == "recorded"
    agrees = all((r.verdict == case.label) for r in scored) if labelled and scored else None
    status, reason = _case_status(cr, runs, n, pass_rate, min_rate, agrees)
    return CaseResult(
        name=case.name, file=str(cr.file), workflow=case.workflow, origin=cr.origin, status=status, reason=reason,
        runs_total=len(runs), runs_scored=n, runs_passed=passed, runs_failed=n - passed,
        runs_unscored=len(runs) - n, pass_rate=pass_rate, k=k,
        pass_at_k=pass_at_k(n, passed, k) if k else None, pass_pow_k=pass_pow_k(n, passed, k) if k else None,
        min_pass_rate=min_rate, label=case.label, label_agrees=agrees, runs=runs,
    )


def _case_status(cr: _CaseRuns, runs: list[RunResult], scored: int, pass_rate: float | None, min_rate: float,
                 agrees: bool | None) -> tuple[CaseStatus, str | None]:
    if not runs:
        return "no_runs", cr.problem or "no runs"
    if not scored:
        return "unscored", f"none of its {len(runs)} runs could be scored"
    if agrees is not None:
        if agrees:
            return "pass", None
        return "fail", f"labelled {cr.case.label}, but the checks say otherwise"
    assert pass_rate is not None
    if pass_rate >= min_rate:
        return "pass", None
    return "fail", f"pass rate {_pct(pass_rate)} is below the gate {_pct(min_rate)}"


def _pct(value: float) -> str:
    return f"{value:.0%}" if round(value * 100, 6).is_integer() else f"{value:.1%}"


def _result(cases: list[CaseResult], judge: GeminiJudge | None) -> EvalResult:
    counts = {s: sum(1 for c in cases if c.status == s) for s in ("pass", "fail", "unscored", "no_runs")}
    exit_code = 1 if counts["fail"] else 3 if counts["unscored"] or counts["no_runs"] else 0
    judge_info = None
    if judge is not None:
        from agent_debug.eval.judge import PROMPT_VERSION

        judge_info = {"model": judge.model, "prompt_version": PROMPT_VERSION}
    summary = {"cases": len(cases), "passed": counts["pass"], "failed": counts["fail"],
               "unscored": counts["unscored"], "no_runs": counts["no_runs"],
               "runs": sum(c.runs_total for c in cases)}
    return EvalResult(cases=cases, passed=exit_code == 0, exit_code=exit_code, summary=summary, judge=judge_info)
