"""The replay engine: re-run a packet's failing path against deterministic stubs, with no API call.

With an entrypoint, the workflow is re-executed from the recorded input while every `ad.llm_call` /
`ad.tool_call` is answered from the recording (the network is blocked meanwhile). Without one, the recorded
steps are walked and the bucket is re-derived from the packet's span skeleton. Either way the result says
whether the run reproduced (same output, same path, same failure bucket) and shows a diff where it did not.

Counterfactuals replace one recorded response (`--inject STEP=VALUE`) and run everything downstream of it; calls
whose request then changed go to the fallback (`live`: the wrapped function, e.g. the demo's fake model; or
`error`).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import socket
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agent_debug.analysis.buckets import diagnose, load_rules
from agent_debug.columns import TraceSpans, summarize
from agent_debug.errors import PacketError, ReplayMiss, UsageError
from agent_debug.replay import matchers
from agent_debug.replay.matchers import Fallback, Mode
from agent_debug.replay.packet import load_packet
from agent_debug.replay.trust import REMEDY, refusal
from agent_debug.sdk import runtime
from agent_debug.sdk.intercept import replaying


class NetworkBlocked(OSError):
    """Replay tried to open a network connection."""


@contextmanager
def no_network() -> Iterator[None]:
    """Block outgoing connections for the duration (replay must never touch the network)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkBlocked("network access is blocked during replay")

    saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo)
    # replacing these methods is the point: a blocked connection fails loudly
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    try:
        yield
    finally:
        (socket.socket.connect, socket.socket.connect_ex, socket.create_connection,  # type: ignore[method-assign]
         socket.getaddrinfo) = saved


