"""The runtime SDK: parents, errors, envelope, helpers, sampling, never breaking the host."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import agent_debug as ad
from agent_debug.formats.reader import ReadReport, read_paths
from agent_debug.model import FORMAT_VERSION
from agent_debug.sdk import runtime


def _read(directory: Path) -> list[dict[str, Any]]:
    ad.shutdown()
    report = ReadReport()
    records = list(read_paths([directory], report))
    assert report.rejected == 0, report.rejects
    return records


def _by_name(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in records}


def test_run_envelope_and_root_span(sdk: Path) -> None:
    with ad.run("repo-fix-agent", actor="cron", session_id="s1") as run:
        env = run.envelope
        with ad.span("planner", agent="planner", event_type="PLAN") as s:
            s.set_attribute("plan.steps", ["a", "b"])
            s.set_payload({"note": "x"})
            s.add_tokens(prompt=900, completion=120)
        run.set_outcome(passed=False)
    recs = _by_name(_read(sdk))
    root = recs["repo-fix-agent"]
    assert root["parent_id"] is None
    assert root["trace_id"] == env.trace_id and root["run_id"] == env.run_id
    assert (root["workflow"], root["actor"], root["session_id"]) == ("repo-fix-agent", "cron", "s1")
    assert root["attributes"]["outcome.passed"] is False
    assert root["attributes"]["run.started_at"] == env.started_at
    assert {r["format_version"] for r in recs.values()} == {FORMAT_VERSION}  # every record says its version
    planner = recs["planner"]
    assert planner["parent_id"] == root["span_id"]
    assert planner["token_cost"] == {"prompt_tokens": 900, "completion_tokens": 120}
    assert planner["attributes"]["plan.steps"] == ["a", "b"]


def test_parents_under_gather_and_tasks(sdk: Path) -> None:
    async def worker(i: int) -> None:
        async with ad.span(f"w{i}", agent=f"a{i}"):
            await asyncio.sleep(0.001 * (3 - i))
            async with ad.span(f"w{i}.inner"):
                await asyncio.sleep(0)

    async def main() -> None:
        async with ad.run("wf"):
            with ad.span("fanout"):
                await asyncio.gather(*(worker(i) for i in range(3)))
                await asyncio.create_task(worker(9))

    asyncio.run(main())
    recs = _by_name(_read(sdk))
    for i in (0, 1, 2, 9):
        assert recs[f"w{i}"]["parent_id"] == recs["fanout"]["span_id"]
        assert recs[f"w{i}.inner"]["parent_id"] == recs[f"w{i}"]["span_id"]
        assert recs[f"w{i}.inner"]["agent_name"] == f"a{i}"  # inherited from the parent


def test_threads_need_handoff(sdk: Path) -> None:
    def work(name: str) -> None:
        with ad.span(name):
            pass

    with ad.run("wf"):
        with ad.span("parent"):
            with ThreadPoolExecutor(2) as pool:
                pool.submit(ad.handoff(work), "handed").result()
                pool.submit(work, "bare").result()
    recs = _by_name(_read(sdk))
    assert recs["handed"]["parent_id"] == recs["parent"]["span_id"]
    assert recs["bare"]["parent_id"] is None  # no hand-off: a new trace, never a wrong parent


def test_exception_marks_error_and_is_reraised_untouched(sdk: Path) -> None:
    boom = ValueError("bad input")
    with pytest.raises(ValueError) as caught:
        with ad.run("wf"):
            with ad.span("step"):
                raise boom
    assert caught.value is boom
    recs = _by_name(_read(sdk))
    assert recs["step"]["status"] == "error"
    assert recs["step"]["error"] == {"type": "ValueError", "message": "bad input"}
    assert recs["wf"]["status"] == "error"


def test_decorators_sync_and_async(sdk: Path) -> None:
    @ad.span("sync-step", agent="coder", event_type="TOOL_CALL")
    def f(x: int) -> int:
        return x + 1

    @ad.span("async-step", agent="writer")
    async def g(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def main() -> int:
        async with ad.run("wf"):
            return f(1) + await g(2)

    assert asyncio.run(main()) == 6
    recs = _by_name(_read(sdk))
    assert recs["sync-step"]["event_type"] == "TOOL_CALL"
    assert recs["async-step"]["agent_name"] == "writer"
    assert recs["sync-step"]["parent_id"] == recs["wf"]["span_id"] == recs["async-step"]["parent_id"]


def test_send_receive_crosses_agents(sdk: Path) -> None:
    with ad.run("wf"):
        msg = ad.send("researcher", {"q": 1}, agent="orchestrator")
        with ad.receive(msg):
            with ad.span("work"):
                pass
    recs = _by_name(_read(sdk))
    send, recv = recs["send:researcher"], recs["receive:orchestrator"]
    assert send["event_type"] == "SEND" and send["agent_name"] == "orchestrator"
    assert recv["event_type"] == "RECEIVE" and recv["agent_name"] == "researcher"
    assert recv["parent_id"] == send["span_id"]
    assert recs["work"]["parent_id"] == recv["span_id"] and recs["work"]["agent_name"] == "researcher"


def test_llm_and_tool_calls_record_what_replay_needs(sdk: Path) -> None:
    with ad.run("wf") as run:
        resp = ad.llm_call(lambda req: {"text": "hi", "usage": {"prompt_tokens": 5, "completion_tokens": 2},
                                        "finish_reason": "length"},
                           {"messages": ["hello   world"]}, model="m1", agent="writer", budget=10)
        ad.tool_call(lambda a: {"exit_code": 0, "output": ""}, {"cmd": "ls"}, tool="ls")
        calls = list(run.calls)
    assert resp["text"] == "hi"
    recs = _by_name(_read(sdk))
    llm = recs["llm:m1"]
    assert llm["event_type"] == "LLM_CALL" and llm["token_cost"]["prompt_tokens"] == 5
    assert llm["attributes"]["llm.finish_reason"] == "length" and llm["attributes"]["token.budget"] == 10
    assert llm["attributes"]["call.request_hash"] == ad.request_hash({"messages": ["hello world"]})
    tool = recs["tool:ls"]
    assert tool["attributes"]["tool.exit_code"] == 0 and tool["attributes"]["tool.result_size"] == 0
    assert [c["hop"] for c in calls] == [0, 1]


def test_profile_async_collects_per_agent_stats() -> None:
    ad.reset_profile()

    @ad.profile_async("planner")
    async def plan() -> None:
        await asyncio.sleep(0.002)

    async def main() -> None:
        await asyncio.gather(*(plan() for _ in range(5)))

    asyncio.run(main())
    (row,) = [r for r in ad.profile_stats() if r["agent"] == "planner"]
    assert row["calls"] == 5 and row["min_ns"] >= 2_000_000 and row["p95_ns"] >= row["p50_ns"]


def test_sampling_keeps_every_failed_run_whole(tmp_path: Path) -> None:
    ad.configure(tmp_path, sample_rate=0.0, flush_interval=0.02)
    kept, dropped = [], []
    for i in range(30):
        with ad.run("wf") as run:
            for j in range(3):
                with ad.span(f"s{j}"):
                    pass
            if i % 3 == 0:
                run.set_outcome(passed=False)
                kept.append(run.trace_id)
            elif i % 3 == 1:
                try:
                    with ad.span("flaky"):
                        raise OSError("x")
                except OSError:
                    pass
                kept.append(run.trace_id)
            else:
                dropped.append(run.trace_id)
    records = _read(tmp_path)
    by_trace: dict[str, int] = {}
    for r in records:
        by_trace[r["trace_id"]] = by_trace.get(r["trace_id"], 0) + 1
    assert set(by_trace) == set(kept)
    assert all(n >= 4 for n in by_trace.values())  # whole runs, never fragments


def test_sampling_rate_keeps_healthy_runs_whole_or_not_at_all(tmp_path: Path) -> None:
    ad.configure(tmp_path, sample_rate=0.5, flush_interval=0.02)
    for _ in range(60):
        with ad.run("wf"):
            for j in range(4):
                with ad.span(f"s{j}"):
                    pass
    records = _read(tmp_path)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["trace_id"]] = counts.get(r["trace_id"], 0) + 1
    assert set(counts.values()) == {5}
    assert 10 < len(counts) < 50


def test_sdk_never_raises_into_the_agent(sdk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.configure(sdk, raise_internal_errors=False)

    class Broken(deque):  # type: ignore[type-arg]  # the writer's buffer: every span's hand-off fails
        def append(self, item: Any) -> None:
            raise RuntimeError("disk on fire")

    w = runtime.writer()
    assert w is not None
    monkeypatch.setattr(w, "_q", Broken())
    before = ad.stats()["internal_errors"]
    with ad.run("wf"):
        with ad.span("step") as s:
            s.set_attribute("k", 1)
    assert ad.stats()["internal_errors"] == before + 2


def test_sdk_reraises_internal_errors_under_pytest(sdk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(deque):  # type: ignore[type-arg]
        def append(self, item: Any) -> None:
            raise RuntimeError("bug")

    w = runtime.writer()
    assert w is not None
    monkeypatch.setattr(w, "_q", Broken())
    with pytest.raises(RuntimeError, match="bug"):
        with ad.span("step"):
            pass


def test_full_buffer_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    ad.configure(tmp_path, buffer_size=10, flush_interval=5.0)
    w = runtime.writer()
    assert w is not None
    stop = threading.Event()
    w._stop.set()  # freeze the drain loop so the buffer stays full
    for i in range(50):
        with ad.span(f"s{i}"):
            pass
    assert w.stats.dropped == 40
    stop.set()
    assert ad.shutdown()["dropped"] == 40


def test_msgpack_format(tmp_path: Path) -> None:
    ad.configure(tmp_path, format="msgpack", flush_interval=0.02)
    with ad.run("wf"):
        with ad.span("a") as s:
            s.set_payload({"bin": "é ü \x00 ok"})
    records = _read(tmp_path)
    assert sorted(r["name"] for r in records) == ["a", "wf"]
    assert _by_name(records)["a"]["payload"]["bin"] == "é ü \x00 ok"
    assert list(tmp_path.glob("*.msgpack"))


def test_configure_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        ad.configure(tmp_path, format="xml")
    with pytest.raises(ValueError, match="sample_rate"):
        ad.configure(tmp_path, sample_rate=2)


def test_escalated_runs_are_kept_and_get_a_packet(tmp_path: Path) -> None:
    ad.configure(tmp_path / "logs", sample_rate=0.0, flush_interval=0.02, packets=True, packet_dir=tmp_path / "pk")
    with ad.run("wf", input={"task": "x"}) as run:
        with ad.span("s"):
            pass
        run.escalate("needs a human")
        run.set_outcome(passed=True)
    with ad.run("wf") as healthy:
        pass
    records = _read(tmp_path / "logs")
    assert {r["trace_id"] for r in records} == {run.trace_id}
    assert healthy.trace_id != run.trace_id
    packets = list((tmp_path / "pk").rglob("*.json"))
    assert [p.stem for p in packets] == [run.trace_id]


def test_nested_attribute_dicts_are_flattened(sdk: Path) -> None:
    with ad.run("wf"):
        with ad.span("a", attributes={"tool": {"name": "rg", "args": {"n": 1}}, "plain": "{not nested}"}):
            pass
        with ad.span("b") as s:
            s.set_attribute("route", {"lane": "cheap"})
    recs = _by_name(_read(sdk))
    assert recs["a"]["attributes"] == {"tool.name": "rg", "tool.args.n": 1, "plain": "{not nested}"}
    assert recs["b"]["attributes"] == {"route.lane": "cheap"}


def test_a_record_shows_the_payload_as_it_was_when_the_span_ended(sdk: Path) -> None:
    """Serialized in the caller at span end: what the agent changes later never reaches the record."""
    messages = [{"role": "user", "content": "first"}]
    state = {"step": 1, "messages": messages}
    with ad.run("wf"):
        with ad.span("plan") as s:
            s.set_payload({"state": state})
            messages.append({"role": "assistant", "content": "second"})  # before the end: recorded
        messages.append({"role": "user", "content": "after the end"})  # after: not recorded
        state["step"] = 99
        messages[0]["content"] = "rewritten"
        with ad.span("act", attributes={"plan": "a"}) as s2:
            pass
        s2.set_attribute("plan", "b")  # ignored: the span has ended
    plan = _by_name(_read(sdk))["plan"]
    assert plan["payload"]["state"] == {"step": 1, "messages": [{"role": "user", "content": "first"},
                                                                {"role": "assistant", "content": "second"}]}
    assert _by_name(_read(sdk))["act"]["attributes"] == {"plan": "a"}
