"""The causal tree: orphans, cycles and duplicates; folding; --depth, --errors, --min-duration; nested JSON that
flattens back to its input; a 100k-span trace rendered through the real CLI in seconds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings, strategies as st

from agent_debug.analysis.tree import Tree, build_tree
from agent_debug.analysis.treeview import build_view, nested_json
from agent_debug.columns import TraceSpans
from agent_debug.store.ingest import ingest
from conftest import ROOT, rec, run_cli, tree_json_span_ids, write_jsonl


def _tree(records: list[dict[str, Any]]) -> Tree:
    return build_tree(TraceSpans.from_records("t1", records))


def _ids(tree: Tree, idx: list[int]) -> list[str]:
    return [tree.spans.span_id[i] for i in idx]


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`run_cli` with a hard timeout of our own: a hang fails the test instead of stalling the suite."""
    env = dict(os.environ, COLUMNS="200")
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", "agent_debug.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# -- build_tree -------------------------------------------------------------------------------------------------


def test_orphans_hang_under_one_missing_parent_node_per_missing_id() -> None:
    tree = _tree([
        rec("root"), rec("a", "root", start=1),
        rec("o2", "gone", start=3), rec("o1", "gone", start=2), rec("o3", "elsewhere", start=4),
    ])
    assert _ids(tree, tree.roots) == ["root"]
    assert {pid: _ids(tree, g) for pid, g in tree.orphans.items()} == {"gone": ["o1", "o2"], "elsewhere": ["o3"]}
    assert tree.cycles == [] and tree.duplicates == []
    rows = build_view(tree).rows
    missing = [r.label for r in rows if r.kind == "missing"]
    assert missing == ["missing parent gone", "missing parent elsewhere"]


def test_a_two_cycle_and_a_self_parent_are_cut_and_reported() -> None:
    tree = _tree([
        rec("root"), rec("x", "y", start=5), rec("y", "x", start=6), rec("me", "me", start=7),
        rec("under-x", "x", start=8),
    ])
    cycles = sorted(_ids(tree, c) for c in tree.cycles)
    assert cycles == [["me"], ["x", "y"]]  # each cut at its earliest span, which comes first
    assert _ids(tree, tree.children[tree.spans.span_id.index("x")]) == ["y", "under-x"]
    view = build_view(tree)
    labels = [r.label for r in view.rows if r.kind == "cycle"]
    assert labels == ["cycle broken here: x -> y", "cycle broken here: me"]
    assert "2 parent cycle(s) broken and reported, not followed" in view.notes
    doc = nested_json(tree)
    assert sorted((c["cut_at"], tuple(c["span_ids"])) for c in doc["cycles"]) == [("me", ("me",)), ("x", ("x", "y"))]


def test_cycles_are_found_when_starts_are_equal_or_in_order() -> None:
    """The tree skips the search for unreached spans when every parent starts before its child (or with it and
    later in the trace); a cycle always has an edge that breaks that, however its starts and order fall."""
    same_start = _tree([rec("root"), rec("c", "a", start=1), rec("a", "b", start=1), rec("b", "c", start=1)])
    assert sorted(_ids(same_start, same_start.cycles[0])) == ["a", "b", "c"]
    in_order = _tree([rec("root"), rec("b", "a", start=2), rec("a", "b", start=1), rec("k", "b", start=3)])
    assert [_ids(in_order, c) for c in in_order.cycles] == [["a", "b"]]
    assert sorted(tree_json_span_ids(nested_json(in_order))) == ["a", "b", "k", "root"]
    acyclic = _tree([rec("p", start=1), rec("c", "p", start=1), rec("g", "c", start=2)])  # a tie, parent later
    acyclic2 = _tree([rec("c", "p", start=1), rec("p", start=1), rec("g", "c", start=2)])
    for tree in (acyclic, acyclic2):
        assert tree.cycles == [] and _ids(tree, tree.roots) == ["p"]
        assert sorted(tree_json_span_ids(nested_json(tree))) == ["c", "g", "p"]


