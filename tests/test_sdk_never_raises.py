"""The SDK never raises into the host: one test per point where the SDK itself can fail.

Under pytest the SDK re-raises its own faults by default (so our bugs surface in this suite); these tests switch
that off with `configure(raise_internal_errors=False)`, as a host runs it, and check that the fault is counted
in `stats()["internal_errors"]`, the live response is returned, and the span is still recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agent_debug as ad
from agent_debug.formats.reader import ReadReport, read_paths
from agent_debug.sdk import runtime


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Path]:
    """The SDK configured as a host runs it: internal errors counted and logged, never raised."""
    directory = tmp_path / "logs"
    ad.configure(directory, flush_interval=0.02, raise_internal_errors=False)
    yield directory
    ad.shutdown()


def _errors() -> int:
    return int(ad.stats()["internal_errors"])


def _records(directory: Path) -> dict[str, dict[str, Any]]:
    ad.shutdown()
    report = ReadReport()
    records = list(read_paths([directory], report))
    assert report.rejected == 0, report.rejects
    return {r["name"]: r for r in records}


class Unprintable:
    """An object whose str() fails: hashing a request or serializing a value that holds it needs a fallback."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def test_a_request_hash_that_fails_still_runs_the_call(host: Path) -> None:
    calls = []
    before = _errors()
    with ad.run("wf") as run:
        reply = ad.llm_call(lambda req: calls.append(req) or {"text": "ok"}, {"obj": Unprintable()}, model="m")
    assert reply == {"text": "ok"} and len(calls) == 1
    assert _errors() == before + 2  # the hash, then the span's payload (which holds the request)
    assert run.calls[0]["response"] == {"text": "ok"} and run.calls[0]["request_hash"] is None
    rec = _records(host)["llm:m"]
    assert rec["attributes"]["call.request_hash"] is None
    assert rec["payload"]["request"] == {"obj": "<unprintable Unprintable>"}


def test_a_request_with_a_huge_integer_is_hashed_without_error(host: Path) -> None:
    before = _errors()
    with ad.run("wf"):
        reply = ad.llm_call(lambda req: {"text": "ok"}, {"seed": 2**70, "messages": ["hi"]}, model="m")
    assert reply == {"text": "ok"}
    assert _errors() == before  # not a fault: the standard library encodes what orjson cannot
    h = ad.request_hash({"seed": 2**70, "messages": ["hi"]})
    assert h == ad.request_hash({"messages": ["hi"], "seed": 2**70}) != ad.request_hash({"seed": 2**70 + 1})
    rec = _records(host)["llm:m"]
    assert rec["attributes"]["call.request_hash"] == h
    assert rec["payload"]["request"]["seed"] == str(2**70)  # beyond 64 bits: written as its digits


@pytest.mark.parametrize("usage", [{"prompt_tokens": "n/a"}, {"completion_tokens": [1]}, "lots", 7])
def test_a_reply_with_unreadable_usage_is_returned(host: Path, usage: Any) -> None:
    reply = {"text": "the answer", "usage": usage, "model": "m-2", "finish_reason": "stop"}
    before = _errors()
    with ad.run("wf") as run:
        got = ad.llm_call(lambda req: reply, {"q": 1}, model="m")
    assert got is reply
    assert _errors() == before + 1
    assert run.calls[0]["response"] is reply
    rec = _records(host)["llm:m"]
    assert rec.get("status", "ok") == "ok"
    assert rec["payload"]["response"]["text"] == "the answer"
    assert rec["attributes"]["gen_ai.request.model"] == "m-2" and rec["attributes"]["llm.finish_reason"] == "stop"


def test_async_calls_return_the_live_response_too(host: Path) -> None:
    async def model(req: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"text": "async", "usage": {"prompt_tokens": "n/a"}}

    async def tool(args: Any) -> dict[str, Any]:
        return {"exit_code": "not a number", "output": "x"}

    async def main() -> tuple[Any, Any]:
        async with ad.run("wf"):
            return (await ad.allm_call(model, {"seed": Unprintable()}, model="m"),
                    await ad.atool_call(tool, {"cmd": "ls"}, tool="ls"))

    before = _errors()
    got_llm, got_tool = asyncio.run(main())
    assert got_llm["text"] == "async" and got_tool["output"] == "x"
    assert _errors() == before + 4  # request hash, the request in the payload, usage, exit code
    recs = _records(host)
    assert {"llm:m", "tool:ls"} <= set(recs)


def test_the_users_own_exception_still_propagates_untouched(host: Path) -> None:
    boom = TimeoutError("model timed out")

    def call(req: Any) -> Any:
        raise boom

    with pytest.raises(TimeoutError) as caught, ad.run("wf") as run:
        ad.llm_call(call, {"seed": Unprintable()}, model="m")
    assert caught.value is boom
    assert run.calls[0]["error"] == {"type": "TimeoutError", "message": "model timed out"}
    assert _records(host)["llm:m"]["status"] == "error"


