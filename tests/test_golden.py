"""Every renderer's exact output (tests/golden/*.txt), at a fixed terminal width (120 columns), without color.

Each command's library call runs on fixed inputs (runs built here, the demo packets, the fixtures) and its result
goes through the CLI's renderer into a recording console; temporary paths and measured times are normalized.
After a deliberate change of a renderer, rewrite the files with `pytest tests/test_golden.py --update-golden` (or
AGENT_DEBUG_UPDATE_GOLDEN=1) and review the diff.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from agent_debug.analysis.commands import (
    Inputs,
    bucket_of,
    critical_path_of,
    list_runs,
    patterns_of,
    session_of,
    tree_of,
    why_of,
)
from agent_debug.cli import views
from agent_debug.cli.demo import render_demo
from agent_debug.cli.evaluate import render_calibration, render_dataset_added, render_eval
from agent_debug.demo.runner import DemoReport, DemoResult, RunLabel
from agent_debug.eval.calibrate import CalibrationItem, summarize
from agent_debug.eval.cases import load_case_files
from agent_debug.eval.dataset import add_regression
from agent_debug.eval.harness import evaluate
from agent_debug.eval.judge import PROMPT_VERSION, JudgeScore
from agent_debug.formats.validate import validate_paths
from agent_debug.replay.commands import replay_of, write_packet_of
from agent_debug.store.api import mark
from agent_debug.store.ingest import ingest
from agent_debug.store.query import TraceFilter
from conftest import ROOT, rec, write_jsonl

WIDTH = 120
A, B, C, D = "a" * 32, "b" * 32, "c" * 32, "d" * 32


def _run_a() -> list[dict[str, Any]]:
    """A failed run (turn 2 of session s-1): an empty retrieval, a patch from nothing, a verifier that says no."""
    t = A
    return [
        rec("root", None, trace_id=t, agent="orchestrator", name="repo-fix", duration_ms=9000, workflow="repo-fix",
            actor="cron", run_id="run-a", session_id="s-1",
            attributes={"outcome.passed": False, "outcome.reason": "the fix does not build"}),
        rec("plan", "root", trace_id=t, agent="planner", event_type="PLAN", start=0.1, duration_ms=500,
            attributes={"plan.steps": ["retrieve", "patch", "verify"]},
            token_cost={"prompt_tokens": 300, "completion_tokens": 40, "cost_usd": 0.001}),
        rec("retrieve", "root", trace_id=t, agent="researcher", event_type="RETRIEVAL", start=0.7, duration_ms=800,
            attributes={"retrieval.query": "s3 backfill retries", "retrieval.doc_count": 0}),
        rec("llm", "root", trace_id=t, agent="coder", event_type="LLM_CALL", name="llm:gemini", start=1.6,
            duration_ms=3000, attributes={"route.model": "gemini-2.5-flash", "token.budget": 2000},
            token_cost={"prompt_tokens": 900, "completion_tokens": 120, "cost_usd": 0.004}),
        rec("patch", "llm", trace_id=t, agent="coder", event_type="TOOL_CALL", start=4.7, duration_ms=600,
            attributes={"tool.name": "apply", "tool.exit_code": 0, "tool.result_size": 120}),
        rec("verify", "root", trace_id=t, agent="verifier", event_type="VERIFY", start=5.5, duration_ms=2000,
            attributes={"verifier.passed": False, "verifier.reason": "tests still fail"}),
    ]


def _run_b() -> list[dict[str, Any]]:
    """A run whose test tool failed and nothing retried it."""
    t = B
    return [
        rec("root", None, trace_id=t, agent="orchestrator", name="repo-fix", start=100, duration_ms=4000,
            workflow="repo-fix", actor="ci", run_id="run-b", status="error",
            error={"type": "RuntimeError", "message": "run failed"}),
        rec("tests", "root", trace_id=t, agent="tester", event_type="TOOL_CALL", name="tool:pytest", start=100.5,
            duration_ms=2500, status="error", error={"type": "ToolError", "message": "exit code 2 after 31 tests"},
            attributes={"tool.name": "pytest", "tool.exit_code": 2, "tool.timeout_class": "none"}),
        rec("report", "root", trace_id=t, agent="writer", start=103.1, duration_ms=700),
    ]


def _run_c() -> list[dict[str, Any]]:
    """A healthy run (turn 1 of session s-1)."""
    t = C
    return [
        rec("root", None, trace_id=t, agent="orchestrator", name="repo-fix", start=-50, duration_ms=3000,
            workflow="repo-fix", actor="cron", run_id="run-c", session_id="s-1",
            attributes={"outcome.passed": True}),
        rec("plan", "root", trace_id=t, agent="planner", event_type="PLAN", start=-49.9, duration_ms=400),
        rec("send", "root", trace_id=t, agent="planner", event_type="SEND", name="send:coder", start=-49.4,
            duration_ms=10, attributes={"message.to": "coder"}),
        rec("recv", "send", trace_id=t, agent="coder", event_type="RECEIVE", name="receive:planner", start=-49.3,
            duration_ms=1500, attributes={"message.from": "planner"}),
        rec("fold1", "recv", trace_id=t, agent="coder", event_type="TOOL_CALL", name="tool:grep", start=-49.2,
            duration_ms=100),
        rec("fold2", "recv", trace_id=t, agent="coder", event_type="TOOL_CALL", name="tool:grep", start=-49.0,
            duration_ms=100),
        rec("fold3", "recv", trace_id=t, agent="coder", event_type="TOOL_CALL", name="tool:grep", start=-48.8,
            duration_ms=100),
        rec("orphan", "gone", trace_id=t, agent="coder", start=-48.0, duration_ms=50),
    ]


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """Paths in the output are relative to here (an absolute temporary path would change how lines wrap)."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The runs as files (runs/) and in a store (traces.db); a rejected line beside them. Tests run in its
    folder."""
    d = tmp_path_factory.mktemp("golden")
    with _cwd(d):
        files = Path("runs")
        files.mkdir()
        write_jsonl(files / "a.jsonl", _run_a())
        write_jsonl(files / "b.jsonl", _run_b())
        path_c = write_jsonl(files / "c.jsonl", _run_c())
        with open(path_c, "ab") as fh:
            fh.write(b'{"trace_id": "x", "span_id": 5}\n')  # rejected: span_id is not a string
        ingested = ingest([files], Path("traces.db"))
        yield {"dir": d, "files": files, "db": Path("traces.db"), "ingested": ingested,
               "inputs": Inputs(Path("traces.db"))}


def _text(render: Callable[[Console], None]) -> str:
    buf = io.StringIO()
    out = Console(file=buf, width=WIDTH, color_system=None, force_terminal=False, no_color=True, legacy_windows=False)
    render(out)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _in_world(world: dict[str, Any]) -> Iterator[None]:
    with _cwd(world["dir"]):
        yield


def test_validate_and_ingest(world: dict[str, Any], golden: Any) -> None:
    result = validate_paths([world["files"]])
    golden("validate", _text(lambda out: views.render_validation(out, out, result)))
    ingested = world["ingested"]
    golden("ingest", re.sub(r"\d+\.\d\ds\n", "<seconds>s\n", _text(lambda out: views.render_ingest(out, ingested))))


def test_traces_tree_and_critical_path(world: dict[str, Any], golden: Any) -> None:
    src = world["inputs"]
    golden("traces", _text(lambda out: views.render_runs(out, list_runs(src))))
    golden("traces-failed", _text(lambda out: views.render_runs(out, list_runs(src, TraceFilter(failed=True)))))
    golden("tree", _text(lambda out: views.render_tree(out, tree_of(src, A))))
    golden("tree-folded-orphan", _text(lambda out: views.render_tree(out, tree_of(src, C))))
    golden("tree-errors", _text(lambda out: views.render_tree(out, tree_of(src, B, errors_only=True))))
    golden("critical-path", _text(lambda out: views.render_critical_path(out, critical_path_of(src, A))))


def test_bucket_why_session_patterns(world: dict[str, Any], golden: Any) -> None:
    src = world["inputs"]
    golden("bucket", _text(lambda out: views.render_buckets(out, bucket_of(src))))
    golden("bucket-suspects", _text(lambda out: views.render_buckets(out, bucket_of(src, suspects=True),
                                                                        runs_shown=0)))
    golden("why-failed", _text(lambda out: views.render_why(out, why_of(src, A))))
    golden("why-tool", _text(lambda out: views.render_why(out, why_of(src, B))))
    golden("why-passed", _text(lambda out: views.render_why(out, why_of(src, C))))
    judged = why_of(src, B, judge=lambda ts, failed: {
        "model": "gemini-test", "status": "answered", "agent": "tester", "step": 2, "span_id": "tests",
        "confidence": 4, "reason": "pytest exited 2 and nothing retried it", "cached": True})
    golden("why-judge", _text(lambda out: views.render_why(out, judged)))
    golden("session", _text(lambda out: views.render_session(out, session_of(src, "s-1"))))
    golden("patterns", _text(lambda out: views.render_patterns(out, patterns_of(src, min_runs=1))))


def test_mark_packet_and_replay(world: dict[str, Any], tmp_path: Path, golden: Any) -> None:
    shutil.copy(world["dir"] / world["db"], tmp_path / "traces.db")
    with _cwd(tmp_path):
        db = Path("traces.db")
        golden("mark", _text(lambda out: views.render_mark(out, mark(db, [A[:6], B], False, "wrong fix"))))
        golden("mark-clear", _text(lambda out: views.render_mark(out, mark(db, [A], None))))
        info = write_packet_of(Inputs(db), A, output=Path("pk.json"))
        golden("packet", re.sub(r"\(\d+ bytes", "(<n> bytes", _text(lambda out: views.render_packet(out, info))))
    with _cwd(ROOT):
        golden("replay", _text(lambda out: views.render_replay(
            out, replay_of(Path("packets/demo/retrieval_miss.json")).results[0])))
        checked = replay_of(Path("packets/demo"), check=True)

    def brief(out: Console) -> None:
        for r in checked.results:
            views.render_replay(out, r, brief=True)

    golden("replay-check", re.sub(r"\(\d+ ms\)", "(<t> ms)", _text(brief)))


def test_demo_eval_calibration_and_dataset(world: dict[str, Any], tmp_path: Path, golden: Any) -> None:
    labels = [RunLabel("t" * 32, "healthy", True, None, None), RunLabel("u" * 32, "retrieval_miss", False,
                                                                    "retrieval_miss", "s1")]
    result = DemoResult("/demo", "/demo/traces", "/demo/packets", "/demo/labels.json", labels,
                        ["/demo/traces/a.jsonl.gz"], {"written": 40, "dropped": 0, "redacted": 2,
                                                      "files_compressed": 1})
    golden("demo", _text(lambda out: render_demo(out, DemoReport(result, "/demo/store.db", world["ingested"]))))
    from agent_debug.analysis.source import FileSource

    with _cwd(ROOT):
        cases = load_case_files([Path("fixtures/eval_cases.toml")])
        for name in ("healthy", "faulty"):
            res = evaluate(cases, lambda n=name: FileSource([Path(f"fixtures/{n}_trace.jsonl")]))
            golden(f"eval-{name}", _text(lambda out, r=res: render_eval(out, r, None)))
    score = {"model": "gemini-test", "prompt_version": PROMPT_VERSION}
    items = [CalibrationItem(line=1, human_pass=True, judge_pass=True, score=JudgeScore(
                 status="scored", score=4, rationale="right", breakdown={"accuracy": 4, "completeness": 4,
                                                                         "coherence": 4}, **score)),
             CalibrationItem(line=2, human_pass=False, judge_pass=True, score=JudgeScore(
                 status="scored", score=3, rationale="looks plausible", breakdown={"accuracy": 3, "completeness": 3,
                                                                                   "coherence": 3}, **score)),
             CalibrationItem(line=3, human_pass=False, judge_pass=None, score=JudgeScore(
                 status="unscored", error="no reply", **score))]
    golden("calibration", _text(lambda out: render_calibration(out, summarize(items, model="gemini-test",
                                                                              threshold=3))))
    with _cwd(tmp_path):
        added = add_regression(FileSource([world["dir"] / world["files"]]), B, name="tool-fails", label="fail",
                               dataset=Path("regressions.toml"), packet=False)
        golden("dataset-add", _text(lambda out: render_dataset_added(out, added, "fail", None)))


def test_the_help_page(golden: Any) -> None:
    from agent_debug.cli.main import root_command

    command = root_command()
    with command.make_context("agent-debug", ["--help"], resilient_parsing=True) as ctx:
        formatter = ctx.make_formatter()
        formatter.width = WIDTH
        command.format_help(ctx, formatter)
    golden("help", formatter.getvalue())


def test_a_changed_renderer_fails_its_golden(world: dict[str, Any], golden: Any,
                                             request: pytest.FixtureRequest) -> None:
    """The comparison is exact: one character more is a failure naming the file and the flag."""
    if request.config.getoption("--update-golden") or os.environ.get("AGENT_DEBUG_UPDATE_GOLDEN") == "1":
        pytest.skip("the golden files are being written")
    text = _text(lambda out: views.render_runs(out, list_runs(world["inputs"])))
    golden("traces", text)
    with pytest.raises(AssertionError, match=r"traces.txt differs \(run pytest --update-golden"):
        golden("traces", text + " ")
