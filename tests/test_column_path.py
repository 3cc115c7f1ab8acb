"""Diagnosis from columns (`analysis/column_path.py`) gives the answers the records path gives: the `why --json`
document (diagnosis, suspects with their scores, weaker suspects) of every run of the demo, the fixtures, the
shared data and varied synthetic runs; and the span digests made at ingest equal the per-record reference."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.analysis.blame_model import PRIOR_MODEL, SpanModel
from agent_debug.analysis.buckets import load_rules
from agent_debug.analysis.explain import column_facts, explain_trace, load_for_diagnosis
from agent_debug.analysis.source import StoreSource
from agent_debug.analysis.tree import build_tree
from agent_debug.digest import digest_batch, digest_records
from agent_debug.store.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "scripts"))

# texts that make signals fire (or nearly): errors, empties, self-corrections, final answers, tool calls
TEXTS: list[Any] = [
    "it seems the file is missing", "No results found", "", None, "None", "Results:\n\n[]", "Traceback (most "
    "recent call last):\n  ValueError: bad", "HTTP 404", "status: 503", "I will simulate the data",
    "final_answer(42)", "```python\nprint(1)\n```", {"role": "assistant", "content": "let me retry",
    "tool_calls": [{"function": {"name": "search", "arguments": "{\"q\": \"x\"}"}}]}, "x" * 12_000,
    "Successfully confirmed: compatible: yes", "compatible: no", "total = 57", "total = 90", "plain words here",
    "answer: Paris", "answer: Rome", "ſeems fine", "ok\u2028", "it s\\u0065ems",
]


def _varied(spans: int, seed: int) -> list[dict[str, Any]]:
    """A synthetic failed run whose outputs, inputs, attributes and retries hit every digest flag."""
    import synth

    rng = random.Random(seed)
    recs = list(synth.trace_records(spans, seed, trace_no=0, fail=True))
    ids = [r["span_id"] for r in recs]
    for r in recs:
        kind = r["event_type"]
        if kind in ("LLM_CALL", "TOOL_CALL", "RETRIEVAL", "SEND", "AGENT") and rng.random() < 0.35:
            key = rng.choice(["output", "response", "content"])
            r["payload"] = {key: rng.choice(TEXTS)}
            if rng.random() < 0.3:
                r["payload"]["input"] = rng.choice(TEXTS[:6] + ["same input"])
        a = r.setdefault("attributes", {})
        roll = rng.random()
        if kind in ("TOOL_CALL", "RETRIEVAL") and roll < 0.05:
            a["tool.exit_code"] = rng.choice([1, True, False, 0, "0"])
        elif roll < 0.08:
            a["retry.of"] = rng.choice(ids)
        elif roll < 0.1:
            a["tool.result_size"] = 0
        elif roll < 0.11:
            a["tool.timeout_class"] = "hard"
        elif roll < 0.12 and kind == "LLM_CALL":
            a["llm.finish_reason"] = "length"
            a["token.budget"] = 100
        elif roll < 0.13:
            a["verifier.passed"] = rng.choice([True, False])
        elif roll < 0.14:
            r["events"] = [{"name": "exception"}]
    return recs


def _compare(db: Path, *, expect_columns: int = 1, model: SpanModel | None = None) -> int:
    """Every run's `why --json` document by both paths (the shipped span model, or `model`); returns how many runs
    the columns path answered."""
    src = StoreSource(db)
    rules = load_rules()
    used = 0
    for s in src.list():
        lazy = load_for_diagnosis(src, s.trace_id)
        if column_facts(lazy, rules, build_tree(lazy)) is not None:
            used += 1
        fast = explain_trace(lazy, s, rules, span_model=model).as_dict()
        full = explain_trace(src.load(s.trace_id, records=True), s, rules, span_model=model,
                             path="records").as_dict()
        assert orjson.dumps(fast, default=str) == orjson.dumps(full, default=str), s.trace_id
    assert used >= expect_columns
    return used


def test_digest_batch_equals_the_per_record_reference() -> None:
    recs = _varied(4000, 5)
    for j in range(0, len(recs), 64):
        part = recs[j:j + 64]
        assert digest_batch(part) == digest_records(part)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_varied_synthetic_runs_answer_the_same_by_both_paths(tmp_path: Path, seed: int) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _varied(3000 if seed < 3 else 12_000, seed)))
    ingest([f], tmp_path / "s" / "traces.db")
    assert _compare(tmp_path / "s" / "traces.db") == 1


def test_demo_runs_answer_the_same_by_both_paths(tmp_path: Path) -> None:
    from agent_debug.demo.runner import run_demo

    demo = run_demo(tmp_path / "demo", 12, seed=5)
    ingest([demo.trace_dir], tmp_path / "s" / "traces.db")
    assert _compare(tmp_path / "s" / "traces.db", expect_columns=12) >= 12


def test_fixtures_answer_the_same_by_both_paths(tmp_path: Path) -> None:
    ingest([ROOT / "fixtures"], tmp_path / "s" / "traces.db")
    _compare(tmp_path / "s" / "traces.db")


@pytest.mark.parametrize("part", ["trail", "langfuse", "langsmith", "otlp", "who_and_when"])
def test_shared_data_answers_the_same_by_both_paths(tmp_path: Path, part: str) -> None:
    if not (SHARED / part).exists():
        pytest.skip(f"no shared data at {SHARED / part}")
    res = ingest([SHARED / part], tmp_path / "s" / "traces.db")
    if not res.records:
        pytest.skip(f"nothing readable in {SHARED / part}")
    _compare(tmp_path / "s" / "traces.db", expect_columns=0 if part == "who_and_when" else 1)
    _compare(tmp_path / "s" / "traces.db", expect_columns=0, model=PRIOR_MODEL)  # every signal in, none left out



@pytest.mark.parametrize("result", [
    "Lyon had 522,250 inhabitants in 2021, ahead of Marseille and Toulouse.",  # plain: a stand-in by columns
    "See https://insee.fr/lyon: 522,250 inhabitants in 2021, ahead of Marseille.",  # a phrase: read either way
])
def test_a_call_that_ignores_the_previous_result_is_named_by_both_paths(tmp_path: Path, result: str) -> None:
    """`ignores_result` reads the words of the previous call's result, which the column path stands in for when
    they hold no signal's phrase: it must read them from the record."""
    from test_suspects import ignoring_run

    records = ignoring_run("Let me look up the weather.", [("search", {"q": "weather today"})], result)
    assert ("llm2", "ignores_result") in _named_by_both(tmp_path, records, PRIOR_MODEL)
    assert ("llm2", "ignores_result") not in _named_by_both(tmp_path / "off", records, _off("ignores_result"))


