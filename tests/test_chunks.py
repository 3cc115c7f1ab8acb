"""The store's chunk format (`store.chunks`): versioned per chunk, old stores read as they were written, newer
chunks refused by name."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path

import orjson
import pytest

from agent_debug.analysis.tree import build_tree
from agent_debug.columns import COLUMNS, TraceSpans
from agent_debug.store.chunks import CHUNK_VERSION, NewerChunk
from agent_debug.store.db import connect
from agent_debug.store.ingest import ingest
from agent_debug.store.load import load_columns
from agent_debug.store.query import list_traces
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "fixtures" / "stores" / "release-0.1.0"
# the files the release's store was made from (fixtures/stores/release-0.1.0/make_store.py), in its order
SOURCES = [ROOT / "fixtures" / "healthy_trace.jsonl", ROOT / "fixtures" / "faulty_trace.jsonl",
           RELEASE / "big.jsonl.gz", RELEASE / "grows-1.jsonl.gz", RELEASE / "grows-2.jsonl.gz"]


def _release_store(tmp_path: Path) -> Path:
    db = tmp_path / "old" / "traces.db"
    db.parent.mkdir()
    with gzip.open(RELEASE / "store.db.gz") as src, open(db, "wb") as out:
        shutil.copyfileobj(src, out)
    return db


def _versions(db: Path) -> list[int | None]:
    with sqlite3.connect(db) as con:
        return [orjson.loads(c).get("v") for (c,) in con.execute("SELECT cols FROM chunks ORDER BY id")]


def _trace(db: Path, trace_id: str, records: bool = True) -> TraceSpans:
    con = connect(db, create=False)
    try:
        return load_columns(con, trace_id, with_records=records)
    finally:
        con.close()


def _same(a: TraceSpans, b: TraceSpans) -> None:
    for column in COLUMNS:
        assert getattr(a, column) == getattr(b, column), column
    assert a.envelopes == b.envelopes
    assert a.records == b.records
    ta, tb = build_tree(a), build_tree(b)
    assert (ta.children, ta.roots, ta.orphans, ta.cycles) == (tb.children, tb.roots, tb.orphans, tb.cycles)


def test_a_store_written_by_the_release_reads_as_a_fresh_store_of_its_files(tmp_path: Path) -> None:
    old = _release_store(tmp_path)
    assert set(_versions(old)) == {None}  # version 1: the release wrote no version
    new = tmp_path / "new.db"
    for src in SOURCES:  # one ingest per file, as the release's store was made
        ingest([src], new)
    assert set(_versions(new)) == {CHUNK_VERSION}
    con_old, con_new = connect(old, create=False), connect(new)
    try:
        listed_old, listed_new = list_traces(con_old), list_traces(con_new)
    finally:
        con_old.close()
        con_new.close()
    assert len(listed_old) == 4
    assert [s.as_dict() | {"source_file": None} for s in listed_old] == [
        s.as_dict() | {"source_file": None} for s in listed_new]
    for s in listed_old:
        stored = _trace(old, s.trace_id)
        _same(stored, _trace(new, s.trace_id))
        if s.span_count >= 300:  # the big traces: parent positions from the release's chunks
            index = {sid: i for i, sid in enumerate(stored.span_id)}
            assert stored.parent_index == [index.get(p) for p in stored.parent_id]


def test_an_ingest_goes_on_with_a_trace_of_the_release_store(tmp_path: Path) -> None:
    """The release's span hashes still dedupe (the same records again are duplicates), and new spans of one of
    its traces are stored in the current version beside its old chunks; the trace loads as its files say."""
    old = _release_store(tmp_path)
    again = tmp_path / "again.jsonl"
    with gzip.open(RELEASE / "grows-2.jsonl.gz") as fh:
        again.write_bytes(b"\n".join(reversed(fh.read().splitlines())) + b"\n")  # not taken for a rotated copy
    res = ingest([again], old)
    assert (res.records, res.duplicates, res.conflicts) == (0, 200, 0)
    with gzip.open(RELEASE / "grows-2.jsonl.gz") as fh:
        last = orjson.loads(fh.read().splitlines()[-1])
    more = [dict(last, span_id=f"more{i}", parent_id=last["span_id"], name="more") for i in range(5)]
    extra = tmp_path / "more.jsonl"
    extra.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in more))
    res = ingest([extra], old)
    assert res.records == 5
    versions = _versions(old)
    assert versions[-1] == CHUNK_VERSION and None in versions
    fresh = tmp_path / "fresh.db"
    ingest([*SOURCES, extra], fresh)
    _same(_trace(old, last["trace_id"]), _trace(fresh, last["trace_id"]))
    con = connect(old, create=False)
    try:
        (summary,) = [s for s in list_traces(con) if s.trace_id == last["trace_id"]]
    finally:
        con.close()
    assert summary.span_count == 305


def test_a_chunk_of_a_newer_format_is_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    ingest([SOURCES[0]], db)
    with sqlite3.connect(db) as con:
        (chunk_id, cols), = con.execute("SELECT id, cols FROM chunks").fetchall()
        (trace_id,) = con.execute("SELECT trace_id FROM traces").fetchone()
        c = orjson.loads(cols)
        c["v"] = CHUNK_VERSION + 1
        con.execute("UPDATE chunks SET cols = ? WHERE id = ?", (orjson.dumps(c), chunk_id))
    with pytest.raises(NewerChunk) as err:
        _trace(db, trace_id, records=False)
    assert str(err.value) == (f"trace {trace_id}: stored chunk {chunk_id}: a chunk was written in chunk format "
                              f"{CHUNK_VERSION + 1}, newer than this agent-debug reads ({CHUNK_VERSION}); upgrade "
                              "agent-debug to read this store")
    r = run_cli("tree", trace_id, "--db", str(db))
    assert r.returncode == 5
    assert r.stderr.splitlines() == [f"Error: {err.value}"]
