"""Whole-run passes of the column path in NumPy, for big runs (the `fast` extra).

`column_path` works out, over every span of a run, the start order, each span's decider, each model call's
actions and tool calls, and each model call's result and bulk signal features; in Python passes over lists
these take seconds at a million spans. The functions here give exactly the same answers with array operations.
They are used only when NumPy is installed and the run has at least `VECTOR_MIN` spans (below that, importing
NumPy costs more than it saves); a start time outside int64 makes them return None, and the caller takes the
Python passes. `tests/test_vector.py` compares both: on generated trees, on whole `why --json` documents with
the arrays forced on small runs, and `call_results` against `ColumnContext`'s methods.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# spans: the break-even with NumPy's import (`why --json` on synthetic failed runs, whole process: the same at
# 100k, 15% faster at 200k, 29% at 400k, 5.1-5.4 s against 7.0-7.5 s at bench_big's 1M)
VECTOR_MIN = 100_000
MAX_INHERIT = 63  # `ColumnContext._deciders`: a decider is handed down at most this many levels


def numpy_for(n: int) -> ModuleType | None:
    """NumPy, when it is installed and a run of n spans is worth it."""
    if n < VECTOR_MIN:
        return None
    try:
        import numpy
    except Exception:  # not installed, or installed broken (a build for another Python): the Python passes answer
        return None
    return numpy


def start_order(np: Any, start: list[int]) -> tuple[list[int], list[int]] | None:
    """Span indices by start time, equal starts by index (Python's stable sort of `range(n)` by start), and the
    places k in that order where a span starts with the one before it (k - 1)."""
    try:
        st = np.array(start, dtype=np.int64)
    except (OverflowError, TypeError, ValueError):
        return None
    if bool((st[1:] >= st[:-1]).all()):  # stored in start order already
        order: list[int] = list(range(len(start)))
        s = st
    else:
        by_start = np.argsort(st, kind="stable")
        order, s = by_start.tolist(), st[by_start]
    same = np.flatnonzero(s[1:] == s[:-1]) + 1
    return order, same.tolist()


class Positions:
    """An index array (-1: none) read one item at a time as int | None, without a list of every item (the few
    lookups a big run's column path makes of its deciders)."""

    __slots__ = ("_a",)

    def __init__(self, arr: Any) -> None:
        self._a = arr

    def __len__(self) -> int:
        return len(self._a)

    def __getitem__(self, i: int) -> int | None:
        d = int(self._a[i])
        return None if d < 0 else d


def parent_array(np: Any, parent: list[int | None]) -> Any:
    """Each span's parent position, -1 for none."""
    par = np.array(parent, dtype=np.float64)  # None -> nan
    np.nan_to_num(par, copy=False, nan=-1.0)
    return par.astype(np.int64)


def decider_array(np: Any, up: Any, order: list[int], is_llm: list[bool], start: list[int]) -> Any:
    """`ColumnContext._deciders` (which see) in array passes: the latest model call among a span's earlier
    siblings, else its parent's decider handed down at most MAX_INHERIT levels, else -1; a parent whose one
    model call starts first among its children is decided by that call. Siblings are taken in `order` (by start,
    then span id: the order of the children lists, whose siblings either start apart or are sorted so). `up`:
    `parent_array`. None: a start outside int64 (take the Python pass)."""
    n = len(up)
    try:
        st = np.array(start, dtype=np.int64)
    except (OverflowError, TypeError, ValueError):
        return None
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
    last = kids[latest[ends]]  # (a group with no model call reads a harmless place: `count` masks it)
    inside = (count == 1) & (st[kids[first]] >= st[last])
    got[groups[inside]] = last[inside]
    return got


@dataclass
class RunArrays:
    """What the array passes of one run share: the parent and decider of every span (-1: none), which spans are
    model calls, and, once `actions_of` has grouped them, the tool calls and retrievals each model call decided
    (`tool_items`, grouped by decider in ascending order, each group in start order; `tool_keys`: the decider of
    each)."""

    np: Any
    up: Any
    dec: Any
    llm: Any
    tool_items: Any = None
    tool_keys: Any = None


def run_arrays(np: Any, parent: list[int | None], order: list[int], is_llm: list[bool], start: list[int]
               ) -> RunArrays | None:
    """The deciders by array passes (`decider_array`), with what later passes reuse; None: take the Python pass."""
    up = parent_array(np, parent)
    dec = decider_array(np, up, order, is_llm, start)
    if dec is None:
        return None
    return RunArrays(np, up, dec, np.fromiter(is_llm, dtype=bool, count=len(is_llm)))


def actions_of(ra: RunArrays, order: list[int], is_call: list[bool]) -> tuple[Grouped, Grouped]:
    """`ColumnContext`'s actions and tools_of from the decider array: every model call's actions (the spans it
    decided that are not model calls, in `order`; [] for none), and its tool calls and retrievals among them
    (None for none), each read when asked for."""
    np = ra.np
    n = len(order)
    o = np.fromiter(order, dtype=np.int64, count=n)
    d = ra.dec[o]
    keep = d >= 0
    keep &= ~ra.llm[o]
    sel, sel_d = o[keep], d[keep]
    actions, _, _ = _groups(np, sel, sel_d, [])
    call = np.fromiter(is_call, dtype=bool, count=n)[sel]
    tools_of, ra.tool_items, ra.tool_keys = _groups(np, sel[call], sel_d[call], None)
    return actions, tools_of


class Grouped(Mapping[int, list[int]]):
    """A read-only {key: [item, ...]} over items sorted by key: a key's list is cut when asked for (a big run's
    column path asks for a few thousand of its 200k model calls' lists). With `missing` ([]), a key with no items
    gives a fresh [], as a dict holding every model call would; else it is missing."""

    __slots__ = ("_keys", "_starts", "_items", "_missing")

    def __init__(self, keys: list[int], starts: list[int], items: list[int], missing: list[int] | None) -> None:
        self._keys, self._starts, self._items, self._missing = keys, starts, items, missing

    def __getitem__(self, k: int) -> list[int]:
        keys = self._keys
        j = bisect_left(keys, k)
        if j < len(keys) and keys[j] == k:
            return self._items[self._starts[j]:self._starts[j + 1]]
        if self._missing is None:
            raise KeyError(k)
        return []

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[int]:
        """The keys that have items, ascending."""
        return iter(self._keys)


def _groups(np: Any, items: Any, keys: Any, missing: list[int] | None) -> tuple[Grouped, Any, Any]:
    """items grouped by key, each group in the items' order, and the items and keys sorted so."""
    perm = np.argsort(keys, kind="stable")
    k, ia = keys[perm], items[perm]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1]))) if len(k) else np.zeros(0, dtype=np.int64)
    bounds: list[int] = np.append(starts, len(k)).tolist()
    return Grouped(k[starts].tolist(), bounds, ia.tolist(), missing), ia, k


