"""The trace record and the run envelope as pydantic models: the typed, documented view of the wire format
(`docs/trace-format.md`). Readers check records with `model.check_record` (a hand-written fast path that agrees
with these); these models are for code and documentation that want the record's fields typed, and they are
kept apart so that what reads records never imports pydantic.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent_debug.model import KNOWN_EVENT_TYPES


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
    format_version: int | None = Field(None, description="the trace format's major version the writer followed; "
                                       "absent means 1 (extension, docs/trace-format.md)")

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
