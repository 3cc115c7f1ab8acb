"""Synthetic, demo-like trace records for the benchmarks (`bench_ingest.py`, `bench_tree.py`).

The shape follows the demo team: a root `orchestrator` AGENT span with the run envelope, then agent turns
(`SEND` -> `RECEIVE` -> `AGENT`) whose steps are model calls, tool calls and retrievals, run one after the other,
with parallel fan-outs of sub-turns (a delegating agent sends to several agents at once and waits for all).
Fan-outs nest until the requested number of spans is reached, so a 1M-span trace is a few levels deep and very
wide, like a large real run. Records are ~450 bytes of JSON on average (attributes, token costs, short
payloads), written in the order their spans end (children before parents), as the SDK writes them.

Everything is derived from a seed: the same arguments give byte-identical files.

    from synth import write_jsonl_gz, trace_records
    write_jsonl_gz(path, traces=1000, spans_per_trace=1000, seed=1)
"""

from __future__ import annotations

import gzip
import random
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

AGENTS = ("researcher", "coder", "writer", "verifier", "planner", "reviewer", "analyst", "router")
MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite")
TOOLS = ("pytest", "grep", "git-diff", "lint", "http-get", "sql")
LEAF_KINDS = ("LLM_CALL", "LLM_CALL", "TOOL_CALL", "TOOL_CALL", "RETRIEVAL")
BASE_TIME = 1_790_000_000.0  # 2026-09 (fixed, so files are reproducible)

_WORDS = ("retry", "backoff", "schema", "index", "cache", "flaky", "timeout", "rollback", "invoice", "session",
          "quota", "shard", "replica", "ranker", "export", "quoting", "rounding", "token", "budget", "patch")


@dataclass
class _Spans:
    """One trace's structure, column-wise (compact enough for 1M spans)."""

    parent: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)  # event type
    agent: list[int] = field(default_factory=list)  # index into AGENTS, -1 for the orchestrator
    phases: list[list[list[int]] | None] = field(default_factory=list)  # sequential phases of parallel children
    start: list[int] = field(default_factory=list)  # ns from the trace start
    dur: list[int] = field(default_factory=list)

    def add(self, parent: int, kind: str, agent: int) -> int:
        self.parent.append(parent)
        self.kind.append(kind)
        self.agent.append(agent)
        self.phases.append(None)
        self.start.append(0)
        self.dur.append(0)
        return len(self.parent) - 1


def _leaf_ns(rng: random.Random, kind: str) -> int:
    if kind == "LLM_CALL":
        return int(rng.uniform(150, 2500) * 1e6)
    if kind == "RETRIEVAL":
        return int(rng.uniform(10, 120) * 1e6)
    return int(rng.uniform(5, 900) * 1e6)


