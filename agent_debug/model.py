"""Trace records, the run envelope and event types: the ground floor every other module imports.

The wire format is `docs/trace-format.md` (version 1 of the public contract). Readers validate a record once, at
the edge, with `check_record` (a hand-written fast path that agrees with the pydantic models below); the
pydantic models are the typed, documented view of the same record.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
# Containers nested deeper than this in a record (the record itself is level 1) are cut by every reader
# (`formats.accept`), and the SDK cuts before writing, so what it writes is read back as it was written.
RECORD_MAX_DEPTH = 128

REQUIRED_FIELDS: tuple[str, ...] = (
    "trace_id",
    "span_id",
    "parent_id",
    "agent_name",
    "event_type",
    "timestamp",
    "duration_ns",
)


class EventType(StrEnum):
    """The event types the spec names. Unknown values are kept as plain strings and treated as generic."""

    SEND = "SEND"
    RECEIVE = "RECEIVE"
    LLM_CALL = "LLM_CALL"
    TOOL_CALL = "TOOL_CALL"
    ROUTING_DECISION = "ROUTING_DECISION"
    ERROR = "ERROR"
    AGENT = "AGENT"
    PLAN = "PLAN"
    RETRIEVAL = "RETRIEVAL"
    VERIFY = "VERIFY"


KNOWN_EVENT_TYPES = frozenset(e.value for e in EventType)


class Bucket(StrEnum):
    """The failure buckets of the spec; every failed run gets exactly one."""

    RETRIEVAL_MISS = "retrieval_miss"
    TOOL_EXECUTION = "tool_execution"
    PLANNER_DRIFT = "planner_drift"
    VERIFIER_FALSE_POSITIVE = "verifier_false_positive"
    ROUTING_MISTAKE = "routing_mistake"
    UNCLASSIFIED = "unclassified"


class TokenCost(BaseModel):
    """Tokens and money one step spent."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int | None = Field(None, description="tokens sent to the model")
    completion_tokens: int | None = Field(None, description="tokens the model produced")
    cost_usd: float | None = Field(None, description="what the call cost, in US dollars")


