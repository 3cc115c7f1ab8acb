"""Ingest while agents write: 4 writer processes (JSON lines and MessagePack) emit spans through the SDK into
one directory with 256 KB rotation, `agent-debug ingest` runs every 0.5 s meanwhile (each a real CLI process;
one may still be running when the next starts: they take turns on the store), then once more after the
writers finish. Every span the writers emitted must be in the store exactly once, listed by `traces` with the
right span count and in its `tree`; no ingest may reject a record or fail.

Rotation moves and compresses files under the ingests' feet (the live `x.jsonl` becomes `x.<time>.jsonl`, then
`x.<time>.jsonl.gz`), so this is also the test of files vanishing between listing and reading.

The writers do not pace themselves: 25,000 spans fit the SDK's buffer (100,000 records), so nothing is
dropped even in a tight loop; the SDK's own counters must say so (`dropped == 0`, `written == emitted`)."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.analysis.critical import critical_times
from agent_debug.analysis.tree import build_tree
from agent_debug.analysis.treeview import nested_json
from agent_debug.store.db import connect
from agent_debug.store.query import list_traces, load_trace
from conftest import ROOT, rec, run_cli, tree_json_span_ids

WRITER = Path(__file__).resolve().parent / "live_writer.py"
FORMATS = ("jsonl", "msgpack", "jsonl", "msgpack")
INTERVAL = 0.5
WRITE_S = 4.0
# what an ingest of a live directory may say on stderr without anything being wrong
EXPECTED_NOTICES = re.compile(r"partial last (line|object) .* not read|exists beside it \(interrupted compression\)"
                              r"|waited [\d.]+s for another ingest")
slow = pytest.mark.skipif(os.environ.get("AGENT_DEBUG_SLOW") != "1", reason="long version: set AGENT_DEBUG_SLOW=1")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)  # the SDK would re-raise its internal errors under pytest
    env["COLUMNS"] = "200"
    return env


def _live(tmp_path: Path, spans: int) -> None:
    logs, db = tmp_path / "logs", tmp_path / "traces.db"
    logs.mkdir()
    # the writers write in bursts (a run of 50 spans at full speed) for at least WRITE_S seconds, so that ingests
    # run while they write however fast the SDK is
    pause = WRITE_S / (spans / 50)
    writers = [subprocess.Popen([sys.executable, str(WRITER), str(logs), fmt, str(no), str(spans),
                                 str(tmp_path / f"manifest{no}.json"), str(pause)], env=_env(), cwd=ROOT)
               for no, fmt in enumerate(FORMATS)]
    ingests: list[tuple[subprocess.Popen[bytes], Path]] = []
    next_at = time.monotonic() + INTERVAL
    while any(w.poll() is None for w in writers):
        running = sum(p.poll() is None for p, _ in ingests)
        if time.monotonic() >= next_at:
            next_at += INTERVAL
            if running < 2:  # a third one at once would only wait for the lock on a 2-core machine
                out = tmp_path / f"ingest{len(ingests)}.json"
                with open(out, "wb") as fh, open(out.with_suffix(".err"), "wb") as err:
                    ingests.append((subprocess.Popen(
                        [sys.executable, "-m", "agent_debug.cli.main", "ingest", str(logs), "--db", str(db),
                         "--json"], env=_env(), stdout=fh, stderr=err, cwd=ROOT), out))
        time.sleep(0.02)
    assert [w.returncode for w in writers] == [0, 0, 0, 0]
    for p, _ in ingests:
        p.wait(timeout=300)
    final = run_cli("ingest", str(logs), "--db", str(db), "--json")
    results = [(p.returncode, out.read_bytes(), out.with_suffix(".err").read_text()) for p, out in ingests]
    results.append((final.returncode, final.stdout.encode(), final.stderr))
    assert len(ingests) >= 3, "the writers finished before ingest could run while they wrote"
    _check_ingests(results)
    manifests = [json.loads((tmp_path / f"manifest{no}.json").read_text()) for no in range(len(FORMATS))]
    _check_store(db, manifests)


def _check_ingests(results: list[tuple[int, bytes, str]]) -> None:
    """No ingest failed, rejected a record, or said anything but what a live directory explains."""
    for i, (code, out, err) in enumerate(results):
        if code == 3 and not out.strip() and i < 4:  # the first ones, before the writers made any file
            assert err.startswith("Error: no trace files found in ") and len(err.splitlines()) == 1, err
            continue
        assert "Traceback" not in err and "Error" not in err, err
        res = orjson.loads(out)
        assert code == 0, err
        assert res is not None and res["rejected"] == 0, res
        assert [n for n in res["notices"] if not EXPECTED_NOTICES.search(n)] == [], res["notices"]


def _check_store(db: Path, manifests: list[dict[str, Any]]) -> None:
    expected: dict[str, list[str]] = {}
    for m in manifests:
        assert m["stats"]["dropped"] == 0, m["stats"]  # 25,000 spans fit the buffer: nothing may be dropped
        assert m["stats"]["written"] == m["emitted"] and m["stats"]["internal_errors"] == 0, m["stats"]
        expected.update(m["traces"])
    total = sum(map(len, expected.values()))
    con = connect(db)
    listed = {s.trace_id: s for s in list_traces(con)}
    assert sorted(listed) == sorted(expected)
    assert {t: s.span_count for t, s in listed.items()} == {t: len(n) for t, n in expected.items()}
    assert con.execute("SELECT sum(n) FROM chunks").fetchone()[0] == total  # nothing stored twice
    load_ids: dict[str, list[str]] = {}
    for tid, names in expected.items():  # every span once in its trace's tree
        ts = load_trace(con, tid, records="lazy")
        load_ids[tid] = ts.span_id
        assert Counter(ts.name) == Counter(names), tid
        tree = build_tree(ts)
        doc = nested_json(tree, critical_times(tree))
        ids = tree_json_span_ids(doc)
        assert len(ids) == len(set(ids)) == len(names) and set(ids) == set(ts.span_id), tid
    con.close()
    res = run_cli("traces", "--db", str(db), "--json")
    assert res.returncode == 0 and len(orjson.loads(res.stdout)["traces"]) == len(expected)
    for m in manifests[:2]:  # the real command (a JSON lines and a MessagePack writer), for the last run
        tid = max(m["traces"])
        res = run_cli("tree", tid, "--db", str(db), "--json")
        assert res.returncode == 0, res.stderr
        assert sorted(tree_json_span_ids(orjson.loads(res.stdout))) == sorted(load_ids[tid])


def test_ingest_while_four_writers_rotate_keeps_every_span_once(tmp_path: Path) -> None:
    _live(tmp_path, 5_000)


@pytest.mark.slow
@slow
def test_ingest_while_four_writers_rotate_keeps_every_span_once_25k_each(tmp_path: Path) -> None:
    _live(tmp_path, 25_000)


# -- rotation between listing and reading, made to happen at that exact moment -----------------------------------


def _records(tid: str, first: int, n: int) -> bytes:
    return b"".join(orjson.dumps(rec(f"s{i}", None if i == 0 else "s0", trace_id=tid, start=i * 0.001)) + b"\n"
                    for i in range(first, first + n))


def _rotate_after_listing(monkeypatch: pytest.MonkeyPatch, rotate: Any) -> None:
    """Make `ingest` list the files, then run `rotate()` before it reads any of them."""
    import agent_debug.store.ingest as ingest_mod

    real = ingest_mod.expand_paths

    def listed_then_rotated(*args: Any, **kwargs: Any) -> Any:
        files = real(*args, **kwargs)
        rotate()
        return files

    monkeypatch.setattr(ingest_mod, "expand_paths", listed_then_rotated)


def _spans_stored(db: Path) -> dict[str, int]:
    con = connect(db)
    out = {s.trace_id: s.span_count for s in list_traces(con)}
    assert con.execute("SELECT sum(n) FROM chunks").fetchone()[0] == sum(out.values())
    con.close()
    return out


def test_a_file_rotated_away_after_listing_is_skipped_and_read_under_its_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_debug.store.ingest import ingest

    logs, db = tmp_path / "logs", tmp_path / "traces.db"
    logs.mkdir()
    live = logs / "traces.jsonl"
    live.write_bytes(_records("a", 0, 30))
    ingest([logs], db)  # reads a's 30 spans
    with open(live, "ab") as fh:
        fh.write(_records("a", 30, 20))
    rotated = logs / "traces.2024-01-01_00-00-00.jsonl"
    live.rename(rotated)  # loguru's rotation: renamed, then compressed beside it, then removed

    def compress_and_remove() -> None:
        (logs / (rotated.name + ".gz")).write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()

    _rotate_after_listing(monkeypatch, compress_and_remove)
    res = ingest([logs], db)  # listed the renamed file; it is gone when read
    assert (res.files, res.files_gone, res.records, res.notices) == (0, 1, 0, [])
    monkeypatch.undo()
    res = ingest([logs], db)  # found under its compressed name, the part already read skipped
    assert (res.files, res.records, res.duplicates) == (1, 20, 0)
    assert _spans_stored(db) == {"a": 50}


def test_a_file_replaced_after_listing_is_read_whole_and_its_rotated_copy_adds_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_debug.store.ingest import ingest

    logs, db = tmp_path / "logs", tmp_path / "traces.db"
    logs.mkdir()
    live = logs / "traces.jsonl"
    live.write_bytes(_records("a", 0, 30))
    ingest([logs], db)

    def rotate() -> None:  # a grew, was rotated and compressed; a new live file holds b
        data = live.read_bytes() + _records("a", 30, 20)
        (logs / "traces.2024-01-01_00-00-00.jsonl.gz").write_bytes(gzip.compress(data))
        live.write_bytes(_records("b", 0, 40))  # a new file under the listed name

    _rotate_after_listing(monkeypatch, rotate)
    res = ingest([logs], db)  # listed only traces.jsonl: reads the new one, from its start
    assert (res.files, res.records, res.duplicates) == (1, 40, 0)
    monkeypatch.undo()
    ingest([logs], db)
    assert _spans_stored(db) == {"a": 50, "b": 40}


def test_a_file_replaced_while_being_opened_is_read_as_the_file_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotation between the moment ingest looks at a file (its size, its first bytes: is it the file read
    before?) and the moment it reads it: the read must be of the same file, or offsets of one are applied to
    the other and spans are skipped."""
    import agent_debug.store.ingest as ingest_mod

    logs, db = tmp_path / "logs", tmp_path / "traces.db"
    logs.mkdir()
    live = logs / "traces.jsonl"
    live.write_bytes(_records("a", 0, 30))
    ingest_mod.ingest([logs], db)
    with open(live, "ab") as fh:
        fh.write(_records("a", 30, 20))
    real = ingest_mod.read_file_batches

    def rotated_then_read(*args: Any, **kwargs: Any) -> Any:
        data = live.read_bytes()
        (logs / "traces.2024-01-01_00-00-00.jsonl.gz").write_bytes(gzip.compress(data))
        live.unlink()
        live.write_bytes(_records("b", 0, 40))
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "read_file_batches", rotated_then_read)
    res = ingest_mod.ingest([logs], db)
    assert (res.records, res.rejected) == (20, 0)  # the rest of a, from the file that was looked at
    monkeypatch.undo()
    ingest_mod.ingest([logs], db)
    assert _spans_stored(db) == {"a": 50, "b": 40}
