"""Diagnosis from columns: the bucket rules and the span signals of a big run read from the stored columns and span
digests (`digest.py`), parsing only the records of the spans they report or whose text they must read.

Same answers as the records path (`buckets.find_suspects`, `suspects.score_spans`): the rules are the same
predicates over the digest's flags and sparse attributes; the signals of a span whose text holds nothing any
signal looks for (no `TEXT` flag) are worked out from the structure in bulk, and every other span goes through the
signal functions themselves, on a `SpanContext` whose texts of plain spans are stand-ins with the same length and
emptiness (nothing else of such a text can change a signal). `tests/test_column_path.py` compares both paths on
the demo, the fixtures and the shared data.

`ColumnFacts.of(ts, rules)` is None when this path does not apply, and the records path is used: no digests (an
older store), repeated span ids or parent cycles, a transcript, or a rule that reads an attribute the digest does
not keep.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from itertools import compress, islice, repeat
from operator import add, and_, eq, is_, is_not, le, mul, ne, not_
from typing import Any, NamedTuple

from agent_debug import digest as dg
from agent_debug.analysis import vector
from agent_debug.analysis.blame import TranscriptModel
from agent_debug.analysis.blame_model import PRIOR_WEIGHTS, SpanModel, default_span_model
from agent_debug.analysis.buckets import (
    CALL_TYPES,
    DETECTORS,
    STEP_SKIP,
    Rules,
    _match_when,
    rank_suspects,
)
from agent_debug.analysis.findings import Suspect
from agent_debug.analysis.source import Source
from agent_debug.analysis.span_context import CANDIDATE_TYPES, TEXT_CAP, ModelOutput, SpanContext
from agent_debug.analysis.span_signals import LARGE_RESULT_CHARS, MODEL_SIGNALS, TOOL_SIGNALS, Hit
from agent_debug.analysis.suspects import (
    CONTEXT_FEATURES,
    GENERIC_RULES,
    WEAKER_SHOWN,
    SpanSuspect,
    SuspectList,
    _suspect,
    disagreement_hits,
    is_transcript,
    run_shape,
    run_suspects,
    shaped,
)
from agent_debug.analysis.tree import Tree, build_tree
from agent_debug.columns import TraceSpans
from agent_debug.gcpause import gc_paused

# `when` rules the digest can answer: any op on a sparse key; presence of the flagged ones; doc_count == 0
_PRESENCE = {"tool.exit_code": dg.EXIT, "retrieval.doc_count": dg.DOC, "llm.finish_reason": dg.FINISH}


def when_supported(when: dict[str, Any]) -> bool:
    attr = when.get("attr")
    if attr is None or attr in dg.SPARSE_KEYS:
        return True
    op = when.get("op", "exists")
    if attr in _PRESENCE and op in ("exists", "missing"):
        return True
    value = when.get("value")
    return attr == "retrieval.doc_count" and op == "==" and type(value) is int and value == 0


class ColumnFacts:
    """One trace's digest, read as the rules and signals need it."""

    def __init__(self, ts: TraceSpans) -> None:
        d = ts.digest
        assert isinstance(d, dict)
        self.ts = ts
        self.n = len(ts)
        self.df: list[int] = d["df"]
        self.ol: list[int] = d["ol"]
        self.ih: list[str | None] = d["ih"]
        self.sparse: dict[str, dict[int, Any]] = {k: dict(map(tuple, pairs)) for k, pairs in d["da"].items()}
        self.errors = list(compress(range(self.n), map(eq, ts.status, repeat("error"))))
        self._cache: dict[Any, Any] = {}

    @classmethod
    def of(cls, ts: TraceSpans, rules: Rules, tree: Tree) -> ColumnFacts | None:
        if ts.digest is None and isinstance(ts.records, list) and len(ts.records) == len(ts):
            ts.digest = dg.digest_batch(ts.records)  # a trace read from files: digested here
        if not isinstance(ts.digest, dict) or len(ts.digest["df"]) != len(ts) or ts.records is None:
            return None
        if tree.parent is None:  # parent cycles or repeated span ids
            return None
        for rule in rules.rules:
            if rule.detector is None and rule.when and not when_supported(rule.when):
                return None
        return cls(ts)

    # -- attributes ------------------------------------------------------------------------------------------------

    def flagged(self, mask: int) -> list[int]:
        got = self._cache.get(("flagged", mask))
        if got is None:
            got = self._cache[("flagged", mask)] = list(compress(range(self.n), map(and_, self.df, repeat(mask))))
        return got

    def positions(self, key: str, value: Any) -> list[int]:
        """Spans whose attribute `key` (a sparse one) is `value` (`is` for True/False/None, else ==)."""
        got = self.sparse.get(key, {})
        if value is None or isinstance(value, bool):
            return sorted(i for i, v in got.items() if v is value)
        return sorted(i for i, v in got.items() if v == value)

    def attrs_for(self, i: int, keys: Iterable[str]) -> dict[str, Any]:
        """The attributes among `keys` that span i has, as its record has them (sparse keys only)."""
        return {k: self.sparse[k][i] for k in keys if k in self.sparse and i in self.sparse[k]}

    def by_id(self) -> dict[str, int]:
        got = self._cache.get("by_id")
        if got is None:
            got = self._cache["by_id"] = {sid: i for i, sid in enumerate(self.ts.span_id)}
        return got

    def failed_span(self, i: int) -> bool:
        """`buckets._Ctx.failed_span`."""
        return self.ts.status[i] == "error" or bool(self.df[i] & (dg.EXIT_FAIL | dg.HARD))

    def failing(self) -> list[int]:
        return sorted(set(self.errors) | set(self.flagged(dg.EXIT_FAIL | dg.HARD)))

    def retries(self) -> dict[int, list[int]]:
        """Span -> the spans whose `retry.of` names it, in order."""
        got = self._cache.get("retries")
        if got is None:
            got = defaultdict(list)
            of = self.sparse.get("retry.of", {})
            by_id = self.by_id() if of else {}
            for i in sorted(of):
                target = of[i]
                if isinstance(target, str) and target in by_id:
                    got[by_id[target]].append(i)
            self._cache["retries"] = got = dict(got)
        return got

    def recovered_rules(self) -> set[int]:
        """`buckets._Ctx._recovered`."""
        retries = self.retries()

        def ok(i: int, depth: int = 0) -> bool:
            if depth > 50:
                return False
            return any(not self.failed_span(r) or ok(r, depth + 1) for r in retries.get(i, []))

        return {i for i in retries if ok(i)}

    # -- the rules ---------------------------------------------------------------------------------------------------

    def find_suspects(self, tree: Tree, rules: Rules, failed: bool) -> list[Suspect]:
        """`buckets.find_suspects`, from the digest."""
        key = ("suspects", id(rules), failed)
        if key in self._cache:
            return list(self._cache[key])
        recovered = self.recovered_rules()
        hits_by_rule = []
        for rule in rules.rules:
            try:
                if rule.detector:
                    hits = _DETECTORS[rule.detector](self, tree, rules, failed, recovered)
                elif rule.when:
                    hits = self._when(rule.when)
                else:
                    hits = []
            except Exception:  # as the records path: an unexpected attribute shape never crashes bucketing
                hits = []
            hits_by_rule.append(hits)
        found = rank_suspects(self.ts, tree, rules, hits_by_rule, recovered)
        self._cache[key] = found
        return list(found)

    def _when(self, when: dict[str, Any]) -> list[int]:
        attr = when.get("attr")
        if attr is None:
            candidates: Iterable[int] = range(self.n)
            attrs: Any = _NoAttrs()
        elif attr in dg.SPARSE_KEYS:
            if when.get("op", "exists") == "missing":
                candidates, attrs = range(self.n), _SparseAttrs(self, attr)
            else:
                candidates, attrs = sorted(self.sparse.get(attr, {})), _SparseAttrs(self, attr)
        elif when.get("op", "exists") in ("exists", "missing"):
            present = set(self.flagged(_PRESENCE[attr]))
            candidates, attrs = range(self.n), _PresentAttrs(present, attr)
        else:  # retrieval.doc_count == 0 (not a bool)
            candidates = self.flagged(dg.DOC_ZERO_NUM)
            attrs = _FixedAttrs({attr: 0})
        shim = _WhenCtx(self.ts, attrs)
        # _WhenCtx stands in for buckets._Ctx: it has what the rules read
        return [i for i in candidates if _match_when(shim, i, when)]  # type: ignore[arg-type]


