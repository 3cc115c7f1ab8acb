"""Human verdicts (`agent-debug mark`, verdict files) and failure patterns (`agent-debug patterns`), through the
real CLI and a real SQLite store."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from agent_debug.analysis.patterns import failure_patterns, fisher_exact, holm, wilson
from agent_debug.analysis.source import FileSource
from agent_debug.store import db as store_db
from agent_debug.store.query import TraceFilter
from conftest import rec, run_cli, write_jsonl


def _run(tid: str, *, passed: bool | None = None, tool: str = "search", error: bool = False, lane: str = "cheap",
         model: str = "m-small", modality: str | None = None, agent: str = "worker") -> list[dict[str, Any]]:
    attrs: dict[str, Any] = {} if passed is None else {"outcome.passed": passed}
    root = rec("root", None, trace_id=tid, agent="orchestrator", name="run", attributes=attrs, workflow="wf")
    route = rec("route", "root", trace_id=tid, agent="router", event_type="ROUTING_DECISION", start=1,
                attributes={"route.lane": lane})
    llm = rec("llm", "root", trace_id=tid, agent=agent, event_type="LLM_CALL", start=2,
              attributes={"route.model": model}, payload={"output": "Searching."})
    if modality:
        llm["modality"] = modality
    call = rec("call", "root", trace_id=tid, agent=agent, event_type="TOOL_CALL", start=3, name=tool,
               attributes={"tool.name": tool}, payload={"output": "found it"})
    if error:
        call["status"] = "error"
        call["error"] = {"type": "Boom", "message": "boom"}
    return [root, route, llm, call]


def _store(tmp_path: Path) -> tuple[Path, Path]:
    files = tmp_path / "traces.jsonl"
    write_jsonl(files, _run("aaaa1111", passed=True) + _run("bbbb2222") + _run("cccc3333", error=True, passed=False))
    db = tmp_path / "store.db"
    out = run_cli("ingest", str(files), "--db", str(db))
    assert out.returncode == 0, out.stderr
    return files, db


def _traces(db: Path) -> dict[str, dict[str, Any]]:
    out = run_cli("traces", "--db", str(db), "--json")
    assert out.returncode == 0, out.stderr
    return {t["trace_id"]: t for t in json.loads(out.stdout)["traces"]}


def test_mark_stores_a_verdict_every_command_reads_and_never_touches_the_files(tmp_path: Path) -> None:
    files, db = _store(tmp_path)
    before = hashlib.sha256(files.read_bytes()).hexdigest()
    out = run_cli("mark", "bbbb", "--failed", "--reason", "wrong answer", "--db", str(db), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["marked"] == [{"trace_id": "bbbb2222", "passed": False, "reason": "wrong answer",
                                                 "source": "mark"}]
    t = _traces(db)["bbbb2222"]
    assert t["status"] == "failed" and t["failed"] and t["verdict"]["recorded_status"] == "ok"
    assert "(marked)" in run_cli("traces", "--db", str(db)).stdout
    failed_only = json.loads(run_cli("traces", "--failed", "--db", str(db), "--json").stdout)["traces"]
    assert {x["trace_id"] for x in failed_only} == {"bbbb2222", "cccc3333"}
    bucket = json.loads(run_cli("bucket", "--db", str(db), "--json").stdout)
    assert {r["trace_id"] for r in bucket["runs"]} == {"bbbb2222", "cccc3333"}
    assert sum(c["count"] for c in bucket["clusters"]) == 2
    why = json.loads(run_cli("why", "bbbb", "--db", str(db), "--json").stdout)
    assert why["failed"] and why["verdict"]["reason"] == "wrong answer" and why["note"] == "marked failed by a verdict"
    assert why["diagnosis"] is not None
    assert "marked failed: wrong answer" in run_cli("why", "bbbb", "--db", str(db)).stdout
    # a passed verdict overrides a recorded failure; re-ingesting keeps verdicts; --clear forgets them
    assert run_cli("mark", "cccc3333", "--passed", "--db", str(db)).returncode == 0
    assert run_cli("ingest", str(files), "--db", str(db)).returncode == 0
    assert _traces(db)["cccc3333"]["status"] == "passed"
    bucket = json.loads(run_cli("bucket", "--db", str(db), "--json").stdout)
    assert [r["trace_id"] for r in bucket["runs"]] == ["bbbb2222"]
    cleared = run_cli("mark", "bbbb2222", "cccc3333", "--clear", "--db", str(db), "--json")
    assert json.loads(cleared.stdout)["count"] == 2
    assert _traces(db)["cccc3333"]["status"] == "failed" and _traces(db)["bbbb2222"]["verdict"] is None
    assert hashlib.sha256(files.read_bytes()).hexdigest() == before


def test_mark_refuses_bad_arguments_with_one_line_and_the_documented_exit_codes(tmp_path: Path) -> None:
    _, db = _store(tmp_path)
    neither = run_cli("mark", "bbbb", "--db", str(db))
    assert neither.returncode == 2 and neither.stderr == "Error: give exactly one of --failed, --passed or --clear\n"
    both = run_cli("mark", "bbbb", "--failed", "--passed", "--db", str(db))
    assert both.returncode == 2
    missing = run_cli("mark", "zzzz", "--failed", "--db", str(db))
    assert missing.returncode == 4 and missing.stderr == "Error: no trace matches 'zzzz'\n"
    nostore = run_cli("mark", "bbbb", "--failed", "--db", str(tmp_path / "none.db"))
    assert nostore.returncode == 5 and nostore.stderr.count("\n") == 1


def test_the_verdict_migration_upgrades_a_store_written_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    store_db._m001_initial(conn)
    conn.execute("INSERT INTO _migrations VALUES ('001_initial', 0)")
    conn.close()
    upgraded = store_db.connect(path, create=False)
    names = [r[0] for r in upgraded.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == ["001_initial", "002_meta", "003_summaries_of_interrupted_ingests", "004_verdicts"]
    assert upgraded.execute("SELECT count(*) FROM verdicts").fetchone() == (0,)


def test_a_verdict_file_among_the_from_paths_or_given_with_verdicts_sets_the_outcome(tmp_path: Path) -> None:
    files, _ = _store(tmp_path)
    vfile = write_jsonl(tmp_path / "verdicts.jsonl", [{"trace_id": "aaaa", "passed": False, "reason": "hallucinated"},
                                                      {"trace_id": "cccc3333", "passed": True}])
    src = FileSource([files, vfile])
    status = {s.trace_id: (s.status, s.verdict) for s in src.list()}
    assert status["aaaa1111"][0] == "failed" and status["aaaa1111"][1]["reason"] == "hallucinated"
    assert status["cccc3333"][0] == "passed" and status["bbbb2222"] == ("ok", None)
    out = run_cli("bucket", "--from", str(files), "--verdicts", str(vfile), "--json")
    assert out.returncode == 0, out.stderr
    assert [r["trace_id"] for r in json.loads(out.stdout)["runs"]] == ["aaaa1111"]
    listed = json.loads(run_cli("traces", "--from", str(files), "--from", str(vfile), "--json").stdout)
    assert {t["trace_id"]: t["status"] for t in listed["traces"]}["aaaa1111"] == "failed"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"trace_id": "aaaa", "passed": "no"}])
    err = run_cli("bucket", "--from", str(files), "--verdicts", str(bad))
    assert err.returncode == 2 and err.stderr == f"Error: {bad}:1: a verdict needs a string trace_id and a boolean " \
                                                 "passed\n"


def test_eval_treats_a_verdict_as_the_recorded_outcome(tmp_path: Path) -> None:
    files, db = _store(tmp_path)
    cases = tmp_path / "cases.toml"
    cases.write_text('[[case]]\nname = "pinned"\ntrace_id = "bbbb2222"\n')
    assert run_cli("eval", str(cases), "--db", str(db), "--json").returncode == 0
    assert run_cli("mark", "bbbb", "--failed", "--reason", "user complaint", "--db", str(db)).returncode == 0
    out = run_cli("eval", str(cases), "--db", str(db), "--json")
    assert out.returncode == 1, out.stderr
    run = json.loads(out.stdout)["cases"][0]["runs"][0]
    assert run["verdict"] == "fail" and run["error"] == "marked failed: user complaint"


# -- patterns -----------------------------------------------------------------------------------------------------


def test_statistics_match_known_values() -> None:
    assert abs(fisher_exact(8, 2, 1, 5) - 0.03497) < 1e-4  # scipy.stats.fisher_exact
    assert abs(fisher_exact(3, 1, 1, 3) - 0.48571) < 1e-4  # the lady tasting tea
    assert fisher_exact(10, 10, 10, 10) == 1.0
    assert holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and abs(hi - 0.2775) < 1e-3


def _patterned(tmp_path: Path) -> Path:
    runs: list[dict[str, Any]] = []
    for n in range(6):  # image runs through the vision tool fail 5 in 6
        runs += _run(f"img{n}", passed=n == 5, modality="image", tool="vision", model="m-vision")
    for n in range(10):  # text runs fail 1 in 10
        runs += _run(f"txt{n}", passed=n != 0, tool="search", lane="strong" if n % 2 else "cheap")
    return write_jsonl(tmp_path / "runs.jsonl", runs)


def test_patterns_put_the_correlated_modality_tool_and_model_first(tmp_path: Path) -> None:
    src = FileSource([_patterned(tmp_path)])
    report = failure_patterns(src, TraceFilter()).as_dict()
    assert (report["runs"], report["failed"]) == (16, 6)
    top = {(r["dimension"], r["value"]) for r in report["patterns"][:6]}
    assert {("modality", "image"), ("tool", "vision"), ("model", "m-vision")} <= top
    image = next(r for r in report["patterns"] if r["value"] == "image")
    assert (image["runs"], image["failed"], image["rest_failed"]) == (6, 5, 1) and image["significant"]
    assert image["ci95"][0] < 5 / 6 < image["ci95"][1] and image["p_value"] < 0.01
    lanes = [r for r in report["patterns"] if r["dimension"] == "route"]
    assert lanes and not any(r["significant"] for r in lanes)


def test_patterns_cli_json_and_table(tmp_path: Path) -> None:
    path = _patterned(tmp_path)
    out = run_cli("patterns", "--from", str(path), "--by", "modality", "--by", "tool", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["dimensions"] == ["modality", "tool"] and doc["patterns"][0]["dimension"] in ("modality", "tool")
    assert {"dimension", "value", "runs", "failed", "failure_rate", "ci95", "p_value", "p_adjusted",
            "significant", "odds_ratio"} <= set(doc["patterns"][0])
    text = run_cli("patterns", "--from", str(path))
    assert text.returncode == 0 and "image" in text.stdout and "Fisher" in text.stdout
    bad = run_cli("patterns", "--from", str(path), "--by", "colour")
    assert bad.returncode == 2 and "unknown dimension 'colour'" in bad.stderr
