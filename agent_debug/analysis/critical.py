"""Critical path (as Jaeger defines it), per-agent hotspots, and latency stacking.

Critical path: walk back from the end of the root. The last-finishing child before the current point is on the
path; the parent's own time fills the gaps; continue before that child's start. Children are clipped to their
parent's bounds (a child that outlives its parent does not extend the path), except that a SEND span lasts
until the work it caused is done (see `tree._effective_ends`). This is not the longest path over summed
durations: nested time is counted once and parallel children do not add up.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from agent_debug.analysis.spans import TraceSpans
from agent_debug.analysis.tree import Tree, build_tree, gc_paused


CALLS = frozenset({"LLM_CALL", "TOOL_CALL", "RETRIEVAL"})
TOLERANCE_NS = 1000  # the spec's timestamps carry microseconds


@dataclass
class PathSegment:
    span_id: str
    agent_name: str
    name: str
    event_type: str
    critical_ns: int


@dataclass
class Hotspot:
    agent_name: str
    total_ns: int  # self time (exclusive of children) of the agent's spans
    critical_ns: int  # time the agent's spans spend on the critical path
    spans: int


@dataclass
class Stacking:
    """Sequential siblings with no causal link or message between them: they could have run in parallel."""

    parent_span_id: str
    first: dict[str, Any]
    second: dict[str, Any]
    gap_ns: int
    saving_ns: int  # what running them side by side would save: the shorter one's duration
    evidence: str


@dataclass
class CriticalPathResult:
    trace_id: str
    duration_ns: int
    path: list[PathSegment]
    bottleneck: dict[str, Any] | None
    hotspots: list[Hotspot]
    stacking: list[Stacking]
    critical_ns: dict[str, int] = field(default_factory=dict)  # span_id -> critical time (for rendering)

    def as_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "duration_ns": self.duration_ns,
            "path": [seg.__dict__ for seg in self.path],
            "bottleneck": self.bottleneck,
            "hotspots": [h.__dict__ for h in self.hotspots],
            "stacking": [s.__dict__ for s in self.stacking],
        }


def critical_sections(tree: Tree, top: int) -> list[tuple[int, int, int]]:
    """(span index, section start, section end) from the end of `top` backwards, iteratively."""
    ts = tree.spans
    start, end = ts.start_ns, tree.end_ns
    sections: list[tuple[int, int, int]] = []
    # per span: children sorted by (clipped) end, for "last finishing child before t" by bisection
    cache: dict[int, tuple[list[int], list[int]]] = {}

    def sorted_children(i: int) -> tuple[list[int], list[int]]:
        got = cache.get(i)
        if got is None:
            lo, hi = start[i], end[i]
            kids = [c for c in tree.children[i] if start[c] < hi and end[c] > lo]
            kids.sort(key=lambda c: (min(end[c], hi), -start[c]))  # ties: the longer child is "last"
            got = cache[i] = (kids, [min(end[c], hi) for c in kids])
        return got

    # frames: (span, current point t, floor): a span may be revisited after returning from a child; `floor` is
    # the latest start among its ancestors, so a child that starts before its parent is clipped there too
    stack: list[tuple[int, int, int]] = [(top, end[top], start[top])]
    while stack:
        i, t, floor = stack.pop()
        kids, ends = sorted_children(i)
        # the last child finishing at or before t; timestamps are microseconds and durations nanoseconds, so a
        # sequential sibling may appear to end up to TOLERANCE_NS after the next one starts: it still counts
        k = bisect.bisect_right(ends, t + TOLERANCE_NS) - 1
        lo = max(start[i], floor)
        if k >= 0 and ends[k] > lo:
            c = kids[k]
            c_end = min(ends[k], t)
            if c_end < t:
                sections.append((i, c_end, t))
            # after the child, continue in this span before the child's start
            c_start = max(start[c], lo)
            stack.append((i, c_start, floor))
            stack.append((c, c_end, lo))
            # the continuation looks only at children before this one (by end), never this one again
            cache[i] = (kids[:k], ends[:k])
        elif lo < t:
            sections.append((i, lo, t))
    return sections


def _self_times(tree: Tree) -> list[int]:
    """Duration minus the union of the children's (clipped) intervals."""
    ts = tree.spans
    out = []
    for i in range(len(ts)):
        lo, hi = ts.start_ns[i], tree.end_ns[i]
        covered = 0
        cur_s = cur_e = None
        for c in tree.children[i]:  # sorted by start
            s, e = max(ts.start_ns[c], lo), min(tree.end_ns[c], hi)
            if e <= s:
                continue
            if cur_e is None or s > cur_e:
                if cur_e is not None and cur_s is not None:
                    covered += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None and cur_s is not None:
            covered += cur_e - cur_s
        out.append(max(0, (hi - lo) - covered))
    return out


def analyze(ts: TraceSpans, tree: Tree | None = None, *, stacking_min_share: float = 0.02) -> CriticalPathResult:
    with gc_paused():
        return _analyze(ts, tree, stacking_min_share)


