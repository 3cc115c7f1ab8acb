"""Ingest is crash-consistent: killed at any point (SIGKILL included) or failing on any file, the next ingest
leaves the store exactly as a clean one would, every stored span listed, nothing stored twice.

The exhaustive part runs `crash_sweep.py` (one forked process per stopping point, see its docstring); the
rest stops the real CLI, by the store's fault hook and by a SIGKILL sent from outside at arbitrary moments,
and compares what the read commands print with a store that was never interrupted."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.store.db import connect
from agent_debug.store.ingest import FAULT_ENV, InjectedFault, ingest
from agent_debug.store.query import list_traces
from conftest import ROOT, rec, run_cli

sys.path.insert(0, str(ROOT / "scripts"))
from crash_sweep import dump
from synth import trace_records

SWEEP = Path(__file__).resolve().parent / "crash_sweep.py"
# the long versions: marked `slow`, and run only when asked (AGENT_DEBUG_SLOW=1), to keep the suite short
slow = pytest.mark.skipif(os.environ.get("AGENT_DEBUG_SLOW") != "1", reason="long version: set AGENT_DEBUG_SLOW=1")


def _sweep(tmp_path: Path, *args: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, str(SWEEP), str(tmp_path / "sweep"), *args], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)  # type: ignore[no-any-return]


STEPS = {"0": 27, "1": 21, "2": 19}  # what the sweep's corpus has, per stage: files x steps


def test_an_ingest_killed_at_any_step_is_finished_by_the_next_as_if_never_stopped(tmp_path: Path) -> None:
    out = _sweep(tmp_path, "--every", "2")
    assert {stage: len(ks) for stage, ks in out["tried"].items()} == {k: n // 2 for k, n in STEPS.items()}
    assert out["mismatches"] == []


@pytest.mark.slow
@slow
def test_an_ingest_killed_at_every_step_is_finished_by_the_next_as_if_never_stopped(tmp_path: Path) -> None:
    out = _sweep(tmp_path)
    assert {stage: len(ks) for stage, ks in out["tried"].items()} == STEPS
    assert out["mismatches"] == []


def test_an_ingest_failing_at_any_step_is_finished_by_the_next_as_if_never_failed(tmp_path: Path) -> None:
    out = _sweep(tmp_path, "--raise", "--every", "3")
    assert {stage: len(ks) for stage, ks in out["tried"].items()} == {k: n // 3 for k, n in STEPS.items()}
    assert out["mismatches"] == []


@pytest.mark.slow
@slow
def test_an_ingest_killed_twice_in_a_row_is_finished_by_the_next(tmp_path: Path) -> None:
    out = _sweep(tmp_path, "--double")
    assert {stage: len(ks) for stage, ks in out["tried"].items()} == STEPS
    assert out["mismatches"] == []


# -- the repro: a file that fails, removed, ingested again ----------------------------------------------


def _runs(n: int, prefix: str) -> list[dict[str, Any]]:
    out = []
    for t in range(n):
        tid = f"{prefix}{t:02d}"
        out.append(rec("root", trace_id=tid, duration_ms=100, workflow="wf"))
        out += [rec(f"c{i}", "root", trace_id=tid, start=0.001 * i, event_type="LLM_CALL",
                    token_cost={"prompt_tokens": i, "completion_tokens": 1, "cost_usd": 0.5})
                for i in range(1, 25)]
    return out


def _lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def test_a_file_that_fails_hides_nothing_once_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's repro: before, chunks and offsets of the files read before the bad one were kept but their
    runs never reached `traces` (summaries came at the end), and later ingests skipped those files."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_bytes(_lines(_runs(10, "a")))
    (d / "b-bad.jsonl").write_bytes(_lines(_runs(3, "b")))
    (d / "c.jsonl.gz").write_bytes(gzip.compress(_lines(_runs(10, "c"))))
    db = tmp_path / "traces.db"
    monkeypatch.setenv(FAULT_ENV, "raise:3@b-bad.jsonl")  # fails half-way through the bad file
    with pytest.raises(InjectedFault):
        ingest([d], db)
    monkeypatch.delenv(FAULT_ENV)
    con = connect(db)
    # what was committed is listed, summarized, and nothing of the failed file is kept
    assert [s.trace_id for s in list_traces(con)] == [f"a{t:02d}" for t in range(10)]
    assert con.execute("SELECT count(DISTINCT trace_id), sum(n) FROM chunks").fetchone() == (10, 250)
    con.close()
    (d / "b-bad.jsonl").unlink()
    again = ingest([d], db)
    assert (again.records, again.duplicates, again.files_skipped) == (250, 0, 0)
    clean = tmp_path / "clean.db"
    ingest([d], clean)
    a, b = dump(db), dump(clean)
    assert a["traces"] == b["traces"] and len(a["traces"]) == 20
    assert [row[10] for row in a["traces"]] == [25] * 20  # span_count
    assert [row[1:] for row in a["chunks"]] == [row[1:] for row in b["chunks"]]


# -- the real CLI, stopped from outside -------------------------------------------------------------------------


def _corpus(d: Path) -> None:
    """30 demo-like runs of ~400 spans (a third failed) in six files, plain and gzip."""
    d.mkdir()
    for f in range(6):
        recs = [r for t in range(5) for r in trace_records(400, seed=f * 10 + t, trace_no=f * 10 + t,
                                                           fail=(t % 3 == 0))]
        data = _lines(recs)
        if f % 2:
            (d / f"part{f}.jsonl.gz").write_bytes(gzip.compress(data, 1))
        else:
            (d / f"part{f}.jsonl").write_bytes(data)


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.pop(FAULT_ENV, None)
    return env


def _read_views(db: Path, trace_ids: list[str]) -> dict[str, Any]:
    """What the read commands print, as JSON."""
    out: dict[str, Any] = {}
    for cmd in (["traces"], ["bucket"]):
        res = run_cli(*cmd, "--db", str(db), "--json")
        assert res.returncode == 0, res.stderr
        out[cmd[0]] = orjson.loads(res.stdout)
    for tid in trace_ids:
        for cmd in ("tree", "critical-path"):
            res = run_cli(cmd, tid, "--db", str(db), "--json")
            assert res.returncode == 0, res.stderr
            out[f"{cmd} {tid}"] = orjson.loads(res.stdout)
    return out


def test_a_cli_ingest_killed_from_outside_at_any_moment_is_finished_by_the_next(tmp_path: Path) -> None:
    d = tmp_path / "in"
    _corpus(d)
    clean = tmp_path / "clean.db"
    t0 = time.perf_counter()
    res = run_cli("ingest", str(d), "--db", str(clean), "--json")
    took = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    db = tmp_path / "killed.db"
    kills = 0
    # each ingest picks up where the killed one stopped, and is killed a fifth of a whole ingest's time after it
    # starts, until one finishes first: kills spread over the work whether the machine is busier or quieter
    # than when the clean ingest was timed
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "agent_debug.cli.main", "ingest", str(d), "--db", str(db),
                                 "--json"], env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(took * 0.2)
        proc.send_signal(signal.SIGKILL)
        if proc.wait() != -signal.SIGKILL:
            break
        kills += 1
    assert kills >= 2
    res = run_cli("ingest", str(d), "--db", str(db), "--json")
    assert res.returncode == 0, res.stderr
    a, b = dump(db), dump(clean)
    assert a["traces"] == b["traces"] and len(a["traces"]) == 30
    assert sorted(row[1:] for row in a["chunks"]) == sorted(row[1:] for row in b["chunks"])
    assert a["files"] == b["files"]
    failed = [row[0] for row in a["traces"] if row[6] != "passed"][:1]
    passed = [row[0] for row in a["traces"] if row[6] == "passed"][:1]
    assert _read_views(db, failed + passed) == _read_views(clean, failed + passed)


def test_a_cli_ingest_killed_by_the_hook_mid_file_is_finished_by_the_next(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_bytes(_lines(_runs(4, "a")))
    (d / "b.jsonl").write_bytes(_lines(_runs(4, "b")))
    db = tmp_path / "traces.db"
    env = {FAULT_ENV: "kill:2@b.jsonl"}  # after b's chunks are written, before its summaries and commit
    res = run_cli("ingest", str(d), "--db", str(db), env=env)
    assert res.returncode == -signal.SIGKILL
    listed = orjson.loads(run_cli("traces", "--db", str(db), "--json").stdout)["traces"]
    assert [t["trace_id"] for t in listed] == [f"a{t:02d}" for t in range(4)]
    res = run_cli("ingest", str(d), "--db", str(db), "--json")
    assert res.returncode == 0, res.stderr
    assert (orjson.loads(res.stdout)["records"], orjson.loads(res.stdout)["duplicates"]) == (100, 0)
    listed = orjson.loads(run_cli("traces", "--db", str(db), "--json").stdout)["traces"]
    assert sorted((t["trace_id"], t["span_count"]) for t in listed) == [
        (f"{p}{t:02d}", 25) for p in "ab" for t in range(4)]
