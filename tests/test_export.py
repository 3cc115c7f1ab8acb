"""OTLP/JSON export: valid for the official protobuf definitions, GenAI conventions on every span, and a round
trip our format -> OTLP -> our format (through the otlp importer) that gives back the same records."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.trace.v1 import trace_pb2

from agent_debug.errors import TraceNotFound
from agent_debug.formats import otlp
from agent_debug.formats.otlp_export import export_otlp, otlp_span_id, otlp_trace_id, select_traces
from agent_debug.formats.reader import ReadReport, read_paths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "foreign"
TRACE_A = "0b5a4a6c-3d1e-4f6a-9b7c-2d8e1f0a3b4c"  # a UUID, as our SDK writes
TRACE_B = "run-42"  # an arbitrary string: hashed on export


def record(trace_id: str, span_id: str, parent: str | None, agent: str, event_type: str, t: float,
           **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent,
        "agent_name": agent,
        "event_type": event_type,
        "timestamp": t,
        "duration_ns": 1_250_000,
        "name": f"{agent}:{event_type.lower()}",
    }
    rec.update(extra)
    return rec


def sample_records() -> list[dict[str, Any]]:
    return [
        record(TRACE_A, "a1b2c3d4e5f60718", None, "orchestrator", "AGENT", 1763719200.123456,
               run_id="r-1", workflow="repo-fix-agent", actor="cron", session_id="s-9",
               attributes={"outcome.passed": False}),
        record(TRACE_A, "b1b2c3d4e5f60718", "a1b2c3d4e5f60718", "planner", "PLAN", 1763719200.2,
               attributes={"plan.steps": ["retrieve", "patch"]}),
        record(TRACE_A, "c1b2c3d4e5f60718", "b1b2c3d4e5f60718", "planner", "LLM_CALL", 1763719200.3,
               token_cost={"prompt_tokens": 1200, "completion_tokens": 80, "cost_usd": 0.0021},
               attributes={"route.model": "gemini-2.5-flash", "route.risk": 0.7, "cache.hit": False},
               payload={"prompt": "plan the fix", "response": {"steps": 2}}),
        record(TRACE_A, "D1B2C3D4E5F60718", "b1b2c3d4e5f60718", "coder", "TOOL_CALL", 1763719200.4,
               status="error", error={"type": "TimeoutError", "message": "pytest timed out"},
               attributes={"tool.name": "pytest", "tool.exit_code": 124}),
        record(TRACE_B, "step-0", None, "transcript", "AGENT", 1577836800.0),
        record(TRACE_B, "step-1", "step-0", "WebSurfer", "RETRIEVAL", 1577836801.0,
               attributes={"retrieval.doc_count": 0}),
    ]


def export_lines(records: Iterable[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(doc) for doc in export_otlp(records)]


def attrs_of(span: dict[str, Any]) -> dict[str, Any]:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in span["attributes"]}


def spans_of(line: bytes) -> list[dict[str, Any]]:
    doc = json.loads(line)
    return [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def without_source(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for r in records:
        r = json.loads(json.dumps(r, default=str))
        for key in ("source.file", "source.format"):
            r.get("attributes", {}).pop(key, None)
        if r.get("attributes") == {}:
            del r["attributes"]
        out[(r["trace_id"], r["span_id"])] = r
    return out


def test_every_line_parses_as_official_traces_data() -> None:
    lines = export_lines(sample_records())
    assert len(lines) == 2  # one TracesData per trace
    starts: list[int] = []
    for line in lines:
        msg = json_format.Parse(line, trace_pb2.TracesData())
        spans = [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert len(spans) == len(spans_of(line))
        assert all(s.kind == trace_pb2.Span.SPAN_KIND_INTERNAL for s in spans)
        assert all(s.end_time_unix_nano - s.start_time_unix_nano == 1_250_000 for s in spans)  # the duration
        starts.extend(s.start_time_unix_nano for s in spans)
    # timestamps are kept to the microsecond
    assert sorted(starts) == sorted(round(r["timestamp"] * 1e6) * 1000 for r in sample_records())
    errors = [s for line in lines for s in spans_of(line) if s.get("status")]
    assert [(s["status"]["code"], s["status"]["message"]) for s in errors] == [(2, "pytest timed out")]
    assert attrs_of({"attributes": errors[0]["events"][0]["attributes"]})["exception.type"] == "TimeoutError"


def test_ids_are_otlp_hex_and_originals_are_kept_when_changed() -> None:
    spans = {s["name"]: s for line in export_lines(sample_records()) for s in spans_of(line)}
    for s in spans.values():
        assert len(s["traceId"]) == 32 and len(s["spanId"]) == 16
        assert all(c in "0123456789abcdef" for c in s["traceId"] + s["spanId"])
    root = spans["orchestrator:agent"]
    assert root["traceId"] == TRACE_A.replace("-", "") and root["spanId"] == "a1b2c3d4e5f60718"
    assert "parentSpanId" not in root
    assert attrs_of(root)["agent_debug.trace_id"] == TRACE_A
    assert "agent_debug.span_id" not in attrs_of(root)  # already 16 hex digits
    upper = spans["coder:tool_call"]
    assert upper["spanId"] == "d1b2c3d4e5f60718" and attrs_of(upper)["agent_debug.span_id"] == "D1B2C3D4E5F60718"
    hashed = spans["WebSurfer:retrieval"]
    assert hashed["spanId"] == otlp_span_id("step-1") and hashed["parentSpanId"] == otlp_span_id("step-0")
    assert hashed["traceId"] == otlp_trace_id(TRACE_B)
    assert (attrs_of(hashed)["agent_debug.span_id"], attrs_of(hashed)["agent_debug.parent_id"]) == ("step-1", "step-0")


def test_genai_attributes_and_envelope() -> None:
    line_a = export_lines(sample_records())[0]
    spans = {s["name"]: attrs_of(s) for s in spans_of(line_a)}
    llm = spans["planner:llm_call"]
    assert (llm["gen_ai.agent.name"], llm["gen_ai.operation.name"]) == ("planner", "chat")
    assert (llm["gen_ai.usage.input_tokens"], llm["gen_ai.usage.output_tokens"]) == ("1200", "80")
    assert llm["gen_ai.request.model"] == "gemini-2.5-flash" and llm["route.risk"] == 0.7
    assert json.loads(llm["agent_debug.payload"]) == {"prompt": "plan the fix", "response": {"steps": 2}}
    assert llm["agent_debug.event_type"] == "LLM_CALL"
    tool = spans["coder:tool_call"]
    assert (tool["gen_ai.operation.name"], tool["gen_ai.tool.name"], tool["tool.exit_code"]) == (
        "execute_tool", "pytest", "124")
    assert spans["planner:plan"]["agent_debug.event_type"] == "PLAN"
    assert "gen_ai.operation.name" not in spans["planner:plan"]
    root = spans["orchestrator:agent"]
    assert (root["agent_debug.run_id"], root["agent_debug.workflow"], root["agent_debug.actor"]) == (
        "r-1", "repo-fix-agent", "cron")
    resource = attrs_of(json.loads(line_a)["resourceSpans"][0]["resource"])
    assert resource["service.name"] == "repo-fix-agent"
    line_b = export_lines(sample_records())[1]
    assert attrs_of(json.loads(line_b)["resourceSpans"][0]["resource"])["service.name"] == "agent-debug"


def test_round_trip_gives_back_the_same_records() -> None:
    records = sample_records()
    docs = [json.loads(line) for line in export_lines(records)]
    back = list(otlp.IMPORTER.convert(docs, "export.jsonl"))
    before, after = without_source(records), without_source(back)
    assert set(after) == set(before)
    for key, rec in before.items():
        got = after[key]
        assert (got["parent_id"], got["agent_name"], got["event_type"], got["name"]) == (
            rec["parent_id"], rec["agent_name"], rec["event_type"], rec["name"])
    assert after == before
    roots = [r for r in back if r["parent_id"] is None]
    assert {r["attributes"]["source.format"] for r in roots} == {"otlp"}


def test_values_outside_json_and_int64_still_give_valid_otlp() -> None:
    rec = record(TRACE_A, "a1b2c3d4e5f60718", None, "a", "AGENT", 1.0,
                 attributes={"big": 2**70, "nan": math.nan, "inf": -math.inf, "mixed": [1, "a", None]})
    (line,) = export_lines([rec])
    msg = json_format.Parse(line, trace_pb2.TracesData())
    got = {kv.key: kv.value for kv in msg.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert got["big"].string_value == str(2**70)
    assert math.isnan(got["nan"].double_value) and got["inf"].double_value == -math.inf
    assert [v.WhichOneof("value") for v in got["mixed"].array_value.values] == ["int_value", "string_value"]


def test_round_trip_through_a_file_and_format_detection(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in export_lines(sample_records())))
    report = ReadReport()
    back = list(read_paths([path], report))
    assert report.rejected == 0 and report.files[0].format == "otlp"
    assert set(without_source(back)) == set(without_source(sample_records()))


@pytest.mark.parametrize("folder", ["langfuse", "who_and_when", "otlp", "langsmith"])
def test_foreign_traces_survive_export_and_reimport(folder: str) -> None:
    imported = list(read_paths([FIXTURES / folder]))
    docs = [json.loads(line) for line in export_lines(imported)]
    for doc in docs:
        json_format.Parse(json.dumps(doc), trace_pb2.TracesData())
    back = list(otlp.IMPORTER.convert(docs, "x.jsonl"))
    assert without_source(back) == without_source(imported)


def test_select_traces_by_prefix_and_all() -> None:
    records = sample_records()
    assert {r["trace_id"] for r in select_traces(records, ["0b5a"])} == {TRACE_A}
    assert len(select_traces(records, ["all"])) == len(records)
    assert {r["trace_id"] for r in select_traces(records, ["run-", "0b5a"])} == {TRACE_A, TRACE_B}
    with pytest.raises(TraceNotFound, match="nope"):
        select_traces(records, ["0b5a", "nope"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent_debug.cli.main", *args],
                          capture_output=True, text=True, timeout=120)


def test_export_cli_writes_otlp_lines(tmp_path: Path) -> None:
    src = tmp_path / "traces.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in sample_records()))
    out = tmp_path / "out.jsonl"
    proc = _cli("export", "0b5a", "--format", "otlp", "--from", str(src), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 1
    json_format.Parse(lines[0], trace_pb2.TracesData())
    assert {attrs_of(s)["gen_ai.agent.name"] for s in spans_of(lines[0])} == {"orchestrator", "planner", "coder"}
    stdout = _cli("export", "all", "--from", str(src))
    assert stdout.returncode == 0 and len(stdout.stdout.splitlines()) == 2


def test_export_cli_errors() -> None:
    src = FIXTURES / "otlp" / "trace.json"
    missing = _cli("export", "zzz", "--from", str(src))
    assert (missing.returncode, missing.stderr.strip()) == (4, "Error: no trace matches 'zzz'")
    bad = _cli("export", "all", "--format", "jaeger", "--from", str(src))
    assert (bad.returncode, bad.stderr.strip()) == (2, "Error: unknown export format 'jaeger'; known: otlp")
