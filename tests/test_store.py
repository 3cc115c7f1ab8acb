"""The store: migrations, idempotent and incremental ingest, rotation, rejects, exit codes, `traces` filters,
trace-id prefixes. Real files, real SQLite, the real CLI in subprocesses."""

from __future__ import annotations

import base64
import gzip
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.errors import StoreError
from agent_debug.formats.reader import read_paths
from agent_debug.store.db import MIGRATIONS, connect, migrate
from agent_debug.store.ingest import ingest, rejects_path
from agent_debug.store.query import load_trace
from conftest import rec, run_cli, write_jsonl

# -- helpers --------------------------------------------------------------------------------------------------


def _trace(trace_id: str, n: int, *, first: int = 0, start: float = 0.0) -> list[dict[str, Any]]:
    """A root and `n - 1` children (or, with `first` > 0, only children numbered from `first`)."""
    out = []
    for i in range(first, first + n):
        out.append(rec(f"{trace_id}-s{i}", None if i == 0 else f"{trace_id}-s0", trace_id=trace_id,
                       start=start + i * 0.01, duration_ms=5 if i else 1000, agent=f"agent{i % 3}"))
    return out


def _ingest_json(*args: str, db: Path) -> tuple[int, dict[str, Any]]:
    res = run_cli("ingest", *args, "--db", str(db), "--json")
    return res.returncode, orjson.loads(res.stdout)


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute(sql).fetchone()[0])


# -- migrations -----------------------------------------------------------------------------------------------


def test_migrations_are_recorded_in_order_and_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s" / "traces.db"
    db = connect(path)
    rows = db.execute("SELECT name, applied_at FROM _migrations ORDER BY rowid").fetchall()
    assert [r[0] for r in rows] == [name for name, _ in MIGRATIONS]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrate(db) == []  # nothing left to apply
    db.close()
    db = connect(path)  # reopening applies nothing and changes nothing
    assert db.execute("SELECT name, applied_at FROM _migrations ORDER BY rowid").fetchall() == rows
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
        "chunks", "traces", "conflicts", "files", "ingests", "_migrations"}
    db.close()


def test_a_store_from_a_newer_version_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    connect(path).close()
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO _migrations VALUES ('999_from_the_future', 0)")
    with pytest.raises(StoreError) as err:
        connect(path)
    message = str(err.value)
    assert "\n" not in message and "999_from_the_future" in message and "newer" in message
    res = run_cli("traces", "--db", str(path))
    assert res.returncode == 5
    assert res.stderr.splitlines() == [f"Error: {message}"]
    assert res.stdout == ""


# -- idempotent, conflicts --------------------------------------------------------------------------------------


def test_ingesting_the_same_records_again_adds_nothing_and_counts_duplicates(tmp_path: Path) -> None:
    records = _trace("ta", 40) + _trace("tb", 10)
    (tmp_path / "in").mkdir()
    src = write_jsonl(tmp_path / "in" / "a.jsonl", records)
    db = tmp_path / "traces.db"
    first = ingest([src], db)
    assert (first.records, first.duplicates, first.conflicts, first.traces) == (50, 0, 0, 2)
    again = ingest([src], db)  # the same file, unchanged: nothing new to read
    assert (again.records, again.duplicates, again.conflicts) == (0, 0, 0)
    copy = shutil.copy(src, tmp_path / "in" / "copy-of-a.jsonl")  # the same records under another name
    dup = ingest([copy], db)
    assert (dup.records, dup.duplicates, dup.conflicts) == (0, 50, 0)
    assert _count(db, "SELECT sum(n) FROM chunks") == 50
    assert _count(db, "SELECT count(*) FROM traces") == 2
    assert _count(db, "SELECT span_count FROM traces WHERE trace_id = 'ta'") == 40


