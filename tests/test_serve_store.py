"""`store.records.RecordIngest`, the in-memory ingest `serve` stores OTLP spans through, keeps file ingest's
guarantees: batches end exactly where one file ingest of the same records ends (summaries, dedupe, conflicts,
big traces), another writer between batches is noticed, a batch stopped at any step (an exception or SIGKILL)
leaves nothing of itself and its retry ends where a clean run does, and batches take the store's ingest lock."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent_debug.store import chunks
from agent_debug.store.db import connect
from agent_debug.store.ingest import FAULT_ENV, InjectedFault, ingest
from agent_debug.store.query import list_traces, load_trace
from agent_debug.store.records import RecordIngest, ingest_records, record_line
from conftest import ROOT, rec, write_jsonl
from crash_sweep import dump


def spans(tid: str, n: int, *, first: int = 0, cost: bool = True) -> list[dict[str, Any]]:
    out = []
    for i in range(first, first + n):
        extra: dict[str, Any] = {}
        if cost and i % 3 == 0:
            extra["token_cost"] = {"prompt_tokens": i, "completion_tokens": 2 * i, "cost_usd": i / 1000}
        if i % 11 == 5:
            extra["status"] = "error"
        parent = None if i == 0 else f"{tid}-s{(i - 1) // 3}"
        out.append(rec(f"{tid}-s{i}", parent, trace_id=tid, agent=f"agent{i % 4}", event_type="TOOL_CALL",
                       start=i * 0.01, duration_ms=5 + i % 7, workflow="wf", **extra))
    return out


def store_view(db: Path) -> dict[str, Any]:
    """What a reader sees: every summary, and every trace's records in load order."""
    con = connect(db)
    try:
        traces = [s.as_dict() | {"source_file": None, "source_format": None} for s in list_traces(con)]
        traces.sort(key=lambda s: s["trace_id"])
        recs = {s["trace_id"]: sorted(load_trace(con, s["trace_id"], records=True).records or [],
                                      key=lambda r: r["span_id"]) for s in traces}
        n = con.execute("SELECT COALESCE(SUM(n), 0) FROM chunks").fetchone()[0]
    finally:
        con.close()
    return {"traces": traces, "records": recs, "stored": n}


def content(db: Path) -> dict[str, Any]:
    """`crash_sweep.dump` without what only says which ingest wrote a row (a finished ingester keeps its row)."""
    d = dump(db)
    d["chunks"] = [c[:-1] for c in d["chunks"]]
    del d["ingests"]
    return d


def test_batches_over_time_end_where_one_file_ingest_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "BIG_TRACE", 40)  # a big trace's parent positions, over many batches
    rng = random.Random(7)
    records = spans("a", 30) + spans("b", 12) + spans("big", 150) + spans("c", 25) + spans("d", 8)
    rng.shuffle(records)  # traces interleaved, children before parents
    batches, i = [], 0
    while i < len(records):
        n = rng.randint(1, 23)
        batches.append(records[i:i + n])
        i += n
    ing = RecordIngest(tmp_path / "mem.db", keep_traces=2)  # traces forgotten and read back between batches
    got = [ing.add([dict(r) for r in b]) for b in batches]
    again = ing.add([dict(r) for r in batches[3] + batches[-1]])  # an exporter's retry
    changed = ing.add([{**batches[5][0], "name": "changed"}])
    ing.close()
    assert sum(r.records for r in got) == len(records) and all(r.duplicates == 0 for r in got)
    assert (again.records, again.duplicates) == (0, len(batches[3]) + len(batches[-1]))
    assert (changed.records, changed.conflicts) == (0, 1)
    ingest([write_jsonl(tmp_path / "all.jsonl", records)], tmp_path / "file.db")
    assert store_view(tmp_path / "mem.db") == store_view(tmp_path / "file.db")