def test_a_call_whose_code_skips_the_call_it_announced_is_named_by_both_paths(tmp_path: Path) -> None:
    """`intent_not_acted` reads a call's own text and code: a call with code is never worked out in bulk."""
    from test_suspects import TASK_CODE, agent_trace

    records = agent_trace([{"say": "Thought: I will ask our search_agent for the figures.\nCode:\n" + TASK_CODE},
                           {"say": "Done.", "calls": [("final_answer", {"a": "1"})]}])
    assert ("llm1", "intent_not_acted") in _named_by_both(tmp_path, records, PRIOR_MODEL)
    assert ("llm1", "intent_not_acted") not in _named_by_both(tmp_path / "off", records, _off("intent_not_acted"))


def _off(*names: str) -> SpanModel:
    """The a-priori model with these features left out (as a fitted model's selection leaves them)."""
    return SpanModel(dict(PRIOR_MODEL.weights), PRIOR_MODEL.bias, PRIOR_MODEL.threshold, off=frozenset(names))


def _named_by_both(tmp_path: Path, records: list[dict[str, Any]], model: SpanModel) -> set[tuple[str, str]]:
    """(span, signal) of every evidence line of a failed run's suspects, once both paths agree on the document."""
    records = [dict(r) for r in records]
    records[0]["status"] = "error"
    f = tmp_path / "t.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    ingest([f], tmp_path / "s" / "traces.db")
    assert _compare(tmp_path / "s" / "traces.db", model=model) == 1
    src = StoreSource(tmp_path / "s" / "traces.db")
    (s,) = src.list()
    doc = explain_trace(load_for_diagnosis(src, s.trace_id), s, load_rules(), span_model=model).as_dict()
    return {(x["span_id"], line.split(":")[0]) for key in ("suspects", "weaker_suspects") for x in doc[key]
            for line in x["evidence"]}



def test_an_older_store_without_digests_answers_by_records(tmp_path: Path) -> None:
    """Chunks written before digests existed (chunk format 2) still load, and diagnosis falls back to parsing
    records."""
    import sqlite3

    f = tmp_path / "t.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _varied(2000, 9)))
    db = tmp_path / "s" / "traces.db"
    ingest([f], db)
    con = sqlite3.connect(db)
    for cid, cols in con.execute("SELECT id, cols FROM chunks").fetchall():
        c = orjson.loads(cols)
        c["v"] = 2  # as chunk format 2 wrote them: no digests
        for b in c["batches"]:
            for k in ("df", "ol", "ih", "da"):
                b.pop(k, None)
        con.execute("UPDATE chunks SET cols = ? WHERE id = ?", (orjson.dumps(c), cid))
    con.commit()
    con.close()
    src = StoreSource(db)
    (s,) = src.list()
    ts = load_for_diagnosis(src, s.trace_id)
    assert isinstance(ts.records, list) and ts.digest is False
    assert _compare(db, expect_columns=0) == 0


def test_a_run_with_a_parent_cycle_or_a_repeated_id_answers_by_records() -> None:
    """The column path reads parents as positions, which only a tree with no cycle and no repeated span id has:
    such a run is answered by the records path, and still answered."""
    from agent_debug.columns import TraceSpans, summarize

    base = _varied(300, 4)
    cyclic = [dict(r) for r in base]
    cyclic[5] = {**cyclic[5], "parent_id": cyclic[6]["span_id"]}
    cyclic[6] = {**cyclic[6], "parent_id": cyclic[5]["span_id"]}
    repeated = [*base, {**base[7], "name": "again"}]
    rules = load_rules()
    for recs in (base, cyclic, repeated):
        ts = TraceSpans.from_records(base[0]["trace_id"], recs)
        tree = build_tree(ts)
        assert (column_facts(ts, rules, tree) is None) == (recs is not base)
        assert (tree.parent is None) == bool(tree.cycles or tree.duplicates) == (recs is not base)
        assert explain_trace(ts, summarize(ts), rules).suspects.suspects


def test_text_why_loads_the_trace_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from agent_debug.cli.main import app

    f = tmp_path / "t.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _varied(500, 4)))
    db = tmp_path / "s" / "traces.db"
    ingest([f], db)
    loads: list[Any] = []
    real = StoreSource.load

    def counting(self: StoreSource, trace_id: str, *, records: bool | str = False) -> Any:
        loads.append(records)
        return real(self, trace_id, records=records)

    monkeypatch.setattr(StoreSource, "load", counting)
    out = CliRunner().invoke(app, ["why", "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert "suspects" in out.output
    assert loads == ["lazy"]