def test_an_annotate_callback_is_the_users_code_and_may_raise(host: Path) -> None:
    def annotate(span: ad.Span, reply: Any) -> None:
        raise KeyError("user bug")

    before = _errors()
    with pytest.raises(KeyError), ad.run("wf"):
        ad.llm_call(lambda req: {"text": "ok"}, {"q": 1}, model="m", annotate=annotate)
    assert _errors() == before
    rec = _records(host)["llm:m"]
    assert rec["status"] == "error" and rec["payload"]["response"] == {"text": "ok"}


@pytest.mark.parametrize("value,shown,faults", [
    (Unprintable(), "<unprintable Unprintable>", 1),
    (2**70, str(2**70), 0),  # its digits: nothing is lost, so not a fault
])
def test_a_value_that_cannot_be_serialized_keeps_the_span(host: Path, value: Any, shown: str, faults: int) -> None:
    before = _errors()
    with ad.run("wf"):
        with ad.span("step", attributes={"odd": value}) as s:
            s.set_payload({"odd": value, "fine": 1})
    assert _errors() == before + faults
    rec = _records(host)["step"]
    assert rec["attributes"]["odd"] == shown and rec["payload"] == {"odd": shown, "fine": 1}


def test_a_cycle_or_too_deep_a_payload_keeps_the_span(host: Path) -> None:
    cycle: dict[str, Any] = {"name": "loop"}
    cycle["self"] = cycle
    deep: Any = "bottom"
    for _ in range(400):
        deep = [deep]
    before = _errors()
    with ad.run("wf"):
        with ad.span("cyclic") as s:
            s.set_payload({"cycle": cycle})
        with ad.span("deep") as s:
            s.set_payload({"deep": deep})
    assert _errors() == before + 2
    recs = _records(host)
    assert recs["cyclic"]["payload"]["cycle"] == {"name": "loop", "self": "[circular]"}
    level, depth = recs["deep"]["payload"]["deep"], 0
    while isinstance(level, list):
        level, depth = level[0], depth + 1
    assert level == "[too deep]" and 100 < depth < 128  # cut by the SDK, below the readers' limit: read back as written


def test_a_lone_surrogate_in_a_name_or_payload_keeps_the_span(host: Path) -> None:
    """No UTF-8 exists for a lone surrogate (orjson refuses the string): it is written as its escape, counted."""
    before = _errors()
    with ad.run("wf"):
        with ad.span("bad\ud800name", event_type="TOOL_CALL") as s:
            s.set_payload({"text": "a\udfffb", "fine": 1})
        with ad.span("after"):
            pass
    assert _errors() == before + 1
    recs = _records(host)
    assert recs["bad\\ud800name"]["payload"] == {"text": "a\\udfffb", "fine": 1}
    assert recs["bad\\ud800name"]["event_type"] == "TOOL_CALL" and "after" in recs


def test_span_methods_given_bad_values_count_and_go_on(host: Path) -> None:
    before = _errors()
    with ad.run("wf", attributes=5) as run:  # type: ignore[arg-type]
        with ad.span("step", attributes=["not", "a", "mapping"]) as s:  # type: ignore[arg-type]
            s.add_tokens(prompt="n/a", completion=3)  # type: ignore[arg-type]
            s.add_tokens(prompt=2, completion=3)
            s.set_payload(42)  # type: ignore[arg-type]
            s.set_attributes("nope")  # type: ignore[arg-type]
            s.retry_of(object())  # type: ignore[arg-type]
            s.set_attribute("kept", True)
    assert _errors() == before + 6
    recs = _records(host)
    assert recs["step"]["token_cost"] == {"prompt_tokens": 2, "completion_tokens": 3}
    assert recs["step"]["attributes"] == {"kept": True}
    assert recs["wf"]["trace_id"] == run.trace_id


def test_a_packet_that_cannot_be_written_is_counted_and_the_trace_kept(tmp_path: Path) -> None:
    blocker = tmp_path / "packets"
    blocker.write_text("a file where the packet folder should be")
    ad.configure(tmp_path / "logs", flush_interval=0.02, packets=True, packet_dir=blocker,
                 raise_internal_errors=False)
    before = _errors()
    with ad.run("wf", input={"task": "x"}) as run:
        with ad.span("s"):
            pass
        run.set_outcome(passed=False)
    final = ad.shutdown()
    assert final["internal_errors"] == before + 1
    records = list(read_paths([tmp_path / "logs"]))
    assert {r["name"] for r in records} == {"wf", "s"}


def test_a_failing_run_listener_is_counted(host: Path) -> None:
    def listener(run: Any, rec: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    runtime.add_run_listener(listener)
    try:
        before = _errors()
        with ad.run("wf"):
            pass
        assert _errors() == before + 1
    finally:
        runtime._run_listeners.remove(listener)
    assert "wf" in _records(host)


def test_under_pytest_internal_errors_reraise_by_default(sdk: Path) -> None:
    """The switch the tests above turn off: by default, in this suite, an SDK fault is an exception."""
    with pytest.raises(ValueError), ad.run("wf"), ad.span("s") as s:
        s.add_tokens(prompt="n/a")  # type: ignore[arg-type]
