"""`agent-debug serve` end to end: the real server in a subprocess, the real OpenTelemetry SDK and OTLP/HTTP
exporter in other processes, the real CLI reading the same store."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from conftest import rec, run_cli, write_jsonl
from serve_support import EventListener, Server, cli_env, run_senders

pytest.importorskip("starlette")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

JSON = {"Content-Type": "application/json"}


def otlp_json(trace_id: str, spans: list[dict[str, object]], service: str = "svc") -> bytes:
    """An OTLP/JSON ExportTraceServiceRequest built from the protobuf definitions (so its shape is the spec's),
    with hex ids as OTLP/JSON requires."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    def kv(key: str, value: object) -> KeyValue:
        if isinstance(value, bool):
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=str(value)))

    pb_spans = []
    for s in spans:
        span = Span(trace_id=bytes.fromhex(trace_id), span_id=bytes.fromhex(str(s["id"])), name=str(s["name"]),
                    kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=int(s["start"]),  # type: ignore[call-overload]
                    end_time_unix_nano=int(s["end"]),  # type: ignore[call-overload]
                    attributes=[kv(k, v) for k, v in dict(s.get("attrs") or {}).items()])  # type: ignore[call-overload]
        if s.get("parent"):
            span.parent_span_id = bytes.fromhex(str(s["parent"]))
        if s.get("error"):
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=str(s["error"])))
        pb_spans.append(span)
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource={"attributes": [kv("service.name", service)]},  # type: ignore[arg-type]
        scope_spans=[ScopeSpans(scope={"name": "tests"}, spans=pb_spans)])])  # type: ignore[arg-type]
    doc = json_format.MessageToDict(req)
    for rs in doc["resourceSpans"]:  # the protobuf JSON mapping writes bytes as base64; OTLP/JSON wants hex
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in sp:
                        import base64

                        sp[key] = base64.b64decode(sp[key]).hex()
    return orjson.dumps(doc)


T0 = 1_700_000_000_000_000_000


def simple_run(trace_id: str, *, secret: str = "") -> bytes:
    return otlp_json(trace_id, [
        {"id": "a" * 16, "name": "invoke_agent boss", "start": T0, "end": T0 + 9_000_000,
         "attrs": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "boss"}},
        {"id": "b" * 16, "parent": "a" * 16, "name": "chat", "start": T0 + 1_000_000, "end": T0 + 5_000_000,
         "attrs": {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 7, "api_key": secret or "-"}},
    ])