class _NoAttrs:
    def __getitem__(self, i: int) -> dict[str, Any]:
        return {}


class _FixedAttrs:
    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.attrs


class _SparseAttrs:
    def __init__(self, facts: ColumnFacts, key: str) -> None:
        self.values = facts.sparse.get(key, {})
        self.key = key

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {self.key: self.values[i]} if i in self.values else {}


class _PresentAttrs:
    def __init__(self, present: set[int], key: str) -> None:
        self.present = present
        self.key = key

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {self.key: True} if i in self.present else {}


class _WhenCtx:
    def __init__(self, ts: TraceSpans, attrs: Any) -> None:
        self.ts = ts
        self.attrs = attrs


# -- detectors over the digest (each the same predicate as its namesake in buckets.py) ------------------------------

Detector = Callable[[ColumnFacts, Tree, Rules, bool, set[int]], list[int]]


def _c_unrecovered_tool_failure(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]) -> list[int]:
    et = f.ts.event_type
    return [i for i in f.failing() if (et[i] in CALL_TYPES or f.df[i] & dg.EXIT) and i not in rec]


def _c_empty_tool_result(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]) -> list[int]:
    st = f.ts.status
    return [i for i in f.flagged(dg.SIZE_ZERO)
            if (not f.df[i] & dg.EXIT or f.df[i] & dg.EXIT_ZERO) and st[i] != "error" and not f.df[i] & dg.DOC
            and i not in rec]


def _c_route_below_required_lane(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]) -> list[int]:
    th = rules.thresholds
    out = []
    cheap = {str(x) for x in th.get("cheap_lanes", [])}
    strong = {str(x) for x in th.get("strong_lanes", [])}
    threshold = float(th.get("risk_threshold", 0.7))
    lanes, req, risks = (f.sparse.get(k, {}) for k in ("route.lane", "route.required_lane", "route.risk"))
    for i in sorted(lanes):
        lane, required, risk = lanes[i], req.get(i), risks.get(i)
        if lane is None:
            continue
        if required is not None and str(required) != str(lane):
            if not (str(lane) in strong and str(required) in cheap):
                out.append(i)
        elif isinstance(risk, (int, float)) and risk >= threshold and str(lane) in cheap:
            out.append(i)
    return out


def _c_llm_hit_budget(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]) -> list[int]:
    th = rules.thresholds
    reasons = {str(x) for x in th.get("length_finish_reasons", [])}
    ratio = float(th.get("budget_hit_ratio", 1.0))
    finish = f.sparse.get("llm.finish_reason", {})
    genai = f.sparse.get("gen_ai.response.finish_reasons", {})
    budgets = f.sparse.get("token.budget", {})
    candidates = set(finish) | set(genai) | set(budgets)
    if "stop" in reasons:
        candidates |= set(f.flagged(dg.FINISH))
    et, ct, df = f.ts.event_type, f.ts.completion_tokens, f.df
    out = []
    for i in sorted(candidates):
        has_finish = df[i] & dg.FINISH
        if et[i] != "LLM_CALL" and not has_finish:
            continue
        fr = (finish.get(i, "stop") if has_finish else None) or genai.get(i)
        frs = fr if isinstance(fr, list) else [fr]
        budget = budgets.get(i)
        hit = any(str(x) in reasons for x in frs if x is not None)
        if isinstance(budget, (int, float)) and budget > 0 and ct[i] >= ratio * budget:
            hit = True
        if hit:
            out.append(i)
    return out


def _plan_steps(f: ColumnFacts) -> list[tuple[int, list[str]]]:
    plans = f.sparse.get("plan.steps", {})
    return [(i, [str(s) for s in plans[i]]) for i in sorted(plans) if isinstance(plans[i], list) and plans[i]]


