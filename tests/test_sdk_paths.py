"""Every way the SDK emits a span writes the same record, byte for byte.

The hot path is inlined for speed (`tracer.span` builds a Span without `__init__`, `Span.__enter__` starts a child
without `_start`, `Span.__exit__` serializes and enqueues an ok child without `_exit`/`_emit`/`runtime.emit`).
So here every path (plain child, error, root, retry, async, decorator, receive, outside a run, llm/tool helpers)
emits spans, and each record's bytes are compared with a reference built from the documented format: the fields
of docs/trace-format.md in the SDK's order (the required ones, `name`, `format_version`, then `status`/`error`,
`payload`, `token_cost`, `attributes`, and on a run's root the envelope), with the values the test knows. Only
ids, timestamps and durations come from the records (they are random or measured), and those are checked for
sense: parents are the enclosing spans, times lie within the test.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

import agent_debug as ad
from agent_debug.model import FORMAT_VERSION
from agent_debug.sdk import runtime
from agent_debug.sdk.tracer import Span


def _reference(got: dict[str, Any], *, trace_id: str, span_id: str, parent_id: str | None, agent: str,
               event_type: str, name: str, status: str = "ok", error: dict[str, str] | None = None,
               payload: dict[str, Any] | None = None, token_cost: dict[str, Any] | None = None,
               attributes: dict[str, Any] | None = None, envelope: dict[str, Any] | None = None) -> bytes:
    """The record as the documented format lays it out, from what the test knows (times from `got`)."""
    rec: dict[str, Any] = {"trace_id": trace_id, "span_id": span_id, "parent_id": parent_id, "agent_name": agent,
                           "event_type": event_type, "timestamp": got["timestamp"],
                           "duration_ns": got["duration_ns"], "name": name, "format_version": FORMAT_VERSION}
    if status != "ok":
        rec["status"] = status
        if error:
            rec["error"] = error
    if payload is not None:
        rec["payload"] = payload
    if token_cost is not None:
        rec["token_cost"] = token_cost
    if attributes:
        rec["attributes"] = attributes
    if envelope:
        rec.update(envelope)
    return orjson.dumps(rec)


class _Spans:
    """The records emitted meanwhile (in memory, kept off disk), by name."""

    def __init__(self) -> None:
        self._collect = runtime.collect(silent=True)
        self.t0 = 0.0

    def __enter__(self) -> _Spans:
        self.data = self._collect.__enter__()
        self.t0 = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self._collect.__exit__(*exc)
        self.t1 = time.time()

    def bytes_of(self, name: str) -> tuple[bytes, dict[str, Any]]:
        found = [d for d in self.data if orjson.loads(d)["name"] == name]
        assert len(found) == 1, (name, found)
        rec = orjson.loads(found[0])
        assert self.t0 - 1 <= rec["timestamp"] <= self.t1 + 1  # a wall-clock start within the test
        assert 0 <= rec["duration_ns"] <= (self.t1 - self.t0 + 1) * 1e9
        return found[0], rec


@pytest.fixture(autouse=True)
def _fresh_sdk(tmp_path: Any) -> Any:
    ad.configure(tmp_path / "logs", flush_interval=0.02)
    yield
    ad.shutdown()


def test_child_error_retry_and_root_spans_write_the_documented_bytes() -> None:
    with _Spans() as out:
        with ad.run("wf", actor="cron", agent="boss", session_id="s-1") as run:
            root = run.span
            with ad.span("plain", agent="planner", event_type="PLAN", attributes={"plan.steps": ["a", "b"]}) as plain:
                plain.set_payload({"note": "x"})
                plain.add_tokens(prompt=3, completion=4, cost_usd=0.5)
                with ad.span("inherits") as inherits:  # agent from the parent, default event type
                    pass
            with pytest.raises(ValueError), ad.span("raises", event_type="TOOL_CALL") as raises:
                raise ValueError("boom")
            with ad.span("marked") as marked:
                marked.set_error("ToolError", "exit code 2")
            with ad.span("retry", retry_of=raises) as retry:
                pass
            run.set_outcome(passed=False, reason="wrong")
    tid = root.trace_id
    data, got = out.bytes_of("plain")
    assert data == _reference(got, trace_id=tid, span_id=plain.span_id, parent_id=root.span_id, agent="planner",
                              event_type="PLAN", name="plain", payload={"note": "x"},
                              token_cost={"prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 0.5},
                              attributes={"plan.steps": ["a", "b"]})
    data, got = out.bytes_of("inherits")
    assert data == _reference(got, trace_id=tid, span_id=inherits.span_id, parent_id=plain.span_id,
                              agent="planner", event_type="AGENT", name="inherits")
    data, got = out.bytes_of("raises")
    assert data == _reference(got, trace_id=tid, span_id=raises.span_id, parent_id=root.span_id, agent="boss",
                              event_type="TOOL_CALL", name="raises", status="error",
                              error={"type": "ValueError", "message": "boom"})
    data, got = out.bytes_of("marked")
    assert data == _reference(got, trace_id=tid, span_id=marked.span_id, parent_id=root.span_id, agent="boss",
                              event_type="AGENT", name="marked", status="error",
                              error={"type": "ToolError", "message": "exit code 2"})
    data, got = out.bytes_of("retry")
    assert data == _reference(got, trace_id=tid, span_id=retry.span_id, parent_id=root.span_id, agent="boss",
                              event_type="AGENT", name="retry",
                              attributes={"retry.of": raises.span_id, "retry.count": 1})
    data, got = out.bytes_of("wf")
    assert data == _reference(got, trace_id=tid, span_id=root.span_id, parent_id=None, agent="boss",
                              event_type="AGENT", name="wf",
                              attributes={"run.started_at": run.started_at, "outcome.passed": False,
                                          "outcome.reason": "wrong"},
                              envelope={"run_id": run.run_id, "workflow": "wf", "actor": "cron",
                                        "session_id": "s-1"})


def test_async_decorated_received_and_helper_spans_write_the_documented_bytes() -> None:
    seen: dict[str, Span] = {}

    @ad.span("decorated", agent="worker", event_type="TOOL_CALL", attributes={"k": 1})
    def decorated() -> None:
        current = ad.current_span()
        assert current is not None
        seen["decorated"] = current

    @ad.span("adecorated")
    async def adecorated() -> None:
        current = ad.current_span()
        assert current is not None
        seen["adecorated"] = current

    async def main() -> None:
        async with ad.span("async", agent="a") as s:
            seen["async"] = s
            await adecorated()

    with _Spans() as out:
        with ad.run("wf2") as run:
            root = run.span
            decorated()
            asyncio.run(main())
            msg = ad.send("other", {"q": 1}, agent="boss")
            with ad.receive(msg) as rcv:
                pass
            with ad.llm_span("gemini", budget=100) as llm:
                llm.record_llm(model="gemini", prompt_tokens=1, completion_tokens=2, finish_reason="stop")
            with ad.tool_span("pytest") as tool:
                tool.record_tool(exit_code=0, result_size=10)
        with ad.span("outside", agent="solo") as outside:  # no run: a trace of its own
            pass
    tid = root.trace_id
    data, got = out.bytes_of("decorated")
    assert data == _reference(got, trace_id=tid, span_id=seen["decorated"].span_id, parent_id=root.span_id,
                              agent="worker", event_type="TOOL_CALL", name="decorated", attributes={"k": 1})
    data, got = out.bytes_of("async")
    assert data == _reference(got, trace_id=tid, span_id=seen["async"].span_id, parent_id=root.span_id, agent="a",
                              event_type="AGENT", name="async")
    data, got = out.bytes_of("adecorated")
    assert data == _reference(got, trace_id=tid, span_id=seen["adecorated"].span_id,
                              parent_id=seen["async"].span_id, agent="a", event_type="AGENT", name="adecorated")
    data, got = out.bytes_of("send:other")
    assert data == _reference(got, trace_id=tid, span_id=msg.span_id, parent_id=root.span_id, agent="boss",
                              event_type="SEND", name="send:other", payload={"content": {"q": 1}},
                              attributes={"message.to": "other"})
    data, got = out.bytes_of("receive:boss")
    assert data == _reference(got, trace_id=tid, span_id=rcv.span_id, parent_id=msg.span_id, agent="other",
                              event_type="RECEIVE", name="receive:boss", attributes={"message.from": "boss"})
    data, got = out.bytes_of("llm:gemini")
    assert data == _reference(got, trace_id=tid, span_id=llm.span_id, parent_id=root.span_id, agent="orchestrator",
                              event_type="LLM_CALL", name="llm:gemini",
                              token_cost={"prompt_tokens": 1, "completion_tokens": 2},
                              attributes={"gen_ai.request.model": "gemini", "route.model": "gemini",
                                          "token.budget": 100, "llm.finish_reason": "stop"})
    data, got = out.bytes_of("tool:pytest")
    assert data == _reference(got, trace_id=tid, span_id=tool.span_id, parent_id=root.span_id,
                              agent="orchestrator", event_type="TOOL_CALL", name="tool:pytest",
                              attributes={"tool.name": "pytest", "tool.exit_code": 0, "tool.result_size": 10,
                                          "tool.timeout_class": "none"})
    data, got = out.bytes_of("outside")
    assert got["trace_id"] != tid and outside.trace_id == got["trace_id"]
    assert data == _reference(got, trace_id=outside.trace_id, span_id=outside.span_id, parent_id=None,
                              agent="solo", event_type="AGENT", name="outside")


def test_the_inlined_and_the_plain_enqueue_drop_alike(tmp_path: Any) -> None:
    """A full buffer drops and counts on the inlined path (an ok child) as on `runtime.emit` (a root, an error)."""
    ad.configure(tmp_path / "full", buffer_size=2, flush_interval=60)
    w = runtime.writer()
    assert w is not None
    with ad.run("wf"):
        for i in range(4):
            with ad.span(f"ok{i}"):
                pass
        with ad.span("bad") as bad:
            bad.set_error("E")
    assert len(w._q) == 2  # the first two children; the other two, the error span and the root were dropped
    assert w.stats.dropped == 4