@dataclass
class CallResults:
    """Per model call (in the order given): whether its output and result are plain (`simple`: the bulk features
    hold for it), whether it has a result, the result's size in characters (-1: none), and whether every piece of
    the result is empty."""

    simple: list[bool]
    has: Any
    size: Any
    all_empty: Any


def call_results(ra: RunArrays, calls: list[int], df: list[int], ol: list[int], plain: list[bool],
                 flags: tuple[int, int, int], text_cap: int) -> CallResults:
    """`ColumnContext.pieces`, `result_size` and `plain_pieces` of every model call, by array passes: a call's
    result is the output of the step that holds it when that step is one of its actions and has an output, else
    its tool calls' outputs joined by newlines (`tool_items`). `flags`: the digest's OUT, EMPTY and LINE bits.
    (Where a call has no result, `first` and the sums are read at a harmless place and masked by `has`.)"""
    np = ra.np
    out_f, empty_f, line_f = flags
    n = len(df)
    k = np.fromiter(calls, dtype=np.int64, count=len(calls))
    dfa = np.fromiter(df, dtype=np.int64, count=n)
    ola = np.fromiter(ol, dtype=np.int64, count=n)
    pla = np.fromiter(plain, dtype=bool, count=n)
    p = ra.up[k]
    pc = np.where(p >= 0, p, 0)
    step = (p >= 0) & (ra.dec[pc] == k) & ~ra.llm[pc] & ((dfa[pc] & out_f) != 0)
    items, keys = ra.tool_items, ra.tool_keys
    if items is None or keys is None:
        raise ValueError("call_results reads the tool calls actions_of groups: call actions_of first")
    lo = np.searchsorted(keys, k, "left")
    hi = np.searchsorted(keys, k, "right")
    count = hi - lo
    zero = np.zeros(1, dtype=np.int64)
    sum_ol = np.concatenate((zero, np.cumsum(ola[items])))
    not_plain = np.concatenate((zero, np.cumsum(~pla[items])))
    not_empty = np.concatenate((zero, np.cumsum((dfa[items] & empty_f) == 0)))
    tools = count > 0
    size = np.where(step, ola[pc], np.where(tools, sum_ol[hi] - sum_ol[lo] + count - 1, -1))
    all_plain = np.where(step, pla[pc], not_plain[hi] == not_plain[lo])
    all_empty = np.where(step, (dfa[pc] & empty_f) != 0, not_empty[hi] == not_empty[lo])
    first = np.where(step, pc, items[np.minimum(lo, max(len(items) - 1, 0))] if len(items) else 0)
    head = ((dfa[first] & empty_f) == 0) & ((dfa[first] & line_f) != 0) & (ola[first] <= text_cap)
    has = step | tools
    simple = pla[k] & (~has | (all_plain & ((size <= text_cap) | head)))
    out: list[bool] = simple.tolist()
    return CallResults(out, has, size, all_empty)