def _c_off_plan_step(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]) -> list[int]:
    out: list[int] = []
    ts = f.ts
    plans = _plan_steps(f)
    if not plans:
        return out
    by_name: dict[str, list[int]] = defaultdict(list)
    wanted = {s for _, steps in plans for s in steps}
    for i, nm in enumerate(ts.name):
        if nm in wanted:
            by_name[nm].append(i)
    retried = f.sparse.get("retry.of", {})
    for plan_i, steps in plans:
        planned = set(steps)
        parents = {ts.parent_id[i] for s in planned for i in by_name.get(s, ())
                   if ts.start_ns[i] >= ts.start_ns[plan_i]}
        for p in parents:
            pi = f.by_id().get(p) if p is not None else None
            kids = tree.children[pi] if pi is not None else []
            for k in kids:
                if ts.name[k] not in planned and ts.event_type[k] not in STEP_SKIP and k not in retried:
                    out.append(k)
    return sorted(set(out))


def _c_planned_step_never_ran(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]) -> list[int]:
    plans = _plan_steps(f)
    names = set(f.ts.name) if plans else set()
    return [i for i, steps in plans if any(s not in names for s in steps)]


def _c_verifier_approved_failed_run(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]
                                    ) -> list[int]:
    return f.positions("verifier.passed", True) if failed else []


def _c_unrecovered_error(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]) -> list[int]:
    ts = f.ts
    out = []
    for i in f.errors:
        if i in rec or ts.parent_id[i] is None:
            continue
        if any(ts.status[k] == "error" and k not in rec for k in tree.children[i]):
            continue
        out.append(i)
    return out


def _c_unreconciled_disagreement(f: ColumnFacts, tree: Tree, rules: Rules, failed: bool, rec: set[int]
                                 ) -> list[int]:
    # _WhenCtx stands in for buckets._Ctx: the detector reads only its trace
    return DETECTORS["unreconciled_disagreement"](_WhenCtx(f.ts, None))  # type: ignore[arg-type]


_DETECTORS: dict[str, Detector] = {
    "unrecovered_tool_failure": _c_unrecovered_tool_failure,
    "unreconciled_disagreement": _c_unreconciled_disagreement,
    "empty_tool_result": _c_empty_tool_result,
    "route_below_required_lane": _c_route_below_required_lane,
    "llm_hit_budget": _c_llm_hit_budget,
    "off_plan_step": _c_off_plan_step,
    "planned_step_never_ran": _c_planned_step_never_ran,
    "verifier_approved_failed_run": _c_verifier_approved_failed_run,
    "unrecovered_error": _c_unrecovered_error,
}
assert set(_DETECTORS) == set(DETECTORS)


_TOOL_TYPES = CANDIDATE_TYPES - {"LLM_CALL"}  # the candidates that are tool calls (and retrievals)


# -- the span signals ---------------------------------------------------------------------------------------------