def _expand(s: _Spans, node: int, agent: int, budget: int, rng: random.Random) -> None:
    """Give `node` (an AGENT or root span) exactly `budget` descendants: some own steps, and parallel
    fan-outs of sub-turns (SEND -> RECEIVE -> AGENT, 3 spans plus the sub-turn's own budget)."""
    phases: list[list[int]] = []
    s.phases[node] = phases
    while budget > 0:
        if budget < 12 or rng.random() < 0.45:
            kind = LEAF_KINDS[rng.randrange(len(LEAF_KINDS))]
            phases.append([s.add(node, kind, agent)])
            budget -= 1
            continue
        width = min(rng.randint(2, 8), budget // 4)
        share = budget if budget < 60 else rng.randint(budget // 3, budget)  # leave some for later steps
        share = max(share, 4 * width)
        per = [3] * width
        for _ in range(share - 3 * width):  # spread the rest unevenly over the sub-turns
            per[min(int(rng.paretovariate(1.2)) - 1, width - 1) if rng.random() < 0.3 else rng.randrange(width)] += 1
        group = []
        for sub in per:
            sub_agent = rng.randrange(len(AGENTS))
            send = s.add(node, "SEND", agent)
            recv = s.add(send, "RECEIVE", sub_agent)
            turn = s.add(recv, "AGENT", sub_agent)
            s.phases[send] = [[recv]]
            s.phases[recv] = [[turn]]
            _expand(s, turn, sub_agent, sub - 3, rng)
            group.append(send)
        phases.append(group)
        budget -= sum(per)


def _place(s: _Spans, root: int, rng: random.Random) -> None:
    """Assign start times and durations top-down: phases run one after the other, the members of a phase in
    parallel; a parent lasts until its last phase is done. Iterative (no recursion limit)."""
    # post-order so that each node is placed after its start is known and ended after its children
    stack: list[tuple[int, int, int]] = [(root, 0, 0)]  # (node, state, phase index); start set by parent
    cursor: dict[int, int] = {root: 0}
    while stack:
        i, state, p = stack.pop()
        phases = s.phases[i]
        if not phases:
            kind = s.kind[i]
            s.dur[i] = _leaf_ns(rng, kind) if kind in LEAF_KINDS else rng.randrange(50_000, 400_000)
            continue
        if state == 0:  # start the first phase after a little own time
            cursor[i] = s.start[i] + rng.randrange(20_000, 400_000)
        else:  # phase p-1 is done: the cursor moves past its last member
            ends = [_effective_end(s, c) for c in phases[p - 1]]
            cursor[i] = max(ends) + rng.randrange(10_000, 300_000)
        if p == len(phases):
            end = cursor.pop(i) + rng.randrange(10_000, 200_000)
            if s.kind[i] == "SEND":  # a message is sent and done; the work it caused is its RECEIVE child
                s.dur[i] = rng.randrange(4_000, 15_000)
            else:
                s.dur[i] = end - s.start[i]
            continue
        stack.append((i, 1, p + 1))
        t = cursor[i]
        for c in reversed(phases[p]):
            s.start[c] = t + rng.randrange(0, 2_000_000 if len(phases[p]) > 1 else 50_000)
            stack.append((c, 0, 0))


def _effective_end(s: _Spans, i: int) -> int:
    """A SEND ends when the RECEIVE it caused ends (the sender waits for the reply)."""
    end = s.start[i] + s.dur[i]
    if s.kind[i] == "SEND" and s.phases[i]:
        recv = s.phases[i][0][0]  # type: ignore[index]
        end = max(end, s.start[recv] + s.dur[recv])
    return end


def _words(rng: random.Random, n: int) -> str:
    return " ".join(_WORDS[rng.randrange(len(_WORDS))] for _ in range(n))


def trace_records(n_spans: int, seed: int, *, trace_no: int = 0, fail: bool | None = None) -> Iterator[dict[str, Any]]:
    """The records of one synthetic trace of exactly `n_spans` spans, in the order their spans end."""
    rng = random.Random(seed * 1_000_003 + trace_no)
    trace_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    s = _Spans()
    root = s.add(-1, "AGENT", -1)
    _expand(s, root, -1, n_spans - 1, rng)
    _place(s, root, rng)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(len(s.kind))]
    t0 = BASE_TIME + trace_no * 37.0
    failed = (rng.random() < 0.2) if fail is None else fail
    error_tool = rng.randrange(len(s.kind)) if failed else -1
    order = sorted(range(len(s.kind)), key=lambda i: s.start[i] + s.dur[i])
    for i in order:
        kind = s.kind[i]
        agent = "orchestrator" if s.agent[i] < 0 else AGENTS[s.agent[i]]
        r: dict[str, Any] = {
            "trace_id": trace_id,
            "span_id": ids[i],
            "parent_id": ids[s.parent[i]] if s.parent[i] >= 0 else None,
            "agent_name": agent,
            "event_type": kind,
            "timestamp": round(t0 + s.start[i] / 1e9, 6),
            "duration_ns": s.dur[i],
        }
        if kind == "LLM_CALL":
            model = MODELS[rng.randrange(3)]
            prompt, completion = rng.randrange(200, 4000), rng.randrange(20, 800)
            r["name"] = f"llm:{model}"
            r["token_cost"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                               "cost_usd": round(prompt * 1.25e-6 + completion * 1e-5, 6)}
            r["attributes"] = {"gen_ai.request.model": model, "route.model": model, "cache.hit": rng.random() < 0.1,
                               "llm.finish_reason": "stop", "request.hash": f"{rng.getrandbits(48):012x}"}
            r["payload"] = {"prompt": _words(rng, 14), "response": _words(rng, 8)}
        elif kind in ("TOOL_CALL", "RETRIEVAL"):
            tool = "retriever" if kind == "RETRIEVAL" else TOOLS[rng.randrange(len(TOOLS))]
            r["name"] = "retrieve" if kind == "RETRIEVAL" else f"tool:{tool}"
            attrs: dict[str, Any] = {"tool.name": tool, "tool.exit_code": 0, "tool.timeout_class": "none",
                                     "tool.result_size": rng.randrange(0, 50_000)}
            if kind == "RETRIEVAL":
                attrs["retrieval.query"] = _words(rng, 3)
                attrs["retrieval.doc_count"] = rng.randrange(0, 6)
            r["attributes"] = attrs
            r["payload"] = {"args": {"target": f"src/{_WORDS[rng.randrange(20)]}.py"}, "output": _words(rng, 7)}
            if i == error_tool or rng.random() < 0.002:
                r["status"] = "error"
                r["error"] = {"type": "ToolError", "message": "exit 2: " + _words(rng, 4)}
                attrs["tool.exit_code"] = 2
        elif kind == "SEND":
            to = AGENTS[s.agent[s.phases[i][0][0]]]  # type: ignore[index]
            r["name"] = f"send:{to}"
            r["attributes"] = {"message.to": to, "message.id": f"{rng.getrandbits(64):016x}"}
            r["payload"] = {"content": _words(rng, 10)}
        elif kind == "RECEIVE":
            r["name"] = f"receive:{agent}"
            r["attributes"] = {"message.from": "orchestrator", "message.bytes": rng.randrange(100, 5000)}
        elif i == root:
            r["name"] = "synthetic-run"
            r["run_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            r["workflow"] = "repo-fix-agent" if trace_no % 3 else "research-digest"
            r["actor"] = "bench"
            r["attributes"] = {"outcome.passed": not failed, "task.summary": _words(rng, 6)}
            r["payload"] = {"input": {"task": _words(rng, 8), "seed": seed}}
        else:
            r["name"] = f"{agent}-turn"
            r["attributes"] = {"turn.steps": len(s.phases[i] or ())}
        yield r


def write_jsonl_gz(path: Path, *, traces: int, spans_per_trace: int, seed: int, level: int = 1) -> dict[str, int]:
    """Write `traces` traces of `spans_per_trace` spans as gzipped JSONL; returns counts and sizes."""
    try:
        from isal import igzip as gz  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        gz = gzip
    dumps = orjson.dumps
    raw = 0
    n = 0
    tmp = path.with_name(path.name + ".part")
    with gz.open(tmp, "wb", compresslevel=level) as fh:
        for t in range(traces):
            lines = [dumps(r) for r in trace_records(spans_per_trace, seed, trace_no=t)]
            n += len(lines)
            data = b"\n".join(lines) + b"\n"
            raw += len(data)
            fh.write(data)
    tmp.replace(path)
    return {"records": n, "raw_bytes": raw, "file_bytes": path.stat().st_size}


if __name__ == "__main__":  # a quick look: python scripts/synth.py [spans] [traces]
    spans = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    ntraces = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    sizes = [len(orjson.dumps(r)) for t in range(ntraces) for r in trace_records(spans, 1, trace_no=t)]
    print(f"{len(sizes)} records, mean {sum(sizes) / len(sizes):.0f} bytes, max {max(sizes)}")
