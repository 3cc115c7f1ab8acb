"""Langfuse trace exports: `{"trace": {...}, "observations": [...]}`, the public API's trace object with its
`observations` inside, or bare observations (one per line or a list).

Each observation becomes a span (`id`, `parentObservationId`, `type`, `startTime`/`endTime`, `usageDetails`,
`costDetails`, `level`/`statusMessage`, `input`/`output`). Its `metadata`, often a JSON string, holds the OTel
attributes the SDK received: `attributes` are kept as they are, `resourceAttributes` as `resource.*`, `scope` as
`scope.*`, any other key as `langfuse.metadata.*`. Observations without a parent hang under a synthetic root span
`trace:<trace id>` that carries the trace's name, input/output, user (as `actor`), session, tags, scores and
metadata. An observation whose parent is missing from the export keeps that parent id (orphans are handled
downstream). Langfuse's type is a hint used after the attributes: GENERATION/EMBEDDING -> LLM_CALL,
TOOL -> TOOL_CALL, AGENT/CHAIN -> AGENT (AGENT also names the agent of its descendants), RETRIEVER -> RETRIEVAL,
EVALUATOR/GUARDRAIL -> VERIFY; SPAN and EVENT carry no hint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from agent_debug.formats.semconv import (
    AttrValue,
    Draft,
    FunctionImporter,
    SpanFields,
    as_float,
    as_int,
    clean_id,
    duration_ns,
    finalize,
    flatten,
    items,
    mapping,
    parse_time,
    seconds_ns,
    span_draft,
    stable_id,
)

NAME = "langfuse"

_TYPE_EVENT = {
    "GENERATION": "LLM_CALL",
    "EMBEDDING": "LLM_CALL",
    "TOOL": "TOOL_CALL",
    "AGENT": "AGENT",
    "CHAIN": "AGENT",
    "RETRIEVER": "RETRIEVAL",
    "EVALUATOR": "VERIFY",
    "GUARDRAIL": "VERIFY",
}
_OBS_FIELDS = {  # observation field -> attribute key (scalars or flattened dicts)
    "type": "langfuse.type",
    "level": "langfuse.level",
    "statusMessage": "langfuse.status_message",
    "model": "langfuse.model",
    "modelParameters": "langfuse.model_parameters",
    "environment": "langfuse.environment",
    "version": "langfuse.version",
    "promptName": "langfuse.prompt.name",
    "promptVersion": "langfuse.prompt.version",
    "completionStartTime": "langfuse.completion_start_time",
    "usageDetails": "langfuse.usage",
    "costDetails": "langfuse.cost",
    "toolCallNames": "langfuse.tool_call_names",
    "toolCalls": "langfuse.tool_calls",
    "toolDefinitions": "langfuse.tool_definitions",
}
_TRACE_FIELDS = {
    "tags": "langfuse.tags",
    "release": "langfuse.release",
    "version": "langfuse.version",
    "environment": "langfuse.environment",
    "latency": "langfuse.latency",
    "bookmarked": "langfuse.bookmarked",
}


def _is_observation(obj: Any) -> bool:
    return isinstance(obj, dict) and "traceId" in obj and "id" in obj and "type" in obj and "startTime" in obj


def sniff(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("trace"), dict) and isinstance(obj.get("observations"), list):
        return True
    obs = obj.get("observations")
    if isinstance(obs, list) and "id" in obj and ("projectId" in obj or "latency" in obj):
        return not obs or _is_observation(obs[0])
    return _is_observation(obj)


def _metadata(raw: Any) -> dict[str, AttrValue]:
    """The metadata dict (or JSON text of one) to attributes; text that is not a JSON object stays as text."""
    if isinstance(raw, str):
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"langfuse.metadata": raw} if raw else {}
        if not isinstance(parsed, dict):
            return {"langfuse.metadata": raw}
        raw = parsed
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, AttrValue] = {}
    for key, value in raw.items():
        if key == "attributes" and isinstance(value, Mapping):
            out.update(flatten(value))
        elif key == "resourceAttributes" and isinstance(value, Mapping):
            out.update(flatten(value, "resource."))
        elif key == "scope" and isinstance(value, Mapping):
            out.update(flatten(value, "scope."))
        else:
            out.update(flatten({key: value}, "langfuse.metadata."))
    return out


def _fields(obj: Mapping[str, Any], mapping: dict[str, str]) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for src, dst in mapping.items():
        v = obj.get(src)
        if v is not None and v != {} and v != []:
            out.update(flatten({dst: v}))
    return out


def _usage(obs: Mapping[str, Any]) -> dict[str, Any] | None:
    """Langfuse's own counts: usageDetails (v3), else the older `usage` object, else input/outputUsage."""
    details = mapping(obs.get("usageDetails"))
    usage = mapping(obs.get("usage"))
    prompt = as_int(details.get("input", usage.get("input", usage.get("promptTokens"))))
    completion = as_int(details.get("output", usage.get("output", usage.get("completionTokens"))))
    costs = mapping(obs.get("costDetails"))
    cost = as_float(obs.get("totalCost", costs.get("total", obs.get("calculatedTotalCost"))))
    if prompt is None and completion is None:
        return None
    out: dict[str, Any] = {}
    if prompt is not None:
        out["prompt_tokens"] = prompt
    if completion is not None:
        out["completion_tokens"] = completion
    if cost:
        out["cost_usd"] = cost
    return out