class ColumnContext(SpanContext):
    """`SpanContext` built from columns in a few linear passes, reading records only for the spans the digest
    marks; the output of a plain model call, and a result made only of plain outputs, are stand-ins of the same
    length and emptiness (see the module docstring)."""

    def __init__(self, ts: TraceSpans, tree: Tree, facts: ColumnFacts) -> None:  # noqa: PLR0915
        self.ts = ts
        self.facts = facts
        n = self.n = len(ts)
        df = facts.df
        parent = tree.parent
        assert parent is not None  # ColumnFacts.of: no cycle and no repeated id
        self.parent = parent
        self.children = tree.children
        tied: list[int] = []
        self.order = _order(ts, tied)
        # parents of siblings that start together (their children lists, by start then index, need span ids)
        seen_at: dict[tuple[int, int], int] = {}
        self._tied = set()
        for i in tied:
            p = parent[i]
            if p is not None and seen_at.setdefault((p, ts.start_ns[i]), i) != i:
                self._tied.add(p)
        et = ts.event_type
        self.is_llm = list(map(eq, et, repeat("LLM_CALL")))
        self.llm = list(compress(self.order, map(self.is_llm.__getitem__, self.order)))
        failed = [False] * n
        for i in facts.failing():
            failed[i] = True
        for i in facts.flagged(dg.EVENTS):
            if not failed[i]:
                rec = ts.record(i)
                events = rec.get("events") or (rec.get("payload") or {}).get("events") if isinstance(rec, dict) \
                    else None
                failed[i] = isinstance(events, list) and any(
                    isinstance(e, dict) and str(e.get("name", "")).lower() == "exception" for e in events)
        self.failed = failed
        self.recovered = self._recovered_from(facts.retries())
        start, sid = ts.start_ns, ts.span_id
        self.origins = sorted((i for i in set(facts.failing()) | {i for i in facts.flagged(dg.EVENTS) if failed[i]}
                               if failed[i] and i not in self.recovered
                               and not any(failed[k] and k not in self.recovered for k in self.children[i])),
                              key=lambda i: (start[i], sid[i]))  # in `order`'s order
        self.origin_set = set(self.origins)
        self.failed_action: dict[int, int] = {}  # model call -> `action_failed` (only the calls that have one)
        self.decider = {}
        self._by_parent = {}
        calls = frozenset({"TOOL_CALL", "RETRIEVAL"})
        # model call -> its tool and retrieval actions, in order (only the calls that have some)
        self.tools_of: Mapping[int, list[int]]
        deciders: list[int | None] | vector.Positions  # each span's decider (`SpanContext.decide`)
        self.deciders: list[int | None] | vector.Positions
        # a big run: the deciders and every call's actions by array passes (`vector`: the same answers)
        np = vector.numpy_for(n)
        self.arrays = vector.run_arrays(np, parent, self.order, self.is_llm, ts.start_ns) if np is not None else None
        if self.arrays is not None:
            self.deciders = deciders = vector.Positions(self.arrays.dec)
            self.actions, self.tools_of = vector.actions_of(self.arrays, self.order, list(map(calls.__contains__, et)))
        else:
            self.deciders = deciders = self._deciders()
            actions: dict[int, list[int]] = {k: [] for k in self.llm}
            tools_of: dict[int, list[int]] = {}
            self.actions, self.tools_of = actions, tools_of
            dec = list(map(deciders.__getitem__, self.order))
            acting = list(map(and_, map(is_not, dec, repeat(None)),
                              map(not_, map(self.is_llm.__getitem__, self.order))))
            # (d is never None: `acting` leaves those out, which the type checker cannot see through compress)
            for i, d in zip(compress(self.order, acting), compress(dec, acting), strict=True):
                actions[d].append(i)  # type: ignore[index]
                if et[i] in calls:
                    if d in tools_of:
                        tools_of[d].append(i)
                    else:
                        tools_of[d] = [i]  # type: ignore[index]
        for i in self.origins:  # in order: a call's first failed action
            d = deciders[i]
            if d is not None and not self.is_llm[i] and d not in self.failed_action:
                self.failed_action[d] = i
        for k in self.llm:
            if failed[k] and k not in self.recovered:
                self.failed_action[k] = k
        self.by_agent = {}
        for k in self.llm:
            self.by_agent.setdefault(ts.agent_name[k], []).append(k)
        self._pos = {}
        for agent_calls in self.by_agent.values():
            self._pos.update(zip(agent_calls, range(len(agent_calls)), strict=True))
        self._outputs = {}
        self._results = {}
        self._prev = {}
        self._same = None
        self.plain = list(map(not_, map(and_, df, repeat(dg.TEXT))))
        # the tool calls (model calls excepted), in order
        self.tools = list(compress(self.order, map(_TOOL_TYPES.__contains__, map(et.__getitem__, self.order))))
        self.features_of: dict[int, tuple[str, ...]] = {}
        self._pieces: dict[int, list[int] | None] = {}
        self._texts: dict[int, str | None] = {}  # plain results' words (`result_text`)
        self.off: frozenset[str] = frozenset()  # signals the model leaves out: not worked out

    def _recovered_from(self, retries: dict[int, list[int]]) -> set[int]:
        """`SpanContext._recovered` over the stored retries."""

        def ok(i: int, depth: int = 0) -> bool:
            return depth < 50 and any(not self.failed[r] or ok(r, depth + 1) for r in retries.get(i, []))

        return {i for i in retries if ok(i)}

    def _deciders(self) -> list[int | None]:
        """`SpanContext.decide` of every span in one top-down pass over the children lists: the latest model call
        beside each span (a sibling before it in (start, span id) order), else its parent's, up to 64 levels; or
        a step's one model call when no child starts before it."""
        n, is_llm, start, sid, children = self.n, self.is_llm, self.ts.start_ns, self.ts.span_id, self.children
        tied = self._tied
        up: list[int | None] = [None] * n
        dist = [0] * n
        inside: list[tuple[int, int]] = []
        order = self._top_down()
        for p in compress(order, map(children.__getitem__, order)):  # the spans with children (a leaf's are ())
            kids = children[p]
            if p in tied:
                kids = sorted(kids, key=lambda k: (start[k], sid[k]))
            up_p = up[p]
            d_p = dist[p] + 1 if up_p is not None and dist[p] < 63 else 0
            last = None
            count = 0
            for k in kids:
                if last is not None:
                    up[k] = last
                elif d_p:
                    up[k] = up_p
                    dist[k] = d_p
                if is_llm[k]:
                    last = k
                    count += 1
            # (count == 1: `last` was set)
            if count == 1 and start[kids[0]] >= start[last]:  # type: ignore[index]
                inside.append((p, last))  # type: ignore[arg-type]
        for p, k in inside:
            up[p] = k
        return up

    def _top_down(self) -> list[int]:
        order: list[int] = []
        level = list(compress(range(self.n), map(is_, self.parent, repeat(None))))
        get = self.children.__getitem__
        from itertools import chain

        while level:
            order.extend(level)
            level = list(chain.from_iterable(map(get, level)))
        return order

    def decide(self, i: int) -> int | None:
        raise NotImplementedError("deciders are computed at construction")

    def action_failed(self, k: int) -> int | None:
        """`SpanContext.action_failed`, looked up (worked out for every call at construction)."""
        if self.is_llm[k]:
            return self.failed_action.get(k)
        return super().action_failed(k)

    def output(self, k: int) -> ModelOutput:
        if k not in self._outputs:
            if self.plain[k]:
                self._outputs[k] = ModelOutput("", "", self.facts.ol[k])
            else:
                return super().output(k)
        return self._outputs[k]

    def pieces(self, k: int) -> list[int] | None:
        """The spans whose outputs make model call k's result (`SpanContext._result`), or None for no result."""
        try:
            return self._pieces[k]
        except KeyError:
            got = self._pieces[k] = self._pieces_of(k)
            return got

    def _pieces_of(self, k: int) -> list[int] | None:
        return self.pieces_of_calls((k,))[k]

    def pieces_of_calls(self, calls: Iterable[int]) -> dict[int, list[int] | None]:
        """`pieces` of these model calls, in one loop (every model call of a big run at once)."""
        parent, deciders, is_llm, df, tools_of = self.parent, self.deciders, self.is_llm, self.facts.df, self.tools_of
        out: dict[int, list[int] | None] = {}
        for k in calls:
            p = parent[k]
            # the step that holds k, one of k's actions, records the result; else k's tool calls
            out[k] = [p] if p is not None and deciders[p] == k and not is_llm[p] and df[p] & dg.OUT \
                else tools_of.get(k)
        return out

    def result_size(self, pieces: list[int]) -> int:
        """The length of the result these pieces make (their outputs joined by newlines)."""
        return sum(map(self.facts.ol.__getitem__, pieces)) + len(pieces) - 1

    def plain_result(self, k: int) -> bool | None:
        """Is k's result made only of plain outputs and short enough to need no record (None: no result)?"""
        pieces = self.pieces(k)
        return None if pieces is None else self.plain_pieces(pieces, self.result_size(pieces))

    def plain_pieces(self, pieces: list[int], size: int) -> bool:
        """`plain_result` of a result made of these pieces, `size` characters long."""
        ol, plain, df = self.facts.ol, self.plain, self.facts.df
        if not all(map(plain.__getitem__, pieces)):
            return False
        if size <= TEXT_CAP:
            return True
        # longer than the signals read: its head is still known when it opens with a whole content line
        first = pieces[0]
        return not df[first] & dg.EMPTY and bool(df[first] & dg.LINE) and ol[first] <= TEXT_CAP

    def result_text(self, k: int) -> str | None:
        """A plain result's words, read from the records (`result` gives a stand-in for it)."""
        if not self.plain_result(k):
            return self.result(k)
        if k not in self._texts:
            self._texts[k] = super()._result(k)
        return self._texts[k]

    def _result(self, k: int) -> str | None:
        pieces = self.pieces(k)
        if pieces is None:
            return None
        if self.plain_result(k):
            df, ol = self.facts.df, self.facts.ol
            return "\n".join((" " if df[i] & dg.EMPTY else "x") * ol[i] for i in pieces)
        return super()._result(k)


