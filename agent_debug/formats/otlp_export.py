"""Our records -> OTLP/JSON, so Jaeger, Tempo, Phoenix, Langfuse or any OTel collector can show our traces.

One `TracesData` per trace, valid under the protobuf JSON mapping as OTLP uses it (lowerCamelCase keys, ids as
hex, int64 as strings). Every span is SPAN_KIND_INTERNAL with:

- GenAI semantic conventions: `gen_ai.agent.name` (always our agent_name), `gen_ai.operation.name` (LLM_CALL ->
  chat, TOOL_CALL -> execute_tool, AGENT -> invoke_agent), `gen_ai.usage.input_tokens`/`output_tokens`,
  `gen_ai.request.model` (from `route.model`), `gen_ai.tool.name` (from `tool.name`),
  `gen_ai.conversation.id` (session_id); an original attribute of the same name wins, except the agent name;
- every original attribute, then `agent_debug.event_type`, `agent_debug.payload` and `agent_debug.token_cost`
  (JSON text), the envelope (`agent_debug.run_id`, `.session_id`, `.workflow`, `.actor`, ...), and
  `agent_debug.derived`, the keys above that the record did not have (the importer drops them again);
- ids: 32/16 hex digits are kept (lowercased), a UUID trace id loses its dashes, anything else is hashed
  (sha256) to the right width; whenever the OTLP id differs from ours, ours is kept in `agent_debug.trace_id`,
  `agent_debug.span_id` or `agent_debug.parent_id`, which the otlp importer reads back: the round trip keeps
  ids, tree, agent names, event types and names.
- status ERROR with the error message, plus an `exception` event carrying `exception.type`/`exception.message`.

The resource's `service.name` is the trace's workflow, else "agent-debug".
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from agent_debug.errors import TraceNotFound
from agent_debug.formats.semconv import json_text, mapping

SERVICE = "agent-debug"
SPAN_KIND_INTERNAL = 1
STATUS_CODE_ERROR = 2

_OPERATION = {"LLM_CALL": "chat", "TOOL_CALL": "execute_tool", "AGENT": "invoke_agent"}
_HEX = frozenset("0123456789abcdefABCDEF")
_ENVELOPE = ("run_id", "session_id", "workflow", "actor", "modality")
_HANDLED = frozenset(
    {"trace_id", "span_id", "parent_id", "agent_name", "event_type", "timestamp", "duration_ns", "name", "status",
     "error", "payload", "token_cost", "attributes", "format_version", *_ENVELOPE}
)
_INT64 = (-(2**63), 2**63 - 1)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("agent-debug")
    except Exception:  # not installed as a distribution: the scope version is informative only
        return "0"


# ---------------------------------------------------------------------------------------------------------------
# ids


def otlp_trace_id(v: str) -> str:
    """32 lowercase hex digits for any trace id of ours."""
    s = v.replace("-", "") if len(v) == 36 and v.count("-") == 4 else v
    if len(s) == 32 and set(s) <= _HEX and s.strip("0"):
        return s.lower()
    return hashlib.sha256(f"trace:{v}".encode()).hexdigest()[:32]


def otlp_span_id(v: str) -> str:
    """16 lowercase hex digits for any span id of ours."""
    if len(v) == 16 and set(v) <= _HEX and v.strip("0"):
        return v.lower()
    return hashlib.sha256(f"span:{v}".encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------
# values


def any_value(v: Any) -> dict[str, Any] | None:
    """A Python value as an OTLP AnyValue; None for null (the attribute is left out)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)} if _INT64[0] <= v <= _INT64[1] else {"stringValue": str(v)}
    if isinstance(v, float):
        if math.isfinite(v):
            return {"doubleValue": v}
        return {"doubleValue": "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [x for x in map(any_value, v) if x is not None]}}
    if isinstance(v, Mapping):
        return {"kvlistValue": {"values": key_values(v)}}
    return {"stringValue": str(v)}


def key_values(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for k, v in attrs.items():
        value = any_value(v)
        if value is not None:
            out.append({"key": str(k), "value": value})
    return out




# ---------------------------------------------------------------------------------------------------------------
# spans


def _start_ns(rec: Mapping[str, Any]) -> int:
    try:
        return max(0, round(float(rec.get("timestamp") or 0) * 1e6) * 1000)
    except (TypeError, ValueError, OverflowError):
        return 0


def _attributes(rec: Mapping[str, Any], ids: Mapping[str, str]) -> dict[str, Any]:
    """GenAI conventions first, then the record's own attributes (they win), then what only we know."""
    own = mapping(rec.get("attributes"))
    tc = mapping(rec.get("token_cost"))
    derived: dict[str, Any] = {
        "gen_ai.operation.name": _OPERATION.get(str(rec.get("event_type"))),
        "gen_ai.usage.input_tokens": tc.get("prompt_tokens"),
        "gen_ai.usage.output_tokens": tc.get("completion_tokens"),
        "gen_ai.request.model": own.get("route.model"),
        "gen_ai.tool.name": own.get("tool.name") if rec.get("event_type") == "TOOL_CALL" else None,
        "gen_ai.conversation.id": rec.get("session_id"),
    }
    derived["gen_ai.agent.name"] = rec.get("agent_name")
    attrs = {k: v for k, v in derived.items() if v is not None and k not in own}
    added = sorted(attrs)
    attrs.update(own)
    attrs["gen_ai.agent.name"] = rec.get("agent_name")
    attrs["agent_debug.event_type"] = rec.get("event_type")
    if added:
        attrs["agent_debug.derived"] = added
    for key, original in ids.items():
        attrs[f"agent_debug.{key}"] = original
    if rec.get("payload") is not None:
        attrs["agent_debug.payload"] = json_text(rec["payload"])
    if tc:
        attrs["agent_debug.token_cost"] = json_text(tc)
    for key in _ENVELOPE:
        if rec.get(key) is not None:
            attrs[f"agent_debug.{key}"] = rec[key]
    for key, value in rec.items():
        if key not in _HANDLED and value is not None:
            attrs[f"agent_debug.{key}"] = value if isinstance(value, (str, int, float, bool)) else json_text(value)
    return attrs


def to_otlp_span(rec: Mapping[str, Any]) -> dict[str, Any]:
    """One record as an OTLP span (JSON mapping)."""
    trace_id, span_id, parent = str(rec["trace_id"]), str(rec["span_id"]), rec.get("parent_id")
    ids = {"trace_id": (trace_id, otlp_trace_id(trace_id)), "span_id": (span_id, otlp_span_id(span_id))}
    if parent is not None:
        ids["parent_id"] = (str(parent), otlp_span_id(str(parent)))
    changed = {k: orig for k, (orig, new) in ids.items() if orig != new}
    start = _start_ns(rec)
    end = start + max(0, int(rec.get("duration_ns") or 0))
    span: dict[str, Any] = {
        "traceId": ids["trace_id"][1],
        "spanId": ids["span_id"][1],
        "name": str(rec.get("name") or str(rec.get("event_type") or "span").lower()),
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": key_values(_attributes(rec, changed)),
    }
    if parent is not None:
        span["parentSpanId"] = ids["parent_id"][1]
    if rec.get("status") == "error":
        err = mapping(rec.get("error"))
        message = str(err.get("message") or "")
        span["status"] = {"code": STATUS_CODE_ERROR, "message": message}
        exc = {"exception.type": str(err.get("type") or "Error"), "exception.message": message}
        span["events"] = [{"name": "exception", "timeUnixNano": str(end), "attributes": key_values(exc)}]
    return span


def _service(records: Sequence[Mapping[str, Any]]) -> str:
    roots = [r for r in records if r.get("parent_id") is None]
    for r in [*roots, *records]:
        if isinstance(r.get("workflow"), str) and r["workflow"]:
            return str(r["workflow"])
    return SERVICE


def export_otlp(records: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """One OTLP/JSON `TracesData` dict per trace, traces in first-seen order, spans in input order."""
    by_trace: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        by_trace.setdefault(str(rec["trace_id"]), []).append(rec)
    version = _version()
    for recs in by_trace.values():
        yield {
            "resourceSpans": [
                {
                    "resource": {"attributes": key_values({"service.name": _service(recs)})},
                    "scopeSpans": [
                        {
                            "scope": {"name": SERVICE, "version": version},
                            "spans": [to_otlp_span(r) for r in recs],
                        }
                    ],
                }
            ]
        }


def select_traces(records: Iterable[Mapping[str, Any]], prefixes: Sequence[str]) -> list[Mapping[str, Any]]:
    """The records of every trace whose id starts with one of `prefixes`; `all` selects everything.

    Raises TraceNotFound naming the prefixes that matched no trace, so a typo never exports silently nothing.
    """
    wanted = [p for p in prefixes if p]
    take_all = "all" in wanted or not wanted
    kept: list[Mapping[str, Any]] = []
    matched: set[str] = set()
    for rec in records:
        tid = str(rec.get("trace_id"))
        hits = [p for p in wanted if tid.startswith(p)]
        if take_all or hits:
            kept.append(rec)
            matched.update(hits)
    missing = [p for p in wanted if p != "all" and p not in matched]
    if missing:
        raise TraceNotFound(f"no trace matches {', '.join(missing)}")
    if take_all and not kept:
        raise TraceNotFound("no traces to export")
    return kept
