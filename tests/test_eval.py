"""The evaluation harness: case files, every check, exit codes, JUnit, the fixtures, multi-run pass rates."""

from __future__ import annotations

import json
import textwrap
import tomllib
import xml.etree.ElementTree as ET
from math import comb
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.analysis.source import FileSource
from agent_debug.errors import CaseFileError, CouldNotRun
from agent_debug.eval.cases import CaseFile, load_case_file, parse_case_data
from agent_debug.eval.harness import EvalResult, evaluate, validate_schema
from agent_debug.eval.judge import JudgeScore
from agent_debug.eval.junit import to_junit
from agent_debug.eval.multirun import pass_at_k, pass_pow_k, seeded_input
from conftest import ROOT, rec, run_cli, write_jsonl

FIXTURES = ROOT / "fixtures"
CASES = FIXTURES / "eval_cases.toml"
FAULTY = FIXTURES / "faulty_trace.jsonl"
HEALTHY = FIXTURES / "healthy_trace.jsonl"


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """The real command, in tmp_path, with its own AGENT_DEBUG_HOME and no judge key."""
    full = {"AGENT_DEBUG_HOME": str(tmp_path / "home"), "GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""}
    full.update(env or {})
    return run_cli(*args, cwd=tmp_path, env=full)


def run_records(trace_id: str = "t1", *, output: Any = "Answer: 42 per docs/a.md", doc_count: int = 3,
                result_size: int = 10, tokens: tuple[int, int] = (100, 20), duration_ms: float = 100.0,
                verifier: bool = True, root_error: bool = False) -> list[dict[str, Any]]:
    """A small run: orchestrator -> researcher (SEND/RECEIVE, retrieval, LLM) [-> verifier (tool)]."""
    root_extra: dict[str, Any] = {"workflow": "wf", "payload": {"input": {"q": "x", "seed": 1}, "output": output},
                                  "attributes": {"task.summary": "answer the question"}}
    if root_error:
        root_extra.update(status="error", error={"type": "ToolError", "message": "pytest exited 2"})
    recs = [
        rec("root", None, trace_id=trace_id, agent="orchestrator", duration_ms=duration_ms, **root_extra),
        rec("s1", "root", trace_id=trace_id, agent="orchestrator", event_type="SEND", start=0.001),
        rec("r1", "s1", trace_id=trace_id, agent="researcher", event_type="RECEIVE", start=0.002),
        rec("ret", "r1", trace_id=trace_id, agent="researcher", event_type="RETRIEVAL", start=0.003,
            attributes={"retrieval.doc_count": doc_count, "tool.result_size": 50}),
        rec("llm", "r1", trace_id=trace_id, agent="researcher", event_type="LLM_CALL", start=0.004,
            token_cost={"prompt_tokens": tokens[0], "completion_tokens": tokens[1]}),
    ]
    if verifier:
        recs += [
            rec("s2", "root", trace_id=trace_id, agent="orchestrator", event_type="SEND", start=0.01),
            rec("r2", "s2", trace_id=trace_id, agent="verifier", event_type="RECEIVE", start=0.011),
            rec("chk", "r2", trace_id=trace_id, agent="verifier", event_type="TOOL_CALL", start=0.012,
                attributes={"tool.result_size": result_size}),
        ]
    return recs


def evaluate_toml(tmp_path: Path, case_toml: str, records: list[dict[str, Any]], **kwargs: Any) -> EvalResult:
    path = write_jsonl(tmp_path / "runs.jsonl", records)
    files = [parse_case_data(tomllib.loads(textwrap.dedent(case_toml)), tmp_path / "cases.toml")]
    return evaluate(files, lambda: FileSource([path]), **kwargs)


BASE = """
[[case]]
name = "c"
workflow = "wf"
"""


def checks_of(result: EvalResult, run: int = 0) -> dict[str, Any]:
    return result.cases[0].runs[run].checks.model_dump()


# --- case files: errors name the file, the case and the field (real CLI, exit 2) ----------------------------


@pytest.mark.parametrize(("body", "message"), [
    ('[[case]]\nname = "a"\nworkflow = "w"\nexpected_output_pattern = "(unclosed"\n',
     "cases.toml: case 'a' (#1): field 'expected_output_pattern': not a valid regular expression: "
     "missing ), unterminated subpattern at position 0"),
    ('[[case]]\nname = "a"\nworkflow = "w"\nmax_tokens = "lots"\n',
     "cases.toml: case 'a' (#1): field 'max_tokens': Input should be a valid integer, unable to parse string "
     "as an integer (got 'lots')"),
    ('[[case]]\nname = "a"\nworkflow = "w"\n\n[[case]]\nname = "b"\nworkflow = "w"\nexpected_topolgy = []\n',
     "cases.toml: case 'b' (#2): unknown field 'expected_topolgy'"),
    ('[[case]]\nname = "a"\nworkflow = "w"\nexpected_topology = ["a-b"]\n',
     "cases.toml: case 'a' (#1): field 'expected_topology': edge 'a-b' must look like 'agent_a->agent_b' "
     "with two different agents"),
    ('[[case]]\nname = "a"\n', "cases.toml: case 'a' (#1): needs 'workflow' (its runs), 'trace_id' (one run) "
     "or 'entrypoint' (to run it)"),
    ('[[case]]\nworkflow = "w"\n', "cases.toml: case #1: field 'name' is required"),
    ('[[case]\nname = "a"\n', "cases.toml: not valid TOML: Expected ']]' at the end of an array declaration "
     "(at line 1, column 7)"),
    ('[[case]]\nname = "a"\nworkflow = "w"\n[case.output_schema]\ntype = "object"\npattern = "x"\n',
     "cases.toml: case 'a' (#1): field 'output_schema': unsupported keyword 'pattern' "
     "(supported: enum, items, properties, required, type)"),
    ('[[case]]\nname = "a"\nworkflow = "w"\nentrypoint = "not a path"\n',
     "cases.toml: case 'a' (#1): field 'entrypoint': must look like 'package.module:function', not 'not a path'"),
    ('[[case]]\nname = "a"\nworkflow = "w"\n[[case]]\nname = "a"\nworkflow = "v"\n',
     "cases.toml: case 'a' (#2): name already used by case #1"),
    ('[case]\nname = "a"\n', "cases.toml: 'case' must be an array of tables: write [[case]], not [case]"),
    ('cases = 1\n', "cases.toml: unknown top-level key 'cases' (expected 'version' and [[case]] tables)"),
])
def test_bad_case_file_is_a_usage_error_naming_file_case_and_field(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "cases.toml").write_text(body)
    r = cli(tmp_path, "eval", "cases.toml", "--from", str(HEALTHY))
    assert (r.returncode, r.stderr, r.stdout) == (2, f"Error: {message}\n", "")


def test_missing_case_file_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    r = cli(tmp_path, "eval", "nope.toml")
    assert (r.returncode, r.stderr) == (2, "Error: case file not found: nope.toml\n")
    r = cli(tmp_path, "eval", str(CASES), "--runs", "2", "--k", "3")
    assert (r.returncode, r.stderr) == (2, "Error: --k 3 is more than --runs 2\n")
    r = cli(tmp_path, "eval", str(CASES), "--min-pass-rate", "1.5")
    assert r.returncode == 2 and "--min-pass-rate" in r.stderr and "Traceback" not in r.stderr


def test_case_defaults_and_library_error() -> None:
    case = parse_case_data({"case": [{"name": "a", "workflow": "w"}]}, Path("x.toml")).cases[0]
    assert (case.judge, case.max_tokens, case.max_latency_ms, case.expected_topology) == (False, 50000, 30000, [])
    with pytest.raises(CaseFileError, match=r"^x.toml: case 'a' \(#1\): field 'judge'"):
        parse_case_data({"case": [{"name": "a", "workflow": "w", "judge": "maybe"}]}, Path("x.toml"))


# --- each check: pass, fail, skipped (unscored below) ---------------------------------------------------------


def test_correctness_regex_pass_fail_and_skipped(tmp_path: Path) -> None:
    res = evaluate_toml(tmp_path, BASE + 'expected_output_pattern = "Answer: \\\\d+"', run_records())
    assert checks_of(res)["correctness"]["status"] == "pass"
    res = evaluate_toml(tmp_path, BASE + 'expected_output_pattern = "^Nope"', run_records())
    c = checks_of(res)["correctness"]
    assert (c["status"], c["reason"]) == ("fail", "output does not match /^Nope/")
    assert res.cases[0].runs[0].reasons == ["correctness: output does not match /^Nope/"]
    res = evaluate_toml(tmp_path, BASE, run_records())
    assert checks_of(res)["correctness"]["status"] == "skipped"
    assert res.cases[0].status == "pass"  # skipped is not a failure


def test_correctness_stringifies_json_output_and_fails_without_output(tmp_path: Path) -> None:
    res = evaluate_toml(tmp_path, BASE + """expected_output_pattern = '"answer": 42'""",
                        run_records(output={"answer": 42}))
    assert checks_of(res)["correctness"]["status"] == "pass"
    res = evaluate_toml(tmp_path, BASE + 'expected_output_pattern = "."', run_records(output=None))
    assert checks_of(res)["correctness"]["reason"] == "the run recorded no final output (root payload.output)"


def test_forbidden_pattern_fails_a_known_bad_answer(tmp_path: Path) -> None:
    res = evaluate_toml(tmp_path, BASE + 'forbidden_output_pattern = "42"', run_records())
    assert checks_of(res)["correctness"]["status"] == "fail"
    res = evaluate_toml(tmp_path, BASE + 'forbidden_output_pattern = "43"', run_records())
    assert checks_of(res)["correctness"]["status"] == "pass"


def test_efficiency_reports_both_values(tmp_path: Path) -> None:
    res = evaluate_toml(tmp_path, BASE + "max_tokens = 120\nmax_latency_ms = 100", run_records(tokens=(100, 20)))
    e = checks_of(res)["efficiency"]
    assert e == {"status": "pass", "reason": None, "tokens": 120, "max_tokens": 120, "latency_ms": 100.0,
                 "max_latency_ms": 100.0}
    res = evaluate_toml(tmp_path, BASE + "max_tokens = 119\nmax_latency_ms = 50", run_records(tokens=(100, 20)))
    e = checks_of(res)["efficiency"]
    assert (e["status"], e["reason"]) == ("fail", "120 tokens > 119; 100 ms > 50 ms")


def test_topology_counts_send_receive_edges_and_names_missing_ones(tmp_path: Path) -> None:
    case = BASE + 'expected_topology = ["orchestrator->researcher", "orchestrator->verifier"]'
    res = evaluate_toml(tmp_path, case, run_records())
    t = checks_of(res)["topology"]
    assert (t["status"], t["missing_edges"]) == ("pass", [])
    assert t["edges"] == ["orchestrator->researcher", "orchestrator->verifier"]
    res = evaluate_toml(tmp_path, case, run_records(verifier=False))
    t = checks_of(res)["topology"]
    assert (t["status"], t["missing_edges"], t["reason"]) == (
        "fail", ["orchestrator->verifier"], "missing edges orchestrator->verifier")
    assert evaluate_toml(tmp_path, BASE, run_records()).cases[0].runs[0].checks.topology.status == "skipped"


def test_nonempty_tools(tmp_path: Path) -> None:
    case = BASE + "require_nonempty_tools = true"
    res = evaluate_toml(tmp_path, case, run_records())
    assert (checks_of(res)["nonempty_tools"]["status"], checks_of(res)["nonempty_tools"]["checked"]) == ("pass", 2)
    # doc_count wins over result_size on a retrieval: 0 documents is a silent miss even with bytes returned
    n = checks_of(evaluate_toml(tmp_path, case, run_records(doc_count=0)))["nonempty_tools"]
    assert n["status"] == "fail" and [s["span_id"] for s in n["empty_spans"]] == ["ret"]
    assert n["reason"] == "empty result from researcher ret (retrieval.doc_count=0)"
    n = checks_of(evaluate_toml(tmp_path, case, run_records(result_size=0)))["nonempty_tools"]
    assert n["status"] == "fail" and n["empty_spans"][0]["attribute"] == "tool.result_size"
    assert checks_of(evaluate_toml(tmp_path, BASE, run_records()))["nonempty_tools"]["status"] == "skipped"


def test_output_schema(tmp_path: Path) -> None:
    schema = BASE + textwrap.dedent("""
        [case.output_schema]
        type = "object"
        required = ["answer", "sources"]
        [case.output_schema.properties.answer]
        type = "integer"
        [case.output_schema.properties.sources]
        type = "array"
        items = {type = "string"}
    """)
    good = {"answer": 42, "sources": ["a.md"]}
    assert checks_of(evaluate_toml(tmp_path, schema, run_records(output=good)))["output_schema"]["status"] == "pass"
    # a JSON string output is parsed before validation
    as_text = run_records(output=json.dumps(good))
    assert checks_of(evaluate_toml(tmp_path, schema, as_text))["output_schema"]["status"] == "pass"
    bad = checks_of(evaluate_toml(tmp_path, schema, run_records(output={"answer": "42", "sources": [1]})))
    assert bad["output_schema"]["errors"] == ["$.answer: expected integer, got string",
                                              "$.sources[0]: expected string, got integer"]
    missing = checks_of(evaluate_toml(tmp_path, schema, run_records(output={"answer": 1})))
    assert missing["output_schema"]["errors"] == ["$: missing required property 'sources'"]
    text = checks_of(evaluate_toml(tmp_path, schema, run_records(output="plain words")))["output_schema"]
    assert (text["status"], text["reason"]) == ("fail", "the output is not JSON")
    assert checks_of(evaluate_toml(tmp_path, BASE, run_records()))["output_schema"]["status"] == "skipped"


def test_validate_schema_subset() -> None:
    assert validate_schema(True, {"type": "integer"}) == ["$: expected integer, got boolean"]
    assert validate_schema(3.0, {"type": "integer"}) == []
    assert validate_schema(None, {"type": ["string", "null"]}) == []
    assert validate_schema("c", {"enum": ["a", "b"]}) == ["$: 'c' is not one of ['a', 'b']"]


def test_errored_run_fails_whatever_its_checks_say(tmp_path: Path) -> None:
    res = evaluate_toml(tmp_path, BASE, run_records(root_error=True))
    run = res.cases[0].runs[0]
    assert (run.verdict, run.error, run.reasons) == ("fail", "ToolError: pytest exited 2",
                                                    ["error: ToolError: pytest exited 2"])


def test_run_result_has_hotspots_and_critical_path(tmp_path: Path) -> None:
    run = evaluate_toml(tmp_path, BASE, run_records()).cases[0].runs[0]
    assert run.critical_path and run.critical_path[0]["agent_name"] == "orchestrator"
    assert {h["agent_name"] for h in run.hotspots} == {"orchestrator", "researcher", "verifier"}


# --- unscored: a judge reply that cannot be parsed -----------------------------------------------------------


class FakeJudge:
    """Stands in for GeminiJudge in harness-only tests (the real client is tested in test_eval_judge.py)."""

    model = "fake-judge"

    def __init__(self, scores: dict[str, int | None]) -> None:
        self.scores = scores  # output substring -> score (None: unparseable)
        self.asked: list[str] = []

    async def score(self, task: str, expected: str | None, actual: str, *, repeat: int = 0) -> JudgeScore:
        self.asked.append(actual)
        value = next(v for k, v in self.scores.items() if k in actual)
        if value is None:
            return JudgeScore(status="unscored", error="reply is not JSON", model=self.model, prompt_version="p")
        return JudgeScore(status="scored", score=value, rationale=f"scored {value}", model=self.model,
                          prompt_version="p", breakdown={"accuracy": value, "completeness": value, "coherence": value})

    async def aclose(self) -> None:
        pass


def test_judge_unscored_is_neither_pass_nor_fail(tmp_path: Path) -> None:
    records = run_records("good", output="good answer") + run_records("bad", output="bad answer") + run_records(
        "garbled", output="garbled answer")
    judge = FakeJudge({"good": 5, "bad": 1, "garbled": None})
    res = evaluate_toml(tmp_path, BASE + "judge = true", records, judge=judge)  # type: ignore[arg-type]
    case = res.cases[0]
    by_id = {r.trace_id: r for r in case.runs}
    assert {t: r.checks.correctness.status for t, r in by_id.items()} == {
        "good": "pass", "bad": "fail", "garbled": "unscored"}
    assert by_id["garbled"].verdict == "unscored" and not by_id["garbled"].passed
    assert by_id["bad"].reasons == ["correctness: judge scored 1/5: scored 1"]
    assert (case.runs_scored, case.runs_passed, case.runs_unscored, case.pass_rate) == (2, 1, 1, 0.5)
    assert res.judge == {"model": "fake-judge", "prompt_version": res.judge["prompt_version"]}


def test_only_unscored_runs_cannot_pass(tmp_path: Path) -> None:
    judge = FakeJudge({"Answer": None})
    res = evaluate_toml(tmp_path, BASE + "judge = true", run_records(), judge=judge)  # type: ignore[arg-type]
    assert (res.cases[0].status, res.cases[0].pass_rate, res.passed, res.exit_code) == ("unscored", None, False, 3)


def test_judge_is_not_asked_when_the_pattern_already_failed(tmp_path: Path) -> None:
    judge = FakeJudge({"Answer": 5})
    res = evaluate_toml(tmp_path, BASE + 'judge = true\nexpected_output_pattern = "^Nope"', run_records(),
                        judge=judge)  # type: ignore[arg-type]
    assert judge.asked == [] and checks_of(res)["correctness"]["status"] == "fail"


def test_a_judged_case_without_a_judge_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(CouldNotRun, match="case 'c' needs the Gemini judge"):
        evaluate_toml(tmp_path, BASE + "judge = true", run_records())


# --- gates: pass rate, labels, nothing ran --------------------------------------------------------------------


def test_pass_rate_gate_and_case_min_pass_rate(tmp_path: Path) -> None:
    records = run_records("a") + run_records("b", doc_count=0) + run_records("c") + run_records("d")
    case = BASE + "require_nonempty_tools = true"
    res = evaluate_toml(tmp_path, case, records)
    assert (res.cases[0].pass_rate, res.cases[0].status, res.exit_code) == (0.75, "fail", 1)
    assert res.cases[0].reason == "pass rate 75% is below the gate 100%"
    assert evaluate_toml(tmp_path, case, records, min_pass_rate=0.75).exit_code == 0
    assert evaluate_toml(tmp_path, case + "\nmin_pass_rate = 0.7", records).exit_code == 0
    assert evaluate_toml(tmp_path, case + "\nmin_pass_rate = 0.7", records, min_pass_rate=0.8).exit_code == 1


def test_label_on_a_pinned_recorded_run_means_the_checks_must_agree(tmp_path: Path) -> None:
    pinned = '[[case]]\nname = "c"\ntrace_id = "t1"\nrequire_nonempty_tools = true\nlabel = "{label}"\n'
    bad_run = run_records(doc_count=0)
    agree = evaluate_toml(tmp_path, pinned.format(label="fail"), bad_run)
    assert (agree.cases[0].label_agrees, agree.cases[0].status, agree.exit_code) == (True, "pass", 0)
    disagree = evaluate_toml(tmp_path, pinned.format(label="pass"), bad_run)
    assert (disagree.cases[0].label_agrees, disagree.cases[0].status, disagree.exit_code) == (False, "fail", 1)


def test_nothing_ran_is_never_a_pass(tmp_path: Path) -> None:
    res = evaluate_toml(tmp_path, BASE.replace('"wf"', '"other"'), run_records())
    assert (res.cases[0].status, res.cases[0].reason, res.passed, res.exit_code) == (
        "no_runs", "no recorded runs of workflow 'other'", False, 3)
    with pytest.raises(CouldNotRun, match="no cases to evaluate"):
        evaluate([CaseFile(path=Path("empty.toml"), version=0, cases=[])], lambda: FileSource([]))
    both = BASE + '\n[[case]]\nname = "d"\nworkflow = "other"\n'
    assert evaluate_toml(tmp_path, both, run_records()).exit_code == 3  # one case ran, one could not: not 0
    failing = BASE + 'expected_output_pattern = "^Nope"\n[[case]]\nname = "d"\nworkflow = "other"\n'
    assert evaluate_toml(tmp_path, failing, run_records()).exit_code == 1  # a failed gate is reported first


def test_pinned_trace_not_found_is_no_runs(tmp_path: Path) -> None:
    res = evaluate_toml(tmp_path, '[[case]]\nname = "c"\ntrace_id = "zzz"\n', run_records())
    assert (res.cases[0].status, res.cases[0].reason) == ("no_runs", "its pinned trace zzz is not in the source")


# --- pass@k ----------------------------------------------------------------------------------------------------


def test_pass_at_k_and_pass_pow_k_hand_values() -> None:
    assert pass_at_k(10, 6, 3) == pytest.approx(1 - 4 / 120)  # C(4,3)/C(10,3)
    assert pass_pow_k(10, 6, 3) == pytest.approx(20 / 120)  # C(6,3)/C(10,3)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4) and pass_pow_k(5, 2, 1) == pytest.approx(0.4)
    assert (pass_at_k(4, 0, 2), pass_pow_k(4, 0, 2)) == (0.0, 0.0)
    assert (pass_at_k(4, 4, 4), pass_pow_k(4, 4, 4)) == (1.0, 1.0)
    assert pass_at_k(5, 3, 3) == 1.0  # fewer failures than k: some draw always passes
    assert (pass_at_k(3, 1, 5), pass_pow_k(3, 1, 0), pass_at_k(0, 0, 1)) == (None, None, None)


def test_seeded_input_copies_and_offsets_the_seed() -> None:
    base = {"q": "x", "seed": 40, "nested": {"a": 1}}
    inp, seed = seeded_input(base, 3)
    assert (inp["seed"], seed, base["seed"]) == (43, 43, 40) and inp["nested"] is not base["nested"]
    assert seeded_input({"q": 1}, 2)[1] == 2
    assert seeded_input("text input", 2) == ("text input", None)


# --- the fixtures, JUnit, JSON shape (real CLI) ---------------------------------------------------------------


def _fixture_trace_id(path: Path) -> str:
    return orjson.loads(path.read_bytes().split(b"\n", 1)[0])["trace_id"]


def test_faulty_fixture_is_flagged_with_the_missing_edge(tmp_path: Path) -> None:
    r = cli(tmp_path, "eval", str(CASES), "--from", str(FAULTY))
    assert r.returncode == 1, r.stdout + r.stderr
    tid = _fixture_trace_id(FAULTY)
    assert f"fail {tid}: topology: missing edges orchestrator->verifier" in r.stdout
    assert "FAILED: 1 case, 0 passed, 1 failed" in r.stdout and r.stderr == ""


def test_healthy_fixture_passes(tmp_path: Path) -> None:
    r = cli(tmp_path, "eval", str(CASES), "--from", str(HEALTHY), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["passed"] is True and out["exit_code"] == 0
    [case] = out["cases"]
    [run] = case["runs"]
    assert (case["name"], case["pass_rate"], run["trace_id"], run["passed"]) == (
        "repo-fix-agent", 1.0, _fixture_trace_id(HEALTHY), True)
    assert {k: v["status"] for k, v in run["checks"].items()} == {
        "correctness": "pass", "efficiency": "pass", "topology": "pass", "nonempty_tools": "pass",
        "output_schema": "skipped"}
    assert run["checks"]["topology"]["missing_edges"] == []
    assert run["hotspots"] and run["critical_path"] and run["bottleneck"]


def test_json_has_every_key_and_junit_has_the_failures(tmp_path: Path) -> None:
    r = cli(tmp_path, "eval", str(CASES), "--from", str(FAULTY), "--from", str(HEALTHY), "--json",
            "--junit", "out/report.xml")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert set(out) == {"cases", "passed", "exit_code", "summary", "judge", "notices"}
    case = out["cases"][0]
    assert set(case) >= {"name", "pass_rate", "runs", "pass_at_k", "pass_pow_k", "k", "status", "runs_scored"}
    assert (case["runs_total"], case["runs_passed"], case["pass_rate"], case["k"]) == (2, 1, 0.5, 2)
    assert set(case["runs"][0]) >= {"trace_id", "passed", "checks", "hotspots", "critical_path"}
    assert set(case["runs"][0]["checks"]["topology"]) == {"status", "reason", "missing_edges", "expected_edges",
                                                          "edges"}
    root = ET.parse(tmp_path / "out" / "report.xml").getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "2", "1")
    [suite] = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("repo-fix-agent", "2", "1")
    failures = {tc.get("name"): tc.find("failure") for tc in suite.findall("testcase")}
    assert failures[_fixture_trace_id(HEALTHY)] is None
    failure = failures[_fixture_trace_id(FAULTY)]
    assert failure is not None and failure.get("message") == "topology: missing edges orchestrator->verifier"


def test_junit_stays_valid_xml_whatever_the_trace_holds(tmp_path: Path) -> None:
    """A trace id is data: with characters XML cannot hold, they are written as escapes, not as a broken file."""
    records = [orjson.loads(line) for line in FAULTY.read_bytes().splitlines() if line.strip()]
    hostile = "run\x00\x1b[2J\x07\x0b"
    for r in records:
        r["trace_id"] = hostile
    (tmp_path / "t.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    r = cli(tmp_path, "eval", str(CASES), "--from", "t.jsonl", "--junit", "j.xml")
    assert r.returncode == 1, r.stderr
    [tc] = ET.parse(tmp_path / "j.xml").getroot().iter("testcase")
    assert tc.get("name") == "run\\x00\\x1b[2J\\x07\\x0b"


def test_junit_marks_unscored_skipped_and_no_runs_error(tmp_path: Path) -> None:
    judge = FakeJudge({"Answer": None})
    res = evaluate_toml(tmp_path, BASE + 'judge = true\n[[case]]\nname = "d"\nworkflow = "other"\n', run_records(),
                        judge=judge)  # type: ignore[arg-type]
    root = to_junit(res).getroot()
    assert (root.get("tests"), root.get("skipped"), root.get("errors")) == ("2", "1", "1")
    assert root.find("testsuite[@name='d']/testcase/error").get("message") == "no recorded runs of workflow 'other'"


def test_exit_3_when_nothing_ran(tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("version = 0\n")
    r = cli(tmp_path, "eval", "empty.toml", "--from", str(HEALTHY))
    assert (r.returncode, r.stderr) == (3, "Error: no cases to evaluate in empty.toml\n")
    (tmp_path / "typo.toml").write_text('[[case]]\nname = "typo"\nworkflow = "nope"\n')
    r = cli(tmp_path, "eval", "typo.toml", str(CASES), "--from", str(HEALTHY), "--json")
    assert r.returncode == 3
    assert r.stderr == "Error: case 'typo' could not be evaluated: no recorded runs of workflow 'nope'\n"
    assert json.loads(r.stdout)["passed"] is False


# --- multi-run through the entrypoint -------------------------------------------------------------------------

FLAKY_CASE = """
[[case]]
name = "flaky-retrieval"
workflow = "repo-fix-agent"
entrypoint = "agent_debug.demo.system:run_workflow"
expected_output_pattern = 'Root cause and fix per \\S+\\.md'
require_nonempty_tools = true
[case.input]
task = "fix flaky S3 backfill job"
query = "backfill retries s3"
target = "src/jobs/s3.py"
world = ["flaky_index"]
seed = 100
time_scale = 0.05
"""


def test_runs_10_on_a_flaky_world_gives_a_pass_rate_strictly_between_0_and_1(tmp_path: Path) -> None:
    (tmp_path / "flaky.toml").write_text(FLAKY_CASE)
    r = cli(tmp_path, "eval", "flaky.toml", "--runs", "10", "--k", "3", "--json", "--junit", "mr.xml")
    assert r.returncode == 1, r.stdout + r.stderr  # the default gate is 100%
    case = json.loads(r.stdout)["cases"][0]
    n, c = case["runs_scored"], case["runs_passed"]
    assert (case["origin"], case["runs_total"], n) == ("simulated", 10, 10)
    assert [run["seed"] for run in case["runs"]] == list(range(100, 110))
    assert len({run["trace_id"] for run in case["runs"]}) == 10
    assert 0 < case["pass_rate"] < 1 and case["pass_rate"] == c / n
    assert case["pass_at_k"] == pytest.approx(1 - comb(n - c, 3) / comb(n, 3))
    assert case["pass_pow_k"] == pytest.approx(comb(c, 3) / comb(n, 3))
    assert case["pass_pow_k"] <= case["pass_rate"] <= case["pass_at_k"]
    failed = [run for run in case["runs"] if not run["passed"]]
    assert all(run["checks"]["nonempty_tools"]["status"] == "fail" for run in failed)
    assert ET.parse(tmp_path / "mr.xml").getroot().get("failures") == str(n - c)
    # the gate: just under the observed rate passes, just over it fails
    rate = case["pass_rate"]
    low = cli(tmp_path, "eval", "flaky.toml", "--runs", "10", "--min-pass-rate", f"{rate - 0.05:.2f}")
    high = cli(tmp_path, "eval", "flaky.toml", "--runs", "10", "--min-pass-rate", f"{rate + 0.05:.2f}")
    assert (low.returncode, high.returncode) == (0, 1), low.stdout + high.stdout
    assert f"pass rate {rate:.0%} is below the gate {rate + 0.05:.0%}" in high.stdout


def test_runs_take_entrypoint_and_input_from_the_recorded_run(tmp_path: Path) -> None:
    r = cli(tmp_path, "eval", str(CASES), "--from", str(HEALTHY), "--runs", "2", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert [run["seed"] for run in case["runs"]] == [7, 8]  # the recorded input's seed, then seed + 1
    assert _fixture_trace_id(HEALTHY) not in {run["trace_id"] for run in case["runs"]}  # fresh runs
    r = cli(tmp_path, "eval", str(CASES), "--from", str(FAULTY), "--runs", "2", "--json")
    assert r.returncode == 1
    runs = json.loads(r.stdout)["cases"][0]["runs"]
    assert [run["checks"]["topology"]["missing_edges"] for run in runs] == [["orchestrator->verifier"]] * 2


ENTRYPOINTS = '''
import agent_debug as ad

async def crashes(inp):
    async with ad.run("crashy", input=inp) as run:
        if inp["seed"] % 2:
            raise RuntimeError(f"boom {inp['seed']}")
        run.set_outcome(True, output="fine")

def silent(inp):
    return "nothing traced"
'''


def test_an_entrypoint_that_raises_is_a_failed_run_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "my_agents.py").write_text(ENTRYPOINTS)
    (tmp_path / "c.toml").write_text(
        '[[case]]\nname = "crashy"\nworkflow = "crashy"\nentrypoint = "my_agents:crashes"\n'
        'expected_output_pattern = "fine"\ninput = {seed = 0}\n'
        '[[case]]\nname = "silent"\nentrypoint = "my_agents:silent"\ninput = {}\n')
    r = cli(tmp_path, "eval", "c.toml", "--runs", "2", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 1, r.stdout + r.stderr
    crashy, silent = json.loads(r.stdout)["cases"]
    assert [run["passed"] for run in crashy["runs"]] == [True, False]
    assert crashy["runs"][1]["error"] == "RuntimeError: boom 1" and crashy["runs"][1]["trace_id"]
    assert crashy["pass_rate"] == 0.5
    assert [run["error"] for run in silent["runs"]] == ["the entrypoint recorded no run (no root span)"] * 2
    (tmp_path / "gone.toml").write_text('[[case]]\nname = "gone"\nentrypoint = "no_such_module_xyz:run"\n')
    r = cli(tmp_path, "eval", "gone.toml", "--runs", "1")
    assert (r.returncode, r.stderr) == (3, "Error: entrypoint 'no_such_module_xyz:run' cannot be loaded: "
                                           "ModuleNotFoundError: No module named 'no_such_module_xyz'\n")


def test_case_file_loader_reads_the_fixture() -> None:
    f = load_case_file(CASES)
    assert [c.name for c in f.cases] == ["repo-fix-agent"]
    assert ("orchestrator", "verifier") in f.cases[0].edges


def test_eval_group_takes_options_anywhere_and_has_calibrate(tmp_path: Path) -> None:
    r = cli(tmp_path, "eval", "--json", str(CASES), "--from", str(HEALTHY))
    assert r.returncode == 0 and json.loads(r.stdout)["passed"] is True
    r = cli(tmp_path, "eval", "calibrate", "--help")
    assert r.returncode == 0 and " eval calibrate [OPTIONS] " in r.stdout.splitlines()[0]
    r = cli(tmp_path, "eval")
    assert r.returncode == 2 and "calibrate" in r.stdout + r.stderr
