"""Packets of big runs hold a bounded skeleton (`replay/skeleton.py`) and still replay: same status, path and
failure bucket; small runs keep every span, as before."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from agent_debug.analysis.source import StoreSource
from agent_debug.replay.engine import replay_packet
from agent_debug.replay.packet import build_packet_from_records, load_packet, write_packet
from agent_debug.replay.skeleton import SKELETON_SPANS, build_packet
from agent_debug.store.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def _store(tmp_path: Path, spans: int) -> tuple[StoreSource, str]:
    from bench_big import write_failed_run

    f = tmp_path / "run.jsonl.gz"
    write_failed_run(f, spans, 13)
    ingest([f], tmp_path / "s" / "traces.db")
    src = StoreSource(tmp_path / "s" / "traces.db")
    (s,) = src.list()
    return src, s.trace_id


def test_a_big_run_gets_a_bounded_skeleton_that_replays(tmp_path: Path) -> None:
    src, tid = _store(tmp_path, 12_000)
    pk = build_packet(src, tid)
    full = build_packet_from_records(list(src.load(tid, records=True).records or []))
    assert pk["skeleton"]["spans"] == 12_000 and pk["skeleton"]["kept"] == len(pk["spans"]) < 12_000 // 2
    assert pk["failure"] == full["failure"] and pk["calls"] == full["calls"] and pk["run"] == full["run"]
    assert pk["verifier"] == full["verifier"] and pk["routing"] == full["routing"]
    # every recorded call, error span and the chain are kept, with the path from the root to each
    kept = {s["span_id"] for s in pk["spans"]}
    assert {c["span_id"] for c in pk["calls"]} <= kept
    assert {s["span_id"] for s in full["spans"] if s.get("status") == "error"} <= kept
    parents = {s["span_id"]: s.get("parent_id") for s in pk["spans"]}
    assert all(p is None or p in kept for p in parents.values())
    path = write_packet(pk, path=tmp_path / "pk.json")
    assert path.stat().st_size < len(orjson.dumps(full)) / 4
    res = replay_packet(load_packet(path) and path)
    assert res.reproduced, res.diff
    assert res.failure_bucket == full["failure"]["bucket"]


def test_a_small_run_keeps_every_span(tmp_path: Path) -> None:
    src, tid = _store(tmp_path, SKELETON_SPANS)
    pk = build_packet(src, tid)
    assert "skeleton" not in pk and len(pk["spans"]) == SKELETON_SPANS


def test_long_strings_are_cut_in_short_and_long_lists_alike() -> None:
    """`sanitize` cuts every string over MAX_STRING with its hash, whether its list is short (walked) or long
    (items sized first, only those that could hold one walked), and counts each once."""
    from agent_debug.replay.packet import MAX_STRING, sanitize

    long = "x" * (MAX_STRING + 5)
    for n in (3, 200):
        items: list[object] = [{"name": f"s{i}", "attributes": {"n": i}} for i in range(n)]
        items[1] = {"name": "big", "payload": {"output": [long, "short"]}}
        items[2] = long
        packet = sanitize({"trace_id": "t", "spans": items})
        spans = packet["spans"]
        assert packet["sanitized"]["truncated_strings"] == 2, n
        for cut in (spans[1]["payload"]["output"][0], spans[2]):
            assert cut.startswith("x" * MAX_STRING + "...[truncated 5 chars sha256:"), n
        assert spans[1]["payload"]["output"][1] == "short" and spans[0] == {"name": "s0", "attributes": {"n": 0}}
        assert spans[3:] == [{"name": f"s{i}", "attributes": {"n": i}} for i in range(3, n)]