def test_duplicate_span_ids_are_set_aside_and_noted() -> None:
    tree = _tree([rec("root"), rec("a", "root", start=1), rec("a", "root", start=2), rec("b", "a", start=3)])
    assert tree.duplicates == [2]
    assert _ids(tree, tree.children[0]) == ["a"]
    view = build_view(tree)
    assert "1 spans reuse an earlier span id and are not shown" in view.notes
    assert sorted(tree_json_span_ids(nested_json(tree))) == ["a", "b", "root"]


def test_tree_on_cycles_terminates_through_the_cli(tmp_path: Path) -> None:
    records = [rec("root", trace_id="cyc")]
    records += [rec(f"c{i}", f"c{(i + 1) % 50}", trace_id="cyc", start=i * 0.001) for i in range(50)]  # a 50-ring
    records += [rec("self", "self", trace_id="cyc", start=1)]
    path = write_jsonl(tmp_path / "cyc.jsonl", records)
    started = time.monotonic()
    text = _cli("tree", "cyc", "--from", str(path), timeout=60)
    as_json = _cli("tree", "cyc", "--from", str(path), "--json", timeout=60)
    crit = _cli("critical-path", "cyc", "--from", str(path), "--json", timeout=60)
    assert time.monotonic() - started < 60
    assert text.returncode == as_json.returncode == crit.returncode == 0, text.stderr + crit.stderr
    assert "cycle broken here: c0 -> " in text.stdout and "cycle broken here: self" in text.stdout
    assert "2 parent cycle(s) broken" in text.stdout
    assert sorted(tree_json_span_ids(orjson.loads(as_json.stdout))) == sorted(r["span_id"] for r in records)


# -- the view: folding and filters ----------------------------------------------------------------------------


def _view_rows(records: list[dict[str, Any]], **kw: Any) -> list[tuple[str, str]]:
    tree = _tree(records)
    out = []
    for r in build_view(tree, **kw).rows:
        name = tree.spans.span_id[r.index] if r.index is not None else r.label
        out.append((r.kind, f"{name} x{r.count}" if r.kind == "fold" else name))
    return out


def test_three_similar_siblings_fold_and_two_do_not() -> None:
    three = [rec("root", duration_ms=50)] + [
        rec(f"r{i}", "root", agent="retriever", event_type="RETRIEVAL", name="search", start=i * 0.001)
        for i in range(3)]
    assert _view_rows(three) == [("span", "root"), ("fold", "r0 x3")]
    two = three[:3]
    assert _view_rows(two) == [("span", "root"), ("span", "r0"), ("span", "r1")]
    # not similar: another name breaks the run; a similar run elsewhere folds on its own
    mixed = three[:3] + [rec("other", "root", agent="retriever", event_type="RETRIEVAL", name="fetch", start=0.01)]
    mixed += [rec(f"s{i}", "root", agent="retriever", event_type="RETRIEVAL", name="search", start=0.02 + i * 0.001)
              for i in range(4)]
    assert _view_rows(mixed) == [("span", "root"), ("span", "r0"), ("span", "r1"), ("span", "other"),
                                 ("fold", "s0 x4")]
    # a pair of similar siblings right after a folded run stays unfolded
    pair = [rec(f"q{i}", "root", agent="retriever", event_type="RETRIEVAL", name="fetch", start=0.01 + i * 0.001)
            for i in range(2)]
    assert _view_rows(three + pair) == [("span", "root"), ("fold", "r0 x3"), ("span", "q0"), ("span", "q1")]