def call_codes(ra: RunArrays, calls: list[int], res: CallResults, acted: list[bool], prev: list[int | None],
               failed_action: Iterable[int], empty_of: dict[int, bool], errtext_of: dict[int, bool]) -> list[int]:
    """The bulk feature code of every model call (`signal_features`' bits of `_LLM_BITS`, large_result aside):
    `empty_of` / `errtext_of` hold what the signal functions found for the calls not simple (their own codes are
    not used)."""
    np = ra.np
    n = len(ra.up)
    k = np.fromiter(calls, dtype=np.int64, count=len(calls))
    fa = np.zeros(n, dtype=bool)
    fa[np.fromiter(failed_action, dtype=np.int64)] = True
    did = np.fromiter(acted, dtype=bool, count=len(calls))
    pv_all = np.fromiter((-1 if q is None else q for q in prev), dtype=np.int64, count=len(calls))
    pv = np.where(did, pv_all, -1)
    has_p = pv >= 0
    pc = np.where(has_p, pv, 0)
    af = fa[k]
    er = res.has & ~af & res.all_empty
    empty = np.zeros(n, dtype=bool)
    empty[k] = er
    errtext = np.zeros(n, dtype=bool)
    for got, of in ((empty, empty_of), (errtext, errtext_of)):
        if of:
            got[np.fromiter(of, dtype=np.int64, count=len(of))] = np.fromiter(of.values(), dtype=bool, count=len(of))
    code = (af.astype(np.int64) | (has_p & fa[pc]).astype(np.int64) << 1 | er.astype(np.int64) << 2
            | (has_p & empty[pc]).astype(np.int64) << 3 | (has_p & errtext[pc]).astype(np.int64) << 5
            | (did & ~has_p).astype(np.int64) << 7 | (~did).astype(np.int64) << 8)
    out: list[int] = code.tolist()
    return out
