"""Multi-run simulation: re-execute a workflow N times through its entrypoint, each run with its own seed, and
the unbiased pass@k / pass^k estimators over the results.

Runs are captured in memory with `agent_debug.sdk.runtime.collect()`, so nothing needs configuring and nothing
is written. Run i gets the input with `seed = base_seed + i` (base_seed: the input's own `seed`, else 0), so a
simulation is reproducible and run 0 of a recorded input is the recorded run again. An exception from the
entrypoint is a failed run (its records, if any, are still evaluated), never a crash.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from math import comb
from typing import Any

import orjson

from agent_debug.columns import TraceSpans
from agent_debug.errors import CouldNotRun


def pass_at_k(n: int, c: int, k: int) -> float | None:
    """Chance that at least one of k runs drawn without replacement from n (c passed) passes:
    1 - C(n-c, k) / C(n, k). None when k is not in 1..n."""
    if not 1 <= k <= n or not 0 <= c <= n:
        return None
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_pow_k(n: int, c: int, k: int) -> float | None:
    """Chance that all of k runs drawn without replacement from n (c passed) pass: C(c, k) / C(n, k)."""
    if not 1 <= k <= n or not 0 <= c <= n:
        return None
    return comb(c, k) / comb(n, k)


@dataclass
class SimulatedRun:
    """One re-execution: the trace it recorded (None if it recorded no run) and the exception it raised."""

    index: int
    seed: int | None
    trace: TraceSpans | None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def resolve_entrypoint(spec: str) -> Callable[..., Any]:
    """'package.module:function' -> the callable; CouldNotRun when it cannot be imported."""
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise CouldNotRun(f"entrypoint {spec!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise CouldNotRun(f"entrypoint {spec!r} is not callable")
    fn: Callable[..., Any] = target
    return fn


def seeded_input(base: Any, index: int) -> tuple[Any, int | None]:
    """A fresh copy of the input with seed = base seed + index; a non-dict input is passed unchanged."""
    if not isinstance(base, dict):
        return copy.deepcopy(base), None
    inp = copy.deepcopy(base)
    try:
        base_seed = int(inp.get("seed", 0))
    except (TypeError, ValueError):
        base_seed = 0
    inp["seed"] = base_seed + index
    return inp, inp["seed"]


def call_entrypoint(fn: Callable[..., Any], inp: Any) -> Any:
    """Call with the input (or no argument when there is none); await a coroutine in its own event loop."""
    result = fn() if inp is None else fn(inp)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        return asyncio.run(wait())
    return result


def run_once(fn: Callable[..., Any], inp: Any, index: int, seed: int | None,
             workflow: str | None = None) -> SimulatedRun:
    """One run with its records captured in memory; exceptions become the run's error."""
    from agent_debug.sdk import runtime

    error = None
    with runtime.collect() as raw:
        try:
            call_entrypoint(fn, inp)
        except Exception as exc:  # a failing run is a result, not a crash of the evaluation
            error = f"{type(exc).__name__}: {exc}"
    records = [orjson.loads(r) for r in raw]
    trace, notes = pick_trace(records, workflow)
    if trace is None and error is None:
        error = "the entrypoint recorded no run (no root span)"
    return SimulatedRun(index, seed, trace, error, notes)


def pick_trace(records: list[dict[str, Any]], workflow: str | None) -> tuple[TraceSpans | None, list[str]]:
    """The run the entrypoint made: the trace whose root has the case's workflow, else the first rooted one."""
    by_trace: dict[str, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    for rec in records:
        by_trace.setdefault(rec["trace_id"], []).append(rec)
        if rec.get("parent_id") is None:
            roots.append(rec)
    if not roots:
        return None, []
    chosen = next((r for r in roots if workflow and r.get("workflow") == workflow), roots[0])
    notes = [f"the entrypoint recorded {len(roots)} runs; evaluated {chosen['trace_id']}"] if len(roots) > 1 else []
    return TraceSpans.from_records(chosen["trace_id"], by_trace[chosen["trace_id"]]), notes


def simulate(entrypoint: str, base_input: Any, runs: int, *, workflow: str | None = None,
             on_run: Callable[[int, int], None] | None = None) -> list[SimulatedRun]:
    """Re-execute `entrypoint` `runs` times, sequentially (so each run's records are its own)."""
    fn = resolve_entrypoint(entrypoint)
    out = []
    for i in range(runs):
        if on_run is not None:
            on_run(i, runs)
        inp, seed = seeded_input(base_input, i)
        out.append(run_once(fn, inp, i, seed, workflow))
    return out
