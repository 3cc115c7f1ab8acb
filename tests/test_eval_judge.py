"""`agent-debug eval --judge` and `agent-debug eval calibrate` through the real CLI and the real google-genai
client, against the local Gemini server (tests/gemini_server.py): the CLI is pointed at it with
AGENT_DEBUG_JUDGE_BASE_URL and a dummy GEMINI_API_KEY."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import ROOT, run_cli
from gemini_server import Behaviour, GeminiServer, body_text, judge_reply, ok, running_gemini_server, status

FIXTURES = ROOT / "fixtures"
CASES = FIXTURES / "eval_cases.toml"
FAULTY = FIXTURES / "faulty_trace.jsonl"
HEALTHY = FIXTURES / "healthy_trace.jsonl"


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_cli copies os.environ: make sure no real key or endpoint reaches the subprocess."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
                 "AGENT_DEBUG_JUDGE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[GeminiServer]:
    with running_gemini_server() as s:
        yield s


def judged(tmp_path: Path, server: GeminiServer, *args: str, key: str = "test") -> Any:
    env = {"AGENT_DEBUG_HOME": str(tmp_path / "home"), "GEMINI_API_KEY": key,
           "AGENT_DEBUG_JUDGE_BASE_URL": server.base_url}
    return run_cli(*args, cwd=tmp_path, env=env)


def trace_id(path: Path) -> str:
    return orjson.loads(path.read_bytes().split(b"\n", 1)[0])["trace_id"]


def runs_by_id(stdout: str) -> dict[str, dict[str, Any]]:
    return {run["trace_id"]: run for case in json.loads(stdout)["cases"] for run in case["runs"]}


def with_output(src: Path, dst: Path, output: str, new_id: str) -> Path:
    """A copy of a fixture run under another trace id, with another final output."""
    lines = []
    for line in src.read_bytes().splitlines():
        rec = orjson.loads(line)
        rec["trace_id"] = new_id
        if rec["parent_id"] is None:
            rec["payload"]["output"] = output
        lines.append(orjson.dumps(rec))
    dst.write_bytes(b"\n".join(lines) + b"\n")
    return dst


def test_judge_scores_both_fixture_runs_then_serves_the_repeat_from_the_cache(tmp_path: Path,
                                                                             server: GeminiServer) -> None:
    server.default = ok(judge_reply(4, rationale="cites the sources"))
    args = ("eval", str(CASES), "--judge", "--from", str(FAULTY), "--from", str(HEALTHY), "--json")
    r = judged(tmp_path, server, *args)
    assert r.returncode == 1, r.stdout + r.stderr  # the faulty run still fails its topology
    runs = runs_by_id(r.stdout)
    for tid in (trace_id(FAULTY), trace_id(HEALTHY)):
        c = runs[tid]["checks"]["correctness"]
        assert (c["status"], c["method"], c["judge"]["status"], c["judge"]["score"]) == (
            "pass", "regex+judge", "scored", 4)
        assert c["judge"]["cached"] is False
    # both runs gave the same output to the same task: one question, asked once
    assert len(server.requests) == 1
    prompt = server.requests[0].prompt_text()
    assert "Fix the flaky S3 backfill job and explain the root cause" in prompt  # the case's task
    assert "Root cause and fix per docs/backfill.md" in prompt  # the run's output
    assert "the s3 runbook" in prompt  # the case's expected answer
    assert json.loads(r.stdout)["judge"]["model"] == "gemini-2.5-flash"

    again = judged(tmp_path, server, *args)
    assert again.returncode == 1
    assert len(server.requests) == 1  # nothing new: served from the cache
    for run in runs_by_id(again.stdout).values():
        assert run["checks"]["correctness"]["judge"]["cached"] is True


def test_a_judge_fail_fails_correctness(tmp_path: Path, server: GeminiServer) -> None:
    other = with_output(HEALTHY, tmp_path / "other.jsonl",
                        "Fixed: nothing. Root cause and fix per docs/unrelated.md.", "other-run")

    def by_output(body: Any) -> Behaviour:
        text = body_text(body)
        return ok(judge_reply(2, rationale="wrong fix")) if "unrelated" in text else ok(judge_reply(5))

    server.responder = by_output
    r = judged(tmp_path, server, "eval", str(CASES), "--judge", "--from", str(HEALTHY), "--from", str(other),
               "--json")
    assert r.returncode == 1
    runs = runs_by_id(r.stdout)
    assert runs[trace_id(HEALTHY)]["passed"] is True
    assert runs["other-run"]["reasons"] == ["correctness: judge scored 2/5: wrong fix"]
    assert len(server.requests) == 2


def test_429_is_retried(tmp_path: Path, server: GeminiServer) -> None:
    server.push(status(429, "slow down"), ok(judge_reply(5)))
    r = judged(tmp_path, server, "eval", str(CASES), "--judge", "--from", str(HEALTHY), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    judge = runs_by_id(r.stdout)[trace_id(HEALTHY)]["checks"]["correctness"]["judge"]
    assert (judge["status"], judge["score"], judge["attempts"]) == ("scored", 5, 2)
    assert len(server.requests) == 2


def test_unparseable_reply_is_unscored_not_failed(tmp_path: Path, server: GeminiServer) -> None:
    server.push(ok("I think it is fine."))
    r = judged(tmp_path, server, "eval", str(CASES), "--judge", "--from", str(HEALTHY), "--json", "--junit", "j.xml")
    assert r.returncode == 3, r.stdout + r.stderr  # nothing could be scored: not a pass, not a fail
    case = json.loads(r.stdout)["cases"][0]
    [run] = case["runs"]
    assert (run["verdict"], run["passed"], run["checks"]["correctness"]["status"]) == ("unscored", False, "unscored")
    assert run["checks"]["correctness"]["judge"]["error"].startswith("reply is not JSON")
    assert (case["status"], case["runs_unscored"], case["pass_rate"]) == ("unscored", 1, None)
    assert r.stderr == "Error: case 'repo-fix-agent' could not be evaluated: none of its 1 runs could be scored\n"
    assert ET.parse(tmp_path / "j.xml").getroot().get("skipped") == "1"
    # unscored results are not cached: the next eval asks again
    again = judged(tmp_path, server, "eval", str(CASES), "--judge", "--from", str(HEALTHY), "--json")
    assert again.returncode == 0 and len(server.requests) == 2


def test_case_with_judge_true_is_judged_without_the_flag(tmp_path: Path, server: GeminiServer) -> None:
    (tmp_path / "c.toml").write_text('[[case]]\nname = "judged"\nworkflow = "repo-fix-agent"\njudge = true\n')
    r = judged(tmp_path, server, "eval", "c.toml", "--from", str(HEALTHY), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    c = runs_by_id(r.stdout)[trace_id(HEALTHY)]["checks"]["correctness"]
    assert (c["method"], c["status"]) == ("judge", "pass")
    assert "fix flaky S3 backfill job" in server.requests[0].prompt_text()  # the run's task.summary


def test_no_key_or_a_refused_key_cannot_run(tmp_path: Path, server: GeminiServer) -> None:
    r = judged(tmp_path, server, "eval", str(CASES), "--judge", "--from", str(HEALTHY), key="")
    assert (r.returncode, r.stderr) == (3, "Error: the Gemini judge needs an API key: set GEMINI_API_KEY or "
                                           "GOOGLE_API_KEY\n")
    assert server.requests == []
    server.default = status(401, "API key not valid")
    r = judged(tmp_path, server, "eval", str(CASES), "--judge", "--from", str(HEALTHY))
    assert r.returncode == 3 and r.stderr.startswith("Error: the Gemini judge (gemini-2.5-flash) was refused: http 401")


# --- eval calibrate ------------------------------------------------------------------------------------------


def labels_file(path: Path) -> Path:
    rows = [
        {"task": "capital of France?", "actual": "Paris", "label": "pass"},
        {"task": "capital of Spain?", "actual": "Madrid", "label": "pass"},
        {"task": "capital of Italy?", "actual": "Milan", "label": "fail"},
        {"task": "capital of Japan?", "actual": "Osaka", "label": "fail"},
        {"task": "capital of Peru?", "actual": "Lima", "human_score": 2},  # the judge will disagree
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def grade_capitals(body: Any) -> Behaviour:
    text = body_text(body)
    right = any(city in text for city in ("Paris", "Madrid", "Lima"))
    return ok(judge_reply(5 if right else 1, rationale="right" if right else "wrong city"))


def test_calibrate_reports_agreement_kappa_and_confusion(tmp_path: Path, server: GeminiServer) -> None:
    server.responder = grade_capitals
    labels = labels_file(tmp_path / "labels.jsonl")
    r = judged(tmp_path, server, "eval", "calibrate", str(labels), "--json", "--model", "gemini-test")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert (out["model"], out["n"], out["scored"], out["unscored"]) == ("gemini-test", 5, 5, 0)
    assert out["confusion"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 0}
    assert out["agreement"] == pytest.approx(0.8)
    # p_o = 0.8, p_e = (2*3 + 3*2) / 25 = 0.48 -> kappa = 0.32 / 0.52
    assert out["kappa"] == pytest.approx(0.32 / 0.52)
    assert (out["tpr"], out["tnr"]) == (1.0, pytest.approx(2 / 3))
    assert {r.model for r in server.requests} == {"gemini-test"}

    text = judged(tmp_path, server, "eval", "calibrate", str(labels), "--model", "gemini-test")
    assert text.returncode == 0
    assert "agreement 0.800  Cohen's kappa 0.615  TPR 1.000  TNR 0.667" in text.stdout
    assert "line 5: human fail, judge 5/5: right" in text.stdout


def test_calibrate_bad_labels_is_a_usage_error_and_needs_no_key(tmp_path: Path, server: GeminiServer) -> None:
    (tmp_path / "bad.jsonl").write_text('{"task": "t", "actual": "a"}\n')
    r = judged(tmp_path, server, "eval", "calibrate", "bad.jsonl", key="")
    assert (r.returncode, r.stderr) == (2, "Error: bad.jsonl:1: needs 'label' (pass/fail) or 'human_score' (1-5)\n")
    r = judged(tmp_path, server, "eval", "calibrate", str(labels_file(tmp_path / "l.jsonl")), key="")
    assert r.returncode == 3 and "needs an API key" in r.stderr


def test_calibrate_with_nothing_scored_exits_3(tmp_path: Path, server: GeminiServer) -> None:
    server.default = ok("no json here")
    r = judged(tmp_path, server, "eval", "calibrate", str(labels_file(tmp_path / "l.jsonl")), "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["unscored"] == 5
    assert r.stderr == "Error: none of the 5 labelled cases could be scored by the judge\n"
