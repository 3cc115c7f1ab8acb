"""The causal tree of a trace, built in one pass with id maps: children lists, orphans, cycles.

Spans whose parent is missing hang under a visible "missing parent" node (one per missing id); spans caught in
a parent cycle are cut loose at their earliest span and reported, never followed. Nothing recurses: a 1M-span
chain is fine.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent_debug.analysis.spans import TraceSpans


@dataclass
class Tree:
    """Index-based tree over a TraceSpans: `children[i]` are the span indices whose causal parent is span i."""

    spans: TraceSpans
    children: list[list[int]]
    roots: list[int]  # real roots (parent_id null), by start time
    orphans: dict[str, list[int]]  # missing parent id -> spans that name it
    cycles: list[list[int]]  # each: the spans of one broken cycle (the first is where it was cut)
    duplicates: list[int] = field(default_factory=list)  # later spans reusing an earlier span's id
    end_ns: list[int] = field(default_factory=list)  # effective end: SEND spans cover the work they caused

    @property
    def tops(self) -> list[int]:
        """Every span with no parent inside the tree: roots, orphans, cycle cut points."""
        out = list(self.roots)
        for group in self.orphans.values():
            out.extend(group)
        out.extend(c[0] for c in self.cycles)
        return out

    def walk(self, start: int, max_depth: int | None = None) -> list[tuple[int, int]]:
        """(index, depth) in pre-order below and including `start`, iteratively."""
        out: list[tuple[int, int]] = []
        stack = [(start, 0)]
        children = self.children
        while stack:
            i, d = stack.pop()
            out.append((i, d))
            if max_depth is None or d < max_depth:
                stack.extend((c, d + 1) for c in reversed(children[i]))
        return out

    def subtree_size(self, i: int) -> int:
        return len(self.walk(i))


_LEAF: Any = ()  # the children of a leaf: shared and immutable


@contextmanager
def gc_paused() -> Iterator[None]:
    """Whole-trace passes allocate millions of small objects that never form cycles: pausing the cyclic GC
    for their duration roughly halves their time at 1M spans. The previous state is restored."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_tree(ts: TraceSpans) -> Tree:
    with gc_paused():
        return _build_tree(ts)


def _build_tree(ts: TraceSpans) -> Tree:
    n = len(ts)
    index: dict[str, int] = {}
    duplicates: list[int] = []
    for i, sid in enumerate(ts.span_id):
        if sid in index:
            duplicates.append(i)
        else:
            index[sid] = i
    children: list[list[int]] = [_LEAF] * n  # type: ignore[list-item]  # a list only for spans with children
    parent_idx = [-1] * n
    roots: list[int] = []
    orphans: dict[str, list[int]] = {}
    dup_set = set(duplicates)
    for i, pid in enumerate(ts.parent_id):
        if i in dup_set:
            continue
        if pid is None:
            roots.append(i)
            continue
        p = index.get(pid)
        if p is None:
            orphans.setdefault(pid, []).append(i)
        elif p == i:
            parent_idx[i] = -2  # its own parent: a cycle of one
        else:
            parent_idx[i] = p
            if children[p] is _LEAF:
                children[p] = [i]
            else:
                children[p].append(i)
    start = ts.start_ns
    for c in children:
        if len(c) > 1:
            c.sort(key=start.__getitem__)
    roots.sort(key=start.__getitem__)
    for group in orphans.values():
        group.sort(key=start.__getitem__)
    # spans not reachable from any top are in cycles: cut each cycle at its earliest span
    reached = [False] * n
    order: list[int] = []  # breadth-first from the tops: parents before children
    _reach(children, roots + [i for g in orphans.values() for i in g], reached, order)
    cycles: list[list[int]] = []
    for i in sorted((i for i in range(n) if not reached[i] and i not in dup_set), key=start.__getitem__):
        if reached[i]:
            continue
        members = _cycle_members(i, parent_idx, reached)
        cut = min(members, key=start.__getitem__)
        p = parent_idx[cut]
        if p >= 0 and cut in children[p]:
            children[p].remove(cut)
        _reach(children, [cut], reached, order)
        cycles.append([cut] + [m for m in members if m != cut])
    tree = Tree(ts, children, roots, orphans, cycles, duplicates)
    tree.end_ns = _effective_ends(tree, order)
    return tree


def _reach(children: list[list[int]], tops: list[int], reached: list[bool], order: list[int]) -> None:
    queue = [t for t in tops if not reached[t]]
    for t in queue:
        reached[t] = True
    k = len(order)
    order.extend(queue)
    while k < len(order):
        for c in children[order[k]]:
            if not reached[c]:
                reached[c] = True
                order.append(c)
        k += 1


def _cycle_members(i: int, parent_idx: list[int], reached: list[bool]) -> list[int]:
    """Follow parents from i until a span repeats: the repeated loop is the cycle."""
    order: dict[int, int] = {}
    j = i
    while j >= 0 and j not in order and not reached[j]:
        order[j] = len(order)
        j = parent_idx[j]
    if j == -2 or j < 0 or reached[j]:
        return [i] if j != -2 else list(order)
    first = order[j]
    return [k for k, pos in order.items() if pos >= first]


def _effective_ends(tree: Tree, order: list[int]) -> list[int]:
    """End of each span; a SEND span (a message) lasts until the work it caused is done."""
    ts = tree.spans
    ends = list(map(int.__add__, ts.start_ns, ts.duration_ns))
    et = ts.event_type
    if "SEND" not in et:
        return ends
    children = tree.children
    for i in reversed(order):  # children before parents
        if et[i] == "SEND" and children[i]:
            ends[i] = max(ends[i], max(ends[c] for c in children[i]))
    return ends


def node_fields(ts: TraceSpans, i: int, tree: Tree | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "span_id": ts.span_id[i],
        "parent_id": ts.parent_id[i],
        "agent_name": ts.agent_name[i],
        "event_type": ts.event_type[i],
        "name": ts.name[i],
        "status": ts.status[i],
        "start_ns": ts.start_ns[i],
        "duration_ns": ts.duration_ns[i],
        "prompt_tokens": ts.prompt_tokens[i],
        "completion_tokens": ts.completion_tokens[i],
    }
    if ts.records is not None:
        rec = ts.records[i]
        if rec.get("error"):
            out["error"] = rec["error"]
        if rec.get("attributes"):
            out["attributes"] = rec["attributes"]
    return out