def _with_agent_index(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = defaultdict(int)
    out = []
    for c in sorted(calls, key=lambda c: c["hop"]):
        c = dict(c)
        c["agent_index"] = seen[c["agent"]]
        seen[c["agent"]] += 1
        out.append(c)
    return out


def parse_step(step: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """`3` (a hop index) or `agent:name#n` / `agent#n` (the n-th call of that agent, with that span name)."""
    step = step.strip()
    if step.isdigit():
        hop = int(step)
        for c in calls:
            if c["hop"] == hop:
                return c
        raise UsageError(f"no recorded call at hop {hop} (hops 0..{len(calls) - 1})")
    target, _, nth = step.partition("#")
    agent, _, name = target.partition(":")
    try:
        n = int(nth or 0)
    except ValueError:
        raise UsageError(f"bad step {step!r}: use a hop index or agent:name#n") from None
    matching = [c for c in calls if c["agent"] == agent and (not name or c["name"] == name)]
    if n >= len(matching):
        known = ", ".join(sorted({f"{c['agent']}:{c['name']}" for c in calls}))
        raise UsageError(f"no call {step!r} in this packet; recorded calls: {known}")
    return matching[n]


def parse_injection(spec: str, calls: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    step, sep, value = spec.partition("=")
    if not sep:
        raise UsageError(f"bad --inject {spec!r}: use STEP=VALUE (VALUE is JSON or @file)")
    if value.startswith("@"):
        try:
            raw = Path(value[1:]).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read injection file {value[1:]}: {exc.strerror}") from None
    else:
        raw = value.encode()
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = raw.decode()  # a bare string
    return parse_step(step, calls), parsed


class Player:
    """Answers intercepted calls from the recording; see agent_debug.sdk.intercept.Player."""

    def __init__(self, calls: list[dict[str, Any]], mode: Mode, fallback: Fallback,
                 injections: dict[int, Any] | None = None) -> None:
        self.recorded = _with_agent_index(calls)
        self.by_agent: dict[tuple[str, int], dict[str, Any]] = {(c["agent"], c["agent_index"]): c
                                                                 for c in self.recorded}
        self.mode = mode
        self.fallback = fallback
        self.injections = injections or {}
        self.counters: dict[str, int] = defaultdict(int)
        self.log: list[dict[str, Any]] = []

    def respond(self, call: dict[str, Any]) -> dict[str, Any]:
        live = dict(call)
        live["agent_index"] = self.counters[call["agent"]]
        self.counters[call["agent"]] += 1
        rec = self.by_agent.get((live["agent"], live["agent_index"]))
        entry = {"hop": call["hop"], "agent": live["agent"], "name": live["name"], "kind": live["kind"],
                 "recorded_hop": rec["hop"] if rec else None}
        self.log.append(entry)
        if rec is not None and rec["hop"] in self.injections:
            entry["source"] = "injected"
            return {"response": self.injections[rec["hop"]]}
        results = matchers.check(live, rec) if rec is not None else None
        if rec is not None and results is not None and all(ok for ok, _ in results.values()):
            entry["source"] = "recorded"
            if "error" in rec and "response" not in rec:
                return {"error": rec["error"]}
            return {"response": rec.get("response")}
        if self.mode is Mode.STRICT and not self.injections:
            raise ReplayMiss(_miss_message(live, self.recorded))
        if self.fallback is Fallback.LIVE:
            entry["source"] = "live-fallback"
            return {"call_through": True}
        if self.fallback is Fallback.RECORDED and rec is not None:
            entry["source"] = "recorded-fallback"
            return {"response": rec.get("response")} if "response" in rec else {"error": rec.get("error", {})}
        raise ReplayMiss(_miss_message(live, self.recorded) + "; use --fallback live to call the wrapped function "
                         "(e.g. the demo's fake model) for calls whose request changed")


def _miss_message(live: dict[str, Any], recorded: list[dict[str, Any]]) -> str:
    near = matchers.closest(live, recorded, 2)
    parts = []
    for c in near:
        failed = [f"{k} ({v['detail']})" for k, v in c["matchers"].items() if not v["ok"]]
        passed = [k for k, v in c["matchers"].items() if v["ok"]]
        parts.append(f"hop {c['hop']} {c['agent']}:{c['name']} passed {','.join(passed) or 'none'}, "
                     f"failed {'; '.join(failed) or 'none'}")
    return (f"no recording for call #{live['agent_index']} of {live['agent']} ({live['name']}, request "
            f"{live['request_hash']}); closest: " + " | ".join(parts))


@dataclass
class ReplayResult:
    """What replaying one packet showed."""

    packet: str
    trace_id: str
    workflow: str | None
    selected_model: str | None
    replayed_steps: list[str]
    failure_bucket: str | None
    next_action: str | None
    reproduced: bool
    diff: list[dict[str, Any]]
    mode: str
    executed: bool  # True when the entrypoint ran; False when recorded steps were walked
    outcome: dict[str, Any] = field(default_factory=dict)
    original: dict[str, Any] = field(default_factory=dict)
    injected: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)  # what weakens the verdict (strings cut in the packet)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _steps(calls: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in sorted(calls, key=lambda c: c["hop"]):
        if c.get("kind") == "llm":
            step = str(c["agent"])
        elif c.get("event_type") == "RETRIEVAL":
            step = "retriever"
        else:
            step = str(c["name"]) if str(c["name"]).startswith("tool:") else f"tool:{c['name']}"
        if not out or out[-1] != step:
            out.append(step)
    return out


def per_agent_path(calls: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each agent's calls in order: the path, independent of how concurrent agents interleaved."""
    out: dict[str, list[str]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: c["hop"]):
        out[str(c["agent"])].append(str(c["name"]))
    return dict(out)


def _diagnosis(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {"status": "unknown", "bucket": None, "output": None, "next_action": None}
    ts = TraceSpans.from_records(records[0]["trace_id"], records)
    s = summarize(ts)
    d = diagnose(ts, s, load_rules())
    root = next((r for r in records if r["span_id"] == s.root_span_id), {})
    return {"status": s.status, "bucket": d.bucket if d else None, "next_action": d.next_action if d else None,
            "output": (root.get("payload") or {}).get("output"),
            "error": root.get("error")}


def _run_entrypoint(entrypoint: str, inp: Any) -> None:
    module, _, func = entrypoint.partition(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise PacketError(f"cannot import entrypoint {entrypoint}: {exc}") from None
    result = fn(inp)
    if inspect.isawaitable(result):
        asyncio.run(_await(result))


async def _await(aw: Any) -> Any:
    return await aw


def replay_packet(path: str | Path, *, mode: str = "strict", fallback: str = "error",
                  inject: list[str] | None = None) -> ReplayResult:
    import time

    t0 = time.perf_counter()
    packet = load_packet(path)
    m, fb = Mode.parse(mode), Fallback.parse(fallback)
    calls = packet.get("calls") or []
    injections: dict[int, Any] = {}
    injected = []
    for spec in inject or []:
        call, value = parse_injection(spec, calls)
        injections[call["hop"]] = value
        injected.append({"hop": call["hop"], "agent": call["agent"], "name": call["name"], "value": value})
    original = {"status": packet["run"]["status"] if packet.get("run") else None,
                "bucket": (packet.get("failure") or {}).get("bucket"),
                "output": (packet.get("run") or {}).get("output"),
                "path": per_agent_path(calls)}
    entrypoint = packet.get("entrypoint")
    runnable = bool(entrypoint) and packet.get("input") is not None
    if not runnable and not calls:  # walking no step would "reproduce" anything: not an answer
        raise PacketError(f"nothing to replay in packet {path}: it holds no recorded calls and no entrypoint "
                          "with an input to re-run")
    if runnable:
        assert isinstance(entrypoint, str)  # the packet's model checks it (`module:function`)
        why_not = refusal(entrypoint)
        if why_not is not None:  # the packet chose it: only the project's own code runs (see trust.py)
            raise PacketError(f"refusing to run entrypoint {entrypoint!r} named by packet {path}: {why_not}; "
                              f"{REMEDY}")
        player = Player(calls, m, fb, injections)
        with runtime.collect(silent=True) as raw, no_network(), replaying(player):
            try:
                _run_entrypoint(entrypoint, packet["input"])
            except (ReplayMiss, PacketError, NetworkBlocked):
                raise
            except Exception:  # the workflow's own failure: it is what we replay, not an engine error
                pass
        records = [orjson.loads(r) for r in raw]
        now = _diagnosis(records)
        replayed_calls = [dict(c, hop=i) for i, c in enumerate(_calls_of(records))]
        steps = _steps(replayed_calls)
        now["path"] = per_agent_path(replayed_calls)
        executed = True
        log = player.log
    else:
        if injections:
            raise UsageError("this packet has no entrypoint: counterfactual injection needs one")
        records = packet.get("spans") or []
        now = _diagnosis(records)
        steps = _steps(calls)
        now["path"] = original["path"]
        executed = False
        log = [{"hop": c["hop"], "agent": c["agent"], "name": c["name"], "source": "recorded"} for c in calls]
    diff = []
    for key in ("output", "path", "bucket", "status"):
        if now.get(key) != original.get(key):
            diff.append({"field": key, "recorded": original.get(key), "replayed": now.get(key)})
    return ReplayResult(
        packet=str(path), trace_id=packet["trace_id"], workflow=packet.get("workflow"),
        selected_model=packet.get("selected_model"), replayed_steps=steps, failure_bucket=now.get("bucket"),
        next_action=now.get("next_action"), reproduced=not diff, diff=diff, mode=m.value, executed=executed,
        outcome={"status": now.get("status"), "output": now.get("output")}, original=original, injected=injected,
        calls=log, seconds=round(time.perf_counter() - t0, 4), notices=_notices(packet, path),
    )


def _notices(packet: dict[str, Any], path: str | Path) -> list[str]:
    cut = (packet.get("sanitized") or {}).get("truncated_strings")
    if isinstance(cut, int) and cut > 0:
        return [f"packet {path}: {cut} long strings were cut when it was written; a call whose request held one "
                "cannot match its recording"]
    return []


def _calls_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from agent_debug.replay.packet import _calls_from_records

    return _calls_from_records(records)


def packets_in(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(q for q in p.rglob("*.json") if q.is_file())
    if p.is_file():
        return [p]
    raise UsageError(f"no such packet or directory: {p}")