def test_the_done_when_scenario(tmp_path: Path) -> None:
    """4 processes x 5,000 spans through the OTel SDK's exporter: every span stored exactly once, every run
    listed by /api/runs and `agent-debug traces`, every run DONE with its analysis, the failed ones with their
    bucket; the CLI reads the store while serve writes it."""
    db = tmp_path / "live.db"
    with Server(db, "--idle", "2") as srv:
        listener = EventListener(srv.url)
        reads: list[subprocess.CompletedProcess[str]] = []
        stop = threading.Event()

        def read_while_writing() -> None:
            while not stop.is_set():
                reads.append(run_cli("traces", "--db", str(db), "--json"))

        reader = threading.Thread(target=read_while_writing)
        reader.start()
        try:
            sent = run_senders(srv.url, 4, 5000, 20, error_every=9)
        finally:
            stop.set()
            reader.join()
        assert all(s["flushed"] for s in sent)
        trace_ids = {t for s in sent for t in s["trace_ids"]}
        failed = {t for s in sent for t in s["failed"]}
        assert len(trace_ids) == 1000 and len(failed) == 4 * 28
        srv.wait_for(lambda: srv.get_json("/healthz")["sessions"]["done"] == 1000, 120, "every run DONE")
        runs = srv.get_json("/api/runs?limit=5000")
        health = srv.get_json("/healthz")
        done = [d for d in listener.of("state") if d["state"] == "done"]
        spans_announced = listener.of("span")
        detail = srv.get_json(f"/api/runs/{sorted(failed)[0]}")
        listener.close()
    # exactly once in the store
    con = sqlite3.connect(db)
    assert con.execute("SELECT SUM(n) FROM chunks").fetchone()[0] == 20_000
    assert con.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0] == 0
    con.close()
    assert health["records_stored"] == 20_000 and health["duplicates"] == 0 and health["spans_rejected"] == 0
    # visible through the API and the CLI
    assert runs["count"] == 1000 and {r["trace_id"] for r in runs["traces"]} == trace_ids
    assert all(r["state"] == "done" and r["span_count"] == 20 for r in runs["traces"])
    starts = [r["start_ns"] for r in runs["traces"]]
    assert starts == sorted(starts, reverse=True)
    assert {r["trace_id"] for r in runs["traces"] if r["status"] == "error"} == failed
    listed = orjson.loads(run_cli("traces", "--db", str(db), "--json").stdout)
    assert {t["trace_id"] for t in listed["traces"]} == trace_ids
    assert sum(t["span_count"] for t in listed["traces"]) == 20_000
    # the CLI worked while serve was writing (WAL)
    assert reads and all(r.returncode == 0 for r in reads), [r.stderr for r in reads if r.returncode][:1]
    # announced, and analyzed
    assert len({(s["trace_id"], s["span_id"]) for s in spans_announced}) == 20_000
    assert {d["trace_id"] for d in done} == trace_ids
    by_trace = {d["trace_id"]: d["results"] for d in done}
    assert all(by_trace[t]["bucket"] and by_trace[t]["root_cause"]["name"] == "execute_tool 17"
               for t in failed), by_trace[sorted(failed)[0]]
    assert all(by_trace[t]["bucket"] is None and by_trace[t]["bottleneck"] for t in trace_ids - failed)
    # the run page has what the CLI's --json has
    assert detail["state"] == "done" and detail["summary"]["status"] == "error"
    assert detail["why"]["diagnosis"]["bucket"] == by_trace[detail["trace_id"]]["bucket"]
    why = orjson.loads(run_cli("why", detail["trace_id"], "--db", str(db), "--json").stdout)
    crit = orjson.loads(run_cli("critical-path", detail["trace_id"], "--db", str(db), "--json").stdout)
    why.pop("notices"), crit.pop("notices")
    assert detail["why"] == why and detail["critical_path"] == crit
    assert detail["critical_path"]["bottleneck"] and len(detail["tree"]["roots"]) == 1
    assert [h["state"] for h in detail["session"]["history"]][:4] == ["attached", "recording", "analyzing", "done"]


def test_bad_bodies_are_refused_and_the_next_good_one_is_stored(tmp_path: Path) -> None:
    with Server(tmp_path / "s.db", "--max-body", "4096") as srv:
        status, body, _ = srv.request("POST", "/v1/traces", b"{not json", JSON)
        assert status == 400 and b"not valid JSON" in body
        status, body, _ = srv.request("POST", "/v1/traces", b"\xff\xfe garbage",
                                      {"Content-Type": "application/x-protobuf"})
        assert status == 400
        status, _, _ = srv.request("POST", "/v1/traces", b"{}", {"Content-Type": "text/plain"})
        assert status == 415
        status, _, _ = srv.request("POST", "/v1/traces", b"x" * 5000, JSON)
        assert status == 413
        bomb = gzip.compress(b" " * 100_000)  # small on the wire, over the limit once decompressed
        status, _, _ = srv.request("POST", "/v1/traces", bomb, {**JSON, "Content-Encoding": "gzip"})
        assert status == 413
        status, body, _ = srv.request("POST", "/v1/traces", gzip.compress(simple_run("1" * 32)),
                                      {**JSON, "Content-Encoding": "gzip"})
        assert status == 200 and orjson.loads(body) == {}
        run = srv.wait_for(lambda: srv.request("GET", "/api/runs/" + "1" * 32)[0] == 200 and
                           srv.get_json("/api/runs/" + "1" * 32), 30, "the good run")
        assert run["summary"]["span_count"] == 2 and run["summary"]["agents"] == ["boss"]
        health = srv.get_json("/healthz")
        assert health["bad_requests"] == 5
        assert srv.stop() == (0, "")  # SIGINT is a clean stop: exit 0, nothing on stderr


