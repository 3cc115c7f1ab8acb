"""Critical path (as Jaeger defines it), per-agent hotspots, and latency stacking.

Critical path: walk back from the end of the root. The last-finishing child before the current point is on the
path; the parent's own time fills the gaps; continue before that child's start. Children are clipped to their
parent's bounds (a child that outlives its parent does not extend the path), except that a SEND span lasts
until the work it caused is done (see `tree._effective_ends`). This is not the longest path over summed
durations: nested time is counted once and parallel children do not add up.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import chain, compress
from typing import Any

from agent_debug.analysis.tree import Tree, build_tree
from agent_debug.columns import TraceSpans
from agent_debug.gcpause import gc_paused

CALLS = frozenset({"LLM_CALL", "TOOL_CALL", "RETRIEVAL"})
TOLERANCE_NS = 1000  # the spec's timestamps carry microseconds
# spans per side of a stacking candidate whose records are examined for messages and shared data, nearest the
# candidate first: enough for any real handoff, and a 1M-span trace does not parse half its records
LINK_SCAN = 200


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
    """Duration minus the union of the children's (clipped) intervals. Leaves (half the spans) cost one C-level
    pass; only spans with children are walked."""
    start, end = tree.spans.start_ns, tree.end_ns
    out = list(map(int.__sub__, end, start))
    children = tree.children
    for i in compress(range(len(out)), children):  # spans with children (a leaf's list is empty)
        lo, hi = start[i], end[i]
        kids = children[i]
        if len(kids) == 1:
            c = kids[0]
            s, e = start[c], end[c]
            covered = (e if e < hi else hi) - (s if s > lo else lo)
            if covered > 0:
                out[i] -= covered
            continue
        covered = 0
        cur_s = cur_e = -1
        for c in kids:  # sorted by start
            s, e = start[c], end[c]
            if s < lo:
                s = lo
            if e > hi:
                e = hi
            if e <= s:
                continue
            if s > cur_e:
                if cur_e >= 0:
                    covered += cur_e - cur_s
                cur_s, cur_e = s, e
            elif e > cur_e:
                cur_e = e
        if cur_e >= 0:
            covered += cur_e - cur_s
        out[i] -= covered
    if out and min(out) < 0:
        out = [v if v > 0 else 0 for v in out]
    return out


def analyze(ts: TraceSpans, tree: Tree | None = None, *, stacking_min_share: float = 0.02) -> CriticalPathResult:
    with gc_paused():
        return _analyze(ts, tree, stacking_min_share)


def critical_times(tree: Tree) -> dict[str, int]:
    """span id -> its time on the critical path: what `tree` highlights, without the rest of `analyze`."""
    with gc_paused():
        top = _top(tree)
        if top is None:
            return {}
        crit = _critical_by_span(critical_sections(tree, top))
        return {tree.spans.span_id[i]: v for i, v in crit.items()}


def _top(tree: Tree) -> int | None:
    """Where the critical path ends: the first root, else the earliest span with no parent in the tree."""
    tops = tree.tops
    if not tops:
        return None
    return tree.roots[0] if tree.roots else min(tops, key=tree.spans.start_ns.__getitem__)


def _critical_by_span(sections: list[tuple[int, int, int]]) -> dict[int, int]:
    crit: dict[int, int] = defaultdict(int)
    for i, s, e in sections:
        crit[i] += e - s
    return crit


def _analyze(ts: TraceSpans, tree: Tree | None, stacking_min_share: float) -> CriticalPathResult:
    tree = tree or build_tree(ts)
    top = _top(tree)
    if top is None:
        return CriticalPathResult(ts.trace_id, 0, [], None, [], [])
    sections = critical_sections(tree, top)
    crit = _critical_by_span(sections)
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
    duration = tree.end_ns[top] - ts.start_ns[top]
    candidates = _stacking_candidates(tree, set(crit), duration, stacking_min_share)
    subtrees = _Subtrees(tree)
    # records read lazily from a store: their chunks are decompressed on a thread while the self times are
    # computed here
    prefetch = getattr(ts.records, "prefetch", None) if candidates else None
    if prefetch is not None:
        prefetch(sorted(_evidence_spans(subtrees, candidates) | set(tree.roots[:1])), background=True)
    self_t = _self_times(tree)
    total: dict[str, int] = defaultdict(int)
    for agent, t in zip(ts.agent_name, self_t, strict=True):
        total[agent] += t
    on_path: dict[str, int] = defaultdict(int)
    for i, v in crit.items():
        on_path[ts.agent_name[i]] += v
    count = Counter(ts.agent_name)
    hotspots = sorted((Hotspot(k, total[k], on_path.get(k, 0), count[k]) for k in count),
                      key=lambda h: (-h.critical_ns, -h.total_ns))
    stack = _judge_stacking(tree, candidates, subtrees)
    return CriticalPathResult(ts.trace_id, duration, path, bottleneck, hotspots, stack,
                              {ts.span_id[i]: v for i, v in crit.items()})


def _subtree(tree: Tree, i: int, limit: int) -> list[int]:
    """The spans below and including i, a level at a time (the ones nearest i first), at most `limit`."""
    out: list[int] = []
    level = [i]
    get = tree.children.__getitem__
    while level and len(out) < limit:
        out.extend(level)
        level = list(chain.from_iterable(map(get, level)))
    return out[:limit]


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
    a_ids = set(map(ts.span_id.__getitem__, a))
    if not a_ids.isdisjoint(map(ts.parent_id.__getitem__, b)):
        return "causal link"
    if ts.records is None:  # messages and data flow are in the attributes and payloads
        return None
    a_agents = {ts.agent_name[i] for i in a}
    b_agents = {ts.agent_name[j] for j in b}
    for i in a:
        if ts.event_type[i] == "SEND" and ts.records is not None:
            to = (ts.records[i].get("attributes") or {}).get("message.to")
            if to in b_agents and to not in a_agents:
                return f"message to {to}"
    b_in = _messages(ts, b)
    produced = _values(ts, [i for i in a if ts.event_type[i] not in ("SEND", "RECEIVE")])
    consumed = _values(ts, b_in)
    if produced & consumed - _run_inputs(tree):  # values both got from the task itself are no dependency
        return "data flows from the first to the second"
    return None


def _messages(ts: TraceSpans, idx: list[int]) -> list[int]:
    """The first two message spans (SEND/RECEIVE) among these: what a step was handed."""
    return [j for j in idx if ts.event_type[j] in ("SEND", "RECEIVE")][:2]


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


def _stacking_candidates(tree: Tree, on_path: set[int], duration: int, min_share: float) -> list[tuple[int, int, int]]:
    """(parent, first, second): long sequential siblings under a path span, not one agent's own steps."""
    ts = tree.spans
    end = tree.end_ns
    floor = max(1, int(duration * min_share))
    candidates: list[tuple[int, int, int]] = []
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
            candidates.append((p, x, y))
    return candidates


class _Subtrees(dict[int, list[int]]):
    """The spans below each stacking candidate that `_linked` looks at (nearest first, LINK_SCAN at most),
    computed once per span."""

    def __init__(self, tree: Tree) -> None:
        super().__init__()
        self.tree = tree

    def __missing__(self, i: int) -> list[int]:
        got = self[i] = _subtree(self.tree, i, LINK_SCAN)
        return got


def _evidence_spans(sub: _Subtrees, candidates: list[tuple[int, int, int]]) -> set[int]:
    """The spans whose records `_linked` reads: every span below the first, the first messages below the second."""
    ts = sub.tree.spans
    return {i for _, x, y in candidates for i in sub[x] + _messages(ts, sub[y])}


def _judge_stacking(tree: Tree, candidates: list[tuple[int, int, int]], sub: _Subtrees) -> list[Stacking]:
    ts = tree.spans
    end = tree.end_ns
    found: list[Stacking] = []
    # in a tree, a span below y has its parent below y too, so only the records (messages, data passed on) can
    # link the two; without them there is nothing to look at
    records = ts.records
    for p, x, y in candidates:
        if records is not None and _linked(tree, sub[x], sub[y]) is not None:
            continue
        if records is None:
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
