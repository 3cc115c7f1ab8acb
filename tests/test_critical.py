"""Critical path as Jaeger defines it: checked by hand, against a naive oracle, and on generated fan-outs."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_debug.analysis.critical import analyze
from agent_debug.columns import TraceSpans
from conftest import ROOT, rec, run_cli


def _crit(records: list[dict[str, Any]]) -> dict[str, int]:
    res = analyze(TraceSpans.from_records("t1", records))
    return {p.span_id: p.critical_ns for p in res.path}


MS = 1_000_000


def test_sequential_children_and_parent_gaps() -> None:
    records = [rec("root", duration_ms=100), rec("a", "root", start=0.010, duration_ms=30),
               rec("b", "root", start=0.050, duration_ms=40)]
    c = _crit(records)
    assert c == {"root": 30 * MS, "a": 30 * MS, "b": 40 * MS}
    assert sum(c.values()) == 100 * MS


def test_parallel_fan_out_keeps_only_the_longest_branch() -> None:
    records = [rec("root", duration_ms=100), rec("fast", "root", start=0.0, duration_ms=20),
               rec("slow", "root", start=0.0, duration_ms=90), rec("mid", "root", start=0.0, duration_ms=60)]
    c = _crit(records)
    assert "fast" not in c and "mid" not in c and c["slow"] == 90 * MS and c["root"] == 10 * MS
    res = analyze(TraceSpans.from_records("t1", records))
    assert res.bottleneck["span_id"] == "slow"


def test_child_outliving_its_parent_is_clipped() -> None:
    records = [rec("root", duration_ms=100), rec("p", "root", start=0.0, duration_ms=50),
               rec("late", "p", start=0.040, duration_ms=500)]
    c = _crit(records)
    assert c["late"] == 10 * MS and sum(c.values()) == 100 * MS


def _oracle(records: list[dict[str, Any]]) -> dict[str, int]:
    """Jaeger's walk-back, written naively and recursively for small trees."""
    by = {r["span_id"]: r for r in records}
    start = {k: round(r["timestamp"] * 1e6) * 1000 for k, r in by.items()}
    end = {k: start[k] + r["duration_ns"] for k, r in by.items()}
    kids: dict[str, list[str]] = {k: [] for k in by}
    for r in records:
        if r["parent_id"]:
            kids[r["parent_id"]].append(r["span_id"])
    out: dict[str, int] = {}

    def walk(s: str, t: int, floor: int) -> None:
        lo = max(start[s], floor)
        used: set[str] = set()
        while True:
            cands = [c for c in kids[s] if c not in used and start[c] < end[s] and end[c] > start[s]
                     and min(end[c], end[s]) <= t + 1000 and min(end[c], end[s]) > lo]
            if not cands:
                if lo < t:
                    out[s] = out.get(s, 0) + t - lo
                return
            c = max(cands, key=lambda c: (min(end[c], end[s]), -start[c], kids[s].index(c)))
            ce = min(end[c], end[s], t)
            if ce < t:
                out[s] = out.get(s, 0) + t - ce
            used.add(c)
            used.update(x for x in cands if min(end[x], end[s]) > min(end[c], end[s]))
            walk(c, ce, lo)
            t = max(start[c], lo)

    walk("r", end["r"], start["r"])
    return {k: v for k, v in out.items() if v > 0}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 60), st.integers(1, 60)), min_size=1, max_size=14))
def test_matches_a_naive_oracle(shape: list[tuple[int, int, int]]) -> None:
    records = [rec("r", start=0, duration_ms=100)]
    for i, (p, s, d) in enumerate(shape):
        parent = "r" if p % (i + 1) == 0 else f"n{p % i}"
        records.append(rec(f"n{i}", parent, start=s / 1000, duration_ms=d))
    got = {k: v for k, v in _crit(records).items() if v > 0}
    assert got == _oracle(records)
    assert sum(got.values()) == 100 * MS


def test_bottleneck_named_on_generated_fan_outs_never_seen() -> None:
    rng = random.Random(2026)
    for n in range(20):
        records = [rec("root", start=0, duration_ms=0)]
        t = 0.0
        target = None
        for stage in range(rng.randrange(2, 5)):
            fan = rng.randrange(2, 6)
            stage_id = f"stage{stage}"
            longest = 0.0
            kids = []
            slow = rng.randrange(fan) if stage == 1 else -1
            for k in range(fan):
                d = rng.uniform(5, 20) if k != slow else rng.uniform(200, 300)
                kids.append(rec(f"{stage_id}.{k}", stage_id, agent=f"agent{k}", start=t + 0.001, duration_ms=d))
                longest = max(longest, d)
                if k == slow:
                    target = f"{stage_id}.{k}"
            records.append(rec(stage_id, "root", agent="orchestrator", start=t, duration_ms=longest + 2))
            records.extend(kids)
            t += (longest + 2) / 1000
        records[0]["duration_ns"] = int(t * 1e9)
        res = analyze(TraceSpans.from_records("t1", records))
        assert res.bottleneck["span_id"] == target, n


def test_benchmark_fixture_names_the_bottleneck_and_the_stacking() -> None:
    r = run_cli("critical-path", "--from", str(ROOT / "fixtures" / "benchmark_trace.jsonl"), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert (res["bottleneck"]["agent_name"], res["bottleneck"]["name"]) == ("coder", "test")
    pairs = {(s["first"]["name"], s["second"]["name"]) for s in res["stacking"]}
    assert ("send:researcher", "send:coder") in pairs
    saving = next(s["saving_ns"] for s in res["stacking"] if s["second"]["name"] == "send:coder")
    assert saving > 0
    assert {h["agent_name"] for h in res["hotspots"]} >= {"coder", "researcher", "planner"}
    assert sum(p["critical_ns"] for p in res["path"]) <= res["duration_ns"]
