"""Whole-run passes of the column path in NumPy, for big runs (the `fast` extra).

`column_path` works out the start order and every span's decider in Python passes over lists; at a million spans
those passes take seconds. The functions here give exactly the same answers with array operations, and are used
only when NumPy is installed and the run has at least `VECTOR_MIN` spans (below that, importing NumPy costs more
than it saves). Each returns None when its input does not fit the arrays (a start time outside int64): the
caller then takes the Python pass. `tests/test_vector.py` compares both on generated trees.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

VECTOR_MIN = 50_000  # spans: from here on the array passes pay for NumPy's import
MAX_INHERIT = 63  # `ColumnContext._deciders`: a decider is handed down at most this many levels


def numpy_for(n: int) -> ModuleType | None:
    """NumPy, when it is installed and a run of n spans is worth it."""
    if n < VECTOR_MIN:
        return None
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def start_order(np: Any, start: list[int]) -> tuple[list[int], list[int]] | None:
    """Span indices by start time, equal starts by index (Python's stable sort of `range(n)` by start), and the
    places k in that order where a span starts with the one before it (k - 1)."""
    try:
        st = np.array(start, dtype=np.int64)
    except (OverflowError, TypeError, ValueError):
        return None
    order = np.argsort(st, kind="stable")
    s = st[order]
    same = np.flatnonzero(s[1:] == s[:-1]) + 1
    return order.tolist(), same.tolist()


def deciders(np: Any, parent: list[int | None], order: list[int], is_llm: list[bool], start: list[int]
             ) -> list[int | None] | None:
    """`decider_array` as a list (None: no decider)."""
    got = decider_array(np, parent, order, is_llm, start)
    return None if got is None else as_list(got)


def as_list(arr: Any) -> list[int | None]:
    """An index array with -1 for none, as a list with None."""
    out: list[int] = arr.tolist()
    return [None if d < 0 else d for d in out]


def decider_array(np: Any, parent: list[int | None], order: list[int], is_llm: list[bool], start: list[int]
                  ) -> Any:
    """`ColumnContext._deciders` (which see) in array passes: the latest model call among a span's earlier
    siblings, else its parent's decider handed down at most MAX_INHERIT levels, else None; a parent whose one
    model call starts first among its children is decided by that call. Siblings are taken in `order` (by start,
    then span id: the order of the children lists, whose siblings either start apart or are sorted so)."""
    n = len(parent)
    try:
        st = np.array(start, dtype=np.int64)
    except (OverflowError, TypeError, ValueError):
        return None
    par = np.array(parent, dtype=np.float64)  # None -> nan
    np.nan_to_num(par, copy=False, nan=-1.0)
    up = par.astype(np.int64)
    del par
    # every span with a parent, grouped by parent, each group in `order`
    by_start = np.fromiter(order, dtype=np.int64, count=n)
    p_of = up[by_start]
    perm = np.argsort(p_of, kind="stable")
    roots = int(np.count_nonzero(p_of < 0))
    kids = by_start[perm[roots:]]
    kid_parent = p_of[perm[roots:]]
    del by_start, p_of, perm
    m = len(kids)
    if m == 0:
        return np.full(n, -1, dtype=np.int64)
    llm = np.fromiter(is_llm, dtype=bool, count=n)
    kid_llm = llm[kids]
    # where each parent's children begin in `kids`
    new = np.empty(m, dtype=bool)
    new[0] = True
    np.not_equal(kid_parent[1:], kid_parent[:-1], out=new[1:])
    first = np.flatnonzero(new)
    groups = kid_parent[first]
    sizes = np.diff(np.append(first, m))
    begin = np.repeat(first, sizes)
    # the latest model call strictly before each kid among its siblings
    latest = np.where(kid_llm, np.arange(m, dtype=np.int64), -1)
    np.maximum.accumulate(latest, out=latest)
    before = np.empty(m, dtype=np.int64)
    before[0] = -1
    before[1:] = latest[:-1]
    own = np.full(n, -1, dtype=np.int64)
    has = before >= begin
    own[kids[has]] = kids[before[has]]
    del before, begin, has
    # hand a decider down: pointer jumping to the nearest span (itself or an ancestor) that has its own, counting
    # the levels; a span with none within MAX_INHERIT levels (or above a root) has no decider
    done = (own >= 0) | (up < 0)
    nxt = np.where(done, np.arange(n, dtype=np.int64), up)
    hops = (~done).astype(np.int64)
    for _ in range(64):
        todo = np.flatnonzero(~done[nxt])
        if len(todo) == 0:
            break
        j = nxt[todo]
        hops[todo] += hops[j]
        nxt[todo] = nxt[j]
        np.minimum(hops, MAX_INHERIT + 1, out=hops)
    else:  # pragma: no cover - a cycle, which ColumnFacts rules out before this is called
        return None
    got = own[nxt]
    got[hops > MAX_INHERIT] = -1
    # a parent whose only model-call child starts no later than its first child: that call decides the parent
    ends = first + sizes - 1
    count = np.add.reduceat(kid_llm.astype(np.int64), first)
    last = kids[latest[ends]]
    inside = (count == 1) & (st[kids[first]] >= st[last])
    got[groups[inside]] = last[inside]
    return got


def actions_of(np: Any, dec: Any, order: list[int], llm: list[int], is_llm: list[bool], is_call: list[bool]
               ) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """`ColumnContext`'s actions and tools_of from the decider array: every model call's actions (the spans it
    decided that are not model calls, in `order`), and its tool calls and retrievals among them (only the calls
    that have some)."""
    n = len(order)
    o = np.fromiter(order, dtype=np.int64, count=n)
    d = dec[o]
    keep = d >= 0
    keep &= ~np.fromiter(is_llm, dtype=bool, count=n)[o]
    sel, sel_d = o[keep], d[keep]
    actions: dict[int, list[int]] = {k: [] for k in llm}
    actions.update(_groups(np, sel, sel_d))
    call = np.fromiter(is_call, dtype=bool, count=n)[sel]
    tools_of = _groups(np, sel[call], sel_d[call])
    return actions, tools_of


def _groups(np: Any, items: Any, keys: Any) -> dict[int, list[int]]:
    """items grouped by key, each group in the items' order: {key: [item, ...]} (built by C-level maps)."""
    if len(items) == 0:
        return {}
    perm = np.argsort(keys, kind="stable")
    k, it = keys[perm], items[perm].tolist()
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    ends = np.append(starts[1:], len(k)).tolist()
    return dict(zip(k[starts].tolist(), map(it.__getitem__, map(slice, starts.tolist(), ends)), strict=True))