class ErrorInfo(BaseModel):
    """What went wrong in a span whose status is `error`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="the exception class or error kind, e.g. `TimeoutError`")
    message: str = Field("", description="the error message (redacted like every other value)")


class TraceRecord(BaseModel):
    """One span: a step of one run, with its causal parent. Unknown top-level keys are kept."""

    model_config = ConfigDict(extra="allow")

    trace_id: str = Field(description="the root request (one run of the system); compared as an opaque string")
    span_id: str = Field(description="this step; unique within its trace")
    parent_id: str | None = Field(description="the span that caused this one; null for the root")
    agent_name: str = Field(description="the agent that did this step")
    event_type: str = Field(description="one of EventType; an unknown value is kept as it is")
    timestamp: float = Field(description="start time, Unix epoch seconds")
    duration_ns: int = Field(ge=0, description="how long the step took, from a monotonic clock")
    name: str | None = Field(None, description="the step's name: `planner`, `tool:pytest`, `llm:gemini-2.5-flash`")
    status: str = Field("ok", description="`ok` or `error`")
    error: ErrorInfo | None = Field(None, description="`{type, message}` when status is error")
    payload: dict[str, Any] | None = Field(None, description="message content, truncated and redacted")
    token_cost: TokenCost | None = Field(None, description="tokens and cost of this step")
    modality: str = Field("text", description="`text`, `image`, `audio` or `multimodal`")
    run_id: str | None = Field(None, description="run envelope: this run's id")
    session_id: str | None = Field(None, description="run envelope: groups runs (turns) of one conversation")
    workflow: str | None = Field(None, description="run envelope: the workflow this run belongs to")
    actor: str | None = Field(None, description="run envelope: who or what started the run")
    attributes: dict[str, Any] = Field(default_factory=dict, description="flat key -> scalar or list of scalars")

    @property
    def is_known_event_type(self) -> bool:
        return self.event_type in KNOWN_EVENT_TYPES


class RunEnvelope(BaseModel):
    """The run envelope: created before any model call, written on the root span."""

    trace_id: str = Field(description="the run's trace id")
    run_id: str = Field(description="the run's own id (a trace may be re-run; a run id is never reused)")
    workflow: str = Field(description="the workflow, e.g. `repo-fix-agent`")
    actor: str = Field(description="who started the run: a user, `cron`, a CI job")
    started_at: str = Field(description="ISO-8601 UTC start time")
    session_id: str | None = Field(None, description="the conversation this run is a turn of")


def check_record(rec: Any) -> str | None:
    """Return why `rec` is not a valid record, or None. Normalizes numeric fields in place.

    This is the hot path of every reader: a straight-line check of the common shape first, and the detailed
    check (which also says what is wrong) only when that fails.
    """
    try:
        t, s, p = rec["trace_id"], rec["span_id"], rec["parent_id"]
        ts, d = rec["timestamp"], rec["duration_ns"]
        if (
            type(t) is str
            and t
            and type(s) is str
            and s
            and (p is None or (type(p) is str and p))
            and type(rec["agent_name"]) is str
            and type(rec["event_type"]) is str
            and (type(ts) is float or type(ts) is int)
            and -MAX_TIMESTAMP < ts < MAX_TIMESTAMP
            and type(d) is int
            and 0 <= d <= MAX_DURATION_NS
            and rec.get("status", "ok") in ("ok", "error")
            and type(rec.get("attributes", _EMPTY)) is dict
            and type(rec.get("payload", _EMPTY)) is dict
            and type(rec.get("token_cost", _EMPTY)) is dict
            and type(rec.get("error", _EMPTY)) is dict
        ):
            return None
    except (KeyError, TypeError):
        pass
    return _check_record_slow(rec)


_EMPTY: dict[str, Any] = {}
# Bounds that keep start and end times in 64-bit integer nanoseconds (what the store and SQLite hold):
MAX_TIMESTAMP = 4.6e9  # epoch seconds: the year 2115
MAX_DURATION_NS = 4_600_000_000_000_000_000  # 146 years


def _check_record_slow(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "not an object"
    for key in REQUIRED_FIELDS:
        if key not in rec:
            return f"missing field {key}"
    for key in ("trace_id", "span_id"):
        v = rec[key]
        if not isinstance(v, str) or not v:
            return f"{key} must be a non-empty string"
    parent = rec["parent_id"]
    if parent is not None and not isinstance(parent, str):
        return "parent_id must be a string or null"
    if parent == "":
        rec["parent_id"] = None
    if not isinstance(rec["agent_name"], str):
        return "agent_name must be a string"
    if not isinstance(rec["event_type"], str):
        return "event_type must be a string"
    ts = rec["timestamp"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        return "timestamp must be a number"
    if not -MAX_TIMESTAMP < ts < MAX_TIMESTAMP:
        return "timestamp out of range (epoch seconds)"
    dur = rec["duration_ns"]
    if isinstance(dur, bool) or not isinstance(dur, (int, float)) or not math.isfinite(dur) or dur < 0:
        return "duration_ns must be an integer >= 0"
    if dur > MAX_DURATION_NS:
        return f"duration_ns out of range (more than {MAX_DURATION_NS})"
    if isinstance(dur, float):
        if dur != int(dur):
            return "duration_ns must be an integer >= 0"
        rec["duration_ns"] = int(dur)
    status = rec.get("status", "ok")
    if status not in ("ok", "error"):
        return "status must be ok or error"
    for key in ("attributes", "payload", "token_cost", "error"):
        v = rec.get(key)
        if v is None and key in rec:
            del rec[key]  # null is the same as absent
        elif v is not None and not isinstance(v, dict):
            return f"{key} must be an object"
    return None


def is_root(rec: dict[str, Any]) -> bool:
    return rec.get("parent_id") is None


def run_failed(root: dict[str, Any]) -> bool:
    """A run failed when its root span has status error or attribute `outcome.passed = false` (spec)."""
    if root.get("status") == "error":
        return True
    attrs = root.get("attributes") or {}
    return attrs.get("outcome.passed") is False
