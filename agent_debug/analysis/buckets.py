"""Failure buckets and root causes: which subsystem to blame, and the earliest span that explains the failure.

For each failed run (spec: root status error, or `outcome.passed = false`):

1. *Suspects*: every span a rule marks as anomalous (rules are data: `rules.toml`, overridable with `--rules`).
   Built-in detectors:
   - `unrecovered_tool_failure`: a TOOL_CALL (or RETRIEVAL) that failed (status error, non-zero `tool.exit_code`,
     `tool.timeout_class = hard`) and that no later span retried successfully (`retry.of`, followed transitively);
   - `empty_tool_result`: exit code 0 with `tool.result_size = 0`;
   - `route_below_required_lane`: `route.lane` differs from `route.required_lane`, or `route.risk` is at or above
     the threshold while the lane is a cheap one;
   - `llm_hit_budget`: an LLM call that stopped for length or used its whole `token.budget`;
   - `off_plan_step`: a step that ran beside the plan's steps (a sibling of a planned step) but is not in the
     plan (`plan.steps`);
   - `planned_step_never_ran`: a planned step with no span of that name (weak);
   - `verifier_approved_failed_run`: `verifier.passed = true` in a failed run (weak);
   - `unrecovered_error`: any other error span nothing recovered (the origin of an exception chain);
   - `unreconciled_disagreement`: the span that merged parallel branches' contradictory conclusions without
     reconciling them (`disagreement.py`).
2. *Root cause*: among strong suspects, the earliest in causal order (start time; an ancestor before its
   descendants); a routing decision that set the budget an LLM call then hit is that call's cause. Weak suspects
   count only when no strong one exists. With no suspect at all the run is `unclassified` and the visible failure
   is blamed.
3. *Chain*: the span ids from the root cause up to the common ancestor and down to the visible failure (the last
   verifier that rejected the run, else the deepest error on the root's error path, else the root).
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_debug.analysis.blame import transcript_suspect
from agent_debug.analysis.disagreement import blamed_span, find_disagreements
from agent_debug.analysis.findings import RunDiagnosis, Suspect
from agent_debug.analysis.rules_check import check_rules_file
from agent_debug.analysis.tree import Tree, build_tree
from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import UsageError

if TYPE_CHECKING:
    from agent_debug.analysis.column_path import ColumnFacts

CALL_TYPES = frozenset({"TOOL_CALL", "RETRIEVAL"})
STEP_SKIP = frozenset({"LLM_CALL", "SEND", "RECEIVE", "ROUTING_DECISION", "ERROR", "PLAN"})


# -- rules ------------------------------------------------------------------------------------------------------


@dataclass
class Rule:
    name: str
    bucket: str
    strength: str
    reason: str
    detector: str | None = None
    when: dict[str, Any] | None = None


@dataclass
class Rules:
    thresholds: dict[str, Any]
    buckets: dict[str, dict[str, Any]]
    rules: list[Rule]

    def next_action(self, bucket: str) -> str:
        return str(self.buckets.get(bucket, {}).get("next_action", "")) or "read the chain from the root cause"


def load_rules(path: str | Path | None = None) -> Rules:
    """The packaged defaults, with `path` merged over them (thresholds override, buckets and rules add/replace)."""
    base = tomllib.loads(resources.files("agent_debug.analysis").joinpath("rules.toml").read_text())
    if path is not None:
        try:
            extra = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UsageError(f"no such rules file: {path}") from None
        except OSError as exc:
            raise UsageError(f"cannot read rules file {path}: {exc.strerror or type(exc).__name__}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"rules file {path} is not valid TOML: {exc}") from None
        check_rules_file(extra, path, base, DETECTORS)
        base["thresholds"] = {**base.get("thresholds", {}), **extra.get("thresholds", {})}
        base["bucket"] = {**base.get("bucket", {}), **extra.get("bucket", {})}
        by_name = {r["name"]: r for r in base.get("rule", [])}
        for r in extra.get("rule", []):
            by_name[r.get("name", f"custom{len(by_name)}")] = r
        base["rule"] = list(by_name.values())
    rules = []
    for r in base.get("rule", []):
        if r.get("enabled", True) is False:
            continue
        try:
            rules.append(Rule(r["name"], r["bucket"], r.get("strength", "strong"), r.get("reason", r["name"]),
                              r.get("detector"), r.get("when")))
        except KeyError as exc:
            raise UsageError(f"rule {r.get('name', '?')} needs {exc.args[0]!r}") from None
        if rules[-1].detector and rules[-1].detector not in DETECTORS:
            raise UsageError(f"rule {r['name']}: unknown detector {r['detector']!r}; "
                             f"known: {', '.join(sorted(DETECTORS))}")
    buckets = dict(base.get("bucket", {}))
    for rule in rules:
        buckets.setdefault(rule.bucket, {})
    return Rules(dict(base.get("thresholds", {})), buckets, rules)


# -- detectors --------------------------------------------------------------------------------------------------


class _Ctx:
    """What the detectors of one trace share: the tree, attributes, retries, the plan."""

    def __init__(self, ts: TraceSpans, tree: Tree, rules: Rules, failed: bool) -> None:
        self.ts = ts
        self.tree = tree
        self.th = rules.thresholds
        self.failed = failed
        self.attrs = [ts.attributes(i) for i in range(len(ts))]
        self.by_id = {sid: i for i, sid in enumerate(ts.span_id)}
        self.recovered = self._recovered()

    def _recovered(self) -> set[int]:
        """Spans a later retry made good: X is recovered if some span with retry.of = X succeeded, or is itself
        recovered (retries of retries)."""
        retries: dict[int, list[int]] = defaultdict(list)
        for i, a in enumerate(self.attrs):
            of = a.get("retry.of")
            if isinstance(of, str) and of in self.by_id:
                retries[self.by_id[of]].append(i)
        out: set[int] = set()

        def ok(i: int, depth: int = 0) -> bool:
            if depth > 50:
                return False
            return any(not self.failed_span(r) or ok(r, depth + 1) for r in retries.get(i, []))

        for i in retries:
            if ok(i):
                out.add(i)
        return out

    def failed_span(self, i: int) -> bool:
        a = self.attrs[i]
        code = a.get("tool.exit_code")
        return (self.ts.status[i] == "error" or (isinstance(code, int) and not isinstance(code, bool) and code != 0)
                or a.get("tool.timeout_class") == "hard")

    def plan_steps(self) -> list[tuple[int, list[str]]]:
        out = []
        for i, a in enumerate(self.attrs):
            steps = a.get("plan.steps")
            if isinstance(steps, list) and steps:
                out.append((i, [str(s) for s in steps]))
        return out


def _d_unrecovered_tool_failure(c: _Ctx) -> list[int]:
    return [i for i in range(len(c.ts)) if (c.ts.event_type[i] in CALL_TYPES or "tool.exit_code" in c.attrs[i])
            and c.failed_span(i) and i not in c.recovered]


def _d_empty_tool_result(c: _Ctx) -> list[int]:
    out = []
    for i, a in enumerate(c.attrs):
        if a.get("tool.result_size") == 0 and a.get("tool.exit_code", 0) == 0 and c.ts.status[i] != "error" \
                and "retrieval.doc_count" not in a and i not in c.recovered:
            out.append(i)
    return out


def _d_route_below_required_lane(c: _Ctx) -> list[int]:
    out = []
    cheap = {str(x) for x in c.th.get("cheap_lanes", [])}
    strong = {str(x) for x in c.th.get("strong_lanes", [])}
    threshold = float(c.th.get("risk_threshold", 0.7))
    for i, a in enumerate(c.attrs):
        lane, required, risk = a.get("route.lane"), a.get("route.required_lane"), a.get("route.risk")
        if lane is None:
            continue
        if required is not None and str(required) != str(lane):
            if not (str(lane) in strong and str(required) in cheap):  # a stronger lane than needed is no mistake
                out.append(i)
        elif isinstance(risk, (int, float)) and risk >= threshold and str(lane) in cheap:
            out.append(i)
    return out


def _d_llm_hit_budget(c: _Ctx) -> list[int]:
    out = []
    reasons = {str(x) for x in c.th.get("length_finish_reasons", [])}
    ratio = float(c.th.get("budget_hit_ratio", 1.0))
    for i, a in enumerate(c.attrs):
        if c.ts.event_type[i] != "LLM_CALL" and "llm.finish_reason" not in a:
            continue
        fr = a.get("llm.finish_reason") or a.get("gen_ai.response.finish_reasons")
        frs = fr if isinstance(fr, list) else [fr]
        budget = a.get("token.budget")
        hit = any(str(f) in reasons for f in frs if f is not None)
        if isinstance(budget, (int, float)) and budget > 0 and c.ts.completion_tokens[i] >= ratio * budget:
            hit = True
        if hit:
            out.append(i)
    return out


def _d_off_plan_step(c: _Ctx) -> list[int]:
    out: list[int] = []
    ts, tree = c.ts, c.tree
    for plan_i, steps in c.plan_steps():
        planned = set(steps)
        parents = {ts.parent_id[i] for i in range(len(ts))
                   if ts.name[i] in planned and ts.start_ns[i] >= ts.start_ns[plan_i]}
        for p in parents:
            pi = c.by_id.get(p) if p is not None else None
            kids = tree.children[pi] if pi is not None else []
            for k in kids:
                if ts.name[k] not in planned and ts.event_type[k] not in STEP_SKIP and "retry.of" not in c.attrs[k]:
                    out.append(k)
    return sorted(set(out))


def _d_planned_step_never_ran(c: _Ctx) -> list[int]:
    names = set(c.ts.name)
    return [i for i, steps in c.plan_steps() if any(s not in names for s in steps)]


def _d_verifier_approved_failed_run(c: _Ctx) -> list[int]:
    if not c.failed:
        return []
    return [i for i, a in enumerate(c.attrs) if a.get("verifier.passed") is True]


def _d_unrecovered_error(c: _Ctx) -> list[int]:
    """Error spans whose error did not come from an error child (the origin of each exception chain)."""
    ts = c.ts
    out = []
    for i in range(len(ts)):
        if ts.status[i] != "error" or i in c.recovered or ts.parent_id[i] is None:
            continue
        if any(ts.status[k] == "error" and k not in c.recovered for k in c.tree.children[i]):
            continue  # the error came from below: blame the origin
        out.append(i)
    return out


def _d_unreconciled_disagreement(c: _Ctx) -> list[int]:
    return sorted({blamed_span(d) for d in find_disagreements(c.ts)})


DETECTORS = {
    "unrecovered_tool_failure": _d_unrecovered_tool_failure,
    "unreconciled_disagreement": _d_unreconciled_disagreement,
    "empty_tool_result": _d_empty_tool_result,
    "route_below_required_lane": _d_route_below_required_lane,
    "llm_hit_budget": _d_llm_hit_budget,
    "off_plan_step": _d_off_plan_step,
    "planned_step_never_ran": _d_planned_step_never_ran,
    "verifier_approved_failed_run": _d_verifier_approved_failed_run,
    "unrecovered_error": _d_unrecovered_error,
}

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
}


def _match_when(c: _Ctx, i: int, when: dict[str, Any]) -> bool:
    """A declarative predicate; a missing attribute or a type mismatch is simply no match, never an error."""
    try:
        ets = when.get("event_type")
        if ets and c.ts.event_type[i] not in (ets if isinstance(ets, list) else [ets]):
            return False
        if "name" in when and not re.search(str(when["name"]), c.ts.name[i]):
            return False
        if "status" in when and c.ts.status[i] != when["status"]:
            return False
        if "attr" in when:
            op = when.get("op", "exists")
            present = when["attr"] in c.attrs[i]
            if op == "exists":
                return present
            if op == "missing":
                return not present
            if not present:
                return False
            value = c.attrs[i][when["attr"]]
            if isinstance(value, bool) != isinstance(when.get("value"), bool):
                return False
            return bool(_OPS[op](value, when.get("value")))
        return True
    except (TypeError, ValueError, KeyError, re.error):
        return False


def find_suspects(ts: TraceSpans, tree: Tree, rules: Rules, failed: bool, facts: ColumnFacts | None = None
                  ) -> list[Suspect]:
    """Every span a rule marks, one per span (its most specific rule), strong ones first, then in causal order.
    With `facts` (`column_path.ColumnFacts`), the rules read the stored columns instead of the records."""
    if facts is not None:
        return facts.find_suspects(tree, rules, failed)
    c = _Ctx(ts, tree, rules, failed)
    hits_by_rule = []
    for rule in rules.rules:
        try:
            if rule.detector:
                hits = DETECTORS[rule.detector](c)
            elif rule.when:
                hits = [i for i in range(len(ts)) if _match_when(c, i, rule.when)]
            else:
                hits = []
        except Exception:  # an unexpected attribute shape must never crash bucketing
            hits = []
        hits_by_rule.append(hits)
    return rank_suspects(ts, tree, rules, hits_by_rule, c.recovered)


def rank_suspects(ts: TraceSpans, tree: Tree, rules: Rules, hits_by_rule: list[list[int]], recovered: set[int],
                  *, by_id: dict[str, int] | None = None) -> list[Suspect]:
    """`find_suspects` from each rule's hits (in `rules.rules` order) and the spans retries recovered."""
    found: dict[tuple[int, str], Suspect] = {}
    for rule, hits in zip(rules.rules, hits_by_rule, strict=True):
        for i in hits:
            if i in recovered and rule.detector != "verifier_approved_failed_run":
                continue
            key = (i, rule.bucket)
            if key not in found:
                found[key] = Suspect(ts.span_id[i], ts.agent_name[i], ts.name[i], ts.event_type[i], rule.bucket,
                                     rule.name, rule.reason, rule.strength, ts.start_ns[i], i)
    # one span, several buckets: keep the most specific (an unclassified error loses to a named bucket)
    by_span: dict[int, list[Suspect]] = defaultdict(list)
    for s in found.values():
        by_span[s.index].append(s)
    out = []
    for group in by_span.values():
        named = [s for s in group if s.bucket != "unclassified"] or group
        out.append(min(named, key=lambda s: (s.strength != "strong", rules.rules.index(_rule(rules, s.rule)))))
    depth = _depths(tree, [s.index for s in out], by_id)
    return sorted(out, key=lambda s: (s.strength != "strong", s.start_ns, -depth[s.index]))