def _deep() -> list[dict[str, Any]]:
    return [
        rec("root", duration_ms=100),
        rec("plan", "root", start=0.001, duration_ms=10),
        rec("work", "root", start=0.02, duration_ms=70),
        rec("step1", "work", start=0.021, duration_ms=30),
        rec("leaf1", "step1", start=0.022, duration_ms=0.2),
        rec("leaf2", "step1", start=0.025, duration_ms=20, status="error", error={"type": "E", "message": "boom"}),
        rec("step2", "work", start=0.06, duration_ms=25),
    ]


def test_depth_collapses_with_a_row_counting_the_hidden_spans() -> None:
    assert _view_rows(_deep(), max_depth=1) == [
        ("span", "root"), ("span", "plan"), ("span", "work"), ("more", "... 4 more spans (--depth)")]
    assert _view_rows(_deep(), max_depth=0) == [("span", "root"), ("more", "... 6 more spans (--depth)")]


def test_errors_keeps_error_spans_and_their_ancestors_only() -> None:
    assert _view_rows(_deep(), errors_only=True) == [
        ("span", "root"), ("span", "work"), ("span", "step1"), ("span", "leaf2")]


def test_min_duration_hides_short_spans_but_never_errors() -> None:
    records = _deep() + [rec("tiny-error", "root", start=0.095, duration_ms=0.001, status="error")]
    shown = [name for _, name in _view_rows(records, min_duration_ns=1_000_000)]
    assert "leaf1" not in shown and "tiny-error" in shown
    assert shown == ["root", "plan", "work", "step1", "leaf2", "step2", "tiny-error"]


