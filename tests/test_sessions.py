"""Session-level failure modes: multi-turn state corruption and its propagation across turns, and emergent
disagreement between parallel branches, on hand-built runs and through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_debug.analysis.disagreement import conclusions, find_disagreements
from agent_debug.analysis.sessions import facts
from agent_debug.columns import TraceSpans
from conftest import rec, run_cli, write_jsonl

# -- emergent disagreement --------------------------------------------------------------------------------------------


def _llm(span_id: str, parent: str, agent: str, start: float, said: str, took: Any = None,
         trace_id: str = "t1") -> dict[str, Any]:
    return rec(span_id, parent, trace_id=trace_id, agent=agent, event_type="LLM_CALL", start=start,
               duration_ms=500, payload={"request": took or {"role": agent}, "response": {"text": said}})


def branches(merge_says: str, *, merge_took: Any = None, b_took: Any = None, passed: bool | None = None,
             trace_id: str = "t1") -> list[dict[str, Any]]:
    attrs = {} if passed is None else {"outcome.passed": passed}
    return [rec("root", None, trace_id=trace_id, agent="lead", name="run", attributes=attrs),
            _llm("est_a", "root", "analyst", 1.0, "Rows affected: 1,200 (from the audit log)", trace_id=trace_id),
            _llm("est_b", "root", "engineer", 1.1, "rows affected = 57", took=b_took, trace_id=trace_id),
            _llm("merge", "root", "writer", 3.0, merge_says,
                 took=merge_took or {"estimates": ["rows affected: 1200", "rows affected: 57"]}, trace_id=trace_id)]


def test_conclusions_are_read_as_yes_no_numbers_and_entities() -> None:
    found = {(c.kind, c.key, c.value) for c in conclusions("Backward compatible: no. Rows affected: 1,200. "
                                                              "The answer is Paris.")}
    assert found == {("yesno", "backward compatible", "no"), ("number", "rows affected", "1200"),
                     ("entity", "answer", "Paris")}


def test_contradictory_parallel_branches_merged_without_reconciling_are_found() -> None:
    ts = TraceSpans.from_records("t1", branches("Summary: rows affected: 1200, safe to ship."))
    (d,) = find_disagreements(ts)
    assert {ts.span_id[d.a], ts.span_id[d.b]} == {"est_a", "est_b"} and ts.span_id[d.merge] == "merge"
    assert (d.kind, d.key, {d.value_a, d.value_b}) == ("number", "rows affected", {"1200", "57"})
    assert "merged without reconciling" in d.evidence(ts)


def test_a_reconciled_merge_a_correction_or_one_agent_is_no_unreconciled_disagreement() -> None:
    reconciled = TraceSpans.from_records("t1", branches("The estimates conflict (1200 vs 57): rows affected: "
                                                        "1200 after re-checking the audit log."))
    assert [d.merge for d in find_disagreements(reconciled)] == [None]
    corrected = TraceSpans.from_records("t1", branches("rows affected: 57", b_took={"saw": "rows affected: 1200"}))
    assert find_disagreements(corrected) == []
    same_agent = branches("rows affected: 1200")
    same_agent[2]["agent_name"] = "analyst"
    assert find_disagreements(TraceSpans.from_records("t1", same_agent)) == []


def test_a_disagreement_is_a_root_cause_and_a_suspect_with_both_branches(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl",
                       branches("rows affected: 1200", passed=False, trace_id="failed")
                       + branches("rows affected: 1200", trace_id="unmarked"))
    out = run_cli("bucket", "--from", str(path), "--json")
    assert out.returncode == 0, out.stderr
    (run,) = json.loads(out.stdout)["runs"]
    assert run["bucket"] == "disagreement" and run["root_cause"]["span_id"] == "merge"
    assert any("est_a" in e and "est_b" in e for e in run["evidence"])
    why = json.loads(run_cli("why", "unmarked", "--from", str(path), "--json").stdout)
    top = why["suspects"][0]
    assert top["span_id"] == "merge" and top["signal"] == "disagreement" and top["strong"]
    assert top["related_spans"] == ["est_a", "est_b"]


# -- sessions ---------------------------------------------------------------------------------------------------------


def turn(tid: str, n: int, *, history: list[str], introduces: str | None = None, fails_with: str | None = None,
         session: str = "s1") -> list[dict[str, Any]]:
    root = rec("root", None, trace_id=tid, agent="assistant", name="turn", start=10.0 * n, duration_ms=5000,
               session_id=session, payload={"input": {"question": f"q{n}", "history": history},
                                            "output": f"answer {n}"})
    out = [root]
    if introduces:
        out.append(rec(f"{tid}-look", "root", trace_id=tid, agent="researcher", event_type="RETRIEVAL",
                       start=10.0 * n + 1, payload={"request": {"q": "limit"}, "response": {"text": introduces}},
                       attributes={"retrieval.doc_count": 1}))
    call = rec(f"{tid}-act", "root", trace_id=tid, agent="coder", event_type="TOOL_CALL", start=10.0 * n + 2,
               payload={"request": {"history": history}, "response": {"output": "ok"}})
    if fails_with:
        call["status"] = "error"
        call["error"] = {"type": "Throttled", "message": fails_with}
        root["status"] = "error"
        root["error"] = {"type": "Throttled", "message": fails_with}
    out.append(call)
    return out


def session_files(tmp_path: Path, failure: str) -> Path:
    said = "Use max_retries=3 for the backfill."
    records = (turn("turn1", 1, history=[], introduces="runbook (2019): max_retries=3")
               + turn("turn2", 2, history=[said])
               + turn("turn3", 3, history=[said, "applied"], fails_with=failure))
    return write_jsonl(tmp_path / "session.jsonl", records)


def test_facts_are_key_values_quoted_strings_and_long_numbers() -> None:
    assert facts('{"max_retries": 3} owner: "Jane Doe" took 1,250 ms, 42 tries') == {
        "max_retries=3", "owner=jane", "jane doe", "1250"}


def test_state_corruption_is_traced_to_the_turn_that_introduced_the_fact(tmp_path: Path) -> None:
    path = session_files(tmp_path, "throttled: max_retries=3 exhausted")
    out = run_cli("session", "s1", "--from", str(path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    sc = doc["state_corruption"]
    assert sc["fact"] == "max_retries=3" and sc["named_by_failure"]
    assert (sc["origin"]["turn"], sc["origin"]["span_id"], sc["origin"]["bucket"]) == (1, "turn1-look",
                                                                                        "retrieval_miss")
    assert [(p["role"], p["turn"]) for p in sc["propagation"]] == [("introduced", 1), ("carried", 2), ("failed", 3)]
    assert doc["first_bad_turn"]["turn"] == 1 and doc["first_failed_turn"] == 3
    text = run_cli("session", "s1", "--from", str(path))
    assert "state corruption" in text.stdout and "turn 2 carried" in text.stdout
    bucket = json.loads(run_cli("bucket", "--from", str(path), "--json").stdout)
    (run,) = bucket["runs"]
    assert run["bucket"] == "retrieval_miss" and run["root_cause"]["span_id"] == "turn1-look"
    assert run["root_cause"]["trace_id"] == "turn1" and run["session"]["fact"] == "max_retries=3"
    why = json.loads(run_cli("why", "turn3", "--from", str(path), "--json").stdout)
    assert why["diagnosis"]["root_cause"]["turn"] == 1
    assert "root cause in turn 1" in run_cli("why", "turn3", "--from", str(path)).stdout


def test_a_failure_that_does_not_name_the_carried_fact_stays_in_its_own_turn(tmp_path: Path) -> None:
    path = session_files(tmp_path, "disk full")
    bucket = json.loads(run_cli("bucket", "--from", str(path), "--json").stdout)
    (run,) = bucket["runs"]
    assert run["root_cause"]["span_id"] == "turn3-act" and run["session"] is None
