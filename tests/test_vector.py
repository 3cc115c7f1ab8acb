"""The NumPy passes of the column path (`analysis/vector.py`) give exactly what the Python passes give: the start
order and every span's decider on generated trees (ties in start, parents after their children in storage,
chains deeper than a decider is handed down, forests), and whole `why --json` documents of varied runs with the
array passes (deciders, then every call's actions and tool calls) forced on small runs."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import orjson
import pytest

from agent_debug.analysis import vector
from agent_debug.analysis.column_path import ColumnContext, _order
from agent_debug.columns import TraceSpans
from agent_debug.store.ingest import ingest

np = pytest.importorskip("numpy")


def _trace(n: int, rng: random.Random, *, chain: bool = False, sort_by_start: bool = False) -> TraceSpans:
    """A run of n spans: parents drawn among spans placed before them in a random permutation (so no cycle,
    but a parent is often stored after its child), starts from a small range (many ties), a third model calls."""
    place = list(range(n))
    rng.shuffle(place)
    ids = [f"s{rng.getrandbits(40):010x}{i}" for i in range(n)]
    recs = []
    for pos, i in enumerate(place):
        if chain:  # one long chain with side branches: deeper than vector.MAX_INHERIT
            parent = place[pos - 1] if pos and rng.random() < 0.9 else (place[rng.randrange(pos)] if pos else None)
        else:
            parent = place[rng.randrange(pos)] if pos and rng.random() < 0.95 else None
        recs.append((i, {
            "trace_id": "t", "span_id": ids[i], "parent_id": ids[parent] if parent is not None else None,
            "name": f"n{i}", "event_type": "LLM_CALL" if rng.random() < 0.33 else rng.choice(["TOOL_CALL", "AGENT"]),
            "agent_name": "a", "timestamp": 1000.0 + rng.randrange(max(2, n // 3)) / 1000.0, "duration_ns": 5,
        }))
    recs.sort(key=lambda t: t[0])
    if sort_by_start:  # stored in start order (the start order's shortcut)
        recs.sort(key=lambda t: t[1]["timestamp"])
    return TraceSpans.from_records("t", [r for _, r in recs])


def _python_and_numpy(ts: TraceSpans, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int | None], list[int | None],
                                                                              list[int], list[int]]:
    """(deciders by the Python pass, by the arrays, start order by Python, by the arrays)."""
    from agent_debug.analysis.tree import build_tree

    tree = build_tree(ts)
    assert tree.parent is not None
    orders = []
    for force in (False, True):
        monkeypatch.setattr(vector, "VECTOR_MIN", 0 if force else 10**12)
        tied: list[int] = []
        orders.append((_order(ts, tied), tied))
    (py_order, tied), (vec_order, _) = orders
    c = ColumnContext.__new__(ColumnContext)
    c.ts, c.n, c.parent, c.children, c.order = ts, len(ts), tree.parent, tree.children, py_order
    c._tied = set()
    seen_at: dict[tuple[int, int], int] = {}
    for i in tied:
        p = tree.parent[i]
        if p is not None and seen_at.setdefault((p, ts.start_ns[i]), i) != i:
            c._tied.add(p)
    c.is_llm = [e == "LLM_CALL" for e in ts.event_type]
    got = vector.decider_array(np, vector.parent_array(np, tree.parent), py_order, c.is_llm, ts.start_ns)
    assert got is not None
    vec = [None if d < 0 else d for d in got.tolist()]
    return c._deciders(), vec, py_order, vec_order


@pytest.mark.parametrize("seed", range(40))
def test_deciders_and_order_by_arrays_equal_the_python_passes(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    ts = _trace(rng.choice([1, 2, 5, 30, 200, 1500]), rng, chain=seed % 4 == 3, sort_by_start=seed % 5 == 0)
    py, vec, py_order, vec_order = _python_and_numpy(ts, monkeypatch)
    assert vec_order == py_order
    assert vec == py
    if len(ts) >= 200:
        assert any(d is not None for d in py)  # the comparison is not of two empty answers


def test_a_chain_deeper_than_a_decider_is_handed_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model call beside the top of a 200-span chain decides that top span and the 63 levels below it, not the
    rest (and the parent it is the first and only model call of)."""
    n = 200
    recs = [{"trace_id": "t", "span_id": "root", "parent_id": None, "name": "r", "event_type": "AGENT",
             "agent_name": "a", "timestamp": 1.0, "duration_ns": 1},
            {"trace_id": "t", "span_id": "m", "parent_id": "root", "name": "m", "event_type": "LLM_CALL",
             "agent_name": "a", "timestamp": 1.1, "duration_ns": 1}]
    parent = "root"
    for i in range(n):
        recs.append({"trace_id": "t", "span_id": f"c{i}", "parent_id": parent, "name": "c", "event_type": "AGENT",
                     "agent_name": "a", "timestamp": 1.2 + i / 1e4, "duration_ns": 1})
        parent = f"c{i}"
    ts = TraceSpans.from_records("t", recs)
    py, vec, _, _ = _python_and_numpy(ts, monkeypatch)
    assert vec == py
    decided = [ts.span_id[i] for i, d in enumerate(py) if d is not None and ts.span_id[d] == "m"]
    assert decided == ["root"] + [f"c{i}" for i in range(1 + vector.MAX_INHERIT)]


def test_a_start_outside_int64_falls_back_to_the_python_pass() -> None:
    assert vector.start_order(np, [1, 2**70, 3]) is None
    assert vector.decider_array(np, vector.parent_array(np, [None, 0]), [0, 1], [True, False], [2**70, 1]) is None


