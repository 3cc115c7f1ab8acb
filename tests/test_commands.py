"""Commands are thin shells: each `--json` is its library call's result (`as_dict()` plus `notices`), so a test
or another command gets the same answer by calling the library; `why` reads the run once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent_debug.analysis import commands
from agent_debug.analysis.commands import Inputs
from agent_debug.analysis.explain import Explanation
from agent_debug.analysis.sessions import SessionReport
from agent_debug.analysis.source import FileSource
from agent_debug.columns import TraceSpans
from agent_debug.errors import StoreError
from agent_debug.replay.commands import replay_of
from agent_debug.store.ingest import ingest
from conftest import ROOT, rec, run_cli, write_jsonl

FIXTURES = [ROOT / "fixtures" / "faulty_trace.jsonl", ROOT / "fixtures" / "healthy_trace.jsonl",
            ROOT / "fixtures" / "benchmark_trace.jsonl"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cmds")
    turns = [rec("r1", None, trace_id="s1", session_id="sess", attributes={"outcome.passed": True}),
             rec("r2", None, trace_id="s2", session_id="sess", start=10, attributes={"outcome.passed": False}),
             rec("x", "r2", trace_id="s2", event_type="TOOL_CALL", start=10.1, status="error",
                 error={"type": "ToolError", "message": "exit 1"}, attributes={"tool.exit_code": 1})]
    db = d / "traces.db"
    ingest([*FIXTURES, write_jsonl(d / "turns.jsonl", turns)], db)
    return db


def _json(*args: str) -> dict[str, Any]:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def _same(cli: dict[str, Any], result: Any) -> None:
    """The CLI's document is the result's, with its notices."""
    assert cli == json.loads(json.dumps({**result.as_dict(), "notices": result.notices}, default=str))


def test_inputs_without_a_store_open_the_one_agent_debug_db_names_even_a_url(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`Inputs()` opens $AGENT_DEBUG_DB as it is written: it went through Path, which made chdb:///dir the
    SQLite file chdb:/dir."""
    url = f"chdb://{tmp_path / 'ch'}"
    monkeypatch.setenv("AGENT_DEBUG_DB", url)
    with pytest.raises(StoreError, match=f"^no store at {re.escape(url)} "):
        Inputs().open()


def test_every_analysis_command_prints_its_library_result(store: Path) -> None:
    where = Inputs(store)
    db = ("--db", str(store))
    tid = commands.list_runs(where).runs[0].trace_id
    _same(_json("traces", "--json", *db), commands.list_runs(where))
    _same(_json("tree", tid, "--json", *db), commands.tree_of(where, tid, records=True))
    _same(_json("tree", tid, "--errors", "--depth", "1", "--json", *db),
          commands.tree_of(where, tid, errors_only=True, max_depth=1, records=True))
    _same(_json("critical-path", tid, "--json", *db), commands.critical_path_of(where, tid))
    _same(_json("bucket", "--json", *db), commands.bucket_of(where))
    _same(_json("why", "s2", "--json", *db), commands.why_of(where, "s2"))
    _same(_json("session", "sess", "--json", *db), commands.session_of(where, "sess"))
    _same(_json("patterns", "--json", "--min-runs", "1", *db), commands.patterns_of(where, min_runs=1))


def test_replay_prints_its_library_result() -> None:
    packet = ROOT / "packets" / "demo" / "tool_execution.json"
    doc = _json("replay", str(packet), "--json")
    expected = replay_of(packet).as_dict()
    assert {k: v for k, v in doc.items() if k != "seconds"} == json.loads(json.dumps(
        {k: v for k, v in expected.items() if k != "seconds"}, default=str))


def test_why_and_session_return_typed_results(store: Path) -> None:
    exp = commands.why_of(Inputs(store), "s2")
    assert isinstance(exp, Explanation) and exp.diagnosis is not None
    assert exp.diagnosis.bucket == "tool_execution" and [s.span_id for s in exp.chain][0] == "x"
    report = commands.session_of(Inputs(store), "sess")
    assert isinstance(report, SessionReport)
    assert [(t.turn, t.trace_id, t.failed) for t in report.turns] == [(1, "s1", False), (2, "s2", True)]
    assert report.first_bad_turn is not None and report.first_bad_turn.turn == 2


def test_why_reads_the_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[tuple[str, Any]] = []
    real = FileSource.load

    def counting(self: FileSource, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        loads.append((trace_id, records))
        return real(self, trace_id, records=records)

    monkeypatch.setattr(FileSource, "load", counting)
    tid = "78ff29b9-aa51-4350-8490-eebabe2e820a"
    judged: list[str] = []
    exp = commands.why_of(Inputs(from_paths=[FIXTURES[0]]), tid,
                          judge=lambda ts, failed: judged.append(ts.trace_id) or {"status": "answered"})
    assert [t for t, _ in loads] == [tid] and judged == [tid]  # one load (lazy records: read as reported)
    assert exp.judge == {"status": "answered"}