def _rule(rules: Rules, name: str) -> Rule:
    return next(r for r in rules.rules if r.name == name)


def _depths(tree: Tree, indices: list[int], by_id: dict[str, int] | None = None) -> dict[int, int]:
    """How many ancestors each of these spans has (parent cycles stop the count): up the tree's parent positions
    when it has them, else with one id map for all."""
    ts = tree.spans
    if not indices:
        return {}
    out: dict[int, int] = {}
    parent = tree.parent
    if parent is not None:  # no cycle and no repeated id: positions are exact
        for i in indices:
            d, q = 0, parent[i]
            while q is not None and d < 10_000:
                d += 1
                q = parent[q]
            out[i] = d
        return out
    if by_id is None:
        by_id = {sid: k for k, sid in enumerate(ts.span_id)}
    for i in indices:
        d, p, seen = 0, ts.parent_id[i], set()
        while p is not None and p in by_id and p not in seen and d < 10_000:
            seen.add(p)
            d += 1
            p = ts.parent_id[by_id[p]]
        out[i] = d
    return out


# -- diagnosis --------------------------------------------------------------------------------------------------


def _visible_failure(ts: TraceSpans, tree: Tree, root: int, facts: ColumnFacts | None = None) -> int:
    if facts is not None:
        rejected = facts.positions("verifier.passed", False)
    else:
        rejected = [i for i in range(len(ts)) if ts.attributes(i).get("verifier.passed") is False]
    if rejected:
        return max(rejected, key=lambda i: ts.start_ns[i])
    if ts.status[root] == "error":  # follow the error down to where it surfaced first
        i = root
        for _ in range(10_000):
            errs = [k for k in tree.children[i] if ts.status[k] == "error"]
            if not errs:
                break
            i = max(errs, key=lambda k: ts.start_ns[k])
        return i
    return root


