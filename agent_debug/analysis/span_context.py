"""What the span signals read: a span's input and output whoever wrote it, a model call's content and actions, its
own failure, and `SpanContext`, the per-trace structure every signal shares (children, which model call decided
each span, each call's actions and result, each agent's calls in order). Built once per trace, in a few passes
whose work grows linearly with the trace.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from agent_debug.columns import TraceSpans
from agent_debug.digest import TEXT_CAP as TEXT_CAP, is_empty_text as is_empty_text  # the signals import them here

CANDIDATE_TYPES = frozenset({"LLM_CALL", "TOOL_CALL", "RETRIEVAL"})
_CODE = re.compile(r"```(?:\w+)?\n(.*?)(?:```|$)", re.DOTALL)
_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


# -- reading spans --------------------------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def span_io(rec: dict[str, Any]) -> tuple[Any, Any]:
    """A span's input and output as recorded, whoever wrote it: `payload.input` / `payload.output` (run roots,
    importers), our SDK's `payload.request` / `payload.response` (model and tool calls) and `payload.content`
    (a message sent: its output), else OpenInference's `input.value` / `output.value`."""
    payload = rec.get("payload") or {}
    attrs = rec.get("attributes") or {}
    if not isinstance(payload, dict):
        payload = {}
    inp = payload.get("input", payload.get("request"))
    out = payload.get("output", payload.get("response", payload.get("content")))
    return (inp if inp is not None else attrs.get("input.value"),
            out if out is not None else attrs.get("output.value"))


def raw_output(rec: dict[str, Any]) -> str:
    """A span's output as text (`span_io`)."""
    return _as_text(span_io(rec)[1])


@dataclass(frozen=True)
class ModelOutput:
    """What a model call said (`content`) and which actions it asked for (tool calls rendered, code blocks)."""

    content: str
    action: str
    size: int


def model_output(rec: dict[str, Any]) -> ModelOutput:
    """A model call's output, read as a chat message when it is one (`{"role", "content", "tool_calls"}`)."""
    raw = raw_output(rec)
    content, calls = raw, ""
    obj: Any = span_io(rec)[1]
    if not isinstance(obj, dict):
        obj = None
        if raw[:1] == "{" and len(raw) <= 4 * TEXT_CAP:
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                obj = None
    if isinstance(obj, dict):
        content = _as_text(obj.get("content") if "content" in obj else obj.get("text", ""))
        tcs = obj.get("tool_calls")
        if isinstance(tcs, list):
            parts = []
            for tc in tcs:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict):
                    parts.append(f"{fn.get('name')}({_as_text(fn.get('arguments'))})")
            calls = "\n".join(parts)
    content = content[:TEXT_CAP]
    code = "\n".join(m.group(1) for m in _CODE.finditer(content))
    return ModelOutput(content, "\n".join(x for x in (calls, code) if x), len(raw))


def _has_output(rec: dict[str, Any]) -> bool:
    return span_io(rec)[1] is not None


def own_failure(ts: TraceSpans, i: int) -> bool:
    """Did span i itself fail: error status, an exception event, a non-zero exit code, a hard timeout?"""
    if ts.status[i] == "error":
        return True
    attrs = ts.attributes(i)
    code = attrs.get("tool.exit_code")
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        return True
    if attrs.get("tool.timeout_class") == "hard":
        return True
    rec = ts.record(i) if ts.records is not None else {}
    events = rec.get("events") or (rec.get("payload") or {}).get("events") if isinstance(rec, dict) else None
    return isinstance(events, list) and any(
        isinstance(e, dict) and str(e.get("name", "")).lower() == "exception" for e in events)


def words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


# -- the context signals share --------------------------------------------------------------------------------------


