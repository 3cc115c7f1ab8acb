"""What diagnosing a run finds: suspects and the run's diagnosis. The result types every analysis that blames a
span shares (`buckets`, `blame`, `suspects`, `sessions`), below all of them so none imports another for a type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Suspect:
    span_id: str
    agent_name: str
    name: str
    event_type: str
    bucket: str
    rule: str
    reason: str
    strength: str
    start_ns: int
    index: int = field(repr=False, default=-1)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("index", "start_ns")}


@dataclass
class RunDiagnosis:
    """One failed run: its bucket, root cause, chain, evidence, suspects and next action."""

    trace_id: str
    workflow: str | None
    session_id: str | None
    start_ns: int
    bucket: str
    root_cause: dict[str, Any]
    chain: list[str]
    visible_failure: dict[str, Any]
    evidence: list[str]
    suspects: list[dict[str, Any]]
    next_action: str
    source: dict[str, Any] | None = None
    fingerprint: str = ""
    flag: str | None = None  # set when the run was bucketed for its suspects, not for a recorded failure
    session: dict[str, Any] | None = None  # the earlier turn whose state corrupted this one (sessions.py)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