def test_partial_success_counts_the_spans_that_were_not_stored(tmp_path: Path) -> None:
    doc = orjson.loads(simple_run("2" * 32))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(7)  # not a span at all
    spans.append({**spans[0], "spanId": "c" * 16, "startTimeUnixNano": str(5 * 10**18),
                  "endTimeUnixNano": str(5 * 10**18 + 1)})  # the year 2128: not a valid record
    with Server(tmp_path / "s.db") as srv:
        status, body, _ = srv.request("POST", "/v1/traces", orjson.dumps(doc), JSON)
        assert status == 200
        partial = orjson.loads(body)["partialSuccess"]
        assert partial["rejectedSpans"] == "2" and partial["errorMessage"]
        run = srv.wait_for(lambda: srv.request("GET", "/api/runs/" + "2" * 32)[0] == 200 and
                           srv.get_json("/api/runs/" + "2" * 32), 30, "the run")
        assert run["summary"]["span_count"] == 2
        # every API document has `notices`, as every CLI --json does: here the rejected record, as `traces` says
        listed = srv.get_json("/api/runs")
        cli = orjson.loads(run_cli("traces", "--db", str(tmp_path / "s.db"), "--json").stdout)
        assert listed["notices"] == run["notices"] == cli["notices"] and "1 record was rejected" in cli["notices"][0]
        status, body, _ = srv.request("GET", "/api/runs/" + "f" * 32)
        assert status == 404 and orjson.loads(body)["notices"] == []