def causal_chain(tree: Tree, a: int, b: int, by_id: dict[str, int] | None = None) -> list[int]:
    """Spans from a up to the common ancestor and down to b."""
    ts = tree.spans
    parent = tree.parent
    if parent is None and by_id is None:
        by_id = {sid: k for k, sid in enumerate(ts.span_id)}

    def up(i: int) -> list[int]:
        path, seen = [i], {i}
        while True:
            if parent is not None:  # positions (no cycle, no repeated id)
                q = parent[path[-1]]
            else:
                pid = ts.parent_id[path[-1]]
                q = by_id.get(pid) if by_id is not None and pid is not None else None
            if q is None or q in seen:
                break
            seen.add(q)
            path.append(q)
        return path

    pa, pb = up(a), up(b)
    sb = set(pb)
    lca = next((x for x in pa if x in sb), None)
    if lca is None:
        return pa + list(reversed(pb))
    return pa[: pa.index(lca) + 1] + list(reversed(pb[: pb.index(lca)]))


def _routing_cause(ts: TraceSpans, suspects: list[Suspect], s: Suspect) -> Suspect:
    """An LLM call that hit its budget is explained by the routing decision that gave it that budget."""
    if s.rule != "llm_hit_budget":
        return s
    budget = ts.attributes(s.index).get("token.budget")
    for other in suspects:
        if other.bucket == "routing_mistake" and other.start_ns <= s.start_ns and other is not s:
            return other
    for i in range(len(ts)):
        if ts.event_type[i] == "ROUTING_DECISION" and ts.start_ns[i] <= s.start_ns and budget is not None \
                and ts.attributes(i).get("token.budget") == budget:
            return Suspect(ts.span_id[i], ts.agent_name[i], ts.name[i], ts.event_type[i], "routing_mistake",
                           "llm_hit_budget", "routing decision set the budget the model call then hit", "strong",
                           ts.start_ns[i], i)
    return s


