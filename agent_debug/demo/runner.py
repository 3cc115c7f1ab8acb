"""Run a batch of the demo system concurrently, write its traces (rotated, compressed), and label it."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import agent_debug as ad
from agent_debug.demo.scenarios import ROOT_CAUSE, SCENARIO_ROOT_CAUSE, Scenario, batch
from agent_debug.demo.system import run_workflow
from agent_debug.sdk import runtime
from agent_debug.store.ingest import IngestResult, ingest


@dataclass
class RunLabel:
    """What the demo knows about one run it made."""

    trace_id: str
    scenario: str
    passed: bool
    bucket: str | None
    root_cause_span_id: str | None
    error: str | None = None
    session_id: str | None = None  # a turn of a session (its root cause may be in an earlier turn)


@dataclass
class DemoResult:
    directory: str
    trace_dir: str
    packet_dir: str
    labels_path: str
    runs: list[RunLabel] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sdk_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.runs if not r.passed)


async def _run_all(items: list[tuple[Scenario, dict[str, Any]]], concurrency: int) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(inp: dict[str, Any]) -> tuple[Any, str | None]:
        try:
            return await run_workflow(inp), None
        except Exception as exc:  # a failed run is data, not a demo crash
            return None, f"{type(exc).__name__}: {exc}"

    async def item(inp: dict[str, Any]) -> Any:
        async with sem:
            if "turns" not in inp:
                return await one(inp)
            history: list[str] = []  # a conversation: each turn sees what the earlier ones answered
            for turn in inp["turns"]:
                result, err = await one({**turn, "history": list(history)} if history else turn)
                if err is not None:
                    break
                history.append(str(result["output"]))
            return None

    return await asyncio.gather(*(item(inp) for _, inp in items))


def label_runs(items: list[tuple[Scenario, dict[str, Any]]], records: list[dict[str, Any]]) -> list[RunLabel]:
    """Match each input (each turn of a session) to its trace by task_id on the root's payload, and resolve the
    root-cause span of each failed one."""
    by_trace: dict[str, list[dict[str, Any]]] = {}
    roots: dict[str | None, dict[str, Any]] = {}  # by task_id (None: a root without one)
    for rec in records:
        by_trace.setdefault(rec["trace_id"], []).append(rec)
        if rec.get("parent_id") is None:
            task_id = ((rec.get("payload") or {}).get("input") or {}).get("task_id")
            roots[task_id] = rec
    labels = []
    for sc, inp in items:
        turns = inp.get("turns") or [inp]
        first = roots.get(turns[0]["task_id"])
        for turn in turns:
            root = roots.get(turn["task_id"])
            if root is None:  # a turn after a failed one never ran
                continue
            failed = root.get("status") == "error" or (root.get("attributes") or {}).get("outcome.passed") is False
            rc = None
            if failed and sc.bucket:
                select = SCENARIO_ROOT_CAUSE.get(sc.name, ROOT_CAUSE[sc.bucket])
                rc = select(by_trace[(first if sc.turns and first is not None else root)["trace_id"]])
            err = root.get("error", {}).get("message") if root.get("status") == "error" else None
            labels.append(RunLabel(root["trace_id"], sc.name, not failed, sc.bucket if failed else None, rc, err,
                                   turn.get("session_id")))
    return labels


def run_demo(directory: str | os.PathLike[str] = "demo-out", runs: int = 24, *, seed: int = 0,
             concurrency: int = 8, rotation: str = "48 KB", packets: bool = True) -> DemoResult:
    """Run `runs` tasks through the demo team, writing traces to `directory/traces` and labels beside them."""
    base = Path(directory)
    trace_dir = base / "traces"
    packet_dir = base / "packets"
    items = batch(runs, seed)
    ad.configure(trace_dir, rotation=rotation, packets=packets, packet_dir=packet_dir)
    with runtime.collect() as raw:
        asyncio.run(_run_all(items, concurrency))
    stats = ad.shutdown()
    records = [orjson.loads(r) for r in raw]
    labels = label_runs(items, records)
    labels_path = base / "labels.json"
    labels_path.write_bytes(orjson.dumps([lab.__dict__ for lab in labels], option=orjson.OPT_INDENT_2))
    files = sorted(str(p) for p in trace_dir.rglob("*") if p.is_file())
    return DemoResult(str(base), str(trace_dir), str(packet_dir), str(labels_path), labels, files, stats)


@dataclass
class DemoReport:
    """`agent-debug demo`: the batch run and its traces ingested into a store beside them."""

    result: DemoResult
    store: str
    ingested: IngestResult

    @property
    def notices(self) -> list[str]:
        return self.ingested.notices

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"directory": r.directory, "traces": r.trace_dir, "labels": r.labels_path, "runs": len(r.runs),
                "failed": r.failed, "files": r.files, "sdk": r.sdk_stats, "store": self.store,
                "ingest": self.ingested.as_dict(),
                "packets": sorted(str(p) for p in Path(r.packet_dir).rglob("*.json"))}


def demo_of(directory: str | os.PathLike[str], runs: int, *, seed: int = 0) -> DemoReport:
    """Run the batch, then ingest its traces into `<directory>/store.db`."""
    result = run_demo(directory, runs, seed=seed)
    store = Path(result.directory) / "store.db"
    return DemoReport(result, str(store), ingest([result.trace_dir], store))
