"""Per-agent, per-function wall-time statistics for async (and sync) code, measured per call without blocking
(the L59 AgentProfiler idea). Kept in memory; `profile_stats()` returns a snapshot."""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

RESERVOIR = 1024  # latest samples kept per function for percentiles


@dataclass
class FunctionStats:
    """Wall-time statistics of one agent's function, in nanoseconds."""

    agent: str
    function: str
    calls: int = 0
    errors: int = 0
    total_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0
    samples: list[int] = field(default_factory=list, repr=False)

    def add(self, elapsed: int, failed: bool) -> None:
        self.calls += 1
        self.errors += failed
        self.total_ns += elapsed
        self.min_ns = elapsed if self.calls == 1 else min(self.min_ns, elapsed)
        self.max_ns = max(self.max_ns, elapsed)
        if len(self.samples) < RESERVOIR:
            self.samples.append(elapsed)
        else:
            self.samples[self.calls % RESERVOIR] = elapsed

    def summary(self) -> dict[str, Any]:
        s = sorted(self.samples)

        def pct(p: float) -> int:
            return s[min(len(s) - 1, int(p * len(s)))] if s else 0

        return {
            "agent": self.agent,
            "function": self.function,
            "calls": self.calls,
            "errors": self.errors,
            "total_ns": self.total_ns,
            "mean_ns": self.total_ns // self.calls if self.calls else 0,
            "min_ns": self.min_ns,
            "max_ns": self.max_ns,
            "p50_ns": pct(0.5),
            "p95_ns": pct(0.95),
        }


_stats: dict[tuple[str, str], FunctionStats] = {}
_lock = threading.Lock()


def _record(agent: str, function: str, elapsed: int, failed: bool) -> None:
    key = (agent, function)
    st = _stats.get(key)
    if st is None:
        with _lock:
            st = _stats.setdefault(key, FunctionStats(agent, function))
    st.add(elapsed, failed)


def profile_async(agent: str) -> Callable[[F], F]:
    """Decorator: time every call of the function (coroutine or plain) under `agent`."""

    def decorator(fn: F) -> F:
        fname = fn.__qualname__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter_ns()
                failed = True
                try:
                    result = await fn(*args, **kwargs)
                    failed = False
                    return result
                finally:
                    _record(agent, fname, time.perf_counter_ns() - t0, failed)

            return awrapper  # type: ignore[return-value]  # functools.wraps: fn's signature, so an F

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter_ns()
            failed = True
            try:
                result = fn(*args, **kwargs)
                failed = False
                return result
            finally:
                _record(agent, fname, time.perf_counter_ns() - t0, failed)

        return wrapper  # type: ignore[return-value]  # functools.wraps: fn's signature, so an F

    return decorator


def profile_stats() -> list[dict[str, Any]]:
    """Every profiled function, slowest total first."""
    return sorted((s.summary() for s in list(_stats.values())), key=lambda d: -d["total_ns"])


def reset_profile() -> None:
    with _lock:
        _stats.clear()
