"""Critical path (Jaeger's definition): hand-computed traces, two naive oracles (Jaeger UI's walk-back on random
trees with parallel fan-out; a plain walk-back on random overlapping children that overflow their parents), the
benchmark fixture through the CLI, and generated traces whose bottleneck is known by construction."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from agent_debug.analysis.critical import CriticalPathResult, analyze
from agent_debug.columns import TraceSpans
from conftest import ROOT, rec, run_cli

MS = 1_000_000
FIXTURE = ROOT / "fixtures" / "benchmark_trace.jsonl"


def _analyze(records: list[dict[str, Any]]) -> CriticalPathResult:
    return analyze(TraceSpans.from_records("t1", records))


def _crit(records: list[dict[str, Any]]) -> dict[str, int]:
    return {seg.span_id: seg.critical_ns for seg in _analyze(records).path}


# -- by hand --------------------------------------------------------------------------------------------------


def test_sequential_children_and_the_gaps_between_them() -> None:
    records = [rec("root", duration_ms=100), rec("a", "root", start=0.010, duration_ms=30),
               rec("b", "root", start=0.050, duration_ms=40)]
    # root: 0-10, 40-50, 90-100 (the gaps it fills itself); a: 10-40; b: 50-90
    assert _crit(records) == {"root": 30 * MS, "a": 30 * MS, "b": 40 * MS}
    res = _analyze(records)
    assert [seg.span_id for seg in res.path] == ["root", "a", "b"]  # in time order
    assert res.bottleneck is not None and res.bottleneck["span_id"] == "b"


@pytest.mark.parametrize("start", [0.0, 0.005], ids=["with-the-parent", "after-the-parent"])
def test_parallel_fan_out_puts_only_the_longest_child_on_the_path(start: float) -> None:
    records = [rec("root", duration_ms=100)]
    records += [rec(name, "root", start=start, duration_ms=d, agent=name)
                for name, d in (("fast", 20), ("slow", 90), ("mid", 60), ("faster", 5))]
    crit = _crit(records)
    assert crit == {"root": 10 * MS, "slow": 90 * MS}
    res = _analyze(records)
    assert res.bottleneck is not None and res.bottleneck["span_id"] == "slow"
    by_agent = {h.agent_name: h for h in res.hotspots}
    assert by_agent["slow"].critical_ns == 90 * MS and by_agent["mid"].critical_ns == 0
    assert by_agent["mid"].total_ns == 60 * MS  # busy, but not what the run waited for


def test_a_child_that_outlives_its_parent_is_clipped() -> None:
    records = [rec("root", duration_ms=100), rec("p", "root", duration_ms=50),
               rec("late", "p", start=0.040, duration_ms=500)]
    # p: 0-40 itself, late clipped to 40-50, root 50-100: the 500 ms child does not stretch the path
    assert _crit(records) == {"root": 50 * MS, "p": 40 * MS, "late": 10 * MS}
    assert _analyze(records).duration_ns == 100 * MS


def test_nested_chains_and_a_parallel_branch_inside() -> None:
    records = [
        rec("root", duration_ms=200),
        rec("a", "root", start=0.010, duration_ms=150),     # a: 10-160
        rec("b", "a", start=0.020, duration_ms=60),         # b: 20-80
        rec("c", "b", start=0.030, duration_ms=40),         # c: 30-70
        rec("d", "a", start=0.090, duration_ms=60),         # d: 90-150, parallel with e
        rec("e", "a", start=0.085, duration_ms=20),         # e: 85-105: shorter, off the path
    ]
    assert _crit(records) == {
        "root": 50 * MS,          # 0-10 and 160-200
        "a": 30 * MS,             # 10-20, 80-90, 150-160
        "b": 20 * MS,             # 20-30, 70-80
        "c": 40 * MS,
        "d": 60 * MS,
    }


def test_critical_times_add_up_to_the_root_duration() -> None:
    records = [rec("root", duration_ms=123)]
    rng = random.Random(5)
    for i in range(40):
        s = rng.randrange(0, 100)
        records.append(rec(f"k{i}", "root" if i < 8 else f"k{rng.randrange(8)}", start=s / 1000,
                           duration_ms=rng.randrange(1, 23)))
    res = _analyze(records)
    assert sum(seg.critical_ns for seg in res.path) == 123 * MS == res.duration_ns


# -- the oracle -------------------------------------------------------------------------------------------------


def jaeger_oracle(records: list[dict[str, Any]], root: str) -> dict[str, int]:
    """Jaeger's critical path, written the way Jaeger UI's `computeCriticalPath` reads (recursive, naive,
    small trees only), after its `sanitizeOverFlowingChildren` (children clipped to their clipped parent,
    those entirely outside dropped). One deliberate difference: a child ending exactly when the next one starts
    counts as finished before it (Jaeger's strict `<` would skip back-to-back siblings)."""
    start = {r["span_id"]: round(r["timestamp"] * 1e6) * 1000 for r in records}
    end = {r["span_id"]: start[r["span_id"]] + r["duration_ns"] for r in records}
    parent = {r["span_id"]: r["parent_id"] for r in records}
    order = {r["span_id"]: i for i, r in enumerate(records)}
    kids: dict[str, list[str]] = defaultdict(list)
    for r in records:
        if r["parent_id"] is not None:
            kids[r["parent_id"]].append(r["span_id"])

    def sanitize(span: str) -> None:
        for c in list(kids[span]):
            if start[c] >= end[span] or end[c] <= start[span]:
                kids[span].remove(c)
                continue
            start[c], end[c] = max(start[c], start[span]), min(end[c], end[span])
            sanitize(c)

    sanitize(root)
    out: dict[str, int] = defaultdict(int)

    def last_finishing_child(span: str, before: int | None) -> str | None:
        cands = [c for c in kids[span] if before is None or end[c] <= before]
        if not cands:
            return None
        return max(cands, key=lambda c: (end[c], -start[c], order[c]))  # latest end; ties: longer, later

    def compute(span: str, returning_child_start: int | None = None) -> None:
        section_end = end[span] if returning_child_start is None else returning_child_start
        child = last_finishing_child(span, returning_child_start)
        if child is not None:
            out[span] += section_end - end[child]
            compute(child)
        else:
            out[span] += section_end - start[span]
            if span != root:
                compute(parent[span], start[span])

    compute(root)
    return {k: v for k, v in out.items() if v > 0}


def _random_trace(rng: random.Random, max_spans: int) -> list[dict[str, Any]]:
    """A root and nested groups of children: parallel fan-outs (start together, end apart) and sequential runs,
    all inside their parent, on a millisecond grid."""
    total = rng.randrange(20, 200)
    records = [rec("s0", start=0, duration_ms=total)]
    todo = [("s0", 0, total)]
    while todo and len(records) < max_spans:
        sid, lo, hi = todo.pop(rng.randrange(len(todo)))
        if hi - lo < 4:
            continue
        if rng.random() < 0.5:  # a parallel fan-out
            begin = rng.randrange(lo, hi - 2)
            spans = [(begin + rng.randrange(0, 2), None) for _ in range(rng.randrange(2, 5))]
            spans = [(s, rng.randrange(s + 1, hi + 1)) for s, _ in spans]
        else:  # a sequential run, back to back or with gaps
            spans, t = [], lo
            while t < hi - 1 and len(spans) < 4:
                s = t + rng.choice((0, 0, rng.randrange(0, 3)))
                e = min(hi, s + rng.randrange(1, max(2, (hi - lo) // 2)))
                if s >= e:
                    break
                spans.append((s, e))
                t = e
        for s, e in spans:
            child = f"s{len(records)}"
            records.append(rec(child, sid, start=s / 1000, duration_ms=e - s, agent=rng.choice("abc")))
            todo.append((child, s, e))
    return records


@settings(max_examples=200, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(2, 30))
def test_analyze_agrees_with_the_naive_jaeger_walk_back(rng: random.Random, size: int) -> None:
    records = _random_trace(rng, size)
    res = _analyze(records)
    assert res.critical_ns == jaeger_oracle(records, "s0")
    assert sum(res.critical_ns.values()) == res.duration_ns == records[0]["duration_ns"]


def walk_back_oracle(records: list[dict[str, Any]]) -> dict[str, int]:
    """A second, independent reading of Jaeger's walk-back, naive and recursive, for small trees rooted at "r":
    from the end of a span, step to the child that ends last (clipped to the span, before the point reached),
    charge the span the gaps; children that start before or outlive their parent are clipped, not sanitized
    first."""
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
def test_analyze_agrees_with_a_naive_walk_back_when_children_overflow(shape: list[tuple[int, int, int]]) -> None:
    """Children anywhere in 0-120 ms under a 100 ms root: some outlive their parent, some lie wholly outside it."""
    records = [rec("r", start=0, duration_ms=100)]
    for i, (p, s, d) in enumerate(shape):
        parent = "r" if p % (i + 1) == 0 else f"n{p % i}"
        records.append(rec(f"n{i}", parent, start=s / 1000, duration_ms=d))
    got = {k: v for k, v in _crit(records).items() if v > 0}
    assert got == walk_back_oracle(records)
    assert sum(got.values()) == 100 * MS


# -- the benchmark fixture ----------------------------------------------------------------------------------------


def test_benchmark_fixture_bottleneck_and_latency_stacking() -> None:
    out = run_cli("critical-path", "--from", str(FIXTURE), _fixture_trace(), "--json")
    assert out.returncode == 0, out.stderr
    res = orjson.loads(out.stdout)
    spans = {r["span_id"]: r for r in map(orjson.loads, FIXTURE.read_bytes().splitlines())}
    # the slow test suite: the coder's `test` tool call is what the run waited for most
    b = res["bottleneck"]
    assert (b["agent_name"], b["name"], b["event_type"]) == ("coder", "test", "TOOL_CALL")
    assert b["critical_ns"] == spans[b["span_id"]]["duration_ns"]  # all of it on the path
    assert b["critical_ns"] > 0.4 * res["duration_ns"]
    assert res["hotspots"][0]["agent_name"] == "coder"
    # the serialized dependency: research then patch, one after the other, though nothing links them
    stacked = {(s["first"]["name"], s["second"]["name"]): s for s in res["stacking"]}
    pair = stacked[("send:researcher", "send:coder")]
    research = next(r for r in spans.values() if r["name"] == "research")
    assert pair["saving_ns"] == min(pair["first"]["duration_ns"], pair["second"]["duration_ns"])
    assert pair["saving_ns"] >= research["duration_ns"]  # running them side by side saves at least the research
    assert "no causal link" in pair["evidence"]
    # the gap runs from the end of the first's work (the send and the replies under it) to the second's start
    first = spans[pair["first"]["span_id"]]
    first_end = max(_start_ns(r) + r["duration_ns"] for r in spans.values()
                    if first["span_id"] in (r["span_id"], r["parent_id"]))
    assert pair["first"]["duration_ns"] == first_end - _start_ns(first)
    assert pair["gap_ns"] == _start_ns(spans[pair["second"]["span_id"]]) - first_end > 0
    on_path = [seg["name"] for seg in res["path"]]
    assert on_path.index("send:researcher") < on_path.index("send:coder")  # both on the path, in that order
    assert sum(seg["critical_ns"] for seg in res["path"]) == res["duration_ns"]
    # one hotspot per agent in the trace
    assert sorted(h["agent_name"] for h in res["hotspots"]) == sorted({r["agent_name"] for r in spans.values()})
    # the file holds one trace: TRACE may be left out, with the same result
    implicit = run_cli("critical-path", "--from", str(FIXTURE), "--json")
    assert implicit.returncode == 0, implicit.stderr
    assert orjson.loads(implicit.stdout) == res


def _start_ns(record: dict[str, Any]) -> int:
    return round(record["timestamp"] * 1e6) * 1000  # timestamps are kept to the microsecond


def _fixture_trace() -> str:
    return str(orjson.loads(FIXTURE.read_bytes().splitlines()[0])["trace_id"])


# -- traces never seen: the bottleneck is known by construction ----------------------------------------------


def _trace_with_a_planted_bottleneck(rng: random.Random, trace_id: str) -> tuple[list[dict[str, Any]], str]:
    """Sequential stages of agent turns, each a parallel fan-out of model/tool calls (some nested one level
    more); exactly one leaf, somewhere in one fan-out, runs far longer than any other span's own time."""
    records: list[dict[str, Any]] = []
    stages = rng.randrange(2, 6)
    slow_stage = rng.randrange(stages)
    t = 0.0
    planted = ""
    root = rec("root", trace_id=trace_id, agent="orchestrator", start=0.0, duration_ms=0)
    records.append(root)
    for s in range(stages):
        stage = f"stage{s}"
        width = rng.randrange(2, 7)
        slow = rng.randrange(width) if s == slow_stage else -1
        longest = 0.0
        stage_kids = []
        for k in range(width):
            agent = rng.choice(["researcher", "coder", "writer", "verifier"])
            turn = f"{stage}.turn{k}"
            d = rng.uniform(2_000, 3_000) if k == slow else rng.uniform(5, 60)
            off = rng.uniform(0, 3)
            if rng.random() < 0.5 or k == slow:  # a call directly under the turn
                leaf = f"{turn}.call"
                stage_kids.append(rec(turn, stage, trace_id=trace_id, agent=agent, start=(t + off) / 1000,
                                      duration_ms=d + 1))
                stage_kids.append(rec(leaf, turn, trace_id=trace_id, agent=agent, event_type="LLM_CALL",
                                      start=(t + off + 0.5) / 1000, duration_ms=d))
                if k == slow:
                    planted = leaf
            else:  # a nested fan-out of short calls
                stage_kids.append(rec(turn, stage, trace_id=trace_id, agent=agent, start=(t + off) / 1000,
                                      duration_ms=d + 1))
                for j in range(rng.randrange(2, 5)):
                    stage_kids.append(rec(f"{turn}.tool{j}", turn, trace_id=trace_id, agent=agent,
                                          event_type="TOOL_CALL", start=(t + off + 0.2) / 1000,
                                          duration_ms=rng.uniform(1, d)))
            longest = max(longest, off + d + 1)
        records.append(rec(stage, "root", trace_id=trace_id, agent="orchestrator", start=t / 1000,
                           duration_ms=longest + 1))
        records.extend(stage_kids)
        t += longest + 1 + rng.uniform(0, 2)
    root["duration_ns"] = int((t + 1) * MS)
    rng.shuffle(records)  # files hold records in any order
    return records, planted


def test_the_planted_bottleneck_is_named_in_20_unseen_traces() -> None:
    rng = random.Random(20261121)
    named = []
    for n in range(20):
        records, planted = _trace_with_a_planted_bottleneck(rng, f"gen{n}")
        res = analyze(TraceSpans.from_records(f"gen{n}", records))
        assert res.bottleneck is not None
        named.append(res.bottleneck["span_id"] == planted)
        assert res.bottleneck["span_id"] == planted, (n, res.bottleneck, planted)
    assert all(named) and len(named) == 20