def _analyze(ts: TraceSpans, tree: Tree | None, stacking_min_share: float) -> CriticalPathResult:
    tree = tree or build_tree(ts)
    tops = tree.tops
    if not tops:
        return CriticalPathResult(ts.trace_id, 0, [], None, [], [])
    top = tree.roots[0] if tree.roots else min(tops, key=lambda i: ts.start_ns[i])
    sections = critical_sections(tree, top)
    crit: dict[int, int] = defaultdict(int)
    for i, s, e in sections:
        crit[i] += e - s
    order: list[int] = []
    seen: set[int] = set()
    for i, _, _ in sorted(sections, key=lambda x: (x[1], x[2])):
        if i not in seen:
            seen.add(i)
            order.append(i)
    path = [PathSegment(ts.span_id[i], ts.agent_name[i], ts.name[i], ts.event_type[i], crit[i]) for i in order]
    bottleneck = None
    if crit:
        b = max(crit, key=lambda i: (crit[i], -ts.start_ns[i]))
        bottleneck = {"span_id": ts.span_id[b], "agent_name": ts.agent_name[b], "name": ts.name[b],
                      "event_type": ts.event_type[b], "critical_ns": crit[b]}
    self_t = _self_times(tree)
    per_agent: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for i in range(len(ts)):
        a = per_agent[ts.agent_name[i]]
        a[0] += self_t[i]
        a[1] += crit.get(i, 0)
        a[2] += 1
    hotspots = sorted((Hotspot(k, v[0], v[1], v[2]) for k, v in per_agent.items()),
                      key=lambda h: (-h.critical_ns, -h.total_ns))
    duration = tree.end_ns[top] - ts.start_ns[top]
    stack = find_stacking(tree, set(crit), duration, stacking_min_share)
    return CriticalPathResult(ts.trace_id, duration, path, bottleneck, hotspots, stack,
                              {ts.span_id[i]: v for i, v in crit.items()})


def _subtree(tree: Tree, i: int) -> list[int]:
    return [j for j, _ in tree.walk(i)]


def _values(ts: TraceSpans, idx: list[int]) -> set[str]:
    """String values found in the attributes and payloads of these spans (for data-flow hints)."""
    out: set[str] = set()
    if ts.records is None:
        return out
    for i in idx:
        rec = ts.records[i]
        out |= _values_of([rec.get("attributes") or {}, rec.get("payload") or {}])
    return out


def _linked(tree: Tree, a: list[int], b: list[int]) -> str | None:
    """Why b depends on a, or None: a causal link, a message, or a value produced by a and passed to b."""
    ts = tree.spans
    a_ids = {ts.span_id[i] for i in a}
    for j in b:
        if ts.parent_id[j] in a_ids:
            return "causal link"
    a_agents = {ts.agent_name[i] for i in a}
    b_agents = {ts.agent_name[j] for j in b}
    for i in a:
        if ts.event_type[i] == "SEND" and ts.records is not None:
            to = (ts.records[i].get("attributes") or {}).get("message.to")
            if to in b_agents and to not in a_agents:
                return f"message to {to}"
    b_in = [j for j in b if ts.event_type[j] in ("SEND", "RECEIVE")][:2]
    produced = _values(ts, [i for i in a if ts.event_type[i] not in ("SEND", "RECEIVE")])
    consumed = _values(ts, b_in)
    if produced & consumed - _run_inputs(tree):  # values both got from the task itself are no dependency
        return "data flows from the first to the second"
    return None


def _run_inputs(tree: Tree) -> set[str]:
    ts = tree.spans
    if ts.records is None or not tree.roots:
        return set()
    payload = ts.records[tree.roots[0]].get("payload") or {}
    return _values_of(payload.get("input"))


def _values_of(v: Any) -> set[str]:
    out: set[str] = set()
    stack = [v]
    while stack and len(out) < 10_000:
        x = stack.pop()
        if isinstance(x, str) and len(x) >= 4:
            out.add(x)
        elif isinstance(x, list):
            stack.extend(x[:200])
        elif isinstance(x, dict):
            stack.extend(list(x.values())[:200])
    return out


def find_stacking(tree: Tree, on_path: set[int], duration: int, min_share: float) -> list[Stacking]:
    """Consecutive siblings under a critical-path span that ran one after the other with nothing linking them."""
    ts = tree.spans
    end = tree.end_ns
    floor = max(1, int(duration * min_share))
    found: list[Stacking] = []
    subtrees: dict[int, list[int]] = {}

    def sub(i: int) -> list[int]:
        if i not in subtrees:
            subtrees[i] = _subtree(tree, i)
        return subtrees[i]

    for p in on_path:
        kids = [c for c in tree.children[p] if end[c] - ts.start_ns[c] >= floor]
        for x, y in zip(kids, kids[1:], strict=False):
            if ts.start_ns[y] < end[x]:
                continue  # they overlapped: already parallel
            if ts.agent_name[x] == ts.agent_name[y] and (
                ts.event_type[x] == ts.event_type[y] and ts.event_type[x] not in ("SEND", "AGENT")
                or ts.event_type[y] in CALLS
            ):
                continue  # one agent's own steps (a model call then a tool, a retry loop): dependent by nature
            xs, ys = sub(x), sub(y)
            if _linked(tree, xs, ys) is not None:
                continue
            if ts.records is None:
                evidence = "no causal link (payloads not loaded: data flow not checked)"
            else:
                evidence = "no causal link, message or shared data between them"
            dx, dy = end[x] - ts.start_ns[x], end[y] - ts.start_ns[y]
            found.append(Stacking(
                ts.span_id[p],
                {"span_id": ts.span_id[x], "agent_name": ts.agent_name[x], "name": ts.name[x], "duration_ns": dx},
                {"span_id": ts.span_id[y], "agent_name": ts.agent_name[y], "name": ts.name[y], "duration_ns": dy},
                ts.start_ns[y] - end[x], min(dx, dy), evidence))
    found.sort(key=lambda s: -s.saving_ns)
    return found
