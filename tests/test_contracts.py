"""Contracts that used to live only in comments, as property tests:

- ingest's running summary of a new trace (`store.ingest._Agg`, kept chunk by chunk) equals `columns.summarize`
  of the trace's records;
- the reader's bulk check (`formats.reader._checked_columns`, column-wise in C) accepts a batch exactly when
  every value in it passes `model.check_record` unchanged (and so `formats.accept.accept` keeps it as it is).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from agent_debug.columns import TraceSpans, summarize
from agent_debug.formats.accept import accept
from agent_debug.formats.reader import _checked_columns, record_columns
from agent_debug.model import MAX_DURATION_NS, MAX_TIMESTAMP, check_record
from agent_debug.store import ingest as ingest_mod
from agent_debug.store.db import connect
from agent_debug.store.query import list_traces

# -- _Agg == summarize ---------------------------------------------------------------------------------------------

_COUNT = st.one_of(st.none(), st.integers(-5, 2**60), st.floats(-10, 1e17, allow_nan=False), st.booleans(),
                   st.sampled_from(["12", "3.5", "lots", "", "-4"]), st.just([1]))
_COST = st.one_of(st.none(), st.floats(-1, 1e13, allow_nan=False), st.integers(-1, 10**13),
                  st.sampled_from(["0.25", "n/a"]))
_TEXT = st.one_of(st.text("abc", max_size=3), st.integers(0, 9), st.lists(st.integers(0, 3), max_size=2))


@st.composite
def _token_cost(draw: Any) -> dict[str, Any]:
    tc: dict[str, Any] = {}
    for key, values in (("prompt_tokens", _COUNT), ("completion_tokens", _COUNT), ("cost_usd", _COST)):
        if draw(st.booleans()):
            tc[key] = draw(values)
    return tc


@st.composite
def _trace(draw: Any, trace_id: str) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 12))
    ids = [f"{trace_id}-{i}" for i in range(n)]
    recs = []
    for i, sid in enumerate(ids):
        parent = draw(st.one_of(st.none(), st.sampled_from(ids[:i] or ["missing"]), st.just("missing")))
        rec: dict[str, Any] = {
            "trace_id": trace_id, "span_id": sid, "parent_id": parent,
            "agent_name": draw(st.sampled_from(["planner", "coder", ""])),
            "event_type": draw(st.sampled_from(["AGENT", "LLM_CALL", "custom"])),
            "timestamp": draw(st.one_of(st.floats(-1e9, 4.5e9, allow_nan=False), st.integers(0, 4 * 10**9))),
            "duration_ns": draw(st.one_of(st.integers(0, 10**12), st.just(MAX_DURATION_NS))),
        }
        for key, values in (("name", st.one_of(st.none(), _TEXT)), ("status", st.sampled_from(["ok", "error"])),
                            ("token_cost", _token_cost()), ("run_id", _TEXT), ("workflow", _TEXT),
                            ("session_id", _TEXT), ("actor", _TEXT)):
            if draw(st.booleans()):
                rec[key] = draw(values)
        if draw(st.booleans()):
            rec["attributes"] = {"outcome.passed": draw(st.one_of(st.booleans(), st.none(), st.just("no")))}
        recs.append(rec)
    return recs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_the_running_summary_of_ingest_equals_summarize(tmp_path_factory: Any, data: Any) -> None:
    traces = {tid: data.draw(_trace(tid)) for tid in ("ta", "tb", "tc")[: data.draw(st.integers(1, 3))]}
    records = data.draw(st.permutations([r for recs in traces.values() for r in recs]))
    flush = data.draw(st.integers(1, 30))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=4)))
    case = tmp_path_factory.mktemp("agg")
    paths = []  # several files read by one ingest: the summary is kept across them (and across flushes)
    for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(records)], strict=True)):
        if a < b:
            paths.append(case / f"part{k}.jsonl")
            paths[-1].write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records[a:b]))
    db = case / "traces.db"
    saved = ingest_mod.FLUSH_RECORDS
    ingest_mod.FLUSH_RECORDS = flush
    try:
        res = ingest_mod.ingest(paths, db)
    finally:
        ingest_mod.FLUSH_RECORDS = saved
    assert res.records == len(records) and res.rejected == 0
    con = connect(db)
    try:
        stored = {s.trace_id: s for s in list_traces(con)}
    finally:
        con.close()
    for tid in traces:
        in_order = [r for r in records if r["trace_id"] == tid]  # the order ingest met them in
        expected = summarize(TraceSpans.from_records(tid, in_order, keep_records=False))
        got = stored[tid]
        assert got.as_dict() | {"source_file": None} == expected.as_dict() | {"source_file": None}


# -- _checked_columns == check_record ------------------------------------------------------------------------------

_VALID: dict[str, Any] = {"trace_id": "t", "span_id": "s", "parent_id": None, "agent_name": "a",
                          "event_type": "AGENT", "timestamp": 1.5, "duration_ns": 10}
# for each field: values the record may have (absent included), valid or not
_VARIANTS: dict[str, list[Any]] = {
    "trace_id": ["t", "", 5, None, ["t"]],
    "span_id": ["s", "", 0, None],
    "parent_id": [None, "p", "", 3, {"x": 1}],
    "agent_name": ["a", "", 1, None, True],
    "event_type": ["AGENT", "", None, 2.5],
    "timestamp": [1.5, 0, -1, 1795320558.8, MAX_TIMESTAMP - 1, MAX_TIMESTAMP, -MAX_TIMESTAMP, 5e9, "1.5", True,
                  None],
    "duration_ns": [10, 0, -1, 1.0, 2.5, MAX_DURATION_NS, MAX_DURATION_NS + 1, True, "10", None, 2**63],
    "status": ["ok", "error", "OK", None, 1, ""],
    "attributes": [{}, {"k": 1}, None, [], "x"],
    "payload": [{"a": "b"}, None, [1], 0],
    "token_cost": [{"prompt_tokens": 3}, None, "3", []],
    "error": [{"type": "E"}, None, "boom"],
    "name": ["n", None, 3, ["a"]],
    "format_version": [1, 2, "1", None, 0],
}
_ABSENT = object()


@st.composite
def _value(draw: Any) -> Any:
    if draw(st.integers(0, 9)) == 0:  # not a record at all, now and then
        return draw(st.sampled_from([[1, 2], "text", 3, None, []]))
    rec: dict[str, Any] = {}
    for key, variants in _VARIANTS.items():
        base = _VALID.get(key, _ABSENT)
        # mostly the valid value (so whole batches pass), else any variant or absent
        v = draw(st.sampled_from([*variants, _ABSENT])) if draw(st.integers(0, 5)) == 0 else base
        if v is not _ABSENT:
            rec[key] = v
    return rec


def _accepted_unchanged(obj: Any) -> bool:
    """check_record accepts it without normalizing anything (compared as JSON text: 1.0 is not 1)."""
    mine = copy.deepcopy(obj)
    return check_record(mine) is None and orjson.dumps(mine) == orjson.dumps(obj)


@settings(max_examples=300, deadline=None)
@given(st.lists(_value(), min_size=1, max_size=5))
def test_the_bulk_column_check_accepts_exactly_what_check_record_accepts(values: list[Any]) -> None:
    objs = [orjson.loads(orjson.dumps(v)) for v in values]  # as the reader has them: parsed JSON
    cols = _checked_columns(copy.deepcopy(objs))
    expected = all(_accepted_unchanged(o) for o in objs)
    assert (cols is not None) == expected
    if cols is not None:
        assert cols == record_columns(objs)
        for o in objs:
            kept, reason = accept(copy.deepcopy(o), orjson.dumps(o))
            assert reason is None and kept == o


def test_the_variants_cover_both_answers() -> None:
    """The strategy above reaches batches that pass and batches that do not (else the property is empty)."""
    assert _checked_columns([dict(_VALID)]) is not None
    assert _accepted_unchanged(dict(_VALID))
    for key, variants in _VARIANTS.items():
        for v in variants:
            rec = dict(_VALID, **{key: v})
            assert (_checked_columns([copy.deepcopy(rec)]) is not None) == _accepted_unchanged(rec), (key, v)


def test_summaries_agree_on_a_known_trace(tmp_path: Path) -> None:
    """A fixed case of the first property, so a failure there shows in plain numbers."""
    recs = [{"trace_id": "t", "span_id": "r", "parent_id": None, "agent_name": "o", "event_type": "AGENT",
             "timestamp": 10.0, "duration_ns": 5_000_000_000, "workflow": "w",
             "attributes": {"outcome.passed": False}},
            {"trace_id": "t", "span_id": "c", "parent_id": "r", "agent_name": "p", "event_type": "LLM_CALL",
             "timestamp": 11.0, "duration_ns": 7_000_000_000, "status": "error",
             "token_cost": {"prompt_tokens": "12", "completion_tokens": 3.9, "cost_usd": "0.5"}}]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    ingest_mod.ingest([path], tmp_path / "traces.db")
    con = connect(tmp_path / "traces.db")
    try:
        (s,) = list_traces(con)
    finally:
        con.close()
    assert (s.status, s.start_ns, s.end_ns, s.duration_ns, s.error_spans) == (
        "failed", 10_000_000_000, 18_000_000_000, 5_000_000_000, 1)
    assert (s.prompt_tokens, s.completion_tokens, s.cost_usd, s.agents) == (12, 3, 0.5, ["o", "p"])
