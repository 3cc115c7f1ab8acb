"""The store under conditions a user meets: a store that cannot be written (read-only folder, file or mount),
damaged chunks, two ingests at once, a store an earlier version left half-summarized.

About the read-only tests: they may run as root, whom file modes do not stop. So the reading process is
started without the capabilities that let root ignore modes (`setpriv`: then the folder's owner bits apply to
it as to anyone), or under a read-only bind mount in a user namespace (`unshare -rm`: writes fail with EROFS
whoever asks). Each test first shows that its reading process really cannot write there; a test skips, saying
why, when the system offers neither tool."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.errors import StoreError
from agent_debug.store.db import connect, connect_readonly
from agent_debug.store.ingest import FAULT_ENV, ingest
from agent_debug.store.query import list_traces, load_trace
from conftest import ROOT, rec, run_cli
from crash_sweep import dump

FIXTURES = [ROOT / "fixtures" / "faulty_trace.jsonl", ROOT / "fixtures" / "healthy_trace.jsonl"]
READ_COMMANDS = (["traces"], ["bucket"], ["tree", "{faulty}"], ["critical-path", "{healthy}"])


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder others may enter (pytest's own are 0700 and owned by whoever runs the tests)."""
    d = Path(tempfile.mkdtemp(prefix="agent-debug-ro-"))
    d.chmod(0o755)
    yield d
    for p in [d, *d.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(d, ignore_errors=True)


def _store(d: Path) -> tuple[Path, dict[str, str]]:
    store = d / "store"
    store.mkdir()
    store.chmod(0o755)
    db = store / "traces.db"
    ingest(FIXTURES, db)
    ids = _ids(db)
    for side in ("-wal", "-shm"):
        assert not db.with_name(db.name + side).exists()  # closed cleanly: the WAL was merged and removed
    return db, ids


def _ids(db: Path) -> dict[str, str]:
    """The trace ids of the two fixtures (faulty_trace.jsonl holds 21 spans, healthy_trace.jsonl 25)."""
    con = connect(db)
    counts = {s.span_count: s.trace_id for s in list_traces(con)}
    con.close()
    return {"faulty": counts[21], "healthy": counts[25]}


def _unprivileged() -> list[str]:
    """A command prefix under which file modes apply to this process (root loses DAC override)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is not installed: cannot take away root's override of modes")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]


def _run(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env["COLUMNS"] = "200"
    return subprocess.run([*prefix, sys.executable, "-m", "agent_debug.cli.main", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)


def _cannot_write(prefix: list[str], folder: Path) -> str:
    """Proof that a process started with `prefix` cannot create a file in `folder`: the error it gets."""
    probe = ("import sys\ntry:\n    open(sys.argv[1] + '/probe', 'w')\nexcept OSError as e:\n"
             "    print(type(e).__name__, e.errno)\nelse:\n    print('wrote')")
    out = subprocess.run([*prefix, sys.executable, "-c", probe, str(folder)], capture_output=True, text=True,
                         timeout=60).stdout.strip()
    assert out != "wrote", f"{folder} is writable by the test's reader: the test would prove nothing"
    return out


def _views(prefix: list[str], db: Path, ids: dict[str, str]) -> list[tuple[int, Any, str]]:
    out = []
    for cmd in READ_COMMANDS:
        res = _run(prefix, *[c.format(**ids) for c in cmd], "--db", str(db), "--json")
        out.append((res.returncode, orjson.loads(res.stdout) if res.returncode == 0 else None, res.stderr))
    return out


def test_read_commands_work_on_a_store_in_a_read_only_folder(shared_dir: Path) -> None:
    db, ids = _store(shared_dir)
    expected = _views([], db, ids)
    assert [r[0] for r in expected] == [0, 0, 0, 0]
    prefix = _unprivileged()
    db.parent.chmod(0o555)
    assert _cannot_write(prefix, db.parent) == "PermissionError 13"
    before = sorted(p.name for p in db.parent.iterdir())
    assert _views(prefix, db, ids) == expected
    assert sorted(p.name for p in db.parent.iterdir()) == before  # nothing written, not even -wal or -shm


def test_read_commands_work_on_a_read_only_store_file(shared_dir: Path) -> None:
    db, ids = _store(shared_dir)
    expected = _views([], db, ids)
    prefix = _unprivileged()
    db.chmod(0o444)
    db.parent.chmod(0o777)  # the folder is writable (by anyone): SQLite may make its -shm index there
    probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(db)!r}, 'r+b')"], capture_output=True,
                           text=True, timeout=60)
    assert "PermissionError" in probe.stderr
    before = sorted(p.name for p in db.parent.iterdir())
    assert _views(prefix, db, ids) == expected
    assert db.stat().st_mode & 0o777 == 0o444
    # no -wal or -shm left behind: they would belong to the reader and could stop the owner writing later
    assert sorted(p.name for p in db.parent.iterdir()) == before


def test_read_commands_work_on_a_read_only_mount_with_a_write_ahead_log(shared_dir: Path) -> None:
    """The hardest case: the store was not closed cleanly (its -wal holds committed writes not yet merged) and
    sits on a read-only mount. The reader must see those writes."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("user namespaces (unshare -rm) are not available: no read-only bind mount")
    db, ids = _store(shared_dir)
    extra = shared_dir / "more.jsonl"
    extra.write_bytes(orjson.dumps(rec("r", trace_id="late", workflow="late")) + b"\n")
    env = dict(os.environ, **{FAULT_ENV: "kill:5"})  # killed after its commit: -wal and -shm stay behind
    res = subprocess.run([sys.executable, "-m", "agent_debug.cli.main", "ingest", str(extra), "--db", str(db)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == -9
    assert db.with_name(db.name + "-wal").stat().st_size > 0
    folder = db.parent
    mount = ["unshare", "-rm", "sh", "-c", f'mount --bind "{folder}" "{folder}" && '
             f'mount -o remount,bind,ro "{folder}" && exec "$@"', "sh"]
    assert _cannot_write(mount, folder) == "OSError 30"  # EROFS
    got = _run(mount, "traces", "--db", str(db), "--json")
    assert got.returncode == 0, got.stderr
    assert "late" in [t["trace_id"] for t in orjson.loads(got.stdout)["traces"]]
    views = _views(mount, db, ids)
    assert [r[0] for r in views] == [0, 0, 0, 0], views


def test_a_read_only_connection_writes_nothing_and_refuses_writes(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    ingest(FIXTURES, db)
    con = connect_readonly(db)
    assert len(list_traces(con)) == 2
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM traces")
    con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traces.db", "traces.db.ingest-lock"]


# -- damaged chunks ---------------------------------------------------------------------------------------------


def _damage(db: Path, trace_id: str, column: str) -> int:
    """Flip bytes in the middle of one of a trace's chunk blobs; returns the chunk's id."""
    con = sqlite3.connect(db)
    chunk_id, blob = con.execute(f"SELECT id, {column} FROM chunks WHERE trace_id = ? ORDER BY id LIMIT 1",
                                 (trace_id,)).fetchone()
    blob = bytearray(blob)
    mid = len(blob) // 2
    blob[mid: mid + 4] = bytes(b ^ 0x5A for b in blob[mid: mid + 4])
    con.execute(f"UPDATE chunks SET {column} = ? WHERE id = ?", (bytes(blob), chunk_id))
    con.commit()
    con.close()
    return int(chunk_id)


@pytest.mark.parametrize("column", ["records", "cols"])
def test_a_damaged_chunk_is_a_one_line_store_error_naming_it_and_other_traces_stay_readable(
    tmp_path: Path, column: str
) -> None:
    db = tmp_path / "traces.db"
    failed = tmp_path / "failed.jsonl"  # a failed run: `bucket` reads its spans
    failed.write_bytes(b"".join(orjson.dumps(r) + b"\n" for tid in ("failed-run", "other-failed-run") for r in [
        rec("root", trace_id=tid, attributes={"outcome.passed": False}, duration_ms=50),
        *[rec(f"c{i}", "root", trace_id=tid, status="error" if i == 3 else "ok") for i in range(6)]]))
    ingest([*FIXTURES, failed], db)
    ids = _ids(db) | {"faulty": "failed-run"}
    views = {(cmd, which): run_cli(cmd, tid, "--db", str(db), "--json").stdout
             for cmd in ("tree", "critical-path") for which, tid in ids.items()}
    intact = run_cli("bucket", "--db", str(db), "--json")  # before the damage
    assert intact.returncode == 0 and orjson.loads(intact.stdout)["unreadable_runs"] == []
    chunk = _damage(db, ids["faulty"], column)
    failed_cmds = []
    for cmd in ("tree", "critical-path"):
        res = run_cli(cmd, ids["faulty"], "--db", str(db), "--json")
        if res.returncode == 0:  # it did not need the damaged part (critical-path reads few records)
            assert res.stdout == views[(cmd, "faulty")]
        else:
            assert res.returncode == 5, res.stderr
            lines = res.stderr.splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr
            assert lines[0].startswith(f"Error: trace {ids['faulty']}: stored chunk {chunk} is damaged (")
            failed_cmds.append(cmd)
        assert run_cli(cmd, ids["healthy"], "--db", str(db), "--json").stdout == views[(cmd, "healthy")]
    assert "tree" in failed_cmds  # `tree --json` reads every record's attributes
    res = run_cli("bucket", "--db", str(db), "--json")  # it reads the failed run's spans
    assert res.returncode == 5 and len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"Error: trace {ids['faulty']}: stored chunk {chunk} is damaged (")
    doc = orjson.loads(res.stdout)  # every other run is still bucketed, and the damaged one named
    assert [u["trace_id"] for u in doc["unreadable_runs"]] == [ids["faulty"]]
    kept = [r for r in orjson.loads(intact.stdout)["runs"] if r["trace_id"] != ids["faulty"]]
    assert kept and doc["runs"] == kept
    assert run_cli("traces", "--db", str(db)).returncode == 0
    con = connect(db)
    with pytest.raises(StoreError, match=f"chunk {chunk}"):
        ts = load_trace(con, ids["faulty"], records="lazy")
        [ts.records[i] for i in range(len(ts))]  # type: ignore[index]
    con.close()


def test_a_garbled_page_is_a_store_error_not_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    ingest(FIXTURES, db)
    data = bytearray(db.read_bytes())
    page = 65536
    for off in range(page, len(data), page):  # every page after the first: b-tree headers garbled
        data[off: off + 16] = b"\xff" * 16
    db.write_bytes(bytes(data))
    for cmd in (["traces"], ["tree", "x"], ["bucket"]):
        res = run_cli(*cmd, "--db", str(db))
        assert res.returncode == 5, (cmd, res.stderr)
        assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("Error: ") and "Traceback" not in res.stderr


# -- two ingests at once ----------------------------------------------------------------------------------------


def _at_once(n: int, go: Path, lines: list[str], args: list[str], settle: float
             ) -> tuple[list[subprocess.Popen[bytes]], list[tuple[bytes, bytes]]]:
    """n processes that import first and run `lines` at the same moment, when `go` appears (after `settle` s, by
    when all have imported); sys.argv[1] is `go`, then `args`. Returns the processes and their (stdout, stderr)."""
    script = "\n".join(["import json, os, sys, time", *lines[:1],
                        "while not os.path.exists(sys.argv[1]): time.sleep(0.0005)", *lines[1:]])
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(go), *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(n)]
    time.sleep(settle)
    go.touch()
    return procs, [p.communicate(timeout=300) for p in procs]


def test_two_ingests_at_once_serialize_and_store_everything_once(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for f in range(8):  # enough that one ingest takes longer than the other's start-up
        lines = [orjson.dumps(rec(f"s{i}", None if i == 0 else "s0", trace_id=f"t{f}-{t}", start=i * 0.001))
                 for t in range(40) for i in range(150)]
        (d / f"f{f}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    clean = tmp_path / "clean.db"
    ingest([d], clean)
    db = tmp_path / "traces.db"
    go = tmp_path / "go"
    # two processes that import first, then start at the same moment (when `go` appears)
    procs, outs = _at_once(2, go, ["from agent_debug.store.ingest import ingest",
                                   "print(json.dumps(ingest([sys.argv[2]], sys.argv[3]).as_dict()))"],
                           [str(d), str(db)], settle=3.0)
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    results = [orjson.loads(o[0]) for o in outs]
    assert sum(r["records"] for r in results) == 48_000  # each span kept by one of them
    assert sum(r["duplicates"] for r in results) == 0
    a, b = dump(db), dump(clean)
    assert a["traces"] == b["traces"] and len(a["traces"]) == 320
    assert [row[1:6] for row in a["chunks"]] == [row[1:6] for row in b["chunks"]]


def test_processes_creating_one_store_at_the_same_moment_all_open_it(tmp_path: Path) -> None:
    """Switching a new store to WAL takes an exclusive lock, and SQLite says "database is locked" at once, not
    after the busy timeout, to the process that loses the race (before the retry, 6-9 of 120 opens failed so:
    this test then failed in more than nine runs of ten)."""
    failures = []
    for round_ in range(15):
        go, db = tmp_path / f"go{round_}", tmp_path / f"s{round_}" / "traces.db"
        procs, outs = _at_once(3, go, ["from agent_debug.store.db import connect", "connect(sys.argv[2]).close()"],
                               [str(db)], settle=0.5)
        failures += [err.decode()[-300:] for p, (_, err) in zip(procs, outs, strict=True) if p.returncode]
        assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert failures == []


# -- stores an earlier version left half-summarized -------------------------------------------------------------


def test_a_store_an_earlier_version_left_without_summaries_is_summarized_on_open(tmp_path: Path) -> None:
    """Before migration 003, an ingest that stopped between chunks and summaries left runs `traces` never
    listed (the issue's repro: 0 runs listed, 20 traces in the chunks)."""
    db = tmp_path / "traces.db"
    ingest(FIXTURES, db)
    want = dump(db)["traces"]
    con = sqlite3.connect(db)
    con.execute("DELETE FROM traces")
    con.execute("UPDATE traces SET span_count = 1")
    con.execute("DELETE FROM _migrations WHERE name = '003_summaries_of_interrupted_ingests'")
    con.commit()
    con.close()
    res = run_cli("traces", "--db", str(db), "--json")
    assert res.returncode == 0
    assert dump(db)["traces"] == want and len(want) == 2


def test_a_chunk_that_is_not_zlib_names_itself(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    ingest(FIXTURES[:1], db)
    con = sqlite3.connect(db)
    con.execute("UPDATE chunks SET records = ?", (zlib.compress(b"")[:3],))
    con.commit()
    con.close()
    con = connect(db)
    (tid,) = [s.trace_id for s in list_traces(con)]
    with pytest.raises(StoreError) as err:
        load_trace(con, tid, records=True)
    assert "\n" not in str(err.value) and f"trace {tid}: stored chunk 1 is damaged (error" in str(err.value)