def test_small_runs_do_not_import_numpy() -> None:
    assert vector.numpy_for(vector.VECTOR_MIN - 1) is None
    assert vector.numpy_for(vector.VECTOR_MIN) is not None


@pytest.mark.parametrize("source", ["varied-1", "varied-2", "varied-3", "demo", "fixtures", "trail", "otlp"])
def test_why_json_is_the_same_with_the_array_passes(tmp_path: Path, source: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole `why --json` documents, column path with the array passes forced on (deciders, every call's actions,
    the model calls' results and bulk features) against the records path: varied synthetic runs, the demo, the
    fixtures and real foreign traces."""
    from test_column_path import ROOT, SHARED, _compare, _varied

    monkeypatch.setattr(vector, "VECTOR_MIN", 0)
    calls = []
    real = vector.call_codes
    monkeypatch.setattr(vector, "call_codes", lambda *a: calls.append(1) or real(*a))
    db = tmp_path / "s" / "traces.db"
    if source.startswith("varied"):
        f = tmp_path / "t.jsonl"
        f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _varied(3000, int(source[-1]))))
        ingest([f], db)
    elif source == "demo":
        from agent_debug.demo.runner import run_demo

        ingest([run_demo(tmp_path / "demo", 12, seed=5).trace_dir], db)
    elif source == "fixtures":
        ingest([ROOT / "fixtures"], db)
    else:
        if not (SHARED / source).exists():
            pytest.skip(f"no shared data at {SHARED / source}")
        ingest([SHARED / source], db)
    assert _compare(db) >= 1
    assert calls  # the array passes did answer


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_call_results_by_arrays_equal_the_python_methods(tmp_path: Path, seed: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model call's result (has one, its size, plain enough for the bulk features) by `vector.call_results`
    equals `ColumnContext.pieces` / `result_size` / `plain_pieces`: a call the arrays wrongly call not plain would
    still be answered right (by the signal functions), only slower, so the documents alone cannot tell."""
    from agent_debug import digest as dg
    from agent_debug.analysis.buckets import load_rules
    from agent_debug.analysis.explain import column_facts, load_for_diagnosis
    from agent_debug.analysis.source import StoreSource
    from agent_debug.analysis.span_context import TEXT_CAP
    from agent_debug.analysis.tree import build_tree
    from test_column_path import _varied

    monkeypatch.setattr(vector, "VECTOR_MIN", 0)
    recs = _varied(3000, seed)
    rng = random.Random(seed)
    for r in recs:  # long plain outputs, one line or several, so that results pass TEXT_CAP
        if r["event_type"] in ("TOOL_CALL", "RETRIEVAL") and rng.random() < 0.3:
            r["payload"] = {"output": rng.choice(["y" * rng.randrange(1, 3 * TEXT_CAP),
                                                  ("z" * 50 + "\n") * rng.randrange(1, 200), ""])}
    f = tmp_path / "t.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    ingest([f], tmp_path / "s" / "traces.db")
    src = StoreSource(tmp_path / "s" / "traces.db")
    (summary,) = src.list()
    ts = load_for_diagnosis(src, summary.trace_id)
    tree = build_tree(ts)
    facts = column_facts(ts, load_rules(), tree)
    assert facts is not None
    c = ColumnContext(ts, tree, facts)
    assert c.arrays is not None
    res = vector.call_results(c.arrays, c.llm, facts.df, facts.ol, c.plain, (dg.OUT, dg.EMPTY, dg.LINE), TEXT_CAP)
    sizes = res.size.tolist()
    seen = {"long": 0, "several": 0}
    for j, k in enumerate(c.llm):
        pieces = c.pieces(k)
        assert bool(res.has[j]) == (pieces is not None), k
        size = -1 if pieces is None else c.result_size(pieces)
        assert sizes[j] == size, k
        assert res.simple[j] == (c.plain[k] and (pieces is None or c.plain_pieces(pieces, size))), k
        if pieces is not None:
            assert bool(res.all_empty[j]) == all(facts.df[i] & dg.EMPTY for i in pieces), k
            seen["long"] += size > TEXT_CAP
            seen["several"] += len(pieces) > 1
    assert seen["long"] and seen["several"]  # the data reached the cases that matter


def test_grouped_lists_read_like_the_dicts_they_replace() -> None:
    """`vector.actions_of`'s lists: each key's items in their order; a key with none gives [] for actions (a dict
    holding every model call) and is missing for tool calls (a dict holding only the calls that have some)."""
    items = np.array([10, 11, 12, 13, 14], dtype=np.int64)
    keys = np.array([3, 1, 3, 7, 1], dtype=np.int64)
    actions, _, _ = vector._groups(np, items, keys, [])
    tools, sorted_items, sorted_keys = vector._groups(np, items, keys, None)
    assert actions[1] == [11, 14] and actions[3] == [10, 12] and actions[7] == [13]
    assert actions[2] == [] and actions.get(2) == [] and actions.get(2, [9]) == []
    assert tools.get(2) is None and 2 not in tools and 3 in tools
    with pytest.raises(KeyError):
        tools[2]
    assert list(tools) == [1, 3, 7] and len(tools) == 3
    assert sorted_items.tolist() == [11, 14, 10, 12, 13] and sorted_keys.tolist() == [1, 1, 3, 3, 7]
    empty, _, _ = vector._groups(np, items[:0], keys[:0], None)
    assert len(empty) == 0 and empty.get(1) is None


def test_without_numpy_a_big_run_takes_the_python_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` raises ImportError
    assert vector.numpy_for(10 * vector.VECTOR_MIN) is None