class SpanContext:
    """What the signals of one trace share: children, deciders, each model call's actions and result, the calls
    of each agent in order. Built once per trace, in a few passes."""

    def __init__(self, ts: TraceSpans) -> None:
        self.ts = ts
        n = len(ts)
        self.n = n
        self.by_id = {sid: i for i, sid in enumerate(ts.span_id)}
        self.parent = [self.by_id.get(p) if p is not None else None for p in ts.parent_id]
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, p in enumerate(self.parent):
            if p is not None and p != i:
                self.children[p].append(i)
        self.order = sorted(range(n), key=lambda i: (ts.start_ns[i], ts.span_id[i]))
        self.rank = {i: r for r, i in enumerate(self.order)}
        self.llm = [i for i in self.order if ts.event_type[i] == "LLM_CALL"]
        self.is_llm = [e == "LLM_CALL" for e in ts.event_type]
        self.failed = [own_failure(ts, i) for i in range(n)]
        self.recovered = self._recovered()
        self.origins = [i for i in self.order if self.failed[i] and i not in self.recovered
                        and not any(self.failed[k] and k not in self.recovered for k in self.children[i])]
        self.origin_set = set(self.origins)
        self.decider: dict[int, int | None] = {}
        self._by_parent: dict[int, list[tuple[int, int, int]]] = {}
        actions: dict[int, list[int]] = {k: [] for k in self.llm}
        for i in self.order:
            if not self.is_llm[i]:
                d = self.decide(i)
                if d is not None:
                    actions[d].append(i)
        self.actions: Mapping[int, list[int]] = actions  # each model call's actions, in order
        self.by_agent: dict[str, list[int]] = {}
        for k in self.llm:
            self.by_agent.setdefault(ts.agent_name[k], []).append(k)
        self._pos = {k: n for calls in self.by_agent.values() for n, k in enumerate(calls)}
        self._outputs: dict[int, ModelOutput] = {}
        self._results: dict[int, str | None] = {}
        self._prev: dict[int, int | None] = {}
        self._same: dict[int, int] | None = None

    def _recovered(self) -> set[int]:
        """Spans a later retry made good (`retry.of` pointing at them, the retry succeeding or recovered)."""
        retries: dict[int, list[int]] = {}
        for i in range(self.n):
            of = self.ts.attributes(i).get("retry.of")
            if isinstance(of, str) and of in self.by_id:
                retries.setdefault(self.by_id[of], []).append(i)
        out: set[int] = set()

        def ok(i: int, depth: int = 0) -> bool:
            return depth < 50 and any(not self.failed[r] or ok(r, depth + 1) for r in retries.get(i, []))

        return {i for i in retries if ok(i)} | out

    def decide(self, i: int) -> int | None:
        """The model call that chose span i (see the module docstring); None when no model call did."""
        if i in self.decider:
            return self.decider[i]
        ts, out = self.ts, None
        inside = self._llm_children(i)
        if len(inside) == 1 and all(ts.start_ns[k] >= ts.start_ns[inside[0][2]] for k in self.children[i]):
            # a step that runs what its one model call (its first child) wrote
            self.decider[i] = inside[0][2]
            return inside[0][2]
        node: int | None = i
        for _ in range(64):
            if node is None:
                break
            p = self.parent[node]
            if p is not None:
                calls = self._llm_children(p)  # (start, rank, index), sorted: the latest one started before node
                at = bisect.bisect_right(calls, (ts.start_ns[node], self.rank[node], self.n))
                before = [c[2] for c in calls[max(0, at - 2):at] if c[2] != node]
                if before:
                    out = before[-1]
                    break
            node = p
        self.decider[i] = out
        return out

    def _llm_children(self, p: int) -> list[tuple[int, int, int]]:
        if p not in self._by_parent:
            self._by_parent[p] = sorted((self.ts.start_ns[k], self.rank[k], k) for k in self.children[p]
                                        if self.is_llm[k])
        return self._by_parent[p]

    def output(self, k: int) -> ModelOutput:
        if k not in self._outputs:
            self._outputs[k] = model_output(self.ts.record(k)) if self.ts.records is not None else \
                ModelOutput("", "", 0)
        return self._outputs[k]

    def result(self, k: int) -> str | None:
        """What model call k's actions returned, as the next call reads it: the output of the step that holds k
        when that step records one, else the outputs of its tool calls joined; None when nothing was recorded."""
        if k not in self._results:
            self._results[k] = self._result(k)
        return self._results[k]

    def result_text(self, k: int) -> str | None:
        """`result`, always the words themselves (what a signal that compares texts reads; the column path's
        `result` may stand in for a plain one)."""
        return self.result(k)

    def _result(self, k: int) -> str | None:
        if self.ts.records is None:
            return None
        acts = self.actions.get(k, [])
        p = self.parent[k]
        if p is not None and p in acts and _has_output(self.ts.record(p)):
            return raw_output(self.ts.record(p))
        tools = [i for i in acts if self.ts.event_type[i] in ("TOOL_CALL", "RETRIEVAL")]
        if not tools:
            return None
        return "\n".join(raw_output(self.ts.record(i)) for i in tools)

    def acted(self, k: int) -> bool:
        return bool(self.actions.get(k)) or bool(self.output(k).action)

    def prev_acting(self, k: int) -> int | None:
        """The previous call of the same agent that acted (plans and summaries in between are skipped)."""
        if k in self._prev:
            return self._prev[k]
        calls = self.by_agent.get(self.ts.agent_name[k], [])
        pos = self._pos.get(k, 0)
        pending, found = [], None
        while pos > 0:  # walk back until an acting call or an answer already known (linear over all calls)
            p = calls[pos - 1]
            if self.acted(p):
                found = p
                break
            if p in self._prev:
                found = self._prev[p]
                break
            pending.append(p)
            pos -= 1
        for p in pending:
            self._prev[p] = found
        self._prev[k] = found
        return found

    def earlier_calls(self, k: int, window: int | None = None) -> list[int]:
        """The calls of k's agent before k (the last `window` of them)."""
        calls = self.by_agent.get(self.ts.agent_name[k], [])
        pos = self._pos.get(k, 0)
        return calls[max(0, pos - window) if window else 0:pos]

    def first_same_call(self, i: int) -> int | None:
        """The earliest tool call before i with the same kind, name and input (None: i is the first)."""
        if self._same is None:
            self._same = {}
            seen: dict[tuple[str, str, str], int] = {}
            for j in self.order:
                if self.ts.event_type[j] in CANDIDATE_TYPES and not self.is_llm[j]:
                    key = (self.ts.event_type[j], self.ts.name[j], tool_text(self, j))
                    if key in seen:
                        self._same[j] = seen[key]
                    else:
                        seen[key] = j
        return self._same.get(i)


    def action_failed(self, k: int) -> int | None:
        """The first failure origin model call k decided (or k itself when it failed)."""
        if self.failed[k] and k not in self.recovered:
            return k
        return next((i for i in self.actions.get(k, []) if i in self.origin_set), None)


def tool_text(c: SpanContext, i: int) -> str:
    """A tool call's name and input, as text (what makes two calls the same call)."""
    rec = c.ts.record(i) if c.ts.records is not None else {}
    return f"{c.ts.name[i]} {_as_text(span_io(rec)[0])[:TEXT_CAP]}"