def test_cli_options_depth_errors_min_duration(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", _deep())
    depth = run_cli("tree", "t1", "--from", str(path), "--depth", "1")
    assert depth.returncode == 0, depth.stderr
    assert "... 4 more spans (--depth)" in depth.stdout and "step1" not in depth.stdout
    errors = run_cli("tree", "t1", "--from", str(path), "--errors", "--json")
    assert sorted(tree_json_span_ids(orjson.loads(errors.stdout))) == ["leaf2", "root", "step1", "work"]
    short = run_cli("tree", "t1", "--from", str(path), "--min-duration", "1ms", "--json")
    assert "leaf1" not in tree_json_span_ids(orjson.loads(short.stdout))
    bad = run_cli("tree", "t1", "--from", str(path), "--min-duration", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: not a duration: 'soon'")


def test_json_nodes_carry_fields_and_children(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", _deep())
    doc = orjson.loads(run_cli("tree", "t1", "--from", str(path), "--json").stdout)
    assert doc["trace_id"] == "t1" and doc["missing_parents"] == [] and doc["cycles"] == []
    (root,) = doc["roots"]
    assert {"span_id", "parent_id", "agent_name", "event_type", "name", "status", "start_ns", "duration_ns",
            "critical_ns", "children"} <= set(root)
    assert [c["span_id"] for c in root["children"]] == ["plan", "work"]
    leaf2 = root["children"][1]["children"][0]["children"][1]
    assert leaf2["span_id"] == "leaf2" and leaf2["error"] == {"type": "E", "message": "boom"}
    cut = orjson.loads(run_cli("tree", "t1", "--from", str(path), "--json", "--depth", "1").stdout)
    work = cut["roots"][0]["children"][1]
    assert work["children"] == [] and work["hidden_descendants"] == 4


# -- property: the JSON tree flattens back to exactly its input ------------------------------------------------

# each span: its parent is None (a root), an earlier or later span (so cycles happen), itself, or a missing id
PARENTS = st.lists(st.one_of(st.none(), st.integers(0, 60), st.sampled_from(["gone", "lost"])), min_size=1,
                   max_size=60)


@settings(max_examples=150, deadline=None)
@given(PARENTS, st.randoms(use_true_random=False))
def test_flattening_the_json_tree_gives_back_exactly_the_input_span_ids(parents: list[Any],
                                                                        rng: random.Random) -> None:
    n = len(parents)
    records = []
    for i, p in enumerate(parents):
        parent = p if p is None or isinstance(p, str) else f"s{p % n}"
        records.append(rec(f"s{i}", parent, start=rng.randrange(1000) / 1000, duration_ms=rng.randrange(1, 50)))
    tree = _tree(records)
    flat = tree_json_span_ids(nested_json(tree))
    assert sorted(flat) == sorted(r["span_id"] for r in records)  # each exactly once: no loss, no repeat
    shown = [r for r in build_view(tree, max_rows=10_000).rows if r.kind in ("span", "fold")]
    assert sum(r.count for r in shown) == n  # the rendered rows cover every span too


@settings(max_examples=150, deadline=None)
@given(PARENTS, st.randoms(use_true_random=False))
def test_parent_positions_are_exact_and_walks_up_them_match_walks_up_the_ids(parents: list[Any],
                                                                              rng: random.Random) -> None:
    """`Tree.parent` (positions, kept when there is no cycle and no repeated id) gives the depths and causal
    chains that following `parent_id`s through an id map gives."""
    from agent_debug.analysis.buckets import _depths, causal_chain

    n = len(parents)
    records = []
    for i, p in enumerate(parents):
        parent = p if p is None or isinstance(p, str) else f"s{p % n}"
        records.append(rec(f"s{i}", parent, start=rng.randrange(1000) / 1000))
    tree = _tree(records)
    assert (tree.parent is None) == bool(tree.cycles or tree.duplicates)
    if tree.parent is None:
        return
    ids = tree.spans.span_id
    assert [ids[q] if q is not None else None for q in tree.parent] == [
        pid if pid in ids else None for pid in tree.spans.parent_id]
    pairs = [(rng.randrange(n), rng.randrange(n)) for _ in range(5)]
    by_positions = (_depths(tree, list(range(n))), [causal_chain(tree, a, b) for a, b in pairs])
    tree.parent = None
    assert by_positions == (_depths(tree, list(range(n))), [causal_chain(tree, a, b) for a, b in pairs])


# -- scale --------------------------------------------------------------------------------------------------------


def _wide_deep_trace(n: int, seed: int) -> list[dict[str, Any]]:
    """A root, agent turns fanning out four levels deep, tool and model calls under them: n spans."""
    rng = random.Random(seed)
    records = [rec("s0", trace_id="big", agent="orchestrator", duration_ms=n)]
    parents = [0]
    for i in range(1, n):
        p = parents[rng.randrange(len(parents))] if i > 30 else 0
        records.append(rec(f"s{i}", f"s{p}", trace_id="big", agent=f"agent{i % 7}",
                           event_type=("AGENT", "LLM_CALL", "TOOL_CALL")[i % 3], name=f"step{i % 5}",
                           start=i / 1000, duration_ms=rng.randrange(1, 900)))
        if len(parents) < 5000:
            parents.append(i)
    return records


def test_a_100k_span_trace_renders_collapsed_by_depth_in_seconds(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", _wide_deep_trace(100_000, seed=11))
    db = tmp_path / "store" / "traces.db"
    assert ingest([path], db).records == 100_000
    started = time.monotonic()
    out = _cli("tree", "big", "--db", str(db), "--depth", "3", timeout=120)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert elapsed < 20, f"tree --depth 3 of 100k spans took {elapsed:.1f}s"
    assert "trace big  100000 spans" in out.stdout and "more spans (--depth)" in out.stdout
    assert len(out.stdout.splitlines()) < 6000  # collapsed, not 100k lines
    shallow = _cli("tree", "big", "--db", str(db), "--depth", "1", "--json", timeout=120)
    assert shallow.returncode == 0, shallow.stderr
    (root,) = orjson.loads(shallow.stdout)["roots"]
    assert root["span_id"] == "s0" and root["children"]
    # the children shown plus the descendants each one hides account for every other span
    assert len(root["children"]) + sum(c["hidden_descendants"] for c in root["children"]) == 100_000 - 1
