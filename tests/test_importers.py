"""Unit tests of the foreign-format importers, on small documents built by the helpers below.

Each helper builds the smallest valid document of its format; tests vary one thing at a time. The last tests
read the real samples in fixtures/foreign (copied with their licenses) through the reader and the CLI.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.formats import langfuse, langsmith, openinference, otlp, registry, transcript
from agent_debug.formats.reader import ReadReport, read_paths
from agent_debug.formats.semconv import parse_iso_duration_ns, parse_time
from agent_debug.model import check_record

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "foreign"
TRACE = "5b8efff798038103d269b633813fc60c"


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert all(check_record(r) is None for r in records), [check_record(r) for r in records]
    return {r["span_id"]: r for r in records}


# ---------------------------------------------------------------------------------------------------------------
# OTLP builders


def any_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [any_value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": kvs(v)}}
    return {"stringValue": v}


def kvs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value(v)} for k, v in attrs.items()]


def span(
    span_id: str,
    parent: str | None = None,
    *,
    name: str = "step",
    start: int | str = "1700000000000000000",
    end: int | str = "1700000001500000000",
    attrs: dict[str, Any] | None = None,
    trace_id: str = TRACE,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "attributes": kvs(attrs or {}),
    }
    if parent is not None:
        out["parentSpanId"] = parent
    out.update(extra)
    return out


def traces_data(*spans: dict[str, Any], service: str | None = "svc", legacy: bool = False) -> dict[str, Any]:
    group_key = "instrumentationLibrarySpans" if legacy else "scopeSpans"
    scope_key = "instrumentationLibrary" if legacy else "scope"
    resource = {"attributes": kvs({"service.name": service})} if service else {}
    return {
        "resourceSpans": [
            {"resource": resource, group_key: [{scope_key: {"name": "lib", "version": "1.0"}, "spans": list(spans)}]}
        ]
    }


def otlp_records(*docs: dict[str, Any]) -> list[dict[str, Any]]:
    return list(otlp.IMPORTER.convert(list(docs), "t.jsonl"))


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def test_otlp_hex_and_base64_ids_give_the_same_lowercase_hex() -> None:
    upper = otlp_records(traces_data(span("EEE19B7EC3C1B174", "EEE19B7EC3C1B173", trace_id=TRACE.upper())))
    based = otlp_records(
        traces_data(span(b64("eee19b7ec3c1b174"), b64("eee19b7ec3c1b173"), trace_id=b64(TRACE)))
    )
    for recs in (upper, based):
        (rec,) = recs
        assert (rec["trace_id"], rec["span_id"], rec["parent_id"]) == (TRACE, "eee19b7ec3c1b174", "eee19b7ec3c1b173")


def test_otlp_int64_times_as_strings_or_numbers() -> None:
    as_str = otlp_records(traces_data(span("00000000000000a1", start="1700000000250000000", end="1700000002750000000")))
    as_int = otlp_records(traces_data(span("00000000000000a1", start=1700000000250000000, end=1700000002750000000)))
    for (rec,) in (as_str, as_int):
        assert rec["timestamp"] == pytest.approx(1700000000.25)
        assert rec["duration_ns"] == 2_500_000_000


@pytest.mark.parametrize("code", [2, "STATUS_CODE_ERROR"])
def test_otlp_error_status_and_exception_event(code: int | str) -> None:
    event = {
        "name": "exception",
        "timeUnixNano": "1700000001000000000",
        "attributes": kvs({"exception.type": "TimeoutError", "exception.message": "took too long"}),
    }
    (rec,) = otlp_records(
        traces_data(span("00000000000000a1", status={"code": code, "message": "tool failed"}, events=[event]))
    )
    assert rec["status"] == "error"
    assert rec["error"] == {"type": "TimeoutError", "message": "tool failed"}
    assert rec["payload"]["events"][0]["name"] == "exception"


def test_otlp_exception_event_fails_an_unset_span_but_not_an_ok_one() -> None:
    event = {"name": "exception", "attributes": kvs({"exception.type": "KeyError", "exception.message": "'x'"})}
    unset = otlp_records(traces_data(span("00000000000000a1", events=[event])))[0]
    ok = otlp_records(traces_data(span("00000000000000a1", events=[event], status={"code": 1})))[0]
    assert unset["status"] == "error" and unset["error"] == {"type": "KeyError", "message": "'x'"}
    assert ok.get("status", "ok") == "ok" and "error" not in ok


def test_otlp_any_values_and_resource_attributes() -> None:
    attrs = {
        "s": "text",
        "i": 7,
        "b": True,
        "d": 0.5,
        "arr": ["a", "b"],
        "kv": {"inner": 3, "deeper": {"x": "y"}},
    }
    raw = span("00000000000000a1", attrs=attrs)
    raw["attributes"].append({"key": "bytes", "value": {"bytesValue": "aGk="}})
    raw["attributes"].append({"key": "mixed", "value": {"arrayValue": {"values": [{"stringValue": "a"},
                                                                                   {"kvlistValue": {}}]}}})
    (rec,) = otlp_records(traces_data(raw, service="billing"))
    a = rec["attributes"]
    assert (a["s"], a["i"], a["b"], a["d"], a["arr"]) == ("text", 7, True, 0.5, ["a", "b"])
    assert (a["kv.inner"], a["kv.deeper.x"]) == (3, "y")
    assert a["bytes"] == "aGk="
    assert isinstance(a["mixed"], str) and json.loads(a["mixed"])[0] == "a"
    assert a["resource.service.name"] == "billing"
    assert (a["scope.name"], a["scope.version"], a["span.kind"]) == ("lib", "1.0", "internal")
    assert rec["agent_name"] == "billing"  # no agent span, so the service names the agent


def test_otlp_unknown_service_is_not_an_agent_name() -> None:
    (rec,) = otlp_records(traces_data(span("00000000000000a1"), service="unknown_service:python"))
    assert rec["agent_name"] == "unknown"


def test_otlp_legacy_instrumentation_library_spans() -> None:
    (rec,) = otlp_records(traces_data(span("00000000000000a1"), legacy=True))
    assert rec["attributes"]["scope.name"] == "lib"


def test_otlp_spans_of_one_trace_over_many_lines_make_one_tree() -> None:
    recs = by_id(
        otlp_records(
            traces_data(span("00000000000000a1", name="root")),
            traces_data(span("00000000000000a2", "00000000000000a1", name="child")),
        )
    )
    assert recs["00000000000000a2"]["parent_id"] == "00000000000000a1"
    assert "source.file" in recs["00000000000000a1"]["attributes"]
    assert "source.file" not in recs["00000000000000a2"]["attributes"]
    assert recs["00000000000000a1"]["attributes"]["source.format"] == "otlp"


def test_genai_mapping_agents_tools_tokens_and_tool_definitions() -> None:
    agent = span("00000000000000a1", name="invoke_agent planner",
                 attrs={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"})
    chat = span(
        "00000000000000a2",
        "00000000000000a1",
        name="chat gpt-4o",
        attrs={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.tool.definitions": '[{"name": "search"}]',
            "llm.tools.0.tool.json_schema": '{"name": "search"}',
        },
    )
    tool = span("00000000000000a3", "00000000000000a2", name="execute_tool search",
                attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"})
    recs = by_id(otlp_records(traces_data(agent, chat, tool)))
    assert recs["00000000000000a1"]["event_type"] == "AGENT"
    c, t = recs["00000000000000a2"], recs["00000000000000a3"]
    assert c["event_type"] == "LLM_CALL" and "tool.name" not in c["attributes"]
    assert c["attributes"]["route.model"] == "gpt-4o"
    assert c["token_cost"] == {"prompt_tokens": 120, "completion_tokens": 30}
    assert (t["event_type"], t["attributes"]["tool.name"]) == ("TOOL_CALL", "search")
    assert {r["agent_name"] for r in recs.values()} == {"planner"}
    assert c["name"] == "chat gpt-4o"


def test_openinference_kinds_and_agent_inheritance_from_span_name() -> None:
    agent = span("00000000000000a1", name="CodeAgent.run", attrs={"openinference.span.kind": "AGENT"})
    llm = span("00000000000000a2", "00000000000000a1", attrs={"openinference.span.kind": "LLM",
                                                              "llm.model_name": "o3-mini",
                                                              "llm.token_count.prompt": "10",
                                                              "llm.token_count.completion": "4"})
    retriever = span("00000000000000a3", "00000000000000a1", attrs={
        "openinference.span.kind": "RETRIEVER",
        "retrieval.documents.0.document.content": "a",
        "retrieval.documents.1.document.content": "b",
        "retrieval.documents.1.document.score": 0.3,
    })
    guard = span("00000000000000a4", "00000000000000a1", attrs={"openinference.span.kind": "GUARDRAIL"})
    recs = by_id(otlp_records(traces_data(agent, llm, retriever, guard)))
    assert [recs[f"00000000000000a{i}"]["event_type"] for i in range(1, 5)] == [
        "AGENT", "LLM_CALL", "RETRIEVAL", "VERIFY"]
    assert recs["00000000000000a2"]["token_cost"] == {"prompt_tokens": 10, "completion_tokens": 4}
    assert recs["00000000000000a2"]["attributes"]["route.model"] == "o3-mini"
    assert recs["00000000000000a3"]["attributes"]["retrieval.doc_count"] == 2
    assert {r["agent_name"] for r in recs.values()} == {"CodeAgent"}


def test_tokens_of_a_span_whose_children_report_tokens_are_not_counted_twice() -> None:
    parent = span("00000000000000a1", attrs={"openinference.span.kind": "AGENT", "llm.token_count.prompt": 30})
    child = span("00000000000000a2", "00000000000000a1",
                 attrs={"openinference.span.kind": "LLM", "llm.token_count.prompt": 30})
    recs = by_id(otlp_records(traces_data(parent, child)))
    assert "token_cost" not in recs["00000000000000a1"]
    assert recs["00000000000000a1"]["attributes"]["llm.token_count.prompt"] == 30
    assert recs["00000000000000a2"]["token_cost"] == {"prompt_tokens": 30}


# ---------------------------------------------------------------------------------------------------------------
# OpenInference: Phoenix span JSON and the TRAIL nested export


def phoenix_span(span_id: str, parent: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": "llm",
        "context": {"trace_id": TRACE, "span_id": span_id},
        "span_kind": "LLM",
        "parent_id": parent,
        "start_time": "2024-05-01T12:00:00.000000+00:00",
        "end_time": "2024-05-01T12:00:02.500000+00:00",
        "status_code": "OK",
        "status_message": "",
        "attributes": {"llm": {"model_name": "gpt-4o", "token_count": {"prompt": 5, "completion": 2}}},
        "events": [],
    }
    out.update(extra)
    return out


def test_phoenix_span_json_with_nested_attributes() -> None:
    recs = by_id(list(openinference.IMPORTER.convert(
        [phoenix_span("00000000000000b1"),
         phoenix_span("00000000000000b2", "00000000000000b1", status_code="ERROR", status_message="boom",
                      events=[{"name": "exception", "timestamp": "2024-05-01T12:00:01",
                               "attributes": {"exception.type": "ValueError", "exception.message": "bad"}}])],
        "spans.jsonl")))
    root, child = recs["00000000000000b1"], recs["00000000000000b2"]
    assert root["event_type"] == "LLM_CALL" and root["duration_ns"] == 2_500_000_000
    assert root["attributes"]["llm.model_name"] == "gpt-4o"
    assert child["token_cost"] == {"prompt_tokens": 5, "completion_tokens": 2}
    assert child["status"] == "error" and child["error"] == {"type": "ValueError", "message": "boom"}
    assert child["parent_id"] == "00000000000000b1"


def test_otel_python_console_span_json_with_0x_ids() -> None:
    doc: dict[str, Any] = {
        "name": "tool",
        "context": {"trace_id": "0x" + TRACE, "span_id": "0x00000000000000c1", "trace_state": "[]"},
        "kind": "SpanKind.INTERNAL",
        "parent_id": None,
        "start_time": "2024-05-01T12:00:00.000000Z",
        "end_time": "2024-05-01T12:00:01.000000Z",
        "status": {"status_code": "ERROR", "description": "RuntimeError: disk full"},
        "attributes": {"tool.name": "write_file"},
        "events": [],
        "resource": {"attributes": {"service.name": "worker"}, "schema_url": ""},
    }
    assert registry.sniff(doc) is openinference.IMPORTER
    (rec,) = openinference.IMPORTER.convert([doc], "console.json")
    assert (rec["trace_id"], rec["span_id"]) == (TRACE, "00000000000000c1")
    assert rec["event_type"] == "TOOL_CALL" and rec["agent_name"] == "worker"
    assert rec["error"] == {"type": "RuntimeError", "message": "RuntimeError: disk full"}


def trail_span(span_id: str, parent: str | None, children: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestamp": "2025-03-19T16:32:08.062589Z",
        "trace_id": TRACE,
        "span_id": span_id,
        "parent_span_id": parent,
        "span_name": "Step 1",
        "span_kind": "Internal",
        "service_name": "gaia",
        "resource_attributes": {"service.name": "gaia"},
        "scope_name": "openinference.instrumentation.smolagents",
        "scope_version": "0.1.8",
        "span_attributes": {"openinference.span.kind": "CHAIN"},
        "duration": "PT1M48.7S",
        "status_code": "Unset",
        "status_message": "",
        "events": [],
        "links": [],
        "logs": [],
        "child_spans": children,
    }
    out.update(extra)
    return out


def test_trail_nested_export_flattens_children_with_parents_and_iso_durations() -> None:
    tool = trail_span("00000000000000d3", None, [], span_name="TextInspectorTool", duration="PT0.005S",
                      status_code="Error", status_message="FileConversionException: could not convert",
                      span_attributes={"openinference.span.kind": "TOOL", "tool.name": "inspect_file_as_text"},
                      events=[{"Timestamp": "2025-03-19T17:33:19.341071", "Name": "exception",
                               "Attributes": {"exception.type": "scripts.FileConversionException",
                                              "exception.message": "could not convert"}}])
    llm = trail_span("00000000000000d2", "00000000000000d1", [], span_name="LiteLLMModel.__call__",
                     status_code="Ok", span_attributes={"openinference.span.kind": "LLM"})
    doc = {"trace_id": TRACE, "spans": [trail_span("00000000000000d1", "00000000000000d0", [llm, tool, dict(llm)])]}
    assert registry.sniff(doc) is openinference.IMPORTER
    recs = list(openinference.IMPORTER.convert([doc], "trail.json"))
    assert [r["span_id"] for r in recs] == ["00000000000000d1", "00000000000000d2", "00000000000000d3"]
    spans = by_id(recs)
    top = spans["00000000000000d1"]
    assert top["parent_id"] == "00000000000000d0"  # missing from the export: kept, not invented away
    assert top["attributes"]["source.format"] == "openinference"
    assert top["duration_ns"] == 108_700_000_000
    assert spans["00000000000000d3"]["parent_id"] == "00000000000000d1"  # from nesting
    assert spans["00000000000000d3"]["error"]["type"] == "scripts.FileConversionException"
    assert spans["00000000000000d3"]["event_type"] == "TOOL_CALL"
    assert spans["00000000000000d2"].get("status", "ok") == "ok"
    assert top.get("status", "ok") == "ok"  # Unset without exception


def test_spans_sharing_an_id_with_different_content_are_all_kept() -> None:
    a = trail_span("00000000000000d2", "00000000000000d1", [], span_name="first")
    b = trail_span("00000000000000d2", "00000000000000d1", [], span_name="second")
    doc = {"trace_id": TRACE, "spans": [trail_span("00000000000000d1", None, [a, b])]}
    recs = by_id(list(openinference.IMPORTER.convert([doc], "t.json")))
    assert set(recs) == {"00000000000000d1", "00000000000000d2", "00000000000000d2#2"}
    assert recs["00000000000000d2#2"]["attributes"]["source.duplicate_of"] == "00000000000000d2"


@pytest.mark.parametrize(
    ("text", "ns"),
    [("PT1M48.7S", 108_700_000_000), ("PT0.015362S", 15_362_000), ("PT2H", 7_200_000_000_000),
     ("P1DT1S", 86_401_000_000_000), ("PT0S", 0), ("1.5", None), ("P", None), ("PTS", None)],
)
def test_iso_durations(text: str, ns: int | None) -> None:
    assert parse_iso_duration_ns(text) == ns


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2025-03-19T16:32:08.5Z", 1742401928.5), ("2025-03-19T16:32:08.500000123Z", 1742401928.5),
     ("2025-03-19T16:32:08.5", 1742401928.5), (1742401928500, 1742401928.5), ("1742401928500000000", 1742401928.5),
     (1742401928.5, 1742401928.5), ("not a time", None), (None, None)],
)
def test_times(value: Any, seconds: float | None) -> None:
    got = parse_time(value)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


# ---------------------------------------------------------------------------------------------------------------
# Langfuse


def observation(oid: str, parent: str | None, otype: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": oid,
        "traceId": TRACE,
        "parentObservationId": parent,
        "type": otype,
        "name": f"{otype.lower()} {oid}",
        "startTime": "2025-08-28T07:32:30.303Z",
        "endTime": "2025-08-28T07:32:31.303Z",
        "level": "DEFAULT",
        "statusMessage": None,
        "input": None,
        "output": None,
        "metadata": "{}",
    }
    out.update(extra)
    return out


def langfuse_export(*observations: dict[str, Any], **trace: Any) -> dict[str, Any]:
    t = {"id": TRACE, "name": "run", "timestamp": "2025-08-28T07:32:30.300Z", "input": "hi", "output": "hello",
         "sessionId": "s-1", "userId": "u-1", "tags": ["demo"], "metadata": "{}", "scores": []}
    t.update(trace)
    return {"trace": t, "observations": list(observations)}


def test_langfuse_metadata_json_string_types_usage_and_synthetic_root() -> None:
    meta = json.dumps({
        "attributes": {"gen_ai.request.model": "gemini-2.0-flash", "llm.tools.0.tool.json_schema": "{}"},
        "resourceAttributes": {"service.name": "unknown_service"},
        "scope": {"name": "openinference.instrumentation.google_adk", "version": "0.1.3"},
        "langgraph_node": "agent",
    })
    doc = langfuse_export(
        observation("a1", None, "AGENT", name="agent_run [hello_agent]"),
        observation("g1", "a1", "GENERATION", metadata=meta, model="gemini-2.0-flash",
                    usageDetails={"input": 28, "output": 3, "total": 31}, costDetails={"total": 4e-06},
                    totalCost=4e-06),
        observation("t1", "g1", "TOOL", metadata=json.dumps({"attributes": {"gen_ai.tool.name": "say_hello"}})),
        observation("e1", "zz-missing", "SPAN", level="ERROR", statusMessage="quota exceeded"),
        scores=[{"name": "toxicity", "value": 0}],
    )
    assert registry.sniff(doc) is langfuse.IMPORTER
    recs = by_id(list(langfuse.IMPORTER.convert([doc], "lf.json")))
    root = recs[f"trace:{TRACE}"]
    assert root["parent_id"] is None and root["name"] == "run"
    assert root["payload"] == {"input": "hi", "output": "hello"}
    assert (root["session_id"], root["actor"]) == ("s-1", "u-1")
    assert root["attributes"]["langfuse.tags"] == ["demo"] and root["attributes"]["langfuse.score.toxicity"] == 0
    assert root["attributes"]["source.file"] == "lf.json"
    assert recs["a1"]["parent_id"] == root["span_id"]
    g = recs["g1"]
    assert g["event_type"] == "LLM_CALL" and g["agent_name"] == "hello_agent"
    assert g["token_cost"] == {"prompt_tokens": 28, "completion_tokens": 3, "cost_usd": 4e-06}
    assert g["attributes"]["gen_ai.request.model"] == "gemini-2.0-flash"
    assert g["attributes"]["resource.service.name"] == "unknown_service"
    assert g["attributes"]["scope.name"] == "openinference.instrumentation.google_adk"
    assert g["attributes"]["langfuse.metadata.langgraph_node"] == "agent"
    assert recs["t1"]["event_type"] == "TOOL_CALL" and recs["t1"]["attributes"]["tool.name"] == "say_hello"
    orphan = recs["e1"]
    assert orphan["parent_id"] == "zz-missing" and "source.file" in orphan["attributes"]
    assert orphan["status"] == "error" and orphan["error"]["message"] == "quota exceeded"


def test_langfuse_metadata_that_is_not_json_is_kept_as_text_and_dict_metadata_is_read() -> None:
    doc = langfuse_export(
        observation("s1", None, "SPAN", metadata="free text"),
        observation("s2", "s1", "SPAN", metadata={"attributes": {"gen_ai.operation.name": "execute_tool"}}),
    )
    recs = by_id(list(langfuse.IMPORTER.convert([doc], "lf.json")))
    assert recs["s1"]["attributes"]["langfuse.metadata"] == "free text"
    assert recs["s1"]["event_type"] == "AGENT"
    assert recs["s2"]["event_type"] == "TOOL_CALL"


def test_langfuse_bare_observations_group_under_their_trace() -> None:
    obs = [observation("g1", None, "GENERATION"), observation("g2", "g1", "GENERATION")]
    assert all(registry.sniff(o) is langfuse.IMPORTER for o in obs)
    recs = by_id(list(langfuse.IMPORTER.convert(obs, "obs.jsonl")))
    assert set(recs) == {f"trace:{TRACE}", "g1", "g2"}
    assert recs["g1"]["parent_id"] == f"trace:{TRACE}"


# ---------------------------------------------------------------------------------------------------------------
# LangSmith


def run(rid: str, parent: str | None, run_type: str, name: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rid,
        "trace_id": "root-run",
        "parent_run_id": parent,
        "run_type": run_type,
        "name": name,
        "start_time": "2024-10-11T20:58:24.000000+00:00",
        "end_time": "2024-10-11T20:58:25.000000+00:00",
        "inputs": {"q": name},
        "outputs": {},
        "extra": {"metadata": {}},
    }
    out.update(extra)
    return out


def test_langsmith_batch_patch_without_id_is_matched_by_dotted_order() -> None:
    rid = "dc34609e-3eeb-459d-bc2a-6fedb01d2e6e"
    dotted = f"20241013T070537170001Z{rid}"
    doc = {
        "post": [{"id": rid, "name": "ChatOpenAI", "run_type": "llm", "start_time": 1728803137170,
                  "trace_id": rid, "dotted_order": dotted, "inputs": {"messages": []},
                  "extra": {"metadata": {"ls_model_name": "gpt-4o-mini"}}}],
        "patch": [{"end_time": 1728803138285, "trace_id": rid, "dotted_order": dotted,
                   "outputs": {"usage_metadata": {"input_tokens": 9, "output_tokens": 7}}}],
    }
    assert registry.sniff(doc) is langsmith.IMPORTER
    (rec,) = langsmith.IMPORTER.convert([doc], "ls.json")
    assert (rec["trace_id"], rec["span_id"], rec["parent_id"]) == (rid, rid, None)
    assert rec["duration_ns"] == 1_115_000_000
    assert rec["token_cost"] == {"prompt_tokens": 9, "completion_tokens": 7}
    assert rec["event_type"] == "LLM_CALL" and rec["attributes"]["route.model"] == "gpt-4o-mini"


def test_langsmith_runs_tree_agent_chain_tool_and_error() -> None:
    runs = [
        run("root-run", None, "chain", "AgentExecutor"),
        run("tool-run", "root-run", "tool", "search", error="ValueError('no results')\n\nTraceback ..."),
        run("ret-run", "root-run", "retriever", "docs"),
    ]
    for shape in (runs, {"runs": runs}, [dict(runs[0], child_runs=runs[1:])]):
        objs = shape if isinstance(shape, list) else [shape]
        assert all(registry.sniff(o) is langsmith.IMPORTER for o in objs)
        recs = by_id(list(langsmith.IMPORTER.convert(objs, "runs.json")))
        assert set(recs) == {"root-run", "tool-run", "ret-run"}
        tool = recs["tool-run"]
        assert (tool["parent_id"], tool["event_type"], tool["agent_name"]) == ("root-run", "TOOL_CALL", "AgentExecutor")
        assert tool["status"] == "error" and tool["error"]["type"] == "ValueError"
        assert recs["ret-run"]["event_type"] == "RETRIEVAL"
        assert recs["root-run"]["attributes"]["source.format"] == "langsmith"


# ---------------------------------------------------------------------------------------------------------------
# transcripts


def message(content: str, role: str, name: str | None = None) -> dict[str, Any]:
    out = {"content": content, "role": role}
    if name is not None:
        out["name"] = name
    return out


def who_and_when(history: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"question": "Q?", "ground_truth": "42", "history": history, "question_ID": "q-1"}
    doc.update(extra)
    return doc


def test_transcript_speakers_suffixes_steps_and_chain() -> None:
    doc = who_and_when(
        [
            message("Q?", "human"),
            message("plan", "Orchestrator (thought)"),
            message("search it", "Orchestrator (-> WebSurfer)"),
            message("found", "WebSurfer"),
        ],
        is_corrected=False, mistake_agent="WebSurfer", mistake_step="3", mistake_reason="wrong page",
    )
    assert registry.sniff(doc) is transcript.IMPORTER
    recs = list(transcript.IMPORTER.convert([doc], "6.json"))
    root, steps = recs[0], recs[1:]
    assert [r["agent_name"] for r in steps] == ["human", "Orchestrator", "Orchestrator", "WebSurfer"]
    assert [r["attributes"]["transcript.step"] for r in steps] == [0, 1, 2, 3]
    assert steps[2]["attributes"]["transcript.to"] == "WebSurfer"
    assert steps[1]["attributes"]["transcript.annotation"] == "thought"
    assert [r["parent_id"] for r in recs] == [None, root["span_id"], *[r["span_id"] for r in steps[:-1]]]
    times = [r["timestamp"] for r in recs]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert steps[3]["payload"]["content"] == "found"
    a = root["attributes"]
    assert a["outcome.passed"] is False and a["timing.synthetic"] is True
    labels = (a["label.mistake_agent"], a["label.mistake_step"], a["label.mistake_reason"])
    assert labels == ("WebSurfer", 3, "wrong page")
    assert root["payload"]["question"] == "Q?" and root["payload"]["ground_truth"] == "42"
    assert root["agent_name"] == "transcript" and a["source.format"] == "transcript"
    assert all(check_record(r) is None for r in recs)


def test_transcript_terminal_messages_are_tool_calls_with_exit_codes() -> None:
    doc = who_and_when([
        message("write code", "assistant", "Python_Expert"),
        message("exitcode: 1 (execution failed)\nTraceback", "user", "Computer_terminal"),
        message("Computer science says", "assistant", "WomenInComputerScienceHistory_Expert"),
    ], is_correct=True)
    recs = list(transcript.IMPORTER.convert([doc], "1.json"))
    assert [r["event_type"] for r in recs[1:]] == ["AGENT", "TOOL_CALL", "AGENT"]
    assert recs[2]["attributes"]["tool.exit_code"] == 1 and recs[2]["attributes"]["tool.name"] == "Computer_terminal"
    assert recs[0]["attributes"]["outcome.passed"] is True


def test_transcript_trace_ids_are_stable_and_per_file() -> None:
    doc = who_and_when([message("hi", "human")])
    first = list(transcript.IMPORTER.convert([doc], "1.json"))[0]["trace_id"]
    again = list(transcript.IMPORTER.convert([json.loads(json.dumps(doc))], "1.json"))[0]["trace_id"]
    other = list(transcript.IMPORTER.convert([doc], "2.json"))[0]["trace_id"]
    assert first == again != other


# ---------------------------------------------------------------------------------------------------------------
# detection


SAMPLES: dict[str, Any] = {
    "otlp": traces_data(span("00000000000000a1")),
    "openinference": phoenix_span("00000000000000b1"),
    "langfuse": langfuse_export(observation("g1", None, "GENERATION")),
    "langsmith": run("r", None, "llm", "x"),
    "transcript": who_and_when([message("hi", "human")]),
}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_each_sample_is_claimed_by_exactly_its_own_importer(fmt: str) -> None:
    claims = [imp.name for imp in registry.importers() if imp.sniff(SAMPLES[fmt])]
    assert claims == [fmt]


@pytest.mark.parametrize("odd", [None, [], "x", 3, {}, {"resourceSpans": None}, {"history": "not a list"},
                                 {"trace": None, "observations": 1}, {"post": "x"}, {"context": []}])
def test_sniffers_never_raise_and_refuse_odd_values(odd: Any) -> None:
    assert [imp.name for imp in registry.importers() if imp.sniff(odd)] == []


def test_importers_survive_nulls_and_numbers_as_strings() -> None:
    odd_obs = observation("g1", None, "GENERATION", startTime=None, endTime=None, metadata=None,
                          usageDetails={"input": "12", "output": None}, name=None)
    recs = by_id(list(langfuse.IMPORTER.convert([langfuse_export(odd_obs)], "x.json")))
    assert recs["g1"]["token_cost"] == {"prompt_tokens": 12}
    assert recs["g1"]["attributes"]["timing.missing"] is True
    assert recs["g1"]["timestamp"] == recs[f"trace:{TRACE}"]["timestamp"] == parse_time("2025-08-28T07:32:30.300Z")
    assert "name" not in recs["g1"]
    odd_span = span("00000000000000a1", start=None, end=None, attrs={"n": None})  # type: ignore[arg-type]
    (rec,) = otlp_records(traces_data(odd_span, service=None))
    assert rec["duration_ns"] == 0 and check_record(rec) is None


def test_reader_detects_formats_in_jsonl_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(orjson.dumps(traces_data(span(f"00000000000000a{i}")))
                                                   for i in range(1, 4)) + b"\n")
    (tmp_path / "b.json").write_bytes(orjson.dumps(SAMPLES["langfuse"]))
    (tmp_path / "c.json").write_bytes(orjson.dumps([run("r1", None, "chain", "c"), run("r2", "r1", "llm", "l")]))
    report = ReadReport()
    recs = list(read_paths([tmp_path], report))
    assert report.rejected == 0
    assert {Path(f.path).name: f.format for f in report.files} == {
        "a.jsonl": "otlp", "b.json": "langfuse", "c.json": "langsmith"}
    assert len(recs) == 3 + 2 + 2


def test_forced_format_converts_what_sniffing_would_not(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(orjson.dumps(traces_data(span("00000000000000a1"))))
    report = ReadReport()
    recs = list(read_paths([path], report, format="otlp"))
    assert len(recs) == 1 and report.files[0].format == "otlp"


def test_forcing_the_wrong_format_rejects_the_file_instead_of_reading_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(orjson.dumps(SAMPLES["langfuse"]))
    report = ReadReport()
    assert list(read_paths([path], report, format="otlp")) == []
    assert report.rejected == 1
    assert "nothing in this file is otlp data" in report.rejects[0].reason


# ---------------------------------------------------------------------------------------------------------------
# the real samples in fixtures/foreign


EXPECTED_FORMATS = {"otlp": "otlp", "langsmith": "langsmith", "langfuse": "langfuse", "who_and_when": "transcript"}


@pytest.mark.parametrize("folder", sorted(EXPECTED_FORMATS))
def test_fixture_samples_import_without_rejects(folder: str) -> None:
    report = ReadReport()
    recs = list(read_paths([FIXTURES / folder], report))
    assert report.rejected == 0, report.rejects[:3]
    assert recs and {f.format for f in report.files} == {EXPECTED_FORMATS[folder]}
    tops = [r for r in recs if r["parent_id"] is None or r["parent_id"] not in {x["span_id"] for x in recs}]
    assert all(r["attributes"]["source.format"] == EXPECTED_FORMATS[folder] for r in tops)


def test_fixture_hand_crafted_transcript_matches_its_label() -> None:
    path = FIXTURES / "who_and_when" / "hand-crafted-6.json"
    source = json.loads(path.read_text())
    recs = list(read_paths([path]))
    root = next(r for r in recs if r["parent_id"] is None)
    assert len(recs) == len(source["history"]) + 1
    step = int(source["mistake_step"])
    blamed = next(r for r in recs if r["attributes"].get("transcript.step") == step)
    assert root["attributes"]["label.mistake_step"] == step
    assert blamed["agent_name"] == source["history"][step]["role"].split(" (")[0]


def test_validate_cli_reads_a_foreign_file() -> None:
    path = FIXTURES / "langfuse" / "google-adk-2025-08-28.trace.json"
    proc = subprocess.run(
        [sys.executable, "-m", "agent_debug.cli.main", "validate", "--json", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    source = json.loads(path.read_text())
    assert result["records"] == len(source["observations"]) + 1
    assert result["rejected"] == 0 and result["formats"] == {"langfuse": 1}