def test_protobuf_from_the_sdk_maps_exactly_as_the_otlp_json_file_importer(tmp_path: Path) -> None:
    """The same spans, sent by the SDK's exporter as protobuf and written as an OTLP/JSON file, give the same
    records (one mapping); secrets are redacted before they are stored."""
    code = """
import json, sys
from google.protobuf import json_format
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
mem = InMemorySpanExporter()
p = TracerProvider()
p.add_span_processor(SimpleSpanProcessor(mem))
p.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces")))
t = p.get_tracer("x")
with t.start_as_current_span("agent_run [researcher]", attributes={"openinference.span.kind": "AGENT"}):
    with t.start_as_current_span("llm", attributes={"openinference.span.kind": "LLM",
            "llm.token_count.prompt": 12, "llm.token_count.completion": 3, "input.value": "hi",
            "output.value": "the key is sk-abcdefghijklmnopqrstuvwxyz0123", "llm.api_key": "hunter2hunter2"}):
        pass
    with t.start_as_current_span("search", attributes={"openinference.span.kind": "TOOL", "tool.name": "web"}):
        pass
p.shutdown()
doc = json_format.MessageToDict(encode_spans(mem.get_finished_spans()))
open(sys.argv[2], "w").write(json.dumps(doc) + "\\n")
"""
    file = tmp_path / "spans.otlp.jsonl"
    with Server(tmp_path / "live.db") as srv:
        out = subprocess.run([sys.executable, "-c", code, srv.url, str(file)], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        srv.wait_for(lambda: srv.get_json("/api/runs")["count"] == 1, 30, "the run")
    assert run_cli("ingest", str(file), "--db", str(tmp_path / "file.db")).returncode == 0
    from agent_debug.sdk.redact import Redactor
    from agent_debug.store.db import connect
    from agent_debug.store.query import list_traces, load_trace

    def records(db: Path) -> list[dict[str, object]]:
        con = connect(db)
        (summary,) = list_traces(con)
        recs = list(load_trace(con, summary.trace_id, records=True).records or [])
        for r in recs:
            attrs = r["attributes"]
            assert isinstance(attrs, dict)
            attrs.pop("source.file", None)
        return sorted(recs, key=lambda r: str(r["span_id"]))

    live, from_file = records(tmp_path / "live.db"), records(tmp_path / "file.db")
    for r in from_file:  # the file importer does not redact (files are redacted by their writer): do it here
        Redactor().scrub_record(r)
    assert live == from_file
    by_name = {r["name"]: r for r in live}
    assert by_name["llm"]["agent_name"] == "researcher" and by_name["llm"]["event_type"] == "LLM_CALL"
    assert by_name["search"]["event_type"] == "TOOL_CALL"
    stored = orjson.dumps(live)
    assert b"hunter2hunter2" not in stored and b"sk-abcdefghijklmnopqrstuvwxyz0123" not in stored
    assert b"[REDACTED" in stored


def test_watched_sdk_directory_is_announced_as_it_is_written(tmp_path: Path) -> None:
    """The SDK writes (and rotates) while serve follows the directory: every span is stored once and announced."""
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = f"""
import time, agent_debug as ad
ad.configure({str(logs)!r}, rotation="16 KB", flush_interval=0.02)
for r in range(12):
    with ad.run(workflow="watched", actor="test") as run:
        for i in range(30):
            with ad.span(f"step {{i}}", agent="worker", event_type="TOOL_CALL"):
                pass
        if r % 4 == 0:
            run.set_outcome(passed=False)
    time.sleep(0.05)
ad.shutdown()
"""
    cases = tmp_path / "cases.toml"
    cases.write_text('[[case]]\nname = "fast enough"\nworkflow = "watched"\nmax_latency_ms = 60000\n\n'
                     '[[case]]\nname = "impossibly fast"\nworkflow = "watched"\nmax_latency_ms = 0\n\n'
                     '[[case]]\nname = "judged"\nworkflow = "watched"\njudge = true\n\n'
                     '[[case]]\nname = "other workflow"\nworkflow = "other"\n')
    with Server(tmp_path / "w.db", "--watch", str(logs), "--idle", "2", "--cases", str(cases)) as srv:
        listener = EventListener(srv.url)
        out = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        srv.wait_for(lambda: srv.get_json("/healthz")["sessions"]["done"] == 12, 60, "12 runs DONE")
        runs = srv.get_json("/api/runs")
        detail = srv.get_json("/api/runs/" + runs["traces"][0]["trace_id"])
        spans = listener.of("span")
        listener.close()
    assert runs["count"] == 12 and all(r["span_count"] == 31 for r in runs["traces"])
    session_eval = detail["session"]["results"]["eval"]
    assert {c["name"]: c["status"] for c in session_eval["cases"]} == {"fast enough": "pass",
                                                                       "impossibly fast": "fail"}
    assert session_eval["skipped_judge_cases"] == ["judged"]
    assert [c["name"] for c in detail["eval"]["cases"]] == ["fast enough", "impossibly fast"]
    assert sum(r["status"] == "failed" for r in runs["traces"]) == 3
    assert len(spans) == 12 * 31 == len({(s["trace_id"], s["span_id"]) for s in spans})
    assert len(list(logs.glob("*.gz"))) >= 1  # the files did rotate meanwhile


def test_a_late_span_reopens_a_finished_session(tmp_path: Path) -> None:
    with Server(tmp_path / "s.db", "--idle", "1") as srv:
        listener = EventListener(srv.url)
        tid = "3" * 32
        assert srv.request("POST", "/v1/traces", simple_run(tid), JSON)[0] == 200
        srv.wait_for(lambda: srv.get_json(f"/api/runs/{tid}")["state"] == "done", 30, "done")
        late = otlp_json(tid, [{"id": "d" * 16, "parent": "a" * 16, "name": "late tool", "start": T0 + 8_000_000,
                                "end": T0 + 20_000_000, "attrs": {"gen_ai.tool.name": "x"}}])
        assert srv.request("POST", "/v1/traces", late, JSON)[0] == 200
        srv.wait_for(lambda: srv.get_json(f"/api/runs/{tid}")["session"]["reopened"] == 1, 30, "reopened")
        final = srv.wait_for(lambda: (d := srv.get_json(f"/api/runs/{tid}"))["state"] == "done" and d, 30, "done")
        srv.wait_for(lambda: len(listener.of("state")) >= 7, 10, "the state events")
        states = [d["state"] for d in listener.of("state") if d["trace_id"] == tid]
        listener.close()
    assert states == ["attached", "recording", "analyzing", "done", "recording", "analyzing", "done"]
    assert final["summary"]["span_count"] == 3 and final["session"]["results"]["span_count"] == 3


def test_a_non_local_bind_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    res = run_cli("serve", "--db", str(tmp_path / "s.db"), "--host", "0.0.0.0", "--port", "0",
                  env={"AGENT_DEBUG_TOKEN": ""})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "Error: --host 0.0.0.0 is not a loopback address: set --token (or $AGENT_DEBUG_TOKEN) so that every "
        "request must carry it"]
    assert not (tmp_path / "s.db").exists()


