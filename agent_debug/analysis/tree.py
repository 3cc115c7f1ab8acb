"""The causal tree of a trace, built in one pass with id maps: children lists, orphans, cycles.

Spans whose parent is missing hang under a visible "missing parent" node (one per missing id); spans caught in
a parent cycle are cut loose at their earliest span and reported, never followed. Nothing recurses: a 1M-span
chain is fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, compress
from typing import Any

from agent_debug.columns import TraceSpans
from agent_debug.gcpause import gc_paused


@dataclass
class Tree:
    """Index-based tree over a TraceSpans: `children[i]` are the span indices whose causal parent is span i."""

    spans: TraceSpans
    children: list[list[int]]
    roots: list[int]  # real roots (parent_id null), by start time
    orphans: dict[str, list[int]]  # missing parent id -> spans that name it
    cycles: list[list[int]]  # each: the spans of one broken cycle (the first is where it was cut)
    duplicates: list[int] = field(default_factory=list)  # later spans reusing an earlier span's id
    # each span's parent as a position (None: a root or an orphan); only for a tree with no cycle and no repeated
    # id, where it is exact (None otherwise: follow `parent_id`s)
    parent: list[int | None] | None = None
    _end_ns: list[int] | None = field(default=None, repr=False)

    @property
    def end_ns(self) -> list[int]:
        """Each span's effective end: a SEND span (a message) lasts until the work it caused is done. Worked out
        when first read (what reads timing needs it; `why` and `bucket` do not)."""
        if self._end_ns is None:
            self._end_ns = _effective_ends(self, None)
        return self._end_ns

    @end_ns.setter
    def end_ns(self, value: list[int]) -> None:
        self._end_ns = value

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
        """Spans below and including i, counted a level at a time (each level gathered in C)."""
        n = 0
        level = [i]
        get = self.children.__getitem__
        while level:
            n += len(level)
            level = list(chain.from_iterable(map(get, level)))
        return n


_LEAF: Any = ()  # the children of a leaf: shared and immutable


def build_tree(ts: TraceSpans) -> Tree:
    with gc_paused():
        return _build_tree(ts)


def _build_tree(ts: TraceSpans) -> Tree:
    # whole-trace passes are map/zip/chain in C where they can be: a 1M-span trace is built in about a second
    n = len(ts)
    sids = ts.span_id
    pids = ts.parent_id
    start = ts.start_ns
    duplicates: list[int] = []
    if ts.parent_index is not None and len(ts.parent_index) == n:  # the source resolved them (ids unique)
        parent_idx: list[int | None] = list(ts.parent_index)  # a copy: cycle marks are written into it
    else:
        # span id -> index of its first occurrence (fed in reverse, so the earliest index is written last and wins);
        # None is never a key, but looking a root's None up (in C, below) is allowed
        index: dict[str | None, int] = dict(zip(reversed(sids), range(n - 1, -1, -1), strict=True))
        if len(index) < n:
            duplicates = [i for i, sid in enumerate(sids) if index[sid] != i]
        parent_idx = list(map(index.get, pids))  # None: a root, or a parent not in the trace
    dup_set = set(duplicates)
    children: list[list[int]] = [_LEAF] * n  # a list only for spans with children
    parents: list[int] = []  # spans with children
    roots: list[int] = []
    orphans: dict[str, list[int]] = {}
    # edges that may close a cycle: a parent that starts after its child, or with it and earlier in the trace.
    # With none, every parent comes before its child in (start, -index) order, so there is no cycle, and the
    # search for spans no top reaches is skipped (a parent starts before its children in nearly every trace)
    unordered = 0
    for i, p in enumerate(parent_idx):
        if p is None:
            if i in dup_set:
                continue
            pid = pids[i]
            if pid is None:
                roots.append(i)
            else:
                orphans.setdefault(pid, []).append(i)
        elif p == i:
            parent_idx[i] = -2  # its own parent: a cycle of one
            unordered += 1
        else:
            if start[p] >= start[i] and (start[p] > start[i] or p < i):
                unordered += 1
            kids = children[p]
            if kids is _LEAF:
                children[p] = [i]
                parents.append(p)
            else:
                kids.append(i)
    if duplicates:  # a later copy of an id is in no list and never a top
        for i in duplicates:
            p = parent_idx[i]
            if p is not None and p >= 0 and p != i:
                children[p].remove(i)
            parent_idx[i] = -3
    key = start.__getitem__
    for p in parents:
        kids = children[p]
        if len(kids) > 1:
            kids.sort(key=key)
    roots.sort(key=key)
    for group in orphans.values():
        group.sort(key=key)
    cycles: list[list[int]] = []
    if not unordered and not duplicates:  # no cycle (see above): nothing to search for
        return Tree(ts, children, roots, orphans, cycles, duplicates, parent=parent_idx)
    # breadth-first from the tops, parents before children; every span is in one children list at most, so
    # nothing is met twice. Spans not reached are in parent cycles: cut each at its earliest span.
    order = _reach(children, roots + [i for g in orphans.values() for i in g])
    if len(order) + len(duplicates) < n:
        reached = bytearray(n)
        for i in order:
            reached[i] = 1
        for i in duplicates:
            reached[i] = 1
        for i in sorted((i for i in range(n) if not reached[i]), key=key):
            if reached[i]:
                continue
            members = _cycle_members(i, parent_idx, reached)
            cut = min(members, key=key)
            p = parent_idx[cut]
            if p is not None and p >= 0 and cut in children[p]:
                children[p].remove(cut)
            more = _reach(children, [cut])
            for j in more:
                reached[j] = 1
            order.extend(more)
            cycles.append([cut] + [m for m in members if m != cut])
    tree = Tree(ts, children, roots, orphans, cycles, duplicates,
                parent=parent_idx if not cycles and not duplicates else None)
    tree.end_ns = _effective_ends(tree, order)
    return tree


def _reach(children: list[list[int]], tops: list[int]) -> list[int]:
    """Breadth-first order below `tops`, a level at a time (each level gathered in C)."""
    order: list[int] = []
    level = tops
    get = children.__getitem__
    while level:
        order.extend(level)
        level = list(chain.from_iterable(map(get, level)))
    return order


def _cycle_members(i: int, parent_idx: list[int | None], reached: bytearray) -> list[int]:
    """Follow parents from i until a span repeats: the repeated loop is the cycle."""
    order: dict[int, int] = {}
    j: int | None = i
    while j is not None and j >= 0 and j not in order and not reached[j]:
        order[j] = len(order)
        j = parent_idx[j]
    if j == -2:
        return list(order)
    if j is None or j < 0 or reached[j]:
        return [i]
    first = order[j]
    return [k for k, pos in order.items() if pos >= first]


def _effective_ends(tree: Tree, order: list[int] | None) -> list[int]:
    """End of each span; a SEND span (a message) lasts until the work it caused is done. `order`: every span,
    parents before children (None: found here when needed)."""
    ts = tree.spans
    ends = list(map(int.__add__, ts.start_ns, ts.duration_ns))
    et = ts.event_type
    if "SEND" not in et:
        return ends
    children = tree.children
    is_send = list(map("SEND".__eq__, et))
    sends = list(compress(range(len(et)), is_send))
    nested: list[int] = []  # SEND spans with a SEND among their children: done below, children first
    for i in sends:
        kids = children[i]
        if not kids:
            continue
        if len(kids) == 1:
            c = kids[0]
            if is_send[c]:
                nested.append(i)
            elif ends[c] > ends[i]:
                ends[i] = ends[c]
        elif any(map(is_send.__getitem__, kids)):
            nested.append(i)
        else:
            last = max(map(ends.__getitem__, kids))
            if last > ends[i]:
                ends[i] = last
    if nested:
        todo = set(nested)
        if order is None:
            order = _reach(children, tree.tops)
        for i in reversed(order):  # children before parents
            if i in todo:
                last = max(map(ends.__getitem__, children[i]))
                if last > ends[i]:
                    ends[i] = last
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
