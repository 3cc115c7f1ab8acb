"""agent-debug: trace, diagnose, replay and evaluate LLM agent runs.

The runtime SDK, importable as `import agent_debug as ad`:

    ad.configure(directory="logs", format="jsonl")
    with ad.run(workflow="repo-fix-agent", actor="cron") as run:
        with ad.span("planner", agent="planner", event_type="PLAN") as s:
            s.set_attribute("plan.steps", ["retrieve", "patch", "test"])
        run.set_outcome(passed=False)
    ad.shutdown()

Importing this package is cheap: it imports nothing until a name is used (PEP 562 `__getattr__`), so the CLI and
the store, which import submodules of it, never pay for the SDK or the pydantic models. It never imports typer,
rich, networkx or google.genai. `configure` is the SDK's, with replay's packet writer hooked in when
`packets=True` (`replay.autopacket`: the SDK itself imports nothing above it).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("Bucket", "EventType"), "agent_debug.model"),
    **dict.fromkeys(("RunEnvelope", "TraceRecord"), "agent_debug.schema"),
    **dict.fromkeys(("allm_call", "atool_call", "llm_call", "replaying", "request_hash", "tool_call"),
                    "agent_debug.sdk.intercept"),
    **dict.fromkeys(("profile_async", "profile_stats", "reset_profile"), "agent_debug.sdk.profiler"),
    **dict.fromkeys(("Config", "flush", "shutdown", "stats"), "agent_debug.sdk.runtime"),
    "configure": "agent_debug.replay.autopacket",
    **dict.fromkeys(("Message", "Run", "Span", "current_run", "current_span", "handoff", "llm_span", "receive",
                     "run", "send", "span", "tool_span"), "agent_debug.sdk.tracer"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent_debug' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from agent_debug.model import Bucket, EventType
    from agent_debug.replay.autopacket import configure
    from agent_debug.schema import RunEnvelope, TraceRecord
    from agent_debug.sdk.intercept import allm_call, atool_call, llm_call, replaying, request_hash, tool_call
    from agent_debug.sdk.profiler import profile_async, profile_stats, reset_profile
    from agent_debug.sdk.runtime import Config, flush, shutdown, stats
    from agent_debug.sdk.tracer import (
        Message,
        Run,
        Span,
        current_run,
        current_span,
        handoff,
        llm_span,
        receive,
        run,
        send,
        span,
        tool_span,
    )
