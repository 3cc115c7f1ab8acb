"""The store's behaviour on every backend: SQLite, chdb (ClickHouse embedded) and a ClickHouse server over HTTP
(the stand-in `tests/clickhouse_http_server.py`, or a real server: $AGENT_DEBUG_TEST_CLICKHOUSE_URL). Idempotent
and incremental ingest, rotation, conflicts, rejects, lazy records, verdicts, prefixes, refusing newer stores:
the same answers through the `Store` interface and the real CLI."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.columns import COLUMNS, TraceSpans, summarize
from agent_debug.errors import StoreError
from agent_debug.formats.reader import read_paths
from agent_debug.store.api import Store, open_store
from conftest import rec, run_cli, write_jsonl


@contextmanager
def opened(db: str, *, create: bool = True) -> Iterator[Store]:
    store = open_store(db, create=create)
    try:
        yield store
    finally:
        store.close()


def ingest(paths: list[Path], db: str) -> Any:
    with opened(db) as store:
        return store.ingest(paths)


def _trace(trace_id: str, n: int, *, first: int = 0, start: float = 0.0) -> list[dict[str, Any]]:
    out = []
    for i in range(first, first + n):
        out.append(rec(f"{trace_id}-s{i}", None if i == 0 else f"{trace_id}-s0", trace_id=trace_id,
                       start=start + i * 0.01, duration_ms=5 if i else 1000, agent=f"agent{i % 3}"))
    return out


def _span_counts(db: str) -> dict[str, int]:
    with opened(db, create=False) as store:
        return {s.trace_id: s.span_count for s in store.list_traces()}


def test_reingesting_adds_nothing_and_counts_duplicates(store_db: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = write_jsonl(tmp_path / "in" / "a.jsonl", _trace("ta", 40) + _trace("tb", 10))
    first = ingest([src], store_db)
    assert (first.records, first.duplicates, first.conflicts, first.traces) == (50, 0, 0, 2)
    again = ingest([src], store_db)
    assert (again.records, again.duplicates, again.conflicts) == (0, 0, 0)
    copy = Path(shutil.copy(src, tmp_path / "in" / "copy-of-a.jsonl"))
    dup = ingest([copy], store_db)
    assert (dup.records, dup.duplicates, dup.conflicts) == (0, 50, 0)
    with opened(store_db, create=False) as store:
        assert store.counts().spans == 50 and store.counts().traces == 2
        assert store.summary("ta").span_count == 40
        assert len(store.load("ta")) == 40


def test_same_ids_with_other_content_are_a_conflict_and_the_first_version_stays(store_db: str, tmp_path: Path
                                                                                 ) -> None:
    original = _trace("tc", 5)
    write_jsonl(tmp_path / "a.jsonl", original)
    assert ingest([tmp_path / "a.jsonl"], store_db).conflicts == 0
    changed = [dict(r) for r in original]
    changed[3]["duration_ns"] = 123_456_789
    write_jsonl(tmp_path / "b.jsonl", changed)
    res = run_cli("ingest", str(tmp_path / "b.jsonl"), "--db", store_db, "--json")
    assert res.returncode == 0, res.stderr
    out = orjson.loads(res.stdout)
    assert (out["records"], out["duplicates"], out["conflicts"]) == (0, 4, 1)
    assert out["conflict_list"] == [{"trace_id": "tc", "span_id": "tc-s3"}]
    again = run_cli("ingest", str(tmp_path / "b.jsonl"), str(tmp_path / "a.jsonl"), "--db", store_db, "--json")
    assert orjson.loads(again.stdout)["conflicts"] == 0  # already kept: not counted twice
    with opened(store_db, create=False) as store:
        (conflict,) = store.conflicts()
        assert (conflict.trace_id, conflict.span_id) == ("tc", "tc-s3")
        assert orjson.loads(conflict.record)["duration_ns"] == 123_456_789
        ts = store.load("tc")
        assert ts.duration_ns[ts.span_id.index("tc-s3")] == original[3]["duration_ns"]
        assert store.notices() == ["1 span was ingested again with other content; the first version is shown"]


def test_a_trace_seen_again_after_a_flush_is_still_deduped(store_db: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_debug.store import ingest as sqlite_ingest
    from agent_debug.store.clickhouse import ingest as ch_ingest

    for module in (sqlite_ingest, ch_ingest):
        monkeypatch.setattr(module, "FLUSH_RECORDS", 50)
    early = _trace("early", 30)
    filler = _trace("filler", 300)
    changed = dict(early[4], duration_ns=1)
    write_jsonl(tmp_path / "a.jsonl", early + filler + early[:10] + [changed] + _trace("early", 5, first=30))
    res = ingest([tmp_path / "a.jsonl"], store_db)
    assert (res.records, res.duplicates, res.conflicts) == (30 + 300 + 5, 10, 1)
    assert res.conflict_list == [{"trace_id": "early", "span_id": "early-s4"}]
    assert _span_counts(store_db) == {"early": 35, "filler": 300}
    with opened(store_db, create=False) as store:
        assert store.load("early").span_id == [f"early-s{i}" for i in range(35)]  # stored order = first seen


def test_appending_then_rotating_reads_only_new_records(store_db: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    live = write_jsonl(logs / "x.jsonl", _trace("t1", 30))
    assert ingest([logs], store_db).records == 30
    with open(live, "ab") as fh:
        fh.write(b"".join(orjson.dumps(r) + b"\n" for r in _trace("t1", 12, first=30) + _trace("t2", 8)))
    res = ingest([logs], store_db)
    assert (res.records, res.duplicates, res.conflicts, res.readable) == (20, 0, 0, 20)
    assert _span_counts(store_db) == {"t1": 42, "t2": 8}
    extra = _trace("t1", 7, first=42) + _trace("t3", 4)
    rotated = logs / "x.2026-11-21_10-00-00_000001.jsonl.gz"
    rotated.write_bytes(gzip.compress(live.read_bytes() + b"".join(orjson.dumps(r) + b"\n" for r in extra)))
    live.unlink()
    res = ingest([logs], store_db)
    assert (res.records, res.conflicts, res.duplicates, res.readable) == (11, 0, 0, 11)
    assert ingest([logs], store_db).files_skipped == 1
    with opened(store_db, create=False) as store:
        assert store.summary("t1").span_count == 49 and store.summary("t1").duration_ns == 1_000_000_000
        assert store.counts().spans == 30 + 20 + 11


def test_a_cut_gzip_is_read_once_until_it_changes(store_db: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    whole = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in _trace("t1", 400)))
    cut = logs / "x.2026-11-21_10-00-00_000001.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    first = ingest([logs], store_db)
    assert 0 < first.records < 400 and first.rejected == 0
    again = ingest([logs], store_db)
    assert (again.files_skipped, again.records, again.duplicates, again.readable) == (1, 0, 0, 0)
    cut.write_bytes(whole)
    done = ingest([logs], store_db)
    assert (done.records, done.conflicts) == (400 - first.records, 0)
    assert _span_counts(store_db) == {"t1": 400}


def test_lazy_records_read_only_what_is_asked_and_equal_the_full_load(store_db: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_debug.store import ingest as sqlite_ingest
    from agent_debug.store.clickhouse import ingest as ch_ingest
    from agent_debug.store.clickhouse.load import LazyRecords as ChLazy

    for module in (sqlite_ingest, ch_ingest):
        monkeypatch.setattr(module, "FLUSH_RECORDS", 40)
    monkeypatch.setattr(ChLazy, "BLOCK", 16)
    t1 = _trace("t1", 150)
    (tmp_path / "logs").mkdir()
    write_jsonl(tmp_path / "logs" / "x.jsonl", t1[:70] + _trace("t2", 30) + t1[70:])
    ingest([tmp_path / "logs"], store_db)
    with opened(store_db, create=False) as store:
        full = store.load("t1", records=True)
        assert full.records == t1
        lazy = store.load("t1", records="lazy")
        assert lazy.records is not None and type(lazy.records) is not list and len(lazy.records) == 150
        assert lazy.span_id == full.span_id and lazy.parent_id == full.parent_id
        assert [lazy.records[i] for i in range(149, -1, -3)] == full.records[149::-3]
        assert lazy.records[-1] == full.records[-1]
        with pytest.raises(IndexError):
            lazy.records[150]
        other = store.load("t1", records="lazy")
        other.records.prefetch([5, 140, 77, 5, 999])  # type: ignore[union-attr]
        assert sorted(other.records._parsed) == [5, 77, 140]  # type: ignore[union-attr]
        assert [other.records[i] for i in (5, 77, 140)] == [t1[i] for i in (5, 77, 140)]  # type: ignore[index]
        assert store.record_lines("t2") == [orjson.dumps(r) for r in _trace("t2", 30)]


GARBAGE = [b"this is not json", b"\xff\xfe\x00 not utf-8", b'{"trace_id": "t9", "span_id": "x"}', b"[1, 2]"]


def test_rejects_are_kept_verbatim_and_reported(store_db: str, tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = _trace("t5", 3)
    lines = [orjson.dumps(good[0]), GARBAGE[0], orjson.dumps(good[1]), GARBAGE[1], GARBAGE[2], GARBAGE[3],
             orjson.dumps(good[2])]
    path.write_bytes(b"\n".join(lines) + b"\n")
    res = run_cli("ingest", str(path), "--db", store_db, "--json")
    assert res.returncode == 1, res.stderr
    out = orjson.loads(res.stdout)
    assert (out["records"], out["rejected"]) == (3, 4)
    assert out["rejects_by_reason"] == {"invalid JSON": 2, "missing field parent_id": 1, "not an object": 1}
    with opened(store_db, create=False) as store:
        entries = store.rejects()
        assert [e["location"] for e in entries] == ["line 2", "line 4", "line 5", "line 6"]
        raws = [e["raw"].encode() if "raw" in e else __import__("base64").b64decode(e["raw_base64"]) for e in entries]
        assert raws == GARBAGE  # byte for byte, non-UTF-8 included
        (notice,) = store.notices()
        assert notice.startswith("4 records were rejected at ingest (kept verbatim in ")
    listed = run_cli("traces", "--db", store_db, "--json")
    assert listed.returncode == 0
    assert orjson.loads(listed.stdout)["notices"] == [notice]
    assert listed.stderr == f"warning: {notice}\n"


def test_nothing_readable_and_missing_paths_are_exit_3_and_2(store_db: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\n".join(GARBAGE) + b"\n")
    nothing = run_cli("ingest", str(garbage), "--db", store_db)
    assert nothing.returncode == 3
    assert nothing.stderr.splitlines()[-1].startswith("Error: nothing could be read")
    missing = run_cli("ingest", str(tmp_path / "nope.jsonl"), "--db", store_db)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [f"Error: no such file or directory: {tmp_path / 'nope.jsonl'}"]


def test_trace_id_prefixes_resolve_like_git(store_db: str, tmp_path: Path) -> None:
    ids = ["abc123" + "0" * 26, "abc456" + "0" * 26, "ffe000" + "1" * 26]
    src = write_jsonl(tmp_path / "t.jsonl", [r for t in ids for r in _trace(t, 3)])
    assert ingest([src], store_db).traces == 3
    unique = run_cli("tree", "abc4", "--db", store_db, "--json")
    assert unique.returncode == 0, unique.stderr
    assert orjson.loads(unique.stdout)["trace_id"] == ids[1]
    ambiguous = run_cli("tree", "abc", "--db", store_db)
    assert ambiguous.returncode == 4
    assert ambiguous.stderr.startswith("Error: trace prefix 'abc' matches several traces")
    unknown = run_cli("critical-path", "0123", "--db", store_db)
    assert (unknown.returncode, unknown.stderr) == (4, "Error: no trace matches '0123'\n")


def test_marked_verdicts_set_the_status_and_can_be_cleared(store_db: str, tmp_path: Path) -> None:
    runs = [rec("r", trace_id=t, **{"attributes": {"outcome.passed": True}}) for t in ("pass1", "pass2")]
    src = write_jsonl(tmp_path / "t.jsonl", runs)
    ingest([src], store_db)
    marked = run_cli("mark", "pass1", "--failed", "--reason", "wrong answer", "--db", store_db, "--json")
    assert marked.returncode == 0, marked.stderr
    failed = orjson.loads(run_cli("traces", "--failed", "--db", store_db, "--json").stdout)["traces"]
    assert [(t["trace_id"], t["status"], t["verdict"]) for t in failed] == [
        ("pass1", "failed", {"passed": False, "reason": "wrong answer", "source": "mark", "recorded_status": "passed"})]
    cleared = run_cli("mark", "pass1", "--clear", "--db", store_db, "--json")
    assert orjson.loads(cleared.stdout)["count"] == 1
    assert orjson.loads(run_cli("traces", "--failed", "--db", store_db, "--json").stdout)["traces"] == []
    again = run_cli("mark", "pass1", "--clear", "--db", store_db, "--json")
    assert orjson.loads(again.stdout)["count"] == 0


def test_a_store_that_does_not_exist_is_a_store_error_and_is_not_created(store_db: str) -> None:
    res = run_cli("traces", "--db", store_db)
    assert res.returncode == 5
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("Error: no store at")
    with pytest.raises(StoreError):
        open_store(store_db, create=False)


def test_a_store_from_a_newer_version_is_refused_with_one_line(store_db: str, backend: str) -> None:
    with opened(store_db) as store:
        assert store.counts().traces == 0  # created
        if backend == "sqlite":
            store.close()
            with sqlite3.connect(store.location.path) as con:  # type: ignore[arg-type]
                con.execute("INSERT INTO _migrations VALUES ('999_from_the_future', 0)")
        else:
            store.conn.insert(store.names.migrations, ["name", "applied_at"],  # type: ignore[attr-defined]
                              orjson.dumps({"name": ["999_from_the_future"], "applied_at": [0.0]}))
    with pytest.raises(StoreError) as err:
        open_store(store_db, create=False)
    assert "999_from_the_future" in str(err.value) and "newer" in str(err.value)
    res = run_cli("traces", "--db", store_db)
    assert (res.returncode, res.stdout) == (5, "")
    assert res.stderr == f"Error: {err.value}\n"


def _mixed_trace() -> list[dict[str, Any]]:
    """Every kind of value the columns hold: errors, names that are not strings or are missing, odd token costs,
    several roots with and without envelopes, parents stored after their children, a missing parent."""
    out = [rec("root", trace_id="mix", agent="orchestrator", duration_ms=10_000, workflow="wf", session_id="s1",
               run_id="run-1", attributes={"outcome.passed": False, "source.file": "x.json"})]
    for i in range(1, 1200):
        extra: dict[str, Any] = {}
        if i % 7 == 0:
            extra["status"] = "error"
        if i % 11 == 0:
            extra["token_cost"] = {"prompt_tokens": i, "completion_tokens": "12", "cost_usd": i / 1e5}
        elif i % 13 == 0:
            extra["token_cost"] = {"prompt_tokens": -3, "cost_usd": "nan"}
        name: Any = f"step-{i % 17}"
        if i % 19 == 0:
            name = {"tool": i}
        elif i % 23 == 0:
            name = None
        parent = "root" if i < 10 else f"s{i - 1 if i % 5 else i + 1}"
        if i % 97 == 0:
            parent = "missing-parent"
        out.append(rec(f"s{i}", parent, trace_id="mix", agent=f"agent{i % 4}", event_type="TOOL_CALL",
                       start=i * 0.001, duration_ms=i % 9, name=name, attributes={"i": i, "tool.name": f"t{i % 3}"},
                       **extra))
    out.append(rec("second-root", trace_id="mix", start=5.0, duration_ms=2))
    return out


def test_a_trace_loads_and_sums_up_as_its_files_say(store_db: str, tmp_path: Path) -> None:
    records = _mixed_trace()
    src = write_jsonl(tmp_path / "mix.jsonl", records[600:] + records[:600])  # children before parents
    ingest([src], store_db)
    expected = TraceSpans.from_records("mix", list(read_paths([src])))
    with opened(store_db, create=False) as store:
        got = store.load("mix", records=True)
        for name in (*COLUMNS, "envelopes", "records"):
            assert getattr(got, name) == getattr(expected, name), name
        assert store.summary("mix") == summarize(expected)
        assert store.list_traces()[0] == summarize(expected)


def test_records_are_stored_byte_for_byte_whatever_they_hold(store_db: str, tmp_path: Path) -> None:
    """Backslashes, quotes, escaped and raw whitespace (a tab between tokens, a CRLF line end), non-ASCII text:
    each record is stored and read back as the line it was."""
    recs = [rec("a", trace_id="odd", name='quote " back \\ slash \\n not a newline'),
            rec("b", "a", trace_id="odd", name="tab\tin a string, ünïcode ✓, \u2028"),
            rec("c", "a", trace_id="odd", name="\\\\\\\"")]
    lines = [orjson.dumps(recs[0]), orjson.dumps(recs[1]).replace(b'{"trace_id"', b'{\t"trace_id"'),
             orjson.dumps(recs[2]) + b"\r"]
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert ingest([path], store_db).records == 3
    with opened(store_db, create=False) as store:
        stored = store.record_lines("odd")
        full = store.load("odd", records=True)
        lazy = store.load("odd", records="lazy")
        assert [lazy.records[i] for i in (2, 0, 1)] == [full.records[i] for i in (2, 0, 1)]  # type: ignore[index]
    assert [line.rstrip(b"\r") for line in stored] == [line.rstrip(b"\r") for line in lines]
    assert full.records == recs and full.name == [r["name"] for r in recs]


@pytest.mark.parametrize(("raw", "padded"), [
    (b'{"a":1}\n{"b":2}\n', False),
    (b'{"a":"}\\n{"}\n', False),  # an escaped newline inside a string is not a line end
    (b'{"a":1} \n{"b":2}\n', True),  # trailing space
    (b'{"a":1}\n\t{"b":2}\n', True),  # leading tab
    (b'{"a":1}\r\n{"b":2}\n', True),  # a CRLF line end
    (b'{"a":1}\n\n{"b":2}\n', True),  # a blank line
    (b'{"a":1}\n{"b":2}\r\n', True),  # the last line's CRLF
    (b' {"a":1}\n', True),
    (b'[1]\n', True),  # not an object
])
def test_a_block_is_escaped_exactly_when_a_line_is_padded(raw: bytes, padded: bool) -> None:
    """The ClickHouse ingest keeps a record's text as the engine reads an object only when no line has whitespace
    around its object; the check is two counting passes and must agree with the line-by-line definition."""
    from agent_debug.store.clickhouse.ingest import _padded

    lines = raw.split(b"\n")[:-1]
    by_line = any(not (line[:1] == b"{" and line[-1:] == b"}") for line in lines)
    assert by_line == padded
    assert _padded(raw) is padded
