"""Suspects for every run: span signals on hand-built agent traces (the failure modes the seeds name), the blame
model's fitting and selection, and `why` / `bucket --suspects` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_debug.analysis.blame_model import (
    PRIOR_WEIGHTS,
    Candidate,
    LabelledRun,
    SpanModel,
    best_threshold,
    default_span_model,
    fit_selected_model,
    fit_weights,
    folds,
    location_f1,
    select,
    without,
)
from agent_debug.analysis.buckets import load_rules
from agent_debug.analysis.column_path import column_facts, column_features, run_suspects_from
from agent_debug.analysis.span_context import SpanContext, is_empty_text
from agent_debug.analysis.span_signals import answer_tokens, span_hits
from agent_debug.analysis.suspects import run_shape, run_suspects, trace_features
from agent_debug.analysis.tree import build_tree
from agent_debug.columns import TraceSpans
from conftest import rec, run_cli, write_jsonl


def _out(text: str, calls: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        msg["tool_calls"] = [{"function": {"name": n, "arguments": a}} for n, a in calls]
    return {"output": json.dumps(msg)}


def agent_trace(steps: list[dict[str, Any]], trace_id: str = "t1", **root_attrs: Any) -> list[dict[str, Any]]:
    """A smolagents-shaped run: an agent span, then per step a step span holding one model call and (optionally)
    a tool call with an output or an error."""
    records = [rec("agent", None, trace_id=trace_id, agent="Agent", name="Agent.run",
                   attributes={"openinference.span.kind": "AGENT", **root_attrs})]
    for n, st in enumerate(steps, 1):
        t = n * 10.0
        records.append(rec(f"step{n}", "agent", trace_id=trace_id, agent="Agent", name=f"Step {n}", start=t,
                           duration_ms=5000))
        records.append(rec(f"llm{n}", f"step{n}", trace_id=trace_id, agent="Agent", event_type="LLM_CALL",
                           start=t + 0.1, payload=_out(st.get("say", ""), st.get("calls"))))
        if "tool" in st:
            tool = rec(f"tool{n}", f"step{n}", trace_id=trace_id, agent="Agent", event_type="TOOL_CALL",
                       start=t + 1, name=st["tool"], payload={"input": json.dumps(st.get("args", {})),
                                                              "output": st.get("result")})
            if st.get("error"):
                tool["status"] = "error"
                tool["error"] = {"type": st["error"], "message": f"{st['error']} in {st['tool']}"}
            records.append(tool)
    return records


def hits_of(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    ts = TraceSpans.from_records(records[0]["trace_id"], records)
    _, hits = span_hits(ts)
    return {(ts.span_id[h.index], h.signal) for h in hits}


# -- signals ----------------------------------------------------------------------------------------------------------


def test_a_failed_tool_is_blamed_on_the_call_that_chose_it_and_the_next_action_reacts() -> None:
    hits = hits_of(agent_trace([
        {"say": "I will read the file.", "calls": [("reader", {"path": "a.txt"})], "tool": "reader",
         "error": "FileNotFoundError"},
        {"say": "The file was missing, so I will simulate the result.", "calls": [("final_answer", {"a": "12"})]},
    ]))
    assert {("llm1", "action_failed"), ("tool1", "tool_failed"), ("llm2", "reacts_to_failure"),
            ("llm2", "fabrication"), ("llm2", "unsupported_answer")} <= hits
    assert ("llm1", "reacts_to_failure") not in hits and ("llm2", "action_failed") not in hits


def test_an_empty_retrieval_then_improvisation_is_found_on_both_calls() -> None:
    hits = hits_of(agent_trace([
        {"say": "Search the policy.", "calls": [("search", {"q": "refund policy"})], "tool": "search",
         "result": "No results found for 'refund policy'."},
        {"say": "Our policy is a 30-day window.", "calls": [("final_answer", {"answer": "30 days"})]},
    ]))
    assert {("llm1", "empty_result"), ("llm2", "after_empty_result"), ("tool1", "tool_empty_result")} <= hits
    assert ("llm2", "ungrounded_answer") in hits  # "30" appears in no tool output


def test_a_loop_of_identical_actions_is_a_repeated_action() -> None:
    step = {"say": "Scroll down.", "calls": [("page_down", {"": ""})], "tool": "page_down", "result": "page 2"}
    hits = hits_of(agent_trace([step, dict(step), dict(step)]))
    assert ("llm2", "repeated_action") in hits and ("llm3", "repeated_action") in hits
    assert ("llm1", "repeated_action") not in hits
    assert ("tool2", "tool_repeated") in hits


def test_a_successful_tool_reporting_an_error_page_is_a_silent_failure() -> None:
    hits = hits_of(agent_trace([
        {"say": "Visit the page.", "calls": [("visit", {"url": "u"})], "tool": "visit",
         "result": "Title: Error 403\n## Error 403 Forbidden"},
        {"say": "It seems the page is blocked; let me try a different approach.",
         "calls": [("search", {"q": "x"})], "tool": "search", "result": "result A"},
    ]))
    assert {("tool1", "tool_error_text"), ("llm1", "error_in_result"), ("llm2", "after_error_in_result"),
            ("llm2", "self_correction")} <= hits


def test_a_grounded_answer_after_evidence_raises_nothing() -> None:
    hits = hits_of(agent_trace([
        {"say": "Search.", "calls": [("search", {"q": "capital of France"})], "tool": "search",
         "result": "Paris is the capital of France (population 2,102,650)."},
        {"say": "Found it.", "calls": [("final_answer", {"answer": "Paris, 2102650"})]},
    ]))
    failure_signals = {"action_failed", "reacts_to_failure", "empty_result", "error_in_result", "repeated_action",
                       "fabrication", "unsupported_answer", "ungrounded_answer", "tool_failed", "self_correction"}
    assert not {s for _, s in hits} & failure_signals, hits



CENSUS = "Lyon had 522,250 inhabitants in 2021, ahead of Marseille and Toulouse."  # no signal's phrase: plain


def ignoring_run(next_say: str, next_calls: list[tuple[str, dict[str, Any]]], result: str = CENSUS
                 ) -> list[dict[str, Any]]:
    """A search whose result holds facts (a number, names), then a call that says and does `next_*`."""
    return agent_trace([
        {"say": "Search the census.", "calls": [("search", {"q": "population of Lyon"})], "tool": "search",
         "args": {"q": "population of Lyon"}, "result": result},
        {"say": next_say, "calls": next_calls, "tool": next_calls[0][0], "args": next_calls[0][1],
         "result": "sunny"},
    ])


def test_a_call_that_uses_nothing_of_the_result_it_just_got_ignores_it() -> None:
    hits = hits_of(ignoring_run("Let me look up the weather.", [("search", {"q": "weather today"})]))
    assert ("llm2", "ignores_result") in hits and ("llm1", "ignores_result") not in hits


@pytest.mark.parametrize(("say", "calls", "result"), [
    ("Lyon has 522250 inhabitants.", [("final_answer", {"answer": "522250"})], CENSUS),  # uses the number
    ("Compare with Marseille.", [("search", {"q": "Marseille population"})], CENSUS),  # uses a name
    ("Look up the weather.", [("search", {"q": "weather"})], "Lyon had many inhabitants."),  # too few facts
    ("Look up the weather.", [("search", {"q": "weather"})], "No results found for Lyon 2021 522"),  # not usable
])
def test_a_call_that_uses_the_result_or_had_nothing_to_use_does_not_ignore_it(
        say: str, calls: list[tuple[str, dict[str, Any]]], result: str) -> None:
    assert ("llm2", "ignores_result") not in hits_of(ignoring_run(say, calls, result))



TASK_CODE = "```py\ntask = 'Find the 2011 census figures by gender.'\nprint(task)\n```"


@pytest.mark.parametrize("say", [
    "Thought: I will now ask our search_agent team member to find the figures.\nCode:\n" + TASK_CODE,
    "Thought: Let me call `web_search` with a better query.\nCode:\n" + TASK_CODE,
    "Thought: the figures are needed.\nCode:\n```py\n# Now I will send this task to our search_agent.\n"
    "task = 'census'\nprint(task)\n```",
])
def test_a_call_that_announces_a_tool_call_its_code_does_not_make_is_intent_not_acted(say: str) -> None:
    hits = hits_of(agent_trace([{"say": say}, {"say": "Done.", "calls": [("final_answer", {"a": "1"})]}]))
    assert ("llm1", "intent_not_acted") in hits and ("llm2", "intent_not_acted") not in hits


@pytest.mark.parametrize("say", [
    "Thought: I will ask our search_agent for the figures.\nCode:\n```py\nr = search_agent(task='census')\n"
    "print(r)\n```",  # the call is made
    "Thought: I will use `web_search`.\nCode:\n```py\nprint(web_search.forward(query='census'))\n```",
    "1. I will ask our search_agent for the figures.\n2. I will use final_answer.",  # a plan: no action at all
    "Thought: I will now compute the difference.\nCode:\n" + TASK_CODE,  # no named tool announced
])
def test_a_call_that_makes_the_call_it_announces_or_acts_not_at_all_is_not_intent_not_acted(say: str) -> None:
    assert ("llm1", "intent_not_acted") not in hits_of(agent_trace([{"say": say}]))


def test_the_announced_call_pattern_takes_linear_time_on_runs_of_spaces() -> None:
    """A model may write anything: whitespace between optional words must not be split many ways (the first
    version took 3.8 s on 1,000 spaces, and grew with their cube)."""
    import time

    from agent_debug.analysis.span_signals import INTENT

    for text in ("I will send" + " " * 20_000 + "x", "we will delegate" + " " * 20_000 + "to", "let me " * 3000):
        t0 = time.perf_counter()
        assert INTENT.search(text) is None
        assert time.perf_counter() - t0 < 2.0


def test_a_retry_that_recovered_is_no_failure() -> None:
    records = agent_trace([{"say": "Run tests.", "calls": [("pytest", {})], "tool": "pytest", "error": "Timeout"}])
    retry = rec("tool1b", "step1", agent="Agent", event_type="TOOL_CALL", start=12, name="pytest",
                attributes={"retry.of": "tool1"}, payload={"output": "12 passed"})
    hits = hits_of([*records, retry])
    assert ("llm1", "action_failed") not in hits and ("tool1", "tool_failed") not in hits


def test_a_step_runs_what_its_one_model_call_wrote_but_a_closing_call_decides_nothing() -> None:
    records = [rec("root", None, name="answer"), rec("run", "root", name="Agent.run", start=1),
               rec("plan", "run", event_type="LLM_CALL", start=1.1, payload=_out("1. search 2. answer")),
               rec("tool", "run", event_type="TOOL_CALL", start=2, name="search"),
               rec("fmt", "root", event_type="LLM_CALL", start=9, payload=_out("FINAL ANSWER: 3"))]
    ts = TraceSpans.from_records("t1", records)
    c = SpanContext(ts)
    idx = {s: i for i, s in enumerate(ts.span_id)}
    assert c.decide(idx["tool"]) == idx["plan"]
    assert c.decide(idx["root"]) is None and not c.acted(idx["fmt"])


def test_text_helpers() -> None:
    assert is_empty_text("Execution logs:\nLast output from code snippet:\nNone")
    assert not is_empty_text("Execution logs:\n42")
    assert answer_tokens('final_answer("Honolulu, Quincy and 1,937")') == {"honolulu", "quincy", "1937"}


# -- the model ---------------------------------------------------------------------------------------------------------


def _runs(pattern: list[tuple[dict[str, float], int]], copies: int, group: str = "g") -> list[LabelledRun]:
    out = []
    for n in range(copies):
        cands = [Candidate(f"s{j}", dict(x), e) for j, (x, e) in enumerate(pattern)]
        out.append(LabelledRun(f"{group}{n}", group, cands, sum(e for _, e in pattern)))
    return out


def test_fitting_moves_a_weight_the_data_contradicts_and_keeps_one_it_never_shows() -> None:
    # "self_correction" fires on spans that never hold an error: its weight must fall below its prior
    runs = _runs([({"self_correction": 1.0}, 0), ({"action_failed": 1.0}, 1), ({}, 0)], 30)
    w, _ = fit_weights(runs)
    assert w["self_correction"] < PRIOR_WEIGHTS["self_correction"] - 0.5
    assert w["action_failed"] > PRIOR_WEIGHTS["action_failed"]
    assert abs(w["rule_strong"] - PRIOR_WEIGHTS["rule_strong"]) < 1e-6


def test_threshold_selection_and_the_best_span_alone() -> None:
    runs = _runs([({}, 1), ({}, 1), ({}, 0)], 4)
    scores = {r.run_id: {"s0": 0.8, "s1": 0.6, "s2": 0.3} for r in runs}
    assert best_threshold(runs, scores) == 0.6  # the highest of the thresholds that keep both and drop s2
    assert select({"a": 0.2, "b": 0.1}, 0.5) == {"a"} and select({"a": 0.7, "b": 0.6}, 0.5) == {"a", "b"}
    assert location_f1(runs, {r.run_id: {"s0", "s1"} for r in runs})["f1"] == 1.0
    assert location_f1(runs, {r.run_id: {"s0"} for r in runs})["recall"] == 0.5


def test_folds_are_stratified_and_cover_every_run_once() -> None:
    runs = _runs([({}, 1)], 10, "gaia") + _runs([({}, 1)], 5, "swe")
    parts = folds(runs, 5, seed=3)
    assert sorted(r.run_id for p in parts for r in p) == sorted(r.run_id for r in runs)
    assert all(sum(r.group == "swe" for r in p) == 1 for p in parts)



def test_leaving_a_feature_out_takes_the_run_shape_off_a_span_left_with_no_failure_signal() -> None:
    (run,) = without(_runs([({"ignores_result": 1.0, "single_agent": 1.0}, 1),
                            ({"action_failed": 1.0, "ignores_result": 1.0, "single_agent": 1.0}, 1)], 1),
                     frozenset({"ignores_result"}))
    assert [c.features for c in run.candidates] == [{}, {"action_failed": 1.0, "single_agent": 1.0}]


def test_the_inner_cross_validation_keeps_a_feature_that_helps_and_leaves_out_one_that_does_not() -> None:
    # ignores_result marks the annotated span (without it that span looks like the clean one); single_agent sits
    # only beside a signal of clean spans: its fitted weight goes negative and it changes no choice, so the tie
    # keeps it out
    runs = _runs([({"ignores_result": 1.0}, 1), ({"action_failed": 1.0}, 1),
                  ({"self_correction": 1.0, "single_agent": 1.0}, 0), ({}, 0)], 20)
    m = fit_selected_model(runs, optional=("single_agent", "ignores_result"), seed=1)
    assert m.off == frozenset({"single_agent"}), m.details
    assert m.score({"ignores_result": 1.0}) > m.threshold > m.score({})
    assert m.score({"self_correction": 1.0, "single_agent": 1.0}) == m.score({"self_correction": 1.0})  # left out
    assert SpanModel.from_dict(m.as_dict()).off == m.off


def test_the_shipped_model_scores_with_every_signal_it_knows() -> None:
    m = default_span_model()
    assert 0 < m.threshold < 1 and set(PRIOR_WEIGHTS) <= set(m.weights) | set(PRIOR_WEIGHTS)
    assert m.score({"action_failed": 1.0, "reacts_to_failure": 1.0}) > m.score({}) > 0
    assert SpanModel.from_dict(m.as_dict()).as_dict() == m.as_dict()


def test_suspects_are_ranked_and_carry_the_documented_keys() -> None:
    records = agent_trace([
        {"say": "Read.", "calls": [("reader", {"p": 1})], "tool": "reader", "error": "FileNotFoundError"},
        {"say": "I will assume the answer is 7.", "calls": [("final_answer", {"a": "7"})]},
    ])
    ts = TraceSpans.from_records("t1", records)
    lst = run_suspects(ts, load_rules())
    assert lst.suspects, lst
    scores = [s.score for s in lst.suspects]
    assert scores == sorted(scores, reverse=True)
    d = lst.suspects[0].as_dict()
    assert set(d) >= {"span_id", "agent_name", "name", "event_type", "signal", "bucket", "evidence", "score"}


# -- run shape ---------------------------------------------------------------------------------------------------------


def with_helper(records: list[dict[str, Any]], trace_id: str = "t1") -> list[dict[str, Any]]:
    """The run with a second agent that acts too: a helper the agent hands a search to."""
    return [*records,
            rec("helper", "agent", trace_id=trace_id, agent="Helper", name="Helper.run", start=100),
            rec("hllm", "helper", trace_id=trace_id, agent="Helper", event_type="LLM_CALL", start=100.1,
                payload=_out("Search the archive.", [("search", {"q": "archive"})])),
            rec("htool", "helper", trace_id=trace_id, agent="Helper", event_type="TOOL_CALL", start=101,
                name="search", payload={"input": "archive", "output": "Archive: 3 documents."})]


FAILED_READ = [{"say": "I will read the file.", "calls": [("reader", {"path": "a.txt"})], "tool": "reader",
                "error": "FileNotFoundError"},
               {"say": "Found it.", "calls": [("final_answer", {"a": "12"})]}]
CLEAN = [{"say": "Search.", "calls": [("search", {"q": "capital of France"})], "tool": "search",
          "result": "Paris is the capital of France."},
         {"say": "Found it.", "calls": [("final_answer", {"answer": "Paris"})]}]


def features_by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    ts = TraceSpans.from_records("t1", records)
    feats, _ = trace_features(ts, load_rules())
    return {ts.span_id[i]: x for i, x in feats.items()}


def shape_of(records: list[dict[str, Any]]) -> dict[str, float]:
    ts = TraceSpans.from_records("t1", records)
    return run_shape(ts, trace_features(ts, load_rules())[0])


def test_single_agent_marks_the_failure_signals_of_a_run_where_one_agent_acted() -> None:
    one = features_by_id(agent_trace(FAILED_READ))
    assert one["llm1"].get("single_agent") == 1.0 and "action_failed" in one["llm1"]
    assert one["tool1"].get("single_agent") == 1.0 and "tool_failed" in one["tool1"]
    # the answer only reacts to the failure: a signal too; a span with structural features only gets nothing
    assert one["llm2"].get("single_agent") == 1.0 and "reacts_to_failure" in one["llm2"]
    assert shape_of(agent_trace(CLEAN)) == {"single_agent": 1.0}  # one agent did the work ...
    assert not any("single_agent" in x for x in features_by_id(agent_trace(CLEAN)).values())  # ... no signal
    two = features_by_id(with_helper(agent_trace(FAILED_READ)))
    assert shape_of(with_helper(agent_trace(FAILED_READ))) == {}
    assert not any("single_agent" in x for x in two.values())
    assert "action_failed" in two["llm1"]  # the signals themselves do not depend on the run's shape


def test_an_agent_that_only_talks_is_no_worker_but_one_that_runs_a_tool_is() -> None:
    records = agent_trace(FAILED_READ)
    records.append(rec("fmt", "agent", agent="Formatter", event_type="LLM_CALL", start=90,
                       payload=_out("FINAL ANSWER: 12")))  # reformulates the answer: decides no action
    feats = features_by_id(records)
    assert "first_action" not in feats["fmt"] and feats["llm1"].get("single_agent") == 1.0
    fetcher = [rec("fetch", "agent", agent="Fetcher", event_type="RETRIEVAL", start=0.5, name="fetch",
                   payload={"output": "doc"})]  # a retrieval no model call decided, by another agent
    assert shape_of(agent_trace(FAILED_READ) + fetcher) == {}
    scripted = [rec("run", None, agent="Runner"), *(rec(f"t{n}", "run", agent="Runner", event_type="TOOL_CALL",
                                                        start=n, name="grep", status="error") for n in (1, 2))]
    assert shape_of(scripted) == {}  # one agent, but no model call decided anything: no agent run to shape


@pytest.mark.parametrize("helper", [False, True])
@pytest.mark.parametrize("steps", [FAILED_READ, CLEAN])
def test_the_column_path_computes_the_same_features(steps: list[dict[str, Any]], helper: bool) -> None:
    records = with_helper(agent_trace(steps)) if helper else agent_trace(steps)
    ts = TraceSpans.from_records("t1", records)
    rules = load_rules()
    tree = build_tree(ts)
    facts = column_facts(ts, rules, tree)
    assert facts is not None
    by_columns = column_features(ts, rules, tree, facts, failed=False).features
    by_records, _ = trace_features(ts, rules, tree)
    assert {i: list(x) for i, x in by_columns.items()} == {i: list(x.items()) for i, x in by_records.items()}
    assert any(("single_agent", 1.0) in x for x in by_columns.values()) == (steps is FAILED_READ and not helper)


def test_a_healthy_single_agent_run_gets_no_strong_suspect_however_heavy_the_run_shape() -> None:
    ts = TraceSpans.from_records("t1", agent_trace(CLEAN))
    rules = load_rules()
    shipped = default_span_model()
    heavy = SpanModel({**shipped.weights, "single_agent": 10.0}, shipped.bias, shipped.threshold)
    for model in (shipped, heavy):
        lst = run_suspects(ts, rules, span_model=model)
        assert lst.suspects and not any(s.strong for s in lst.suspects), lst  # the best span alone, not strong
        tree = build_tree(ts)
        cols = run_suspects_from(ts, rules, column_facts(ts, rules, tree), span_model=model, tree=tree)
        assert cols.as_dict() == lst.as_dict()
    # the same weight does make a suspect of a span with a real signal in a single-agent run
    bad = run_suspects(TraceSpans.from_records("t1", agent_trace(FAILED_READ)), rules, span_model=heavy)
    assert bad.suspects[0].strong and bad.suspects[0].signal != "single_agent"


def test_the_shipped_model_weighs_the_run_shape() -> None:
    m = default_span_model()
    assert m.weights.get("single_agent", 0.0) > 0
    x = {"action_failed": 1.0}
    assert m.score({**x, "single_agent": 1.0}) > m.score(x)


# -- through the CLI ---------------------------------------------------------------------------------------------------


def _files(tmp_path: Path) -> Path:
    bad = agent_trace([
        {"say": "Search.", "calls": [("search", {"q": "policy"})], "tool": "search", "result": "No results found."},
        {"say": "I cannot access it, so I will assume a 30-day window.",
         "calls": [("final_answer", {"a": "30 days"})]},
    ], trace_id="unmarked-bad")
    good = agent_trace([
        {"say": "Search.", "calls": [("search", {"q": "policy"})], "tool": "search",
         "result": "Refunds within 14 days of purchase."},
        {"say": "Found it.", "calls": [("final_answer", {"a": "14 days"})]},
    ], trace_id="unmarked-good")
    failed = agent_trace([
        {"say": "Run.", "calls": [("pytest", {})], "tool": "pytest", "error": "ExitCode2"},
    ], trace_id="failed-run")
    failed[0]["attributes"]["outcome.passed"] = False
    return write_jsonl(tmp_path / "runs.jsonl", bad + good + failed)


def test_why_lists_suspects_for_a_run_not_marked_failed(tmp_path: Path) -> None:
    path = _files(tmp_path)
    out = run_cli("why", "unmarked-bad", "--from", str(path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["diagnosis"] is None and doc["failed"] is False and "not marked failed" in doc["note"]
    assert doc["suspects"][0]["span_id"] == "llm2" and doc["suspects"][0]["strong"]
    text = run_cli("why", "unmarked-bad", "--from", str(path))
    assert text.returncode == 0 and "not marked failed" in text.stdout and "suspects" in text.stdout
    assert "nothing to explain" not in text.stdout


def test_why_on_a_failed_run_leads_with_its_root_cause(tmp_path: Path) -> None:
    doc = json.loads(run_cli("why", "failed-run", "--from", str(_files(tmp_path)), "--json").stdout)
    assert doc["failed"] and doc["diagnosis"]["root_cause"]["span_id"] == "tool1"
    assert doc["suspects"][0]["span_id"] == "tool1" and doc["suspects"][0]["bucket"] == "tool_execution"


def test_bucket_suspects_flags_unmarked_runs_with_strong_suspects_only(tmp_path: Path) -> None:
    path = _files(tmp_path)
    plain = json.loads(run_cli("bucket", "--from", str(path), "--json").stdout)
    assert [r["trace_id"] for r in plain["runs"]] == ["failed-run"] and plain["flagged_runs"] == 0
    out = run_cli("bucket", "--suspects", "--from", str(path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    flagged = {r["trace_id"]: r for r in report["runs"] if r["flag"]}
    assert set(flagged) == {"unmarked-bad"} and report["flagged_runs"] == 1
    assert flagged["unmarked-bad"]["root_cause"]["span_id"] == "llm2"
    assert "suspected" in flagged["unmarked-bad"]["flag"]
    text = run_cli("bucket", "--suspects", "--from", str(path))
    assert "(suspected)" in text.stdout and "1 runs not marked failed" in text.stdout


def test_a_bucket_rule_on_our_conventions_is_a_suspect_with_its_own_name_and_bucket() -> None:
    records = [rec("root", None, name="run"),
               rec("ret", "root", event_type="RETRIEVAL", start=1, attributes={"retrieval.doc_count": 0}),
               rec("plan", "root", event_type="PLAN", start=2, attributes={"plan.steps": ["search", "never"]})]
    lst = run_suspects(TraceSpans.from_records("t1", records), load_rules())
    assert [(s.span_id, s.signal, s.bucket, s.strong) for s in lst.suspects] == [
        ("ret", "empty_retrieval", "retrieval_miss", True)]  # the weak planned_step_never_ran is no suspect alone
    # evidence lists what raised the score: the rule, and the tool signal when its fitted weight is positive
    tool_signal = ["tool_empty_result: returned nothing"] if default_span_model().weights["tool_empty_result"] > 0 \
        else []
    assert lst.suspects[0].evidence == ["empty_retrieval: retrieval returned 0 documents (a silent miss)",
                                        *tool_signal]