def test_same_ids_with_other_content_are_a_reported_conflict(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    original = _trace("tc", 5)
    write_jsonl(tmp_path / "a.jsonl", original)
    assert ingest([tmp_path / "a.jsonl"], db).conflicts == 0
    changed = [dict(r) for r in original]
    changed[3]["duration_ns"] = 123_456_789  # same trace and span id, different content
    write_jsonl(tmp_path / "b.jsonl", changed)
    code, out = _ingest_json(str(tmp_path / "b.jsonl"), db=db)
    assert code == 0
    assert (out["records"], out["duplicates"], out["conflicts"]) == (0, 4, 1)
    assert out["conflict_list"] == [{"trace_id": "tc", "span_id": "tc-s3"}]
    with sqlite3.connect(db) as con:
        (raw,) = con.execute("SELECT record FROM conflicts WHERE trace_id = 'tc' AND span_id = 'tc-s3'").fetchone()
    assert orjson.loads(raw)["duration_ns"] == 123_456_789  # the other version is kept, verbatim
    con2 = connect(db)
    ts = load_trace(con2, "tc")
    con2.close()
    assert ts.duration_ns[ts.span_id.index("tc-s3")] == original[3]["duration_ns"]  # first version stays
    text = run_cli("ingest", str(tmp_path / "b.jsonl"), str(tmp_path / "a.jsonl"), "--db", str(tmp_path / "o.db"))
    assert text.returncode == 0
    assert "1 conflicts" in text.stdout and "conflict: trace tc span tc-s3" in text.stdout


def test_a_trace_seen_again_after_a_flush_is_still_deduped(tmp_path: Path) -> None:
    """Ingest flushes every FLUSH_RECORDS records and forgets the span keys of traces it is done with: a trace
    that comes back later in the same ingest must still be deduped against what was already written."""
    from agent_debug.store.ingest import FLUSH_RECORDS

    early = _trace("early", 30)
    filler = _trace("filler", FLUSH_RECORDS + 500)
    changed = dict(early[4], duration_ns=1)
    write_jsonl(tmp_path / "a.jsonl", early + filler + early[:10] + [changed] + _trace("early", 5, first=30))
    res = ingest([tmp_path / "a.jsonl"], tmp_path / "traces.db")
    assert (res.records, res.duplicates, res.conflicts) == (30 + len(filler) + 5, 10, 1)
    assert res.conflict_list == [{"trace_id": "early", "span_id": "early-s4"}]
    assert _count(tmp_path / "traces.db", "SELECT span_count FROM traces WHERE trace_id = 'early'") == 35


# -- incremental, rotation ------------------------------------------------------------------------------------


def test_appending_to_a_file_then_reingesting_reads_only_the_new_records(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    live = tmp_path / "logs" / "x.jsonl"
    live.parent.mkdir()
    write_jsonl(live, _trace("t1", 30))
    assert ingest([live.parent], db).records == 30
    with open(live, "ab") as fh:
        fh.write(b"".join(orjson.dumps(r) + b"\n" for r in _trace("t1", 12, first=30) + _trace("t2", 8)))
    res = ingest([live.parent], db)
    assert (res.records, res.duplicates, res.conflicts, res.readable) == (20, 0, 0, 20)
    assert _count(db, "SELECT span_count FROM traces WHERE trace_id = 't1'") == 42
    assert _count(db, "SELECT span_count FROM traces WHERE trace_id = 't2'") == 8
    assert _count(db, "SELECT duration_ns FROM traces WHERE trace_id = 't1'") == 1_000_000_000


def test_a_file_rotated_into_gzip_is_recognised_as_data_already_read(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    live = write_jsonl(logs / "x.jsonl", _trace("t1", 25))
    assert ingest([logs], db).records == 25
    extra = _trace("t1", 7, first=25) + _trace("t3", 4)
    rotated = logs / "x.2026-11-21_10-00-00_000001.jsonl.gz"
    rotated.write_bytes(gzip.compress(live.read_bytes() + b"".join(orjson.dumps(r) + b"\n" for r in extra)))
    live.unlink()
    res = ingest([logs], db)
    assert (res.records, res.conflicts, res.duplicates) == (11, 0, 0)
    assert res.readable == 11  # the part already read was skipped, not parsed again
    assert _count(db, "SELECT sum(n) FROM chunks") == 36
    assert ingest([logs], db).files_skipped == 1  # a complete .gz seen before is not opened again


def test_a_cut_gzip_is_read_once_until_it_changes(tmp_path: Path) -> None:
    """A .gz cut short (copied mid-write, or a crash during compression) keeps its complete records; ingesting
    again does not re-read it while it is unchanged, and reads it again once it has been written in full."""
    db = tmp_path / "traces.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    data = b"".join(orjson.dumps(r) + b"\n" for r in _trace("t1", 400))
    whole = gzip.compress(data)
    cut = logs / "x.2026-11-21_10-00-00_000001.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    first = ingest([logs], db)
    assert 0 < first.records < 400 and first.rejected == 0
    again = ingest([logs], db)
    assert (again.files_skipped, again.records, again.duplicates, again.readable) == (1, 0, 0, 0)
    cut.write_bytes(whole)  # the writer finished
    done = ingest([logs], db)
    assert (done.records, done.conflicts) == (400 - first.records, 0)
    assert _count(db, "SELECT sum(n) FROM chunks") == 400
    assert ingest([logs], db).files_skipped == 1


def test_lazy_records_read_only_what_is_asked_and_equal_the_full_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_debug.store import ingest as ingest_module
    from agent_debug.store.ingest import LazyRecords

    monkeypatch.setattr(ingest_module, "FLUSH_RECORDS", 40)  # several chunks from a small file
    db = tmp_path / "traces.db"
    (tmp_path / "logs").mkdir()
    t1 = _trace("t1", 150)
    write_jsonl(tmp_path / "logs" / "x.jsonl", t1[:70] + _trace("t2", 30) + t1[70:])
    ingest([tmp_path / "logs"], db)  # chunks are compressed on a thread while the next ones are read
    assert _count(db, "SELECT count(*) FROM chunks WHERE trace_id = 't1'") > 2
    with connect(db) as c:
        full = load_trace(c, "t1", records=True)
        assert full.records == t1  # every chunk written, in the order it was made
        lazy = load_trace(c, "t1", records="lazy")
        assert isinstance(lazy.records, LazyRecords) and len(lazy.records) == len(full) == 150
        assert lazy.span_id == full.span_id and lazy.parent_id == full.parent_id
        assert full.records is not None
        assert [lazy.records[i] for i in range(149, -1, -3)] == full.records[149::-3]  # across chunks, backwards
        assert lazy.records[-1] == full.records[-1]
        with pytest.raises(IndexError):
            lazy.records[150]
        other = load_trace(c, "t1", records="lazy")
        assert isinstance(other.records, LazyRecords)
        other.records.prefetch([5, 140, 77, 5, 999])  # out of range ids are ignored
        assert sorted(other.records._parsed) == [5, 77, 140]
        assert [other.records[i] for i in (5, 77, 140)] == [full.records[i] for i in (5, 77, 140)]


def test_critical_path_and_tree_from_the_store_equal_those_from_the_files(tmp_path: Path) -> None:
    """The store reads records lazily (stacking evidence, node attributes); the answers are the files' answers."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "benchmark_trace.jsonl"
    db = tmp_path / "traces.db"
    assert run_cli("ingest", str(fixture), "--db", str(db)).returncode == 0
    from_store = run_cli("critical-path", "--db", str(db), "--json")
    from_files = run_cli("critical-path", "--from", str(fixture), "--json")
    assert from_store.returncode == from_files.returncode == 0, from_store.stderr + from_files.stderr
    store_doc, files_doc = orjson.loads(from_store.stdout), orjson.loads(from_files.stdout)
    assert store_doc["stacking"] and "no causal link, message or shared data" in store_doc["stacking"][0]["evidence"]
    assert store_doc == files_doc
    for extra in ([], ["--depth", "2"], ["--errors"]):  # attributes and errors come from the lazily read records
        from_store = run_cli("tree", "--db", str(db), "--json", *extra)
        from_files = run_cli("tree", "--from", str(fixture), "--json", *extra)
        assert from_store.returncode == from_files.returncode == 0, from_store.stderr + from_files.stderr
        assert orjson.loads(from_store.stdout) == orjson.loads(from_files.stdout), extra


# -- rejects, exit codes, --json ------------------------------------------------------------------------------

GARBAGE = [b"this is not json", b"\xff\xfe\x00 not utf-8", b'{"trace_id": "t9", "span_id": "x"}', b"[1, 2]"]


def test_rejects_are_kept_verbatim_beside_the_store(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = _trace("t5", 3)
    lines = [orjson.dumps(good[0]), GARBAGE[0], orjson.dumps(good[1]), GARBAGE[1], GARBAGE[2], GARBAGE[3],
             orjson.dumps(good[2])]
    path.write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / "store" / "traces.db"
    code, out = _ingest_json(str(path), db=db)
    assert code == 1
    assert (out["records"], out["rejected"]) == (3, 4)
    assert out["rejects_by_reason"] == {"invalid JSON": 2, "missing field parent_id": 1, "not an object": 1}
    rejects = rejects_path(db)
    assert rejects.parent == db.parent and out["rejects_file"] == str(rejects)
    entries = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [e["location"] for e in entries] == ["line 2", "line 4", "line 5", "line 6"]
    assert all(e["source"] == str(path) for e in entries)
    raws = [e["raw"].encode() if "raw" in e else base64.b64decode(e["raw_base64"]) for e in entries]
    assert raws == GARBAGE  # byte for byte, non-UTF-8 included
    assert entries[2]["reason"] == "missing field parent_id"


def test_ingest_exit_codes(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    clean = write_jsonl(tmp_path / "clean.jsonl", _trace("t1", 3))
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\n".join(GARBAGE) + b"\n")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join([orjson.dumps(rec("m1", trace_id="t2")), GARBAGE[0]]) + b"\n")

    ok = run_cli("ingest", str(clean), "--db", str(db))
    assert ok.returncode == 0, ok.stderr
    missing = run_cli("ingest", str(tmp_path / "nope.jsonl"), "--db", str(db))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [f"Error: no such file or directory: {tmp_path / 'nope.jsonl'}"]
    nothing = run_cli("ingest", str(garbage), "--db", str(db))
    assert nothing.returncode == 3
    assert nothing.stderr.splitlines()[-1].startswith("Error: nothing could be read")
    some = run_cli("ingest", str(mixed), "--db", str(db))
    assert some.returncode == 1
    assert "rejected 1: invalid JSON" in some.stdout
    assert _count(db, "SELECT count(*) FROM traces") == 2  # t1, t2: the readable record was kept


def test_ingest_json_shape(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", _trace("t1", 4) + _trace("t2", 2))
    code, out = _ingest_json(str(src), db=tmp_path / "traces.db")
    assert code == 0
    assert {"files", "records", "duplicates", "rejected", "traces", "conflicts", "rejects_by_reason"} <= set(out)
    assert (out["files"], out["records"], out["duplicates"], out["rejected"], out["traces"]) == (1, 6, 0, 0, 2)
    assert out["rejects_by_reason"] == {} and out["conflict_list"] == []


# -- traces ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Nine demo runs (healthy ones and a failure of every bucket), ingested, plus what the files say."""
    from agent_debug.demo.runner import run_demo

    base = tmp_path_factory.mktemp("demo")
    result = run_demo(base, 9, seed=3)
    db = base / "traces.db"
    res = ingest([result.trace_dir], db)
    assert res.rejected == 0 and res.traces == 9
    records = list(read_paths([result.trace_dir]))
    roots = {r["trace_id"]: r for r in records if r["parent_id"] is None}
    agents: dict[str, set[str]] = {}
    for r in records:
        agents.setdefault(r["trace_id"], set()).add(r["agent_name"])
    return {"db": db, "dir": result.trace_dir, "labels": result.runs, "roots": roots, "agents": agents}


def _traces(demo: dict[str, Any], *args: str, source: str = "db") -> list[dict[str, Any]]:
    where = ["--db", str(demo["db"])] if source == "db" else ["--from", demo["dir"]]
    res = run_cli("traces", *args, *where, "--json")
    assert res.returncode == 0, res.stderr
    out = orjson.loads(res.stdout)
    assert out["count"] == len(out["traces"])
    return list(out["traces"])


@pytest.mark.parametrize("source", ["db", "from"])
def test_traces_filters(demo_store: dict[str, Any], source: str) -> None:
    demo = demo_store
    every = _traces(demo, source=source)
    assert {t["trace_id"] for t in every} == set(demo["roots"])
    failed = {lab.trace_id for lab in demo["labels"] if not lab.passed}
    assert len(failed) == 5
    got_failed = _traces(demo, "--failed", source=source)
    assert {t["trace_id"] for t in got_failed} == failed and all(t["failed"] for t in got_failed)
    assert len(_traces(demo, "--workflow", "repo-fix-agent", source=source)) == 9
    assert _traces(demo, "--workflow", "no-such-workflow", source=source) == []
    with_writer = {t for t, a in demo["agents"].items() if "writer" in a}
    with_verifier = {t for t, a in demo["agents"].items() if "verifier" in a}
    assert 0 < len(with_verifier) < 9  # a run that stops at a tool failure never reaches the verifier
    assert {t["trace_id"] for t in _traces(demo, "--agent", "writer", source=source)} == with_writer
    assert {t["trace_id"] for t in _traces(demo, "--agent", "verifier", source=source)} == with_verifier
    # --slowest: the N longest root spans, longest first
    by_duration = sorted(demo["roots"].values(), key=lambda r: -r["duration_ns"])
    slow = _traces(demo, "--slowest", "3", source=source)
    assert [t["trace_id"] for t in slow] == [r["trace_id"] for r in by_duration[:3]]
    assert [t["duration_ns"] for t in slow] == [r["duration_ns"] for r in by_duration[:3]]
    # --since: split the runs at the largest gap between start times
    starts = sorted((round(r["timestamp"] * 1e6) * 1000, t) for t, r in demo["roots"].items())
    k = max(range(1, len(starts)), key=lambda i: starts[i][0] - starts[i - 1][0])
    cut = (starts[k - 1][0] + starts[k][0]) // 2
    since = datetime.fromtimestamp(cut / 1e9, UTC).isoformat()
    assert {t["trace_id"] for t in _traces(demo, "--since", since, source=source)} == {t for _, t in starts[k:]}
    assert len(_traces(demo, "--since", "1h", source=source)) == 9


def test_store_summaries_equal_those_computed_from_the_files(demo_store: dict[str, Any]) -> None:
    """Ingest summarizes new traces batch by batch; reading the files summarizes them in one pass: same runs."""
    from_db = sorted(_traces(demo_store), key=lambda t: t["trace_id"])
    from_files = sorted(_traces(demo_store, source="from"), key=lambda t: t["trace_id"])
    assert from_db == from_files
    assert all(t["span_count"] > 10 and t["prompt_tokens"] > 0 and t["agents"] for t in from_db)


def test_traces_table_lists_every_run(demo_store: dict[str, Any]) -> None:
    res = run_cli("traces", "--db", str(demo_store["db"]), "--failed")
    assert res.returncode == 0
    assert "5 runs" in res.stdout
    for lab in demo_store["labels"]:
        assert (lab.trace_id[:12] in res.stdout) == (not lab.passed)


def test_traces_without_a_store_is_a_store_error(tmp_path: Path) -> None:
    res = run_cli("traces", "--db", str(tmp_path / "none.db"))
    assert res.returncode == 5
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("Error: no store at")
    assert not (tmp_path / "none.db").exists()


# -- trace-id prefixes ------------------------------------------------------------------------------------------


def test_trace_id_prefixes_resolve_like_git(tmp_path: Path) -> None:
    ids = ["abc123" + "0" * 26, "abc456" + "0" * 26, "ffe000" + "1" * 26]
    src = write_jsonl(tmp_path / "t.jsonl", [r for t in ids for r in _trace(t, 3)])
    db = tmp_path / "traces.db"
    assert ingest([src], db).traces == 3
    for where in (["--db", str(db)], ["--from", str(src)]):
        unique = run_cli("tree", "abc4", *where, "--json")
        assert unique.returncode == 0, unique.stderr
        assert orjson.loads(unique.stdout)["trace_id"] == ids[1]
        full = run_cli("critical-path", ids[2], *where, "--json")
        assert full.returncode == 0 and orjson.loads(full.stdout)["trace_id"] == ids[2]
        ambiguous = run_cli("tree", "abc", *where)
        assert ambiguous.returncode == 4
        assert len(ambiguous.stderr.splitlines()) == 1
        assert ambiguous.stderr.startswith("Error: trace prefix 'abc' matches several traces")
        assert "abc123" in ambiguous.stderr and "abc456" in ambiguous.stderr
        unknown = run_cli("critical-path", "0123", *where)
        assert unknown.returncode == 4
        assert unknown.stderr.splitlines() == ["Error: no trace matches '0123'"]


def test_a_big_trace_is_stored_joined_and_encoded_and_loads_like_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past BIG_TRACE spans, a trace's columns are stored in joined batches with agent, event type and name
    dictionary-encoded; what loads is what the files say, whatever mix of statuses, names and token costs the
    joined batches had."""
    from agent_debug.columns import COLUMNS, TraceSpans
    from agent_debug.store import chunks
    from agent_debug.store.ingest import load_columns

    monkeypatch.setattr(chunks, "BIG_TRACE", 100)
    monkeypatch.setattr(chunks, "STORED_BATCH", 150)
    records = [rec("root", trace_id="big", agent="orchestrator", duration_ms=10_000)]
    for i in range(1, 1000):
        extra: dict[str, Any] = {"name": f"step{i % 6}"}
        if i % 97 == 0:
            extra["status"] = "error"
        if i % 5 == 0:
            extra["token_cost"] = {"prompt_tokens": i, "completion_tokens": 2 * i, "cost_usd": i / 1000}
        if i == 700:
            extra["name"] = ["an", "odd", "name"]  # not a string (spec): its column holds its JSON text
        records.append(rec(f"s{i}", "root" if i < 10 else f"s{i // 10}", trace_id="big", agent=f"agent{i % 4}",
                           event_type=("AGENT", "LLM_CALL", "TOOL_CALL")[i % 3], start=i / 1000,
                           duration_ms=i % 50 + 1, **extra))
    db = tmp_path / "traces.db"
    ingest([write_jsonl(tmp_path / "big.jsonl", records)], db)
    with sqlite3.connect(db) as con:
        stored = [orjson.loads(c) for (c,) in con.execute("SELECT cols FROM chunks ORDER BY id")]
    batches = [b for c in stored for b in c["batches"]]
    assert any(len(b["span_id"]) >= 150 for b in batches)  # joined
    assert any(isinstance(b["agent_name"], dict) for b in batches)  # encoded
    assert any('["an","odd","name"]' in (b["name"]["values"] if isinstance(b["name"], dict) else b["name"])
               for b in batches)
    con = connect(db)
    try:
        loaded = load_columns(con, "big")
    finally:
        con.close()
    files = TraceSpans.from_records("big", records, keep_records=False)
    for column in COLUMNS:
        assert getattr(loaded, column) == getattr(files, column), column
    assert len({id(a) for a in loaded.agent_name}) == 5


def test_dictionary_encoding_keeps_values_that_cannot_be_encoded() -> None:
    from agent_debug.store.chunks import dictionary_encode

    assert dictionary_encode(["a", "b", "a", "a"]) == {"values": ["a", "b"], "codes": [0, 1, 0, 0]}
    assert dictionary_encode([["a", "list"], None, "x"]) == [["a", "list"], None, "x"]
    assert dictionary_encode(["u1", "u2", "u3"]) == ["u1", "u2", "u3"]  # mostly distinct: no gain


# -- parent positions stored at ingest ------------------------------------------------------------------------


def _forest(draw: Any, trace_id: str) -> list[dict[str, Any]]:
    """Spans with random parents: earlier or later in the file, missing (orphans), themselves, or in cycles."""
    from hypothesis import strategies as st

    n = draw(st.integers(1, 60))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["root", "earlier", "later", "missing", "self"]))
        if kind == "root" or (kind == "earlier" and i == 0) or (kind == "later" and i == n - 1):
            parent = None
        elif kind == "earlier":
            parent = f"{trace_id}-{draw(st.integers(0, i - 1))}"
        elif kind == "later":
            parent = f"{trace_id}-{draw(st.integers(i + 1, n - 1))}"
        elif kind == "missing":
            parent = f"{trace_id}-gone{draw(st.integers(0, 3))}"
        else:
            parent = f"{trace_id}-{i}"
        out.append(rec(f"{trace_id}-{i}", parent, trace_id=trace_id, start=i * 0.001))
    return out


def test_parents_stored_as_positions_equal_the_id_map_however_the_spans_arrive(tmp_path: Path) -> None:
    """In a big trace, ingest stores each span's parent as a position in its trace (so loading needs no map of
    every id): in the same chunk, in an earlier one, adopted by a later one, across separate ingests, after
    the trace's keys were dropped, and given to the stored chunks when the trace becomes big later. Whatever the
    order and chunking, the positions equal what mapping the ids gives, and the tree is the one built from the
    files."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    from agent_debug.analysis.tree import build_tree
    from agent_debug.columns import TraceSpans
    from agent_debug.store import chunks, ingest as ingest_mod
    from agent_debug.store.ingest import load_columns

    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data: Any) -> None:
        case = tmp_path / f"case{next(counter)}"
        case.mkdir()
        traces = {tid: _forest(data.draw, tid) for tid in ("ta", "tb")}
        records = [r for recs in traces.values() for r in recs]
        records = data.draw(st.permutations(records))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=3)))
        db = case / "traces.db"
        # drawn before any is set: a draw may end the example (hypothesis raises), and the module's values
        # must be restored whatever happens, or later tests ingest with a flush per record
        flush = data.draw(st.integers(1, 40))
        pending = data.draw(st.sampled_from([0, 1000]))  # 0: keys dropped after each flush
        big = data.draw(st.sampled_from([1, 3, 10_000]))
        saved = ingest_mod.FLUSH_RECORDS, ingest_mod.MAX_PENDING_TRACES, chunks.BIG_TRACE
        ingest_mod.FLUSH_RECORDS, ingest_mod.MAX_PENDING_TRACES, chunks.BIG_TRACE = flush, pending, big
        try:
            for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(records)], strict=True)):
                if a < b:
                    ingest([write_jsonl(case / f"part{k}.jsonl", records[a:b])], db)
        finally:
            ingest_mod.FLUSH_RECORDS, ingest_mod.MAX_PENDING_TRACES, chunks.BIG_TRACE = saved
        con = connect(db)
        try:
            for tid in traces:
                ts = load_columns(con, tid)
                if len(ts) >= big:  # a big trace: every chunk has parent positions, given later if need be
                    assert ts.parent_index is not None
                if ts.parent_index is not None:
                    index = {sid: i for i, sid in enumerate(ts.span_id)}
                    assert ts.parent_index == [index.get(p) for p in ts.parent_id]
                stored = build_tree(ts)
                by_id = {r["span_id"]: r for r in traces[tid]}
                plain = TraceSpans.from_records(tid, [by_id[sid] for sid in ts.span_id], keep_records=False)
                files = build_tree(plain)
                assert stored.children == files.children and stored.roots == files.roots
                assert stored.orphans == files.orphans and stored.cycles == files.cycles
        finally:
            con.close()

    check()


