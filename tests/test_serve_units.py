"""The parts of `serve` that need no server: session states with an injected clock, the live OTLP mapper's
hold-for-parents, the store's in-memory ingest, the store follower, and OTLP body decoding."""

from __future__ import annotations

import base64
import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.serve.follow import StoreFollower
from agent_debug.serve.mapping import LiveMapper
from agent_debug.serve.sessions import SessionManager, State
from agent_debug.store.db import connect
from agent_debug.store.ingest import ingest
from agent_debug.store.query import list_traces, load_trace
from agent_debug.store.records import ingest_records
from conftest import rec, run_cli, write_jsonl


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def states(self, tid: str) -> list[str]:
        return [d["state"] for k, d in self.events if k == "state" and d["trace_id"] == tid]


def span(tid: str, sid: str, parent: str | None) -> dict[str, Any]:
    return {"trace_id": tid, "span_id": sid, "parent_id": parent}


# -- sessions -------------------------------------------------------------------------------------------------


def test_a_run_goes_attached_recording_analyzing_done_when_its_root_ends() -> None:
    ev = Recorder()
    sm = SessionManager(ev, idle=30, settle=0.2)
    sm.spans_arrived([span("t", "c", "r")], {}, now=0.0)
    assert sm.state_of("t") is State.RECORDING
    assert sm.due(now=10.0) == []  # no root yet, not idle yet
    sm.spans_arrived([span("t", "r", None)], {}, now=10.0)
    assert sm.due(now=10.1) == []  # settling: siblings of the root may still be on their way
    assert sm.due(now=10.3) == ["t"]
    assert sm.state_of("t") is State.ANALYZING
    assert sm.analyzed("t", {"bucket": None})
    assert ev.states("t") == ["attached", "recording", "analyzing", "done"]
    assert sm.get("t")["results"] == {"bucket": None}  # type: ignore[index]


def test_a_run_whose_root_never_ends_is_analyzed_after_idle_seconds() -> None:
    ev = Recorder()
    sm = SessionManager(ev, idle=5, settle=0.2)
    sm.spans_arrived([span("t", "c", "r")], {}, now=0.0)
    sm.spans_arrived([span("t", "d", "r")], {}, now=3.0)
    assert sm.due(now=7.9) == []  # 4.9 s since the last span
    assert sm.due(now=8.0) == ["t"]


def test_late_spans_reopen_a_done_session_and_results_of_a_reopened_analysis_are_dropped() -> None:
    ev = Recorder()
    sm = SessionManager(ev, idle=30, settle=0.2)
    sm.spans_arrived([span("t", "r", None)], {}, now=0.0)
    assert sm.due(now=1.0) == ["t"]
    assert sm.analyzed("t", {"n": 1})
    sm.spans_arrived([span("t", "late", "r")], {}, now=2.0)  # reopens DONE
    assert sm.state_of("t") is State.RECORDING and sm.get("t")["reopened"] == 1  # type: ignore[index]
    assert sm.due(now=2.5) == ["t"]
    sm.spans_arrived([span("t", "later", "r")], {}, now=2.6)  # arrives while it is being analyzed
    assert not sm.analyzed("t", {"n": 2})  # stale: not DONE with it
    assert sm.state_of("t") is State.RECORDING
    assert sm.due(now=3.0) == ["t"] and sm.analyzed("t", {"n": 3})
    assert ev.states("t") == ["attached", "recording", "analyzing", "done", "recording", "analyzing", "recording",
                              "analyzing", "done"]
    assert sm.get("t")["results"] == {"n": 3} and sm.state_of("other") is State.IDLE  # type: ignore[index]


# -- the live mapper ------------------------------------------------------------------------------------------


def otlp(trace: str, *spans: dict[str, Any]) -> dict[str, Any]:
    out = []
    for s in spans:
        attrs = [{"key": k, "value": {"intValue": v} if isinstance(v, int) else {"stringValue": v}}
                 for k, v in s.get("attrs", {}).items()]
        out.append({"traceId": trace, "spanId": s["id"], "parentSpanId": s.get("parent", ""), "name": s["name"],
                    "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
                    "attributes": attrs})
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
                                                              "value": {"stringValue": "svc"}}]},
                               "scopeSpans": [{"scope": {"name": "s"}, "spans": out}]}]}