def _order(ts: TraceSpans, tied: list[int] | None = None) -> list[int]:
    """Span indices by (start, span id), as `SpanContext.order`: sorted by start in C, ties by span id (`tied`
    gets the spans that share a start with another)."""
    start = ts.start_ns
    np = vector.numpy_for(len(ts))
    got = vector.start_order(np, start) if np is not None else None
    if got is not None:
        order, same = got
    else:
        if all(map(le, start, islice(start, 1, None))):  # stored in start order already (checked in C: ~20 ms at 1M)
            order, s = list(range(len(ts))), start
        else:
            order = sorted(range(len(ts)), key=start.__getitem__)
            s = list(map(start.__getitem__, order))
        same = list(compress(range(1, len(s)), map(eq, s[1:], s[:-1])))
    if tied is not None:
        tied.extend(order[j] for k in same for j in (k - 1, k))
    if not same:
        return order
    sid = ts.span_id
    i = 0
    while i < len(same):
        j = i
        while j + 1 < len(same) and same[j + 1] == same[j] + 1:
            j += 1
        lo, hi = same[i] - 1, same[j] + 1
        order[lo:hi] = sorted(order[lo:hi], key=sid.__getitem__)
        i = j + 1
    return order



def prefetch(ts: TraceSpans, spans: Iterable[int]) -> None:
    """Read these spans' records in one pass over their chunks (not one chunk per record, evicted and read
    again)."""
    pre = getattr(ts.records, "prefetch", None)
    if pre is not None:
        pre(sorted(set(spans)))


# feature bits of the signals worked out in bulk (each is its signal's feature, value 1 unless noted)
_LLM_BITS = ("action_failed", "reacts_to_failure", "empty_result", "after_empty_result", "error_in_result",
             "after_error_in_result", "large_result", "first_action", "no_action")
_TAIL = ("first_action", "no_action")  # after large_result, as MODEL_SIGNALS orders them
_TOOL_BITS = ("tool_failed", "tool_repeated", "tool_empty_result")


Features = tuple[tuple[str, float], ...]  # a span's features in the order candidate_features inserts them


def signal_features(c: ColumnContext) -> tuple[dict[int, Features], set[int]]:
    """The signal features of every model and tool call (one shared tuple per distinct set), and the calls whose
    features came from the signal functions (the rest were worked out in bulk); the signals in `c.off` are not
    worked out by the functions (the bulk ones are taken out by `column_features`)."""
    df, plain = c.facts.df, c.plain
    feats: dict[int, Features] = {}
    shared: dict[Features, Features] = {}

    def intern(x: dict[str, float]) -> Features:
        key = tuple(x.items())
        return shared.setdefault(key, key)

    slow: set[int] = set()
    actions = c.actions
    if isinstance(actions, vector.Grouped):  # (a big run's) the calls with actions, then a look at the others' output
        acting = set(actions)
        acted = dict(zip(c.llm, map(acting.__contains__, c.llm), strict=True))
        for k in compress(c.llm, map(not_, map(plain.__getitem__, c.llm))):
            if not acted[k]:
                acted[k] = bool(c.output(k).action)
    else:
        acted = {k: bool(actions[k]) or (not plain[k] and bool(c.output(k).action)) for k in c.llm}
    prev: dict[int, int | None] = {}
    for calls in c.by_agent.values():
        last = None
        for k in calls:
            prev[k] = last
            if acted[k]:
                last = k
    c._prev.update(prev)
    c.features_of = {}  # model call -> the names of its features (for the next call's after_*)
    slow_tools = list(compress(c.tools, map(not_, map(plain.__getitem__, c.tools))))
    if c.arrays is not None:  # a big run: the same by array passes
        _bulk_llm_features_by_arrays(c, c.arrays, acted, prev, feats, intern, slow, slow_tools)
    else:
        _bulk_llm_features(c, acted, prev, feats, intern, slow, slow_tools)
    same = _same_calls(c)
    for i in slow_tools:
        feats[i] = intern(_by_functions(c, i, TOOL_SIGNALS)[0])
        slow.add(i)
    # a plain tool call's features: its code (tool_failed | tool_repeated << 1 | tool_empty_result << 2), in C passes
    plain_tools = list(compress(c.tools, map(plain.__getitem__, c.tools)))
    empty_ok = map(and_, map(not_, map(c.failed.__getitem__, plain_tools)),
                   map(bool, map(and_, map(df.__getitem__, plain_tools), repeat(_EMPTY_RESULT))))
    codes = map(add, map(add, map(c.origin_set.__contains__, plain_tools),
                         map(mul, map(same.__contains__, plain_tools), repeat(2))), map(mul, empty_ok, repeat(4)))
    tool_table = [intern({name: 1.0 for bit, name in enumerate(_TOOL_BITS) if code >> bit & 1}) for code in range(8)]
    feats.update(zip(plain_tools, map(tool_table.__getitem__, codes), strict=True))
    return feats, slow