_NUM = re.compile(r"\b\d+(\.\d+)?\b")
_HEX = re.compile(r"\b[0-9a-f]{8,}\b", re.I)


def normalize_message(msg: str) -> str:
    msg = _HEX.sub("<id>", msg or "")
    msg = _NUM.sub("<n>", msg)
    return re.sub(r"\s+", " ", msg).strip()[:120]


def diagnose(ts: TraceSpans, summary: TraceSummary, rules: Rules, tree: Tree | None = None, *,
             facts: ColumnFacts | None = None) -> RunDiagnosis | None:
    """The bucket and root cause of a failed run; None for a run that did not fail. With `facts`
    (`column_path.ColumnFacts`), from the stored columns, reading only the records of the spans it reports."""
    if not summary.failed or summary.root_span_id is None:
        return None
    from agent_debug.gcpause import gc_paused

    with gc_paused():
        return _diagnose(ts, summary, summary.root_span_id, rules, tree, facts)


def _diagnose(ts: TraceSpans, summary: TraceSummary, root_span_id: str, rules: Rules, tree: Tree | None,
              facts: ColumnFacts | None) -> RunDiagnosis | None:
    tree = tree or build_tree(ts)
    root = ts.span_id.index(root_span_id)
    suspects = find_suspects(ts, tree, rules, failed=True, facts=facts)
    strong = [s for s in suspects if s.strength == "strong"]
    # chat logs have no attributes for the rules: blame a message
    if summary.source_format == "transcript" and (blamed := transcript_suspect(ts)) is not None:
        suspects, strong = [blamed, *suspects], [blamed]
    visible = _visible_failure(ts, tree, root, facts)
    if strong:
        cause = _routing_cause(ts, suspects, strong[0])
    elif suspects:
        cause = suspects[0]
    else:
        cause = Suspect(ts.span_id[visible], ts.agent_name[visible], ts.name[visible], ts.event_type[visible],
                        "unclassified", "none", "no rule explains this failure", "weak", ts.start_ns[visible],
                        visible)
    i = cause.index
    attrs = ts.attributes(i)
    evidence = [f"{cause.reason}: {ts.agent_name[i]} {ts.name[i]} ({ts.span_id[i]})"]
    for key in ("retrieval.doc_count", "retrieval.query", "tool.name", "tool.exit_code", "tool.result_size",
                "tool.timeout_class", "route.lane", "route.required_lane", "route.risk", "token.budget",
                "llm.finish_reason", "verifier.passed", "verifier.reason", "plan.steps"):
        if key in attrs:
            evidence.append(f"{key} = {attrs[key]!r}")
    rec = ts.record(i) if ts.records is not None else {}
    if rec.get("error"):
        evidence.append(f"error {rec['error'].get('type')}: {rec['error'].get('message')}")
    if cause.rule == "unreconciled_disagreement":
        evidence.extend(d.evidence(ts) for d in find_disagreements(ts) if blamed_span(d) == i)
    vis_attrs = ts.attributes(visible)
    if visible != i:
        evidence.append(f"surfaced at {ts.agent_name[visible]} {ts.name[visible]} ({ts.span_id[visible]})"
                        + (f": {vis_attrs.get('verifier.reason')}" if vis_attrs.get("verifier.reason") else ""))
    root_attrs = ts.attributes(root)
    if root_attrs.get("outcome.reason"):
        evidence.append(f"outcome: {root_attrs['outcome.reason']}")
    chain = [ts.span_id[k] for k in causal_chain(tree, i, visible)]
    source = None
    if summary.source_file or summary.source_format:
        source = {"file": summary.source_file, "format": summary.source_format}
    err = rec.get("error") or {}
    fp_parts = [cause.bucket, ts.agent_name[i], ts.event_type[i], str(attrs.get("tool.name") or ts.name[i]),
                normalize_message(str(err.get("message", ""))), summary.workflow or "",
                str(attrs.get("route.model") or attrs.get("gen_ai.request.model") or ""),
                str(attrs.get("prompt.version") or root_attrs.get("prompt.version") or "")]
    return RunDiagnosis(
        trace_id=ts.trace_id, workflow=summary.workflow, session_id=summary.session_id, start_ns=summary.start_ns,
        bucket=cause.bucket,
        root_cause={"span_id": ts.span_id[i], "agent_name": ts.agent_name[i], "name": ts.name[i],
                    "event_type": ts.event_type[i], "attributes": attrs},
        chain=chain,
        visible_failure={"span_id": ts.span_id[visible], "agent_name": ts.agent_name[visible],
                         "name": ts.name[visible], "event_type": ts.event_type[visible]},
        evidence=evidence,
        suspects=[s.as_dict() for s in suspects],
        next_action=rules.next_action(cause.bucket),
        source=source,
        fingerprint="|".join(fp_parts),
    )