def test_critical_path_of_a_big_trace_from_the_store_equals_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the fixture counted as a big trace (joined, encoded batches; parents stored as positions in small
    chunks, so most are adopted across chunks), the critical path from the store is the files' one."""
    from agent_debug.analysis.critical import analyze
    from agent_debug.analysis.source import FileSource, StoreSource
    from agent_debug.store import chunks, ingest as ingest_mod

    monkeypatch.setattr(chunks, "BIG_TRACE", 5)
    monkeypatch.setattr(chunks, "STORED_BATCH", 16)
    monkeypatch.setattr(ingest_mod, "FLUSH_RECORDS", 7)
    lines = (Path(__file__).resolve().parents[1] / "fixtures" / "benchmark_trace.jsonl").read_bytes().splitlines()
    lines.reverse()  # the fixture's spans with parents after their children, in four files read in one ingest
    parts = [tmp_path / f"part{k}.jsonl" for k in range(4)]
    for k, part in enumerate(parts):
        part.write_bytes(b"".join(line + b"\n" for line in lines[k * 7 : (k + 1) * 7]))
    db = tmp_path / "traces.db"
    ingest(parts, db)
    with sqlite3.connect(db) as con:
        stored = [orjson.loads(c)["parents"] for (c,) in con.execute("SELECT cols FROM chunks ORDER BY id")]
    assert len(stored) == 4 and any("adopt" in p for p in stored)
    store, files = StoreSource(db), FileSource(parts)
    (tid,) = [s.trace_id for s in files.list()]
    from_store = store.load(tid, records="lazy")
    assert from_store.parent_index is not None
    assert analyze(from_store).as_dict() == analyze(files.load(tid, records=True)).as_dict()
