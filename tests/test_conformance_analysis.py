"""Real traces from other systems go through the whole pipeline: ingest into the store with nothing rejected, then
every trace renders as a tree and a critical path, from the store and from files. On ../shared/data when it is
there (or $AGENT_DEBUG_SHARED/data), else on the samples in fixtures/foreign (no TRAIL: that folder skips)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_debug.analysis.critical import analyze
from agent_debug.analysis.source import StoreSource
from agent_debug.analysis.tree import build_tree
from agent_debug.analysis.treeview import build_view, nested_json
from conftest import FOREIGN_DATA, run_cli, tree_json_span_ids

FOLDERS = ["otlp", "langfuse", "langsmith", "trail/traces", "who_and_when"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_ingest_then_tree_and_critical_path(folder: str, tmp_path: Path) -> None:
    src_dir = FOREIGN_DATA / folder
    if not src_dir.is_dir():
        pytest.skip(f"{src_dir} missing")
    db = tmp_path / "t.db"
    r = run_cli("ingest", str(src_dir), "--db", str(db), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["rejected"] == 0 and res["records"] > 0 and res["conflicts"] == 0
    src = StoreSource(db)
    summaries = src.list()
    assert len(summaries) == res["traces"]
    spans_total = 0
    for s in summaries:
        ts = src.load(s.trace_id, records=True)
        tree = build_tree(ts)
        cp = analyze(ts, tree)
        view = build_view(tree, set(cp.critical_ns))
        doc = nested_json(tree, cp.critical_ns)
        shown = len(tree_json_span_ids(doc))
        assert shown == len(ts) - len(tree.duplicates)  # every span is somewhere in the tree
        assert view.rows
        # the path ends at the first root (else the earliest top span) and spans all of its time, no more
        top = tree.roots[0] if tree.roots else min(tree.tops, key=ts.start_ns.__getitem__)
        assert cp.duration_ns == ts.duration_ns[top], (s.trace_id, ts.span_id[top])
        assert sum(seg.critical_ns for seg in cp.path) == cp.duration_ns, s.trace_id
        spans_total += len(ts)
    assert spans_total == res["records"]
    # and one of them through the real commands, by prefix
    tid = summaries[-1].trace_id
    for cmd in ("tree", "critical-path"):
        out = run_cli(cmd, tid[:12], "--db", str(db), "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["trace_id"] == tid
    out = run_cli("tree", tid[:12], "--from", str(src_dir))
    assert out.returncode == 0 and tid in out.stdout