# -- batch: table and clusters ------------------------------------------------------------------------------------


@dataclass
class BucketReport:
    runs: list[RunDiagnosis]
    buckets: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    passing: int = 0
    notices: list[str] = field(default_factory=list)
    # runs the store could not read (a damaged chunk): {trace_id, error}; every other run is bucketed
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [r.as_dict() for r in self.runs], "buckets": self.buckets, "clusters": self.clusters,
                "passing_runs": self.passing, "flagged_runs": sum(1 for r in self.runs if r.flag),
                "unreadable_runs": self.unreadable}


def summarize_buckets(runs: list[RunDiagnosis], rules: Rules) -> list[dict[str, Any]]:
    counts = Counter(r.bucket for r in runs)
    total = max(1, len(runs))
    out = []
    for bucket in [*rules.buckets]:
        n = counts.get(bucket, 0)
        example = next((r.trace_id for r in sorted(runs, key=lambda r: -r.start_ns) if r.bucket == bucket), None)
        out.append({"bucket": bucket, "count": n, "share": round(n / total, 4), "example": example,
                    "next_action": rules.next_action(bucket)})
    return sorted(out, key=lambda b: -b["count"])


def cluster(runs: list[RunDiagnosis]) -> list[dict[str, Any]]:
    """Failures grouped by fingerprint, ranked by impact (count, then recency)."""
    groups: dict[str, list[RunDiagnosis]] = defaultdict(list)
    for r in runs:
        groups[r.fingerprint].append(r)
    out = []
    for fp, members in groups.items():
        latest = max(members, key=lambda r: r.start_ns)
        bucket, agent, et, tool, msg, workflow, model, prompt = (fp.split("|") + [""] * 8)[:8]
        label = f"{bucket}: {agent} {tool}" + (f" ({msg[:60]})" if msg else "")
        out.append({"fingerprint": fp, "label": label, "bucket": bucket, "count": len(members),
                    "last_seen_ns": latest.start_ns, "representative": latest.trace_id,
                    "root_cause_agent": agent, "event_type": et, "tool": tool, "error": msg, "workflow": workflow,
                    "model": model, "prompt_version": prompt, "traces": [r.trace_id for r in members]})
    return sorted(out, key=lambda c: (-c["count"], -c["last_seen_ns"]))