def test_with_a_token_every_route_needs_it_and_refusals_are_counted(tmp_path: Path) -> None:
    env = cli_env(AGENT_DEBUG_TOKEN="s3cret-token")
    good = {"Authorization": "Bearer s3cret-token"}
    with Server(tmp_path / "s.db", env=env) as srv:
        for path in ("/healthz", "/api/runs", "/api/events", "/api/runs/x", "/"):
            assert srv.request("GET", path)[0] == 401, path
            assert srv.request("GET", path, headers={"Authorization": "Bearer wrong"})[0] == 401, path
        assert srv.request("POST", "/v1/traces", simple_run("4" * 32), JSON)[0] == 401
        assert srv.request("POST", "/v1/traces", simple_run("4" * 32), {**JSON, **good})[0] == 200
        sent = run_senders(srv.url, 1, 40, 20, extra=["--token", "s3cret-token"])
        srv.wait_for(lambda: srv.get_json("/api/runs", good)["count"] == 3, 30, "3 runs")
        health = srv.get_json("/healthz", good)
    assert sent[0]["flushed"]
    assert health["unauthorized"] == 11


def test_serve_without_the_extra_says_which_extra_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['starlette'] = None; sys.argv = ['agent-debug', 'serve', '--port', '0']\n"
            "from agent_debug.cli.main import main\nmain()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert res.returncode == 3
    assert res.stderr.strip() == ("Error: `serve` needs the serve extra: pip install 'agent-debug[serve]' "
                                  "(missing: starlette)")
    help_code = ("import sys; sys.argv = ['agent-debug', '--help']\nfrom agent_debug.cli.main import main\n"
                 "try:\n    main()\nexcept SystemExit:\n    pass\n"
                 "print(sorted(m for m in ('starlette', 'uvicorn', 'google.protobuf') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", help_code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_tail_shows_runs_and_failures_from_a_store_another_process_writes(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    proc = subprocess.Popen([sys.executable, "-m", "agent_debug.cli.main", "tail", "--db", str(db), "--idle", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        import time

        time.sleep(1.5)  # tail is following the store before the runs arrive
        records = [rec("r1", trace_id="tail-ok-run", agent="boss", workflow="w"),
                   rec("c1", "r1", trace_id="tail-ok-run", agent="boss"),
                   rec("r2", trace_id="tail-bad-run", agent="boss", workflow="w", status="error",
                       error={"type": "ToolError", "message": "the search tool returned nothing"}),
                   rec("c2", "r2", trace_id="tail-bad-run", agent="searcher", event_type="TOOL_CALL",
                       name="search", status="error",
                       error={"type": "ToolError", "message": "the search tool returned nothing"})]
        assert run_cli("ingest", str(write_jsonl(tmp_path / "runs.jsonl", records)), "--db", str(db)).returncode == 0
        time.sleep(3)
    finally:
        proc.send_signal(2)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "tail-bad-run" in stdout and "failures analyzed" in stdout
    failure_line = next(line for line in stdout.splitlines() if "tail-bad-run" in line and "search" in line)
    assert "error" in failure_line


def test_a_store_writer_process_that_dies_is_started_again_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    import os
    import signal
    import time

    with Server(tmp_path / "s.db") as srv:
        assert srv.request("POST", "/v1/traces", simple_run("5" * 32), JSON)[0] == 200
        pid = srv.get_json("/healthz")["writer_pid"]
        assert pid and pid != srv.proc.pid
        os.kill(pid, signal.SIGKILL)
        statuses = []
        for _ in range(50):  # as an exporter does: a 503 is sent again
            status, body, _ = srv.request("POST", "/v1/traces", simple_run("6" * 32), JSON)
            statuses.append(status)
            if status == 200:
                break
            assert status == 503 and b"writer" in body, body
            time.sleep(0.1)
        assert statuses[-1] == 200
        health = srv.wait_for(lambda: (h := srv.get_json("/healthz"))["records_stored"] >= 4 and h, 30, "4 spans")
        assert health["writer_pid"] not in (None, pid)
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("SELECT trace_id, span_count FROM traces ORDER BY trace_id").fetchall() == [
        ("5" * 32, 2), ("6" * 32, 2)]