def test_spans_another_writer_stored_between_batches_are_not_stored_twice(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    t = spans("t", 60)
    ing = RecordIngest(db)
    assert ing.add([dict(r) for r in t[:20]]).records == 20
    # half of them known (written as the store writes records it did not read from a file: else the same span in
    # other bytes is a conflict, as between any two files)
    (tmp_path / "f.jsonl").write_bytes(b"".join(map(record_line, t[10:40])))
    res = ingest([tmp_path / "f.jsonl"], db)
    assert (res.records, res.duplicates) == (20, 10)
    second = ing.add([dict(r) for r in t[30:]])
    assert (second.records, second.duplicates) == (20, 10)
    ing.close()
    ingest([write_jsonl(tmp_path / "all.jsonl", t)], tmp_path / "clean.db")
    assert store_view(db) == store_view(tmp_path / "clean.db") and store_view(db)["stored"] == 60


def test_a_batch_that_fails_at_any_step_leaves_nothing_and_its_retry_ends_as_a_clean_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = spans("t1", 20) + spans("t2", 10) + [{"trace_id": "t1", "span_id": "bad"}]
    second = spans("t1", 15, first=20) + spans("t3", 12) + [{"span_id": "no trace"}]
    clean = tmp_path / "clean.db"
    ingest_records(first, clean)
    ingest_records(second, clean)
    steps = 0
    for k in range(1, 20):
        db = tmp_path / f"k{k}.db"
        ing = RecordIngest(db)
        ing.add([dict(r) for r in first])
        monkeypatch.setenv(FAULT_ENV, f"raise:{k}")
        ing.close()  # a new ingest, with the fault armed
        ing = RecordIngest(db)
        try:
            ing.add([dict(r) for r in second])
        except InjectedFault as exc:
            steps = k
            monkeypatch.delenv(FAULT_ENV)
            if "commit" not in str(exc):  # failed before its commit: stored again, as a retry would
                ing.add([dict(r) for r in second])
        else:
            monkeypatch.delenv(FAULT_ENV)
            ing.close()
            break
        ing.close()
        assert content(db) == content(clean), f"stopped at step {k}"
    assert steps >= 5  # begin, chunks, flush, summaries, rejects, commit


KILLER = """
import sys
sys.path.insert(0, {tests!r})
from test_serve_store import spans
from agent_debug.store.records import RecordIngest
ing = RecordIngest({db!r})
ing.add(spans("t1", 15, first=20) + spans("t3", 12))
"""


def test_a_batch_killed_at_any_step_is_stored_by_its_retry_as_if_never_stopped(tmp_path: Path) -> None:
    first = spans("t1", 20) + spans("t2", 10)
    second = spans("t1", 15, first=20) + spans("t3", 12)
    clean = tmp_path / "clean.db"
    ingest_records(first, clean)
    ingest_records(second, clean)
    killed = 0
    for k in range(1, 8):
        db = tmp_path / f"k{k}.db"
        ingest_records(first, db)
        env = {**os.environ, FAULT_ENV: f"kill:{k}"}
        proc = subprocess.run([sys.executable, "-c", KILLER.format(tests=str(ROOT / "tests"), db=str(db))],
                              env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            break
        assert proc.returncode == -9, proc.stderr[-2000:]
        killed += 1
        ingest_records(second, db)  # the exporter sends it again
        assert content(db) == content(clean), f"killed at step {k}"
    assert killed >= 4


HOLDER = """
import sys, time
from pathlib import Path
from agent_debug.store.consistency import exclusive
with exclusive(Path({db!r})):
    print("held", flush=True)
    time.sleep({hold})
"""


def test_a_batch_waits_for_an_ingest_holding_the_store(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    ingest_records(spans("t0", 3), db)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(db=str(db), hold=1.0)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        res = ingest_records(spans("t1", 5), db)
        waited = time.monotonic() - t0
    finally:
        holder.wait(10)
    assert res.records == 5 and waited >= 0.5


def test_files_followed_over_time_end_where_one_ingest_of_them_ends(tmp_path: Path) -> None:
    """`serve --watch`: a growing file read a part at a time, rotated (compressed with lines not read yet, a new
    one started), another ingest of the same directory meanwhile: every span stored once, summaries right."""
    import gzip

    import orjson

    logs, db = tmp_path / "logs", tmp_path / "s.db"
    logs.mkdir()
    records = spans("t", 90) + spans("u", 30)
    random.Random(3).shuffle(records)
    lines = [orjson.dumps(r) + b"\n" for r in records]
    live = logs / "run.jsonl"
    ing = RecordIngest(db, keep_traces=1)
    got = 0
    for lo in range(0, 60, 15):
        with open(live, "ab") as fh:
            fh.writelines(lines[lo:lo + 15])
        got += ing.add_files([live]).records
    with open(live, "ab") as fh:  # written, then rotated before anyone read it
        fh.writelines(lines[60:75])
    (logs / "run.2024-01-01.jsonl.gz").write_bytes(gzip.compress(live.read_bytes()))
    live.unlink()
    live.write_bytes(b"".join(lines[75:100]))
    assert ingest([logs], db).records == 40  # another ingest: the rotated rest and the new file
    live.write_bytes(b"".join(lines[75:]))
    res = ing.add_files(sorted(logs.iterdir()))
    ing.close()
    assert got == 60 and res.records == 20 and res.duplicates == 0
    ingest([write_jsonl(tmp_path / "all.jsonl", records)], tmp_path / "clean.db")
    assert store_view(db) == store_view(tmp_path / "clean.db")
