"""The causal tree: orphans, cycles, duplicates, folding, filters, nested JSON; a 100k-span trace renders fast."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_debug.columns import TraceSpans
from agent_debug.analysis.tree import build_tree
from agent_debug.analysis.treeview import build_view, nested_json
from conftest import rec, run_cli, tree_json_span_ids, write_jsonl


def _ts(records: list[dict]) -> TraceSpans:
    return TraceSpans.from_records("t1", records)


def test_orphans_cycles_and_self_parents_are_shown_and_reported() -> None:
    records = [
        rec("root"), rec("a", "root", start=1), rec("orphan1", "gone", start=2), rec("orphan2", "gone", start=3),
        rec("c1", "c2", start=4), rec("c2", "c1", start=5), rec("self", "self", start=6),
    ]
    tree = build_tree(_ts(records))
    assert tree.roots == [0] and list(tree.orphans) == ["gone"]
    cut_points = sorted(_ts(records).span_id[c[0]] for c in tree.cycles)
    assert cut_points == ["c1", "self"]
    view = build_view(tree)
    kinds = [r.kind for r in view.rows]
    assert "missing" in kinds and kinds.count("cycle") == 2
    assert sorted(tree_json_span_ids(nested_json(tree))) == sorted(r["span_id"] for r in records)
    assert any("cycle" in n for n in view.notes)


def test_cli_tree_on_a_cycle_finishes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cyc.jsonl", [rec("r"), rec("x", "y", start=1), rec("y", "x", start=2)])
    t0 = time.monotonic()
    r = run_cli("tree", "t1", "--from", str(path))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 30 and "cycle broken here" in r.stdout


def test_three_similar_siblings_fold_two_do_not() -> None:
    records = [rec("root", duration_ms=100)]
    records += [rec(f"p{i}", "root", agent="w", name="page", start=i, duration_ms=0.5) for i in range(3)]
    records += [rec(f"q{i}", "root", agent="w", name="other", start=10 + i, duration_ms=0.5) for i in range(2)]
    view = build_view(build_tree(_ts(records)))
    folds = [r for r in view.rows if r.kind == "fold"]
    assert len(folds) == 1 and folds[0].count == 3
    assert sum(1 for r in view.rows if r.kind == "span") == 3  # root + the two "other"


def test_depth_errors_and_min_duration_filters() -> None:
    records = [rec("root", duration_ms=100), rec("a", "root", duration_ms=50), rec("b", "a", duration_ms=20),
               rec("c", "b", duration_ms=5, status="error", error={"type": "E", "message": "m"}),
               rec("short", "root", start=60, duration_ms=0.01)]
    tree = build_tree(_ts(records))
    shallow = build_view(tree, max_depth=1)
    assert [r.kind for r in shallow.rows].count("more") == 1
    more = next(r for r in shallow.rows if r.kind == "more")
    assert more.count == 2
    errs = build_view(tree, errors_only=True)
    assert [_ts(records).span_id[r.index] for r in errs.rows if r.kind == "span"] == ["root", "a", "b", "c"]
    longer = build_view(tree, min_duration_ns=1_000_000)
    assert "short" not in [_ts(records).span_id[r.index] for r in longer.rows if r.kind == "span"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-2, max_value=40), min_size=1, max_size=40))
def test_flattening_the_json_tree_gives_back_every_span(parents: list[int]) -> None:
    records = []
    for i, p in enumerate(parents):
        parent = None if p == -1 or i == 0 else ("missing" if p == -2 else f"s{p % max(1, len(parents))}")
        records.append(rec(f"s{i}", parent, start=i * 0.001))
    tree = build_tree(_ts(records))
    assert sorted(tree_json_span_ids(nested_json(tree))) == sorted(r["span_id"] for r in records)


def test_100k_span_trace_renders_collapsed_in_seconds(tmp_path: Path) -> None:
    rng = random.Random(3)
    records = [rec("s0", duration_ms=100_000)]
    for i in range(1, 100_000):
        parent = f"s{rng.randrange(max(1, i // 2), i)}" if i > 10 else "s0"
        records.append(rec(f"s{i}", parent, agent=f"a{i % 7}", start=i * 0.0001, duration_ms=1))
    path = write_jsonl(tmp_path / "big.jsonl", records)
    db = tmp_path / "t.db"
    assert run_cli("ingest", str(path), "--db", str(db)).returncode == 0
    t0 = time.monotonic()
    r = run_cli("tree", "t1", "--db", str(db), "--depth", "3")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert elapsed < 20 and "more spans" in r.stdout
    j = run_cli("tree", "t1", "--db", str(db), "--depth", "1", "--json")
    doc = json.loads(j.stdout)
    assert doc["roots"][0]["span_id"] == "s0"