def _bulk_llm_features(c: ColumnContext, acted: dict[int, bool], prev: dict[int, int | None],
                       feats: dict[int, Features], intern: Callable[[dict[str, float]], Features], slow: set[int],
                       slow_tools: list[int]) -> None:
    """The model calls' features: by the signal functions for a call whose output or result must be read, the
    rest in bulk from the columns (`signal_features`). The records of `slow_tools` are read in the same pass."""
    df, plain, feats_names = c.facts.df, c.plain, c.features_of
    # `c.pieces` and `c.plain_result` of every model call, in one pass
    pieces_of = c.pieces_of_calls(c.llm)
    c._pieces.update(pieces_of)
    simple_of: dict[int, bool] = {}
    size_of: dict[int, int] = {}
    result_size, plain_pieces = c.result_size, c.plain_pieces
    for k, pieces in pieces_of.items():
        if pieces is None:
            simple_of[k] = plain[k]
            size_of[k] = -1
        else:
            size = size_of[k] = result_size(pieces)
            simple_of[k] = plain[k] and plain_pieces(pieces, size)
    slow_llm = [k for k in c.llm if not simple_of[k]]
    # sig_empty_result / sig_error_in_result fired: the slow calls' first (the signal functions read nothing this
    # loop sets), then each bulk call's in order (its after_* bits read the previous acting call's)
    empty, errtext = _slow_llm_features(c, slow_llm, prev, pieces_of, slow_tools, feats, intern, slow)
    failed_action = c.failed_action
    vector_of = _bulk_vectors(intern)
    for k in c.llm:
        if not simple_of[k]:
            continue
        # the bits of _LLM_BITS (sig_action_failed cannot fail on a stored record: its `error` is an object)
        af = failed_action.get(k)
        did = acted[k]
        p = prev[k] if did else None
        pieces = pieces_of[k]
        er = pieces is not None and af is None and all(df[i] & dg.EMPTY for i in pieces)
        code = ((af is not None) | (p is not None and p in failed_action) << 1 | er << 2
                | (p is not None and empty[p]) << 3 | (p is not None and errtext[p]) << 5
                | (did and p is None) << 7 | (not did) << 8)
        feats[k] = vector_of(code, size_of[k])
        if er:
            feats_names[k] = ("empty_result",)
        empty[k] = er
        errtext[k] = False


def _slow_llm_features(c: ColumnContext, slow_llm: list[int], prev: dict[int, int | None],
                       pieces_of: dict[int, list[int] | None], slow_tools: list[int], feats: dict[int, Features],
                       intern: Callable[[dict[str, float]], Features], slow: set[int]
                       ) -> tuple[dict[int, bool], dict[int, bool]]:
    """The features of the model calls whose output or result must be read, by the signal functions (their
    records, and those of `slow_tools`, read in one pass first); returns whether empty_result and error_in_result
    fired on each. `pieces_of` holds the pieces of these calls and of the calls before them."""
    # (a slow call's signals may read its own result, and the previous acting call's words: `ignores_result`)
    prefetch(c.ts, set(slow_llm) | set(slow_tools) | {p for k in slow_llm for p in pieces_of[k] or ()}
             | ({p for k in slow_llm if (q := prev[k]) is not None for p in pieces_of[q] or ()}
                if "ignores_result" not in c.off else set()))
    empty: dict[int, bool] = {}
    errtext: dict[int, bool] = {}
    for k in slow_llm:
        x, _ = _by_functions(c, k, MODEL_SIGNALS)
        feats[k] = intern(x)
        c.features_of[k] = tuple(x)
        slow.add(k)
        empty[k] = "empty_result" in x
        errtext[k] = "error_in_result" in x
    return empty, errtext


def _bulk_vectors(intern: Callable[[dict[str, float]], Features]) -> Callable[[int, int], Features]:
    """`vector_of(code, result size)`: a bulk model call's features, one shared tuple per distinct pair."""
    by_code: dict[tuple[int, float], Features] = {}

    def vector_of(code: int, size: int) -> Features:
        large = round(math.log10(size) - 3, 3) if size >= LARGE_RESULT_CHARS else 0.0
        got = by_code.get((code, large))
        if got is None:
            got = by_code[code, large] = intern(_llm_vector(code, large))
        return got

    return vector_of


def _bulk_llm_features_by_arrays(c: ColumnContext, ra: vector.RunArrays, acted: dict[int, bool],
                                 prev: dict[int, int | None], feats: dict[int, Features],
                                 intern: Callable[[dict[str, float]], Features], slow: set[int],
                                 slow_tools: list[int]) -> None:
    """`_bulk_llm_features` by array passes (`vector.call_results`, `vector.call_codes`): the same features."""
    calls, feats_names = c.llm, c.features_of
    res = vector.call_results(ra, calls, c.facts.df, c.facts.ol, c.plain, (dg.OUT, dg.EMPTY, dg.LINE), TEXT_CAP)
    slow_llm = list(compress(calls, map(not_, res.simple)))
    pieces_of = c.pieces_of_calls(slow_llm + [q for k in slow_llm if (q := prev[k]) is not None])
    empty_of, errtext_of = _slow_llm_features(c, slow_llm, prev, pieces_of, slow_tools, feats, intern, slow)
    codes = vector.call_codes(ra, calls, res, list(map(acted.__getitem__, calls)), list(map(prev.__getitem__, calls)),
                              c.failed_action, empty_of, errtext_of)
    sizes: list[int] = res.size.tolist()
    vector_of = _bulk_vectors(intern)
    for k, simple, code, size in zip(calls, res.simple, codes, sizes, strict=True):
        if simple:
            feats[k] = vector_of(code, size)
            if code & 4:  # empty_result
                feats_names[k] = ("empty_result",)


def _llm_vector(code: int, large: float) -> dict[str, float]:
    """A bulk model call's features from its code (bits of `_LLM_BITS`) and large_result value, in the order the
    signal functions give them."""
    x = {name: 1.0 for bit, name in enumerate(_LLM_BITS) if code >> bit & 1}
    if large:
        x = {**{f: v for f, v in x.items() if f not in _TAIL}, "large_result": large,
             **{f: v for f, v in x.items() if f in _TAIL}}
    return x


_EMPTY_RESULT = dg.DOC_ZERO | dg.SIZE_ZERO


def _same_calls(c: ColumnContext) -> dict[int, int]:
    """`SpanContext.first_same_call` of every tool call: the earlier call with the same kind, name and input."""
    if c._same is None:
        ts, ih = c.ts, c.facts.ih
        seen: dict[tuple[str, str, str | None], int] = {}
        tools = c.tools
        keys = zip(map(ts.event_type.__getitem__, tools), map(ts.name.__getitem__, tools), map(ih.__getitem__, tools),
                   strict=True)
        firsts = list(map(seen.setdefault, keys, tools))
        c._same = dict(compress(zip(tools, firsts, strict=True), map(ne, tools, firsts)))
    return c._same


def _run(fn: Callable[[SpanContext, int], Hit | None], c: SpanContext, i: int) -> Hit | None:
    try:
        return fn(c, i)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError):
        return None


