"""agent-debug: trace, diagnose, replay and evaluate LLM agent runs.

The runtime SDK, importable as `import agent_debug as ad`:

    ad.configure(directory="logs", format="jsonl")
    with ad.run(workflow="repo-fix-agent", actor="cron") as run:
        with ad.span("planner", agent="planner", event_type="PLAN") as s:
            s.set_attribute("plan.steps", ["retrieve", "patch", "test"])
        run.set_outcome(passed=False)
    ad.shutdown()

Importing this package is cheap: it never imports typer, rich, networkx or google.genai.
"""

from agent_debug.model import Bucket, EventType, RunEnvelope, TraceRecord
from agent_debug.sdk.intercept import allm_call, atool_call, llm_call, replaying, request_hash, tool_call
from agent_debug.sdk.profiler import profile_async, profile_stats, reset_profile
from agent_debug.sdk.runtime import Config, configure, flush, shutdown, stats
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

__version__ = "0.1.0"

__all__ = [
    "Bucket",
    "Config",
    "EventType",
    "Message",
    "Run",
    "RunEnvelope",
    "Span",
    "TraceRecord",
    "allm_call",
    "atool_call",
    "configure",
    "current_run",
    "current_span",
    "flush",
    "handoff",
    "llm_call",
    "llm_span",
    "profile_async",
    "profile_stats",
    "receive",
    "replaying",
    "request_hash",
    "reset_profile",
    "run",
    "send",
    "shutdown",
    "span",
    "stats",
    "tool_call",
    "tool_span",
]
