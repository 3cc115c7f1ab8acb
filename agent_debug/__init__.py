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


if TYPE_CHECKING:  # for type checkers and IDEs; `X as X` marks each name as re-exported (PEP 484)
    from agent_debug.model import (
        Bucket as Bucket,
        EventType as EventType,
    )
    from agent_debug.replay.autopacket import (
        configure as configure,
    )
    from agent_debug.schema import (
        RunEnvelope as RunEnvelope,
        TraceRecord as TraceRecord,
    )
    from agent_debug.sdk.intercept import (
        allm_call as allm_call,
        atool_call as atool_call,
        llm_call as llm_call,
        replaying as replaying,
        request_hash as request_hash,
        tool_call as tool_call,
    )
    from agent_debug.sdk.profiler import (
        profile_async as profile_async,
        profile_stats as profile_stats,
        reset_profile as reset_profile,
    )
    from agent_debug.sdk.runtime import (
        Config as Config,
        flush as flush,
        shutdown as shutdown,
        stats as stats,
    )
    from agent_debug.sdk.tracer import (
        Message as Message,
        Run as Run,
        Span as Span,
        current_run as current_run,
        current_span as current_span,
        handoff as handoff,
        llm_span as llm_span,
        receive as receive,
        run as run,
        send as send,
        span as span,
        tool_span as tool_span,
    )