def _by_functions(c: ColumnContext, i: int, table: dict[str, Callable[[SpanContext, int], Hit | None]]
                  ) -> tuple[dict[str, float], list[Hit]]:
    hits = [h for name, fn in table.items() if name not in c.off and (h := _run(fn, c, i)) is not None]
    x: dict[str, float] = {}
    for h in hits:
        x[h.signal] = max(x.get(h.signal, 0.0), h.value)
    return x, hits


def span_hits_of(c: ColumnContext, i: int, simple: bool = False) -> list[Hit]:
    """The signal hits of one span (what a reported suspect shows as evidence): by the signal functions, or for
    a call worked out in bulk (`simple`), the same hits built from the columns."""
    et = c.ts.event_type[i]
    if simple:
        return _plain_llm_hits(c, i) if et == "LLM_CALL" else _plain_tool_hits(c, i)
    table = MODEL_SIGNALS if et == "LLM_CALL" else TOOL_SIGNALS if et in CANDIDATE_TYPES else None
    return _by_functions(c, i, table)[1] if table is not None else []


def _plain_llm_hits(c: ColumnContext, k: int) -> list[Hit]:
    """The hits span_signals' functions give a model call with a plain output and result (see
    `signal_features`), in MODEL_SIGNALS order, with their evidence."""
    ts, df, ol = c.ts, c.facts.df, c.facts.ol
    out: list[Hit] = []
    af = c.failed_action.get(k)
    if af is not None:
        what = c.facts.sparse.get(dg.ERROR_TYPE, {}).get(af) or ts.status[af]
        out.append(Hit(k, "action_failed", "tool_execution",
                       f"{ts.name[af]} failed ({what})" + ("" if af == k else ", an action this call chose")))
    p = c._prev.get(k) if c.acted(k) else None
    if p is not None and p in c.failed_action:
        out.append(Hit(k, "reacts_to_failure", "tool_execution",
                       f"first call after {ts.name[c.failed_action[p] or p]} failed"))
    pieces = c.pieces(k)
    if pieces is not None and af is None and all(df[i] & dg.EMPTY for i in pieces):
        out.append(Hit(k, "empty_result", "retrieval_miss", "its action returned nothing"))
    if p is not None and sig_empty(c, p):
        out.append(Hit(k, "after_empty_result", "retrieval_miss", "went on after an action that returned nothing"))
    if p is not None and sig_error_text(c, p):
        out.append(Hit(k, "after_error_in_result", "tool_execution", "first call after a result that reports an "
                       "error"))
    if pieces is not None:
        size = sum(ol[i] for i in pieces) + len(pieces) - 1
        if size >= LARGE_RESULT_CHARS:
            out.append(Hit(k, "large_result", "planner_drift", f"its action returned {size} characters",
                           round(math.log10(size) - 3, 3)))
    if c.acted(k) and p is None:
        out.append(Hit(k, "first_action", "planner_drift", "the agent's first action (nothing yet to react to)"))
    if not c.acted(k):
        out.append(Hit(k, "no_action", "planner_drift", "a plan or summary: no action"))
    return out


def sig_empty(c: ColumnContext, k: int) -> bool:
    return "empty_result" in c.features_of.get(k, ())


def sig_error_text(c: ColumnContext, k: int) -> bool:
    return "error_in_result" in c.features_of.get(k, ())


def _plain_tool_hits(c: ColumnContext, i: int) -> list[Hit]:
    """The hits span_signals' functions give a tool call with a plain output, in TOOL_SIGNALS order."""
    ts = c.ts
    out: list[Hit] = []
    if i in c.origin_set:
        out.append(Hit(i, "tool_failed", "tool_execution", f"{ts.name[i]} failed and nothing recovered it"))
    first = _same_calls(c).get(i)
    if first is not None:
        out.append(Hit(i, "tool_repeated", "planner_drift", f"same call as {ts.span_id[first]}"))
    if not c.failed[i] and c.facts.df[i] & _EMPTY_RESULT:
        out.append(Hit(i, "tool_empty_result", "retrieval_miss", "returned nothing"))
    return out


def bisect_index(values: list[int], x: int) -> int:  # kept for symmetry with SpanContext's bisect use
    return bisect_right(values, x)


# -- ranked suspects -----------------------------------------------------------------------------------------------


def run_suspects_from(ts: TraceSpans, rules: Rules, facts: ColumnFacts | None, *, failed: bool = False,
                      span_model: SpanModel | None = None, transcript_model: TranscriptModel | None = None,
                      tree: Tree | None = None) -> SuspectList:
    """`suspects.run_suspects`, from the stored columns and digests when `facts` is given (None: the records
    path); a transcript is always read from its records."""
    if facts is None or (ts.records is not None and is_transcript(ts)):
        return run_suspects(ts, rules, failed=failed, span_model=span_model, transcript_model=transcript_model,
                            tree=tree)
    return suspect_list(ts, rules, tree or build_tree(ts), facts, span_model or default_span_model(), failed)


def suspect_list(ts: TraceSpans, rules: Rules, tree: Tree, facts: ColumnFacts, model: SpanModel, failed: bool
                 ) -> SuspectList:
    """`suspects.split(score_spans(...))` from columns: every candidate scored (one score per distinct feature
    vector), and only the reported spans' hits and evidence worked out."""
    with gc_paused():
        return _suspect_list(ts, rules, tree, facts, model, failed)


class ColumnFeatures(NamedTuple):
    """`suspects.trace_features` from columns: the context, every candidate's feature vector (one shared tuple per
    distinct vector), the calls whose signals came from the signal functions, and the rule and disagreement hits
    behind the features they added."""

    context: ColumnContext
    features: dict[int, Features]
    slow: set[int]
    extra: dict[int, list[Hit]]