def blame_earlier_turn(d: RunDiagnosis, found: dict[str, Any], rules: Rules) -> None:
    """Move a failed turn's bucket and root cause to the earlier turn whose output introduced the fact its
    failing step names (`sessions.session_origin`); the turn's own root cause stays in the evidence."""
    o = found["origin"]
    own = d.root_cause
    d.session = found
    d.bucket = o["bucket"]
    d.root_cause = {"span_id": o["span_id"], "agent_name": o["agent_name"], "name": o["name"],
                    "event_type": o["event_type"], "trace_id": o["trace_id"], "turn": o["turn"], "attributes": {}}
    d.evidence = [f"state corruption: {o['agent_name']} {o['name']} ({o['span_id']}) in turn {o['turn']} "
                  f"(run {o['trace_id'][:12]}) introduced {found['fact']!r}, which turn(s) {found['relied_on_by']} "
                  f"relied on", f"surfaced here at {own['agent_name']} {own['name']} ({own['span_id']})",
                  *d.evidence]
    d.chain = [o["span_id"], *d.chain]  # from the earlier turn's span to this turn's visible failure
    d.next_action = rules.next_action(d.bucket)
    d.fingerprint = "|".join([d.bucket, o["agent_name"], o["event_type"], o["name"], found["fact"][:40],
                              d.workflow or "", "", ""])