def _payload(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    out = {k: obj[k] for k in ("input", "output") if obj.get(k) is not None}
    return out or None


def _observation(obs: Mapping[str, Any], trace_id: str, root_id: str, source_file: str) -> Draft:
    attrs = _metadata(obs.get("metadata"))
    attrs.update(_fields(obs, _OBS_FIELDS))
    if obs.get("model") and "route.model" not in attrs and "gen_ai.request.model" not in attrs:
        attrs["route.model"] = str(obs["model"])
    otype = str(obs.get("type") or "").upper()
    start = parse_time(obs.get("startTime"))
    end = parse_time(obs.get("endTime"))
    dur = duration_ns(start, end) if end is not None else seconds_ns(obs.get("latency"))
    parent = clean_id(obs.get("parentObservationId"))
    level = str(obs.get("level") or "").upper()
    return span_draft(
        SpanFields(
            trace_id=trace_id,
            span_id=clean_id(obs.get("id")) or stable_id(source_file, obs)[:16],
            parent_id=parent or root_id,
            name=obs.get("name") if isinstance(obs.get("name"), str) else None,
            start=start,
            duration_ns=max(0, dur),
            attributes=attrs,
            status_error=True if level == "ERROR" else None,
            status_message=obs.get("statusMessage") or None,
            payload=_payload(obs),
            token_cost=_usage(obs),
            event_type_hint=_TYPE_EVENT.get(otype),
            agent_span_hint=otype == "AGENT",
        )
    )


def _root(trace: Mapping[str, Any], trace_id: str, root_id: str, observations: list[Mapping[str, Any]]) -> Draft:
    """The synthetic span for the trace itself: Langfuse keeps the run's name, input and output there."""
    attrs = _metadata(trace.get("metadata"))
    attrs.update(_fields(trace, _TRACE_FIELDS))
    attrs["langfuse.synthetic_root"] = True
    for score in items(trace.get("scores")):
        if isinstance(score, Mapping) and isinstance(score.get("name"), str):
            value = score.get("value", score.get("stringValue"))
            if value is not None:
                attrs.update(flatten({f"langfuse.score.{score['name']}": value}))
    starts = [t for o in observations if (t := parse_time(o.get("startTime"))) is not None]
    ends = [t for o in observations if (t := parse_time(o.get("endTime"))) is not None]
    declared = parse_time(trace.get("timestamp"))
    candidates = [*starts, declared] if declared is not None else starts
    start = min(candidates) if candidates else None
    end = max(ends) if ends else None
    dur = duration_ns(start, end) if end is not None else seconds_ns(trace.get("latency"))
    return span_draft(
        SpanFields(
            trace_id=trace_id,
            span_id=root_id,
            parent_id=None,
            name=trace.get("name") if isinstance(trace.get("name"), str) else None,
            start=start,
            duration_ns=max(0, dur),
            attributes=attrs,
            payload=_payload(trace),
            event_type_hint="AGENT",
            envelope={
                "session_id": trace.get("sessionId") if isinstance(trace.get("sessionId"), str) else None,
                "actor": trace.get("userId") if isinstance(trace.get("userId"), str) else None,
            },
        )
    )


def _trace_drafts(trace: Mapping[str, Any], observations: list[Any], source_file: str) -> Iterator[Draft]:
    obs = [o for o in observations if isinstance(o, Mapping)]
    trace_id = clean_id(trace.get("id")) or next(
        (t for o in obs if (t := clean_id(o.get("traceId")))), stable_id(source_file, trace, obs)
    )
    root_id = f"trace:{trace_id}"
    yield _root(trace, trace_id, root_id, obs)
    for o in obs:
        yield _observation(o, trace_id, root_id, source_file)


def _merge_observations(a: list[Any], b: list[Any]) -> list[Any]:
    """`trace.observations` usually repeats the top-level list: union by id, first copy wins."""
    seen: set[Any] = set()
    out = []
    for o in [*a, *b]:
        key = clean_id(o.get("id")) if isinstance(o, Mapping) else None
        if key is None or key not in seen:
            seen.add(key)
            out.append(o)
    return out


def convert(objs: list[Any], source_file: str) -> Iterator[dict[str, Any]]:
    drafts: list[Draft] = []
    loose: dict[str, list[Any]] = {}
    for obj in objs:
        if not isinstance(obj, Mapping):
            continue
        if isinstance(obj.get("trace"), Mapping):
            trace = obj["trace"]
            inner = [o for o in items(trace.get("observations")) if isinstance(o, Mapping)]
            drafts.extend(_trace_drafts(trace, _merge_observations(items(obj.get("observations")), inner), source_file))
        elif isinstance(obj.get("observations"), list):
            drafts.extend(_trace_drafts(obj, obj["observations"], source_file))
        elif _is_observation(obj):
            loose.setdefault(str(obj.get("traceId")), []).append(obj)
    for trace_id, obs in loose.items():
        drafts.extend(_trace_drafts({"id": trace_id}, obs, source_file))
    yield from finalize(drafts, source_file=source_file, source_format=NAME)


IMPORTER = FunctionImporter(NAME, sniff, convert)
