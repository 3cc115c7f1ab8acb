"""Columns loaded from the store's chunks: the spec's defaults, odd values kept, repeated strings shared."""

from __future__ import annotations

from typing import Any

import orjson

from agent_debug.columns import TraceSpans
from agent_debug.store.chunks import CHUNK_VERSION, append_batch, decode


def _cols(**over: Any) -> dict[str, Any]:
    cols: dict[str, Any] = {
        "span_id": ["a", "b", "c"], "parent_id": [None, "a", "a"], "agent_name": ["x", "y", "y"],
        "event_type": ["AGENT", "LLM_CALL", "TOOL_CALL"], "name": ["run", None, "grep"], "status": None,
        "start_ns": [1, 2, 3], "duration_ns": [9, 4, 5], "token_cost": [None, None, None],
    }
    cols.update(over)
    return cols


def test_defaults_and_token_columns() -> None:
    ts = TraceSpans("t")
    append_batch(ts, _cols(token_cost=[None, {"prompt_tokens": 900, "completion_tokens": 120, "cost_usd": 0.01}, {}]))
    assert ts.name == ["run", "LLM_CALL", "grep"]  # a missing name is the event type
    assert ts.status == ["ok", "ok", "ok"]
    assert (ts.prompt_tokens, ts.completion_tokens, ts.cost_usd) == ([0, 900, 0], [0, 120, 0], [0.0, 0.01, 0.0])


def test_odd_values_take_the_slow_path_without_losing_anything() -> None:
    ts = TraceSpans("t")
    odd = [{"prompt_tokens": None, "completion_tokens": "7"}, {"prompt_tokens": "lots", "cost_usd": "0.5"}, None]
    append_batch(ts, _cols(token_cost=odd, status=["ok", "error", None]))
    assert ts.status == ["ok", "error", "ok"]
    assert (ts.prompt_tokens, ts.completion_tokens, ts.cost_usd) == ([0, 0, 0], [7, 0, 0], [0.0, 0.5, 0.0])


def test_a_version_1_chunk_of_an_older_store_is_upgraded_when_read() -> None:
    """Stores older than 0.1.0 kept a name of any JSON type and a token_cost of any type; their chunks have no
    version ("v"). Reading upgrades them: a name becomes its JSON text, a token cost that is no object counts
    nothing."""
    batch = _cols(name=[["a", "list"], None, 3], token_cost=[5, "x", {"prompt_tokens": 2}])
    encoded = _cols(name={"values": [3, "b"], "codes": [0, 1, 0]})
    blob = orjson.dumps({"roots": {"a": {"workflow": "w"}}, "hashes": "00000000" * 6, "batches": [batch, encoded]})
    c = decode(blob)
    assert c["v"] == CHUNK_VERSION
    ts = TraceSpans("t")
    for b in c["batches"]:
        append_batch(ts, b)
    assert ts.name == ['["a","list"]', "LLM_CALL", "3", "3", "b", "3"]  # a name is a string (spec)
    assert ts.prompt_tokens == [0, 0, 2, 0, 0, 0]


def test_repeated_strings_are_one_object_across_batches() -> None:
    def fresh(*values: str) -> list[str]:  # new string objects, as a JSON parser makes them
        return ["".join(list(v)) for v in values]

    ts = TraceSpans("t")
    append_batch(ts, _cols(agent_name=fresh("planner", "coder", "coder"), event_type=fresh("AGENT", "SEND", "SEND")))
    append_batch(ts, _cols(span_id=["d", "e", "f"], agent_name=fresh("planner", "coder", "coder"),
                            event_type=fresh("AGENT", "SEND", "SEND")))
    assert len({id(a) for a in fresh("coder", "coder")}) == 2  # the test's strings really are distinct objects
    assert len(ts) == 6 and ts.agent_name == ["planner", "coder", "coder"] * 2
    assert len({id(a) for a in ts.agent_name}) == 2 and len({id(e) for e in ts.event_type}) == 2