def column_features(ts: TraceSpans, rules: Rules, tree: Tree, facts: ColumnFacts, failed: bool,
                    off: frozenset[str] = frozenset()) -> ColumnFeatures:
    c = ColumnContext(ts, tree, facts)
    c.off = off
    feats, slow = signal_features(c)
    if off:  # features the model left out, taken out before the run shape is read (`suspects.candidate_features`)
        # (once per distinct vector, and only the calls whose vector holds one: there are 500k calls at 1M spans)
        cut = {key: tuple(fv for fv in key if fv[0] not in off) for key in set(feats.values())
               if any(fv[0] in off for fv in key)}
        if cut:
            feats = {i: cut.get(key, key) for i, key in feats.items()}
    dis = disagreement_hits(ts)
    rule_hits = facts.find_suspects(tree, rules, failed)
    et = ts.event_type
    tool: Features = (("is_tool", 1.0),)
    # every candidate's vector, a tool call's with is_tool in front (one tuple per distinct vector), in C passes
    cands = list(compress(range(len(ts)), map(CANDIDATE_TYPES.__contains__, et)))
    vectors = list(map(feats.get, cands, repeat(())))
    is_tool = list(map(ne, map(et.__getitem__, cands), repeat("LLM_CALL")))
    as_is = {f: f for f in set(vectors)}
    with_tool = {f: tool + f for f in set(compress(vectors, is_tool))}
    tables = (as_is, with_tool)
    x_of: dict[int, Features] = dict(zip(cands, map(dict.__getitem__, map(tables.__getitem__, is_tool), vectors),
                                         strict=True))
    extra: dict[int, list[Hit]] = defaultdict(list)
    changed: dict[int, dict[str, float]] = {}
    for h in dis:
        d = changed.setdefault(h.index, dict(x_of.get(h.index, ())))
        d[h.signal] = max(d.get(h.signal, 0.0), h.value)
        extra[h.index].append(h)
    for s in rule_hits:
        if s.rule in GENERIC_RULES or s.index < 0:
            continue
        key = "rule_strong" if s.strength == "strong" else "rule_weak"
        d = changed.setdefault(s.index, dict(x_of.get(s.index, ())))
        d[key] = 1.0
        extra[s.index].append(Hit(s.index, s.rule, s.bucket, s.reason, feature=key))
    for i, d in changed.items():
        x_of[i] = tuple(d.items())
    with_run_shape(ts, x_of, off)
    return ColumnFeatures(c, x_of, slow, extra)


def _suspect_list(ts: TraceSpans, rules: Rules, tree: Tree, facts: ColumnFacts, model: SpanModel, failed: bool
                  ) -> SuspectList:
    import heapq

    c, x_of, slow, extra = column_features(ts, rules, tree, facts, failed, model.off)
    et = ts.event_type

    def weight(f: str) -> float:
        return model.weights.get(f, PRIOR_WEIGHTS.get(f, 0.0))

    members: dict[Features, list[int]] = defaultdict(list)  # the candidates of each distinct feature vector
    for i, fv in x_of.items():
        members[fv].append(i)
    score_of = {key: model.score(dict(key)) for key in members}
    named = {key for key in members  # signal != none
             if any(f not in CONTEXT_FEATURES and weight(f) * v > 0 for f, v in key)}
    start, sid = ts.start_ns, ts.span_id
    threshold = model.threshold
    picked = [i for key, ms in members.items() if score_of[key] >= threshold for i in ms]
    if not picked and members:
        top = max(score_of.values())
        picked = [max((i for key, ms in members.items() if score_of[key] == top for i in ms), key=sid.__getitem__)]

    def rank_key(i: int) -> tuple[float, int, int]:
        return (-score_of[x_of[i]], start[i], i)

    picked.sort(key=rank_key)
    chosen = set(picked)
    weaker: list[int] = []
    for level in sorted({score_of[k] for k in named}, reverse=True):  # the next few named ones, best first
        if len(weaker) >= WEAKER_SHOWN:
            break
        pool = [i for key in named if score_of[key] == level for i in members[key] if i not in chosen]
        # (one score on a level: rank_key's order is (start, index), compared as tuples in C)
        keyed = zip(map(start.__getitem__, pool), pool, strict=True)
        weaker.extend(i for _, i in heapq.nsmallest(WEAKER_SHOWN - len(weaker), keyed))

    scored: dict[Features, tuple[float, list[tuple[str, float]]]] = {}  # score and contributions per vector

    def suspect(i: int) -> SpanSuspect:
        simple = i not in slow and et[i] in CANDIDATE_TYPES
        key = x_of[i]
        x = dict(key)
        got = scored.get(key)
        if got is None:
            got = scored[key] = (score_of[key], model.contributions(x))
        return _suspect(ts, i, x, span_hits_of(c, i, simple) + extra.get(i, []), model, got)

    # the records the reported spans' signals read, in one pass: only those whose hits come from the functions
    prefetch(ts, [i for i in picked + weaker if i in slow])

    out = [suspect(i) for i in picked]
    for sp in out:
        sp.strong = sp.score >= threshold
    return SuspectList(out, [suspect(i) for i in weaker], threshold, f"span signals, threshold {threshold}")


def with_run_shape(ts: TraceSpans, x_of: dict[int, Features], off: frozenset[str] = frozenset()) -> None:
    """`suspects.run_shape` and `suspects.shaped` on the candidates' feature vectors, once per distinct vector."""
    names = {key: frozenset(f for f, _ in key) for key in set(x_of.values())}
    of_span = dict(zip(x_of, map(names.__getitem__, x_of.values()), strict=True))
    shape = {f: v for f, v in run_shape(ts, of_span).items() if f not in off}
    if not shape:
        return
    extended = {key: key + tuple(extra.items()) for key in names if (extra := shaped(names[key], shape))}
    if extended:
        vectors = list(x_of.values())
        x_of.update(zip(list(x_of), map(extended.get, vectors, vectors), strict=True))


def load_for_diagnosis(source: Source, trace_id: str) -> TraceSpans:
    """A run as diagnosis reads it: its columns and digests with records read lazily (only those of the spans it
    reports), or every record when the store has no digests for it (an older store) or the source is files."""
    ts = source.load(trace_id, records="lazy")
    if ts.records is None or (not isinstance(ts.records, list) and not isinstance(ts.digest, dict)):
        ts = source.load(trace_id, records=True)
    return ts


def column_facts(ts: TraceSpans, rules: Rules, tree: Tree) -> ColumnFacts | None:
    """`column_path.ColumnFacts` of a run, or None when the records path must answer (a transcript, no digests,
    ids repeated, a rule the digests cannot answer)."""
    if ts.records is None or is_transcript(ts):
        return None
    return ColumnFacts.of(ts, rules, tree)