TID = "ab" * 16
ROOT = {"id": "0" * 15 + "1", "name": "run"}
AGENT = {"id": "0" * 15 + "2", "parent": ROOT["id"], "name": "invoke_agent writer",
         "attrs": {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 30}}
CHAT = {"id": "0" * 15 + "3", "parent": AGENT["id"], "name": "chat",
        "attrs": {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 30}}


def test_a_child_exported_before_its_agent_span_waits_for_it_and_gets_its_agent() -> None:
    m = LiveMapper(hold=1.0)
    assert m.add(otlp(TID, CHAT), now=0.0) == []  # its agent is named by an ancestor not yet here
    assert m.held() == 1
    out = m.add(otlp(TID, AGENT), now=0.3)
    by_name = {r["name"]: r for r in out}
    assert set(by_name) == {"chat", "invoke_agent writer"}
    assert by_name["chat"]["agent_name"] == "writer"
    assert by_name["chat"]["token_cost"]["prompt_tokens"] == 30
    assert "token_cost" not in by_name["invoke_agent writer"]  # the sum of its child's: not counted twice
    root = m.add(otlp(TID, ROOT), now=0.4)
    assert [r["name"] for r in root] == ["run"] and root[0]["agent_name"] == "svc"


def test_usage_is_dropped_from_an_agent_span_whose_child_was_stored_earlier() -> None:
    m = LiveMapper(hold=1.0)
    chat = {**CHAT, "attrs": {**CHAT["attrs"], "gen_ai.agent.name": "writer"}}  # names its agent: not held
    assert [r["name"] for r in m.add(otlp(TID, chat), now=0.0)] == ["chat"]
    (agent,) = m.add(otlp(TID, AGENT), now=5.0)
    assert "token_cost" not in agent


def test_a_held_span_is_released_after_the_hold_with_what_is_known() -> None:
    m = LiveMapper(hold=1.0)
    assert m.add(otlp(TID, CHAT), now=0.0) == []
    assert m.due(now=0.5) == []
    (late,) = m.due(now=1.0)
    assert late["agent_name"] == "svc" and m.held() == 0  # as a file cut at this point would map it


def test_a_repeated_export_is_not_stored_twice() -> None:
    m = LiveMapper(hold=1.0)
    chat = {**CHAT, "attrs": {**CHAT["attrs"], "gen_ai.agent.name": "writer"}}
    assert len(m.add(otlp(TID, chat), now=0.0)) == 1
    assert m.add(otlp(TID, chat), now=0.1) == [] and m.repeats == 1


def test_secrets_are_redacted_by_the_sdk_redactor() -> None:
    m = LiveMapper(hold=1.0)
    (out,) = m.add(otlp(TID, {**ROOT, "attrs": {"db.password": "hunter2", "note": "sk-" + "a" * 30}}), now=0.0)
    assert out["attributes"]["db.password"] == "[REDACTED]"
    assert "sk-aaaa" not in orjson.dumps(out).decode()


# -- the store's in-memory ingest ------------------------------------------------------------------------------


def test_ingest_records_stores_like_a_file_ingest_with_dedupe_conflicts_and_rejects(tmp_path: Path) -> None:
    recs = [rec("r", trace_id="T", workflow="w"), rec("a", "r", trace_id="T", status="error",
                                                      error={"type": "E", "message": "m"})]
    file_db, mem_db = tmp_path / "file.db", tmp_path / "mem.db"
    ingest([write_jsonl(tmp_path / "t.jsonl", recs)], file_db)
    first = ingest_records([dict(r) for r in recs] + [{"span_id": "no trace"}], mem_db, source="test")
    assert (first.records, first.rejected) == (2, 1) and sum(first.rejects_by_reason.values()) == 1
    again = ingest_records([dict(r) for r in recs], mem_db)
    assert (again.records, again.duplicates, again.conflicts) == (0, 2, 0)
    changed = ingest_records([{**recs[1], "name": "other"}], mem_db)
    assert (changed.records, changed.conflicts) == (0, 1)
    file_con, mem_con = connect(file_db), connect(mem_db)
    assert [s.as_dict() | {"source_file": None} for s in list_traces(mem_con)] == \
        [s.as_dict() | {"source_file": None} for s in list_traces(file_con)]
    assert load_trace(mem_con, "T", records=True).records == load_trace(file_con, "T", records=True).records
    rejects = (tmp_path / "mem.rejects.jsonl").read_bytes()
    assert b'"source":"test"' in rejects


