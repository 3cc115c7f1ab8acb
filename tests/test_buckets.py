"""Failure buckets and root causes, measured: the demo's labelled faults on a fresh seed through the real CLI,
each detector on hand-built runs, rules files, `why` and `session`, and transcript/span blame on hand-built
messages and spans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_debug.analysis.batch import diagnose_suspected
from agent_debug.analysis.blame import (
    APRIORI_POLICY,
    BlamePolicy,
    blame_transcript,
    default_transcript_model,
    transcript_suspect,
)
from agent_debug.analysis.buckets import RunDiagnosis, diagnose, find_suspects, load_rules
from agent_debug.analysis.source import FileSource
from agent_debug.analysis.suspects import transcript_suspects
from agent_debug.analysis.tree import build_tree
from agent_debug.columns import TraceSpans, summarize
from agent_debug.demo.runner import DemoResult, run_demo
from conftest import ROOT, rec, run_cli, write_jsonl

DEMO_SEED = 2026  # used nowhere else: runs the rules have never been checked against


# -- builders -------------------------------------------------------------------------------------------------------


def root(trace_id: str = "t1", *, passed: bool | None = False, status: str = "ok", **extra: Any) -> dict[str, Any]:
    attrs = dict(extra.pop("attributes", {}))
    if passed is not None:
        attrs["outcome.passed"] = passed
    r = rec("root", None, trace_id=trace_id, agent="orchestrator", name="run", attributes=attrs,
            workflow="wf", **extra)
    if status == "error":
        r["status"] = "error"
        r["error"] = {"type": "RuntimeError", "message": "run failed"}
    return r


def span(span_id: str, parent: str = "root", *, start: float, et: str = "AGENT", agent: str = "worker",
         trace_id: str = "t1", error: str | None = None, **attrs: Any) -> dict[str, Any]:
    r = rec(span_id, parent, trace_id=trace_id, agent=agent, event_type=et, start=start,
            attributes={k.replace("__", "."): v for k, v in attrs.items()})
    if error:
        r["status"] = "error"
        r["error"] = {"type": error, "message": f"{error} in {span_id}"}
    return r


def diagnose_records(records: list[dict[str, Any]], rules_path: Path | None = None) -> RunDiagnosis | None:
    ts = TraceSpans.from_records(records[0]["trace_id"], records)
    return diagnose(ts, summarize(ts), load_rules(rules_path))


def suspect_ids(records: list[dict[str, Any]], failed: bool = True) -> list[str]:
    ts = TraceSpans.from_records(records[0]["trace_id"], records)
    return [s.span_id for s in find_suspects(ts, build_tree(ts), load_rules(), failed)]


# -- (a) the demo's labelled faults, through the real CLI ------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_bucketed(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, dict[str, Any]]:
    demo = run_demo(tmp_path_factory.mktemp("demo"), 45, seed=DEMO_SEED)
    out = run_cli("bucket", "--from", demo.trace_dir, "--json")
    assert out.returncode == 0, out.stderr
    return demo, json.loads(out.stdout)


def test_demo_labels_are_recovered_on_a_fresh_seed(demo_bucketed: tuple[DemoResult, dict[str, Any]]) -> None:
    demo, report = demo_bucketed
    labels = json.loads(Path(demo.labels_path).read_text())
    by_trace = {r["trace_id"]: r for r in report["runs"]}
    failed = [lab for lab in labels if not lab["passed"]]
    assert len(failed) >= 20 and {lab["bucket"] for lab in failed} >= {
        "retrieval_miss", "tool_execution", "planner_drift", "verifier_false_positive", "routing_mistake"}
    bucket_ok = [lab for lab in failed if by_trace.get(lab["trace_id"], {}).get("bucket") == lab["bucket"]]
    cause_ok = [lab for lab in failed
                if by_trace.get(lab["trace_id"], {}).get("root_cause", {}).get("span_id") == lab["root_cause_span_id"]]
    assert len(bucket_ok) / len(failed) >= 0.95, [(lab["scenario"], by_trace.get(lab["trace_id"], {}).get("bucket"))
                                                   for lab in failed if lab not in bucket_ok]
    assert len(cause_ok) / len(failed) >= 0.90
    passing = {lab["trace_id"] for lab in labels if lab["passed"]}
    assert passing and not passing & set(by_trace)
    assert report["passing_runs"] == len(passing)


def test_bucket_json_has_every_key(demo_bucketed: tuple[DemoResult, dict[str, Any]]) -> None:
    _, report = demo_bucketed
    assert set(report) >= {"runs", "buckets", "clusters"}
    for run in report["runs"]:
        assert set(run) >= {"trace_id", "workflow", "bucket", "root_cause", "chain", "evidence", "suspects",
                            "next_action", "source"}
        assert set(run["root_cause"]) >= {"span_id", "agent_name", "name", "event_type", "attributes"}
        assert run["chain"][0] == run["root_cause"]["span_id"] and run["evidence"] and run["next_action"]
        assert run["source"] is None  # our own format: no foreign source to name (imported runs carry one)
    assert sum(b["count"] for b in report["buckets"]) == len(report["runs"])
    assert sum(c["count"] for c in report["clusters"]) == len(report["runs"])
    assert all({"bucket", "count", "share", "example", "next_action"} <= set(b) for b in report["buckets"])


# -- (b) detectors on hand-built runs ---------------------------------------------------------------------------------


def test_a_retry_that_recovers_is_not_a_suspect() -> None:
    records = [root(), span("t1", start=1, et="TOOL_CALL", error="TimeoutError"),
               span("t2", start=2, et="TOOL_CALL", retry__of="t1"),
               span("v", start=3, et="VERIFY", verifier__passed=False)]
    assert "t1" not in suspect_ids(records)
    d = diagnose_records(records)
    assert d is not None and d.bucket == "unclassified" and d.root_cause["span_id"] == "v"


def test_a_retry_chain_that_keeps_failing_is_blamed_at_its_first_attempt() -> None:
    records = [root(), span("t1", start=1, et="TOOL_CALL", error="TimeoutError"),
               span("t2", start=2, et="TOOL_CALL", error="TimeoutError", retry__of="t1"),
               span("t3", start=3, et="TOOL_CALL", tool__exit_code=1, retry__of="t2")]
    assert {"t1", "t2", "t3"} <= set(suspect_ids(records))
    d = diagnose_records(records)
    assert d is not None and (d.bucket, d.root_cause["span_id"]) == ("tool_execution", "t1")


@pytest.mark.parametrize(("extra", "bucket", "cause"), [
    ([span("r", start=1, et="RETRIEVAL", retrieval__doc_count=0)], "retrieval_miss", "r"),
    ([span("x", start=1, et="TOOL_CALL", tool__exit_code=0, tool__result_size=0)], "tool_execution", "x"),
    ([span("m", start=1, et="LLM_CALL", llm__finish_reason="length")], "routing_mistake", "m"),
    ([span("v", start=1, et="VERIFY", verifier__passed=True)], "verifier_false_positive", "v"),
])
def test_silent_failures_are_found(extra: list[dict[str, Any]], bucket: str, cause: str) -> None:
    d = diagnose_records([root(), *extra])
    assert d is not None and (d.bucket, d.root_cause["span_id"]) == (bucket, cause)


def test_a_model_call_that_used_its_whole_budget_is_blamed_on_the_routing_decision() -> None:
    m = span("m", start=2, et="LLM_CALL", token__budget=100)
    m["token_cost"] = {"prompt_tokens": 10, "completion_tokens": 100}
    records = [root(), span("route", start=1, et="ROUTING_DECISION", route__lane="strong", token__budget=100), m]
    d = diagnose_records(records)
    assert d is not None and (d.bucket, d.root_cause["span_id"]) == ("routing_mistake", "route")


def test_a_verifier_approving_a_passing_run_is_not_a_suspect() -> None:
    assert suspect_ids([root(passed=True), span("v", start=1, et="VERIFY", verifier__passed=True)], failed=False) == []


def test_an_off_plan_step_is_planner_drift() -> None:
    records = [root(), span("plan", start=1, agent="planner", et="PLAN", plan__steps=["read", "fix"]),
               span("work", start=2), span("read", "work", start=2), span("fix", "work", start=3),
               span("llm", "work", start=3.5, et="LLM_CALL"), span("rewrite", "work", start=4)]
    d = diagnose_records(records)
    assert d is not None and (d.bucket, d.root_cause["span_id"]) == ("planner_drift", "rewrite")


def test_a_planned_step_that_never_ran_is_planner_drift() -> None:
    records = [root(), span("plan", start=1, agent="planner", et="PLAN", plan__steps=["read", "fix", "test"]),
               span("work", start=2), span("read", "work", start=2), span("fix", "work", start=3)]
    d = diagnose_records(records)
    assert d is not None and (d.bucket, d.root_cause["span_id"]) == ("planner_drift", "plan")
    assert d.suspects[0]["strength"] == "weak"


@pytest.mark.parametrize(("attrs", "blamed"), [
    ({"route__lane": "cheap", "route__required_lane": "strong"}, True),
    ({"route__lane": "cheap", "route__risk": 0.9}, True),
    ({"route__lane": "cheap", "route__risk": 0.2}, False),
    ({"route__lane": "strong", "route__required_lane": "cheap"}, False),  # more capacity than needed is no mistake
])
def test_routing_below_the_required_lane(attrs: dict[str, Any], blamed: bool) -> None:
    d = diagnose_records([root(), span("route", start=1, et="ROUTING_DECISION", **attrs)])
    assert d is not None
    assert (d.bucket == "routing_mistake" and d.root_cause["span_id"] == "route") is blamed


@pytest.mark.parametrize(("origin_type", "bucket"), [("RETRIEVAL", "tool_execution"), ("LLM_CALL", "unclassified")])
def test_an_error_from_another_agent_upstream_is_blamed_where_it_started(origin_type: str, bucket: str) -> None:
    records = [root(status="error", passed=None),
               span("retriever", start=1, agent="retriever", error="TimeoutError"),
               span("search", "retriever", start=1.5, agent="retriever", et=origin_type, error="TimeoutError"),
               span("write", start=2, agent="writer", et="LLM_CALL"),
               span("coder", start=3, agent="coder", error="PatchError"),
               span("patch", "coder", start=3.5, agent="coder", et="TOOL_CALL", error="PatchError")]
    d = diagnose_records(records)
    assert d is not None and d.bucket == bucket
    assert (d.root_cause["span_id"], d.root_cause["agent_name"]) == ("search", "retriever")
    assert "retriever" not in [s["span_id"] for s in d.suspects]  # its error came from below: not an origin
    assert d.visible_failure["span_id"] == "patch"
    assert d.chain[0] == "search" and d.chain[-1] == "patch" and "root" in d.chain
    assert "error TimeoutError: TimeoutError in search" in d.evidence


# -- rules files and the CLI -------------------------------------------------------------------------------------------


def test_a_rules_file_overrides_a_threshold_and_adds_a_bucket(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", [
        root("risky"), span("route", start=1, trace_id="risky", et="ROUTING_DECISION", route__lane="cheap",
                            route__risk=0.6),
        root("stale"), span("cache", start=1, trace_id="stale", et="RETRIEVAL", cache__age_s=7200),
    ])
    rules = tmp_path / "rules.toml"
    rules.write_text('[thresholds]\nrisk_threshold = 0.5\n\n[bucket.stale_cache]\nnext_action = "flush the cache"\n\n'
                     '[[rule]]\nname = "stale_cache"\nbucket = "stale_cache"\nreason = "cache older than an hour"\n'
                     'when = { event_type = ["RETRIEVAL"], attr = "cache.age_s", op = ">", value = 3600 }\n')
    default = {r["trace_id"]: r for r in json.loads(run_cli("bucket", "--from", str(path), "--json").stdout)["runs"]}
    assert default["risky"]["bucket"] == "unclassified" and default["stale"]["bucket"] == "unclassified"
    out = run_cli("bucket", "--from", str(path), "--json", "--rules", str(rules))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    runs = {r["trace_id"]: r for r in report["runs"]}
    assert runs["risky"]["bucket"] == "routing_mistake" and runs["risky"]["root_cause"]["span_id"] == "route"
    assert runs["stale"]["bucket"] == "stale_cache" and runs["stale"]["next_action"] == "flush the cache"
    assert any(b["bucket"] == "stale_cache" and b["count"] == 1 for b in report["buckets"])


def test_attributes_of_unexpected_types_never_crash(tmp_path: Path) -> None:
    odd = [root(), span("r", start=1, et="RETRIEVAL", retrieval__doc_count="none"),
           span("route", start=2, et="ROUTING_DECISION", route__lane=3, route__risk="high", token__budget="lots"),
           span("plan", start=3, plan__steps="read,fix"),
           span("x", start=4, et="TOOL_CALL", tool__exit_code="1", tool__result_size=[0]),
           span("m", start=5, et="LLM_CALL", llm__finish_reason=["length", 7], retry__of=12)]
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "few_docs"\nbucket = "retrieval_miss"\n'
                     'when = { attr = "retrieval.doc_count", op = "<", value = 1 }\n'
                     '[[rule]]\nname = "in_list"\nbucket = "retrieval_miss"\n'
                     'when = { attr = "route.lane", op = "in", value = 5 }\n')
    d = diagnose_records(odd, rules)
    assert d is not None and "r" not in [s["span_id"] for s in d.suspects]  # "none" < 1 is no match, not a crash
    out = run_cli("bucket", "--from", str(write_jsonl(tmp_path / "odd.jsonl", odd)), "--json", "--rules", str(rules))
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["runs"]) == 1


def test_an_unknown_detector_is_a_one_line_usage_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", [root(), span("x", start=1, et="TOOL_CALL", tool__exit_code=1)])
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "mine"\nbucket = "tool_execution"\ndetector = "no_such_detector"\n')
    out = run_cli("bucket", "--from", str(path), "--rules", str(rules))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"Error: rules file {rules}: rule 'mine'.detector: unknown detector "
                                 "'no_such_detector' (known: ")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_a_missing_rules_file_is_a_usage_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", [root(), span("x", start=1, et="TOOL_CALL", tool__exit_code=1)])
    out = run_cli("bucket", "--from", str(path), "--rules", str(tmp_path / "nope.toml"))
    assert (out.returncode, out.stderr) == (2, f"Error: no such rules file: {tmp_path / 'nope.toml'}\n")


def _session(tmp_path: Path) -> Path:
    def turn(tid: str, n: int, passed: bool, *spans: dict[str, Any]) -> list[dict[str, Any]]:
        r = root(tid, passed=passed, start=100.0 * n)
        r["session_id"] = "sess-1"
        return [r, *spans]

    return write_jsonl(tmp_path / "session.jsonl", [
        *turn("turn-1", 1, True, span("r1", start=101, trace_id="turn-1", agent="retriever", et="RETRIEVAL",
                                      retrieval__doc_count=0)),
        *turn("turn-2", 2, True, span("r2", start=201, trace_id="turn-2", agent="retriever", et="RETRIEVAL",
                                      retrieval__doc_count=4)),
        *turn("turn-3", 3, False, span("x3", start=301, trace_id="turn-3", agent="coder", et="TOOL_CALL",
                                       tool__exit_code=2)),
    ])


def test_session_names_the_turn_where_things_first_went_wrong(tmp_path: Path) -> None:
    path = _session(tmp_path)
    out = run_cli("session", "sess-1", "--from", str(path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [t["trace_id"] for t in result["turns"]] == ["turn-1", "turn-2", "turn-3"]
    assert result["first_bad_turn"]["turn"] == 1 and "0 documents" in result["first_bad_turn"]["reason"]
    assert result["first_failed_turn"] == 3
    assert [t["bucket"] for t in result["turns"]] == [None, None, "tool_execution"]
    text = run_cli("session", "sess-1", "--from", str(path))
    assert text.returncode == 0 and "things first went wrong in turn 1" in text.stdout
    missing = run_cli("session", "nope", "--from", str(path))
    assert missing.returncode == 4 and missing.stderr == "Error: no runs with session id 'nope'\n"


def test_why_tells_one_runs_story(tmp_path: Path) -> None:
    path = _session(tmp_path)
    out = run_cli("why", "turn-3", "--from", str(path), "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["status"] == "failed" and d["diagnosis"]["bucket"] == "tool_execution"
    assert d["diagnosis"]["root_cause"]["span_id"] == "x3" and "tool.exit_code = 2" in d["diagnosis"]["evidence"]
    text = run_cli("why", "turn-3", "--from", str(path))
    assert text.returncode == 0 and "root cause" in text.stdout and "tool_execution" in text.stdout
    passing = json.loads(run_cli("why", "turn-1", "--from", str(path), "--json").stdout)
    assert passing["diagnosis"] is None and passing["failed"] is False and "suspects" in passing


def test_the_measure_script_says_so_when_there_is_no_data(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "measure_blame.py"), "--no-demo", "--data",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no labelled real data at ")


# -- transcript blame on hand-built messages ---------------------------------------------------------------------


def transcript(messages: list[tuple[str, str]], *, labels: dict[str, Any] | None = None,
               tool_speakers: tuple[str, ...] = ("Computer_terminal",)) -> TraceSpans:
    """Records shaped like the transcript importer's: a root, then one span per message, each the previous one's
    child, with `transcript.step`, payload.content, TOOL_CALL + tool.exit_code for terminals."""
    attrs: dict[str, Any] = {"outcome.passed": False, **(labels or {})}
    records = [rec("run", None, agent="transcript", attributes=attrs)]
    parent = "run"
    for i, (speaker, text) in enumerate(messages):
        agent, _, to = speaker.partition(" -> ")
        a: dict[str, Any] = {"transcript.step": i}
        if to:
            a["transcript.to"] = to
        et = "AGENT"
        if agent in tool_speakers:
            et = "TOOL_CALL"
            if text.startswith("exitcode:"):
                a["tool.exit_code"] = int(text.split()[1])
        records.append(rec(f"step-{i}", parent, agent=agent, event_type=et, start=i + 1, attributes=a,
                           payload={"content": text}))
        parent = f"step-{i}"
    return TraceSpans.from_records("t1", records)


def test_a_failed_execution_is_blamed_on_the_author_of_the_code() -> None:
    ts = transcript([("Planner", "Plan: load the table."), ("Coder", "```python\nload()\n```"),
                     ("Computer_terminal", "exitcode: 1 (execution failed)\nNameError"), ("Coder", "Fixed.")])
    r = blame_transcript(ts, BlamePolicy(("failed_execution",), "first_speaker"))
    assert (r.agent, r.step_index, r.span_id, r.bucket) == ("Coder", 1, "step-1", "tool_execution")
    assert r.candidates[0].signal == "failed_execution"


def test_fabrication_is_blamed_where_it_is_admitted() -> None:
    ts = transcript([("Lead", "Task: count athletes."), ("Analyst", "Let me look it up."),
                     ("Checker", "Let's create a sample dataset for demonstration."), ("Analyst", "Answer: CHN")])
    r = blame_transcript(ts)
    assert (r.agent, r.step_index, r.signal) == ("Checker", 2, "fabrication")


def test_a_coordinator_stall_blames_the_last_worker_and_coordinators_are_never_the_fallback() -> None:
    ledger_ok = 'Updated Ledger:\n{"is_in_loop": {"reason": "no", "answer": false}, ' \
                '"is_progress_being_made": {"reason": "yes", "answer": true}}'
    ledger_stuck = ledger_ok.replace('"answer": true', '"answer": false')
    ts = transcript([("human", "Find the trail."), ("Orchestrator", "Initial plan: search."),
                     ("Orchestrator -> WebSurfer", "Search for trails."), ("WebSurfer", "I typed 'trails'."),
                     ("Orchestrator", ledger_ok), ("Orchestrator -> WebSurfer", "Open the first result."),
                     ("WebSurfer", "I clicked 'Ads'."), ("Orchestrator", ledger_stuck)])
    r = blame_transcript(ts)
    assert (r.agent, r.step_index, r.signal, r.bucket) == ("WebSurfer", 6, "coordinator_stall", "retrieval_miss")
    quiet = transcript([("human", "Find the trail."), ("Orchestrator", "Plan."),
                        ("Orchestrator -> WebSurfer", "Search."), ("WebSurfer", "Done."), ("Orchestrator", "Plan.")])
    fb = blame_transcript(quiet)
    assert (fb.agent, fb.signal) == ("WebSurfer", "most_active_worker")


def test_a_repeated_instruction_blames_the_answer_to_the_first_one() -> None:
    ts = transcript([("human", "q"), ("Orchestrator -> WebSurfer", "Please find the opening hours of the museum"),
                     ("WebSurfer", "I scrolled down."), ("Orchestrator -> WebSurfer", "Please find the opening hours "
                                                                              "of the museum today"),
                     ("WebSurfer", "Opening hours: 9-5.")])
    r = blame_transcript(ts)
    assert (r.agent, r.step_index, r.signal) == ("WebSurfer", 2, "repeated_instruction")


def test_blame_never_reads_the_labels() -> None:
    msgs = [("Lead", "Task."), ("Coder", "code"), ("Computer_terminal", "exitcode: 1"), ("Lead", "Assume 5.")]
    plain = blame_transcript(transcript(msgs))
    for labels in ({"label.mistake_agent": "Lead", "label.mistake_step": 0},
                   {"label.mistake_agent": "Coder", "label.mistake_step": 1, "label.mistake_reason": "exitcode"}):
        labelled = blame_transcript(transcript(msgs, labels=labels))
        assert labelled.as_dict() == plain.as_dict()
    a_priori = blame_transcript(transcript(msgs), APRIORI_POLICY)
    assert (a_priori.agent, a_priori.step_index, a_priori.signal) == ("Coder", 1, "failed_execution")


def test_an_empty_transcript_blames_no_one_and_unknown_signals_are_refused() -> None:
    r = blame_transcript(transcript([("human", "hello?")]))
    assert (r.agent, r.span_id, r.bucket) == (None, None, "unclassified")
    with pytest.raises(ValueError, match="unknown blame signal 'nope'"):
        blame_transcript(transcript([("A", "x")]), BlamePolicy(("nope",), "first_speaker"))


def test_transcript_suspect_is_the_hook_for_diagnose() -> None:
    ts = transcript([("Lead", "Task."), ("Analyst", "I cannot access the site, so I will assume 12.")])
    s = transcript_suspect(ts)
    assert s is not None and (s.span_id, s.agent_name, s.strength, s.bucket) == ("step-1", "Analyst", "strong",
                                                                                  "retrieval_miss")


def test_transcript_suspects_carry_their_span_position_and_no_related_spans() -> None:
    """Each transcript suspect's `index` is its span's position and `related` holds span ids (none here): they
    were given positionally, so the position landed in `related` (`related_spans: 2` in the JSON) and `index`
    stayed -1 (the trace's last span)."""
    ts = transcript([("Planner", "Plan: load the table."), ("Coder", "```python\nload()\n```"),
                     ("Computer_terminal", "exitcode: 1 (execution failed)\nNameError"), ("Coder", "Fixed.")])
    suspects = transcript_suspects(ts).suspects
    assert (suspects[0].span_id, suspects[0].index, suspects[0].step) == ("step-1", 2, 1)
    assert all(s.index == ts.span_id.index(s.span_id) and s.related == [] for s in suspects)
    assert not any("related_spans" in s.as_dict() for s in suspects)


def test_a_message_two_transcript_signals_name_is_one_suspect_with_both_reasons() -> None:
    """`suspects` lists each span once (as for agent traces): a message several signals name keeps the rank,
    signal and score of the first and the evidence of all."""
    ts = transcript([("Planner", "Plan: load the table."), ("Coder", "```python\nload()\n```"),
                     ("Computer_terminal", "exitcode: 1 (execution failed)\nNameError"), ("Coder", "Fixed.")])
    result = blame_transcript(ts, default_transcript_model().policy)
    naming = [c for c in result.candidates if c.span_id == "step-1"]
    assert len(naming) >= 2  # the case this test is about
    suspects = transcript_suspects(ts).suspects
    ids = [s.span_id for s in suspects]
    assert len(ids) == len(set(ids)) == len({c.span_id for c in result.candidates})
    first = suspects[ids.index("step-1")]
    assert first.signal == naming[0].signal and first.evidence == [c.reason for c in naming]


def test_a_passing_transcript_with_a_strong_suspect_is_diagnosed_at_the_blamed_message() -> None:
    """A run not marked failed is bucketed by its top suspect: the root cause's attributes and the causal chain
    are the blamed message's (with the index lost they were the last message's: step 3, chain from step-3)."""
    ts = transcript([("Planner", "Plan: load the table."), ("Coder", "```python\nload()\n```"),
                     ("Computer_terminal", "exitcode: 1 (execution failed)\nNameError"), ("Coder", "Fixed.")],
                    labels={"outcome.passed": True})
    d = diagnose_suspected(ts, summarize(ts), load_rules())
    assert d is not None and d.flag is not None
    assert d.root_cause == {"span_id": "step-1", "agent_name": "Coder", "name": "step-1", "event_type": "AGENT",
                            "attributes": {"transcript.step": 1}}
    assert d.chain == ["step-1", "step-0", "run"]


def test_a_who_and_when_file_is_blamed_through_the_importer(tmp_path: Path) -> None:
    log = {"question": "q?", "ground_truth": "42", "is_correct": False, "mistake_agent": "Lead", "mistake_step": "0",
           "history": [{"content": "Plan: compute.", "role": "assistant", "name": "Lead"},
                       {"content": "```python\nprint(1/0)\n```", "role": "user", "name": "Math_Expert"},
                       {"content": "exitcode: 1 (execution failed)\nCode output: ZeroDivisionError", "role": "user",
                        "name": "Computer_terminal"}]}
    (tmp_path / "1.json").write_text(json.dumps(log))
    src = FileSource([tmp_path])
    s = src.list()[0]
    ts = src.load(s.trace_id, records=True)
    assert s.source_format == "transcript" and s.failed
    r = blame_transcript(ts, APRIORI_POLICY)
    assert (r.agent, r.step_index) == ("Math_Expert", 1)


# -- suspect ordering ------------------------------------------------------------------------------------------------


def test_suspect_depths_count_ancestors_and_stop_at_cycles_and_missing_parents() -> None:
    """Suspects starting together are ordered deepest first; depths come from one id map for all of them
    (one map per suspect made `why` on a 1M-span trace take minutes)."""
    from agent_debug.analysis.buckets import _depths

    records = [rec("root"), rec("a", "root", start=1), rec("b", "a", start=2), rec("c", "b", start=3),
               rec("x", "y", start=4), rec("y", "x", start=5), rec("o", "gone", start=6)]
    tree = build_tree(TraceSpans.from_records("t1", records))
    index = {sid: i for i, sid in enumerate(tree.spans.span_id)}
    depths = _depths(tree, [index[s] for s in ("root", "a", "c", "x", "o")])
    assert {tree.spans.span_id[i]: d for i, d in depths.items()} == {"root": 0, "a": 1, "c": 3, "x": 2, "o": 0}
