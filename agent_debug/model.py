"""Trace records, the run envelope and event types: the ground floor every other module imports.

The wire format is `docs/trace-format.md` (version 1 of the public contract). Readers validate a record once, at
the edge, with `check_record` (a hand-written fast path that agrees with the pydantic models of `schema`, the
typed, documented view of the same record). This module imports no pydantic: readers, the store and the CLI
load it on every start.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Any

# The major version of the trace format (docs/trace-format.md) this code writes and reads. The SDK writes it on
# every record as `format_version`; a record without it is version 1 (every file written before it existed). A
# reader rejects a record of a newer major version by name; older versions, when there are any, are migrated.
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
            and ((fv := rec.get("format_version")) is None or (type(fv) is int and fv == FORMAT_VERSION))
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
    version = rec.get("format_version")
    if version is not None:
        if type(version) is not int:
            return "format_version must be an integer"
        if version > FORMAT_VERSION:
            return (f"format_version {version} is newer than this agent-debug reads ({FORMAT_VERSION}): "
                    "upgrade agent-debug")
        if version < 1:
            return f"format_version {version} is not a version (the first is 1)"
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


_NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def file_stem(trace_id: str, limit: int = 96) -> str:
    """A file name stem for a trace id. Trace ids are data (whoever wrote the file chose them: `../../x`, `/etc/y`),
    so a packet or report named after one keeps only letters, digits, `-`, `_` and inner dots; an id that needed
    anything changed (or cut to `limit`) gets 12 hex digits of its hash, so two ids never share a name."""
    kept = "".join(c if c in _NAME_SAFE else "_" for c in trace_id[:limit]).lstrip(".") or "_"
    if kept == trace_id:
        return kept
    import hashlib

    return f"{kept}-{hashlib.sha256(trace_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def _escape(m: re.Match[str]) -> str:
    code = ord(m[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escaped(text: str, chars: re.Pattern[str]) -> str:
    """`text` with every character `chars` (a pattern of single characters) matches written as its escape
    (`\\x1b`, `\\u202e`): where trace data goes into a terminal line, an XML report or a TOML comment, a character
    that would act there instead of being shown is written as text."""
    return text if chars.search(text) is None else chars.sub(_escape, text)