def test_the_follower_sees_spans_and_runs_stored_after_it_started(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    ingest_records([rec("old", trace_id="before")], db)
    follower = StoreFollower(db)
    assert follower.poll().spans == []
    ingest_records([rec("r", trace_id="T"), rec("c", "r", trace_id="T", agent="x", event_type="TOOL_CALL")], db)
    got = follower.poll()
    assert sorted(s["span_id"] for s in got.spans) == ["c", "r"] and set(got.runs) == {"T"}
    assert {s["agent_name"] for s in got.spans} == {"agent", "x"} and got.runs["T"].span_count == 2
    assert follower.poll().spans == []
    follower.close()


# -- OTLP bodies ----------------------------------------------------------------------------------------------


def test_protobuf_bodies_are_walked_into_the_otlp_json_shape() -> None:
    pytest.importorskip("opentelemetry.proto")
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from agent_debug.formats import otlp as otlp_importer
    from agent_debug.serve import otlp_http

    doc = otlp(TID, ROOT, {**CHAT, "parent": ROOT["id"]})
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["status"] = {"code": 2, "message": "boom"}
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["attributes"] += [  # every kind of value, decoded alike
        {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"doubleValue": 1.5}]}}},
        {"key": "flag", "value": {"boolValue": True}}, {"key": "n", "value": {"intValue": "-42"}},
        {"key": "nan", "value": {"doubleValue": "NaN"}}, {"key": "blob", "value": {"bytesValue": "AAEC"}},
        {"key": "empty", "value": {}}, {"key": "n", "value": {}},  # a later empty value keeps the earlier one
        {"key": "kv", "value": {"kvlistValue": {"values": [
            {"key": "a", "value": {"intValue": "1"}},
            {"key": "b", "value": {"kvlistValue": {"values": [{"key": "c", "value": {"stringValue": "d"}}]}}},
            {"key": "list", "value": {"arrayValue": {"values": [
                {"kvlistValue": {"values": [{"key": "x", "value": {"boolValue": False}}]}}, {}]}}}]}}},
    ]
    doc["resourceSpans"][0]["resource"]["attributes"].append({"key": "res.n", "value": {"doubleValue": 2.0}})
    as_proto_json = orjson.loads(orjson.dumps(doc))  # the protobuf JSON mapping wants ids in base64
    for sp in as_proto_json["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            sp[key] = base64.b64encode(bytes.fromhex(sp[key])).decode()
    msg = json_format.ParseDict(as_proto_json, ExportTraceServiceRequest())
    walked = otlp_http.parse(msg.SerializeToString(), otlp_http.PROTOBUF)
    as_json = otlp_http.parse(orjson.dumps(doc), otlp_http.JSON)
    mapped = list(otlp_importer.convert([walked], "x"))
    assert mapped == list(otlp_importer.convert([as_json], "x"))
    attrs = mapped[1]["attributes"]
    assert (attrs["n"], attrs["flag"], attrs["nan"], attrs["kv.a"], attrs["kv.b.c"]) == (-42, True, "NaN", 1, "d")
    with pytest.raises(otlp_http.RequestError) as bad:
        otlp_http.decompress(gzip.compress(b"{}")[:-4], "gzip", 1000)
    assert bad.value.status == 400
    with pytest.raises(otlp_http.RequestError) as unsupported:
        otlp_http.decompress(b"", "br", 1000)
    assert unsupported.value.status == 415


def test_a_request_whose_store_fails_is_refused_and_its_retry_is_stored_once(tmp_path: Path) -> None:
    from agent_debug.serve.engine import Engine, StoreUnavailable
    from agent_debug.serve.writer import StoreWriter

    engine = Engine(tmp_path / "s.db", lambda events: None, analysis_process=False)
    assert isinstance(engine.writer, StoreWriter)
    real_store = engine.writer._store
    calls = []

    def failing_once(records: Any, out: Any) -> list[int]:
        calls.append(len(records))
        if len(calls) == 1:
            raise OSError("disk full")
        return real_store(records, out)

    engine.writer._store = failing_once  # type: ignore[method-assign]
    engine.start()
    try:
        request = otlp(TID, ROOT, {**CHAT, "parent": ROOT["id"], "attrs": {"gen_ai.agent.name": "w"}})
        with pytest.raises(StoreUnavailable, match="disk full"):
            engine.submit(request).result(10)
        assert engine.submit(request).result(10) == (0, "")  # the exporter's retry: mapped again, stored
        assert engine.submit(request).result(10) == (0, "")  # a third time: a repeat, not stored again
    finally:
        engine.stop()
    con = connect(tmp_path / "s.db")
    assert con.execute("SELECT SUM(n) FROM chunks").fetchone()[0] == 2
    assert calls == [2, 2]


def test_usage_of_a_child_arriving_after_its_aggregate_parent_was_stored_is_not_counted_twice(
        tmp_path: Path) -> None:
    m = LiveMapper(hold=1.0)
    (agent,) = m.add(otlp(TID, AGENT), now=0.0)  # names its agent: stored at once, with the sum of its children
    assert agent["token_cost"]["prompt_tokens"] == 30
    (late,) = m.add(otlp(TID, CHAT), now=0.5)  # its child, exported later
    assert "token_cost" not in late and late["attributes"]["token_cost.counted_in"] == AGENT["id"]
    assert late["attributes"]["gen_ai.usage.input_tokens"] == 30  # the numbers stay visible
    (root,) = m.add(otlp(TID, ROOT), now=0.6)
    db = tmp_path / "s.db"
    ingest_records([agent, late, root], db)
    (summary,) = list_traces(connect(db))
    assert summary.prompt_tokens == 30


@pytest.mark.parametrize("command", ["serve", "tail"])
def test_a_clickhouse_store_is_a_usage_error_for_the_live_commands(tmp_path: Path, command: str) -> None:
    """serve and tail keep their live store in SQLite: a ClickHouse --db is one line and exit 2, and no file is
    created under a name made from the URL (as there was)."""
    res = run_cli(command, "--db", "chdb:///" + str(tmp_path / "ch"), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("Error: ") and len(res.stderr.strip().splitlines()) == 1
    assert "SQLite" in res.stderr and "store copy" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_announcing_stored_runs_never_waits_for_the_sessions_lock_inside_the_events_lock(tmp_path: Path) -> None:
    """The analysis thread holds the sessions' lock while it emits a state event (which takes the events lock);
    the writer thread, announcing runs it found stored, must not hold the events lock while it reads a session's
    state. The other order deadlocked `serve` (every thread, then /healthz, waiting) under load."""
    import threading

    from agent_debug.serve.engine import Engine

    f = tmp_path / "t.jsonl"
    write_jsonl(f, [rec("r", trace_id="t1"), rec("c", "r", trace_id="t1")])
    ingest([f], tmp_path / "s.db")
    engine = Engine(tmp_path / "s.db", lambda events: None, analysis_process=False, from_start=True)
    reached, go = threading.Event(), threading.Event()
    real_state_of = engine.sessions.state_of

    def state_of(trace_id: str) -> State:  # the writer pauses where it reads a state, until the lock is taken
        reached.set()
        go.wait(10)
        return real_state_of(trace_id)

    engine.sessions.state_of = state_of  # type: ignore[method-assign]
    writer = threading.Thread(target=engine._announce_store, daemon=True)
    writer.start()
    assert reached.wait(10)
    with engine.sessions._lock:  # the analysis thread, in `SessionManager.analyzed`, about to emit
        go.set()
        time.sleep(0.2)  # the writer now waits for this lock
        took = engine._events_lock.acquire(timeout=3)  # what the emit takes next
        if took:
            engine._events_lock.release()
    writer.join(10)
    assert took, "the writer held the events lock while it waited for the sessions' lock: a deadlock"
    assert not writer.is_alive()
    assert [kind for kind, _ in engine._events].count("run") == 1
