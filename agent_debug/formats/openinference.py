"""OpenInference spans as JSON, in the shapes tools write them:

- Phoenix span JSON, one span per document or per line: `{"name", "context": {"trace_id", "span_id"},
  "parent_id", "span_kind", "start_time", "end_time", "status_code", "status_message", "attributes", "events"}`.
  The OpenTelemetry Python SDK's `span.to_json()` (ConsoleSpanExporter) has the same skeleton, with `0x` ids,
  `kind`, `status: {status_code, description}` and `resource`, and is read here too.
- The nested export of the TRAIL benchmark: `{"trace_id", "spans": [{span_id, parent_span_id, span_name,
  timestamp, duration: "PT1M48.7S", status_code: Ok/Unset/Error, span_attributes, resource_attributes,
  events: [{Timestamp, Name, Attributes}], logs, child_spans: [...]}]}`. Child spans are flattened; a span's
  parent is its `parent_span_id`, else the span it is nested in. Top spans whose parent is not in the export
  keep that parent id (orphans are handled downstream). An exact duplicate of a span is kept once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agent_debug.formats.semconv import (
    AttrValue,
    Draft,
    FunctionImporter,
    SpanEvent,
    SpanFields,
    clean_id,
    duration_ns,
    finalize,
    flatten,
    items,
    mapping,
    parse_iso_duration_ns,
    parse_time,
    span_draft,
    stable_id,
)

NAME = "openinference"

_STATUS = {"ok": False, "error": True, "unset": None, "": None}


def _is_phoenix_span(obj: Any) -> bool:
    ctx = obj.get("context") if isinstance(obj, dict) else None
    return isinstance(ctx, dict) and "span_id" in ctx and "name" in obj


def _is_nested_export(obj: Any) -> bool:
    if not isinstance(obj, dict) or not isinstance(obj.get("spans"), list) or "trace_id" not in obj:
        return False
    first = obj["spans"][0] if obj["spans"] else {}
    return isinstance(first, dict) and "span_id" in first and ("child_spans" in first or "span_attributes" in first)


def sniff(obj: Any) -> bool:
    return _is_phoenix_span(obj) or _is_nested_export(obj)


def _status(code: Any) -> bool | None:
    """Ok/OK/STATUS_CODE_OK -> False, Error -> True, Unset or anything unknown -> None."""
    if not isinstance(code, str):
        return None
    return _STATUS.get(code.lower().removeprefix("status_code_"))


def _events(items: Any) -> list[SpanEvent]:
    out = []
    for e in items if isinstance(items, list) else []:
        if not isinstance(e, Mapping):
            continue
        name = e.get("name", e.get("Name"))
        when = parse_time(e.get("timestamp", e.get("Timestamp")))
        out.append(SpanEvent(str(name or ""), when, flatten(e.get("attributes", e.get("Attributes")))))
    return out


def _attrs(span: Mapping[str, Any], resource: Any, scope_name: Any, scope_version: Any) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = flatten(resource, "resource.")
    if scope_name:
        attrs["scope.name"] = str(scope_name)
    if scope_version:
        attrs["scope.version"] = str(scope_version)
    attrs.update(flatten(span.get("span_attributes", span.get("attributes"))))
    return attrs


# ---------------------------------------------------------------------------------------------------------------
# TRAIL nested export


def _trail_span(span: Mapping[str, Any], trace_id: str, parent: str | None, source_file: str) -> Draft:
    attrs = _attrs(span, span.get("resource_attributes"), span.get("scope_name"), span.get("scope_version"))
    if span.get("service_name") and "resource.service.name" not in attrs:
        attrs["resource.service.name"] = str(span["service_name"])
    if isinstance(span.get("span_kind"), str) and span["span_kind"]:
        attrs["span.kind"] = span["span_kind"].lower()
    logs = span.get("logs")
    return span_draft(
        SpanFields(
            trace_id=clean_id(span.get("trace_id")) or trace_id,
            span_id=clean_id(span.get("span_id")) or stable_id(source_file, trace_id, span.get("timestamp"))[:16],
            parent_id=clean_id(span.get("parent_span_id")) or parent,
            name=span.get("span_name") if isinstance(span.get("span_name"), str) else None,
            start=parse_time(span.get("timestamp")),
            duration_ns=parse_iso_duration_ns(span.get("duration")) or 0,
            attributes=attrs,
            status_error=_status(span.get("status_code")),
            status_message=span.get("status_message") or None,
            events=_events(span.get("events")),
            payload={"logs": logs} if isinstance(logs, list) and logs else None,
        )
    )


def _nested_drafts(doc: Mapping[str, Any], source_file: str) -> Iterator[Draft]:
    """Depth-first in document order, with an explicit stack (real traces nest deep)."""
    trace_id = clean_id(doc.get("trace_id")) or stable_id(source_file, doc)
    stack: list[tuple[Any, str | None]] = [(s, None) for s in reversed(items(doc.get("spans")))]
    while stack:
        span, parent = stack.pop()
        if not isinstance(span, Mapping):
            continue
        draft = _trail_span(span, trace_id, parent, source_file)
        yield draft
        children = span.get("child_spans")
        if isinstance(children, list):
            stack.extend((c, draft.rec["span_id"]) for c in reversed(children))


# ---------------------------------------------------------------------------------------------------------------
# Phoenix / OTel Python span JSON


def _phoenix_draft(span: Mapping[str, Any], source_file: str) -> Draft:
    ctx = span.get("context") or {}
    attrs = _attrs(span, mapping(span.get("resource")).get("attributes"), None, None)
    kind = span.get("span_kind")
    if isinstance(kind, str) and kind and "openinference.span.kind" not in attrs:
        attrs["openinference.span.kind"] = kind.upper()
    otel_kind = span.get("kind")
    if isinstance(otel_kind, str) and otel_kind:
        attrs.setdefault("span.kind", otel_kind.removeprefix("SpanKind.").lower())
    status = mapping(span.get("status"))
    code = span.get("status_code", status.get("status_code"))
    message = span.get("status_message", status.get("description"))
    start = parse_time(span.get("start_time"))
    trace_id = clean_id(ctx.get("trace_id")) or stable_id(source_file, "trace")
    return span_draft(
        SpanFields(
            trace_id=trace_id,
            span_id=clean_id(ctx.get("span_id")) or stable_id(source_file, span)[:16],
            parent_id=clean_id(span.get("parent_id")),
            name=span.get("name") if isinstance(span.get("name"), str) else None,
            start=start,
            duration_ns=duration_ns(start, parse_time(span.get("end_time"))),
            attributes=attrs,
            status_error=_status(code),
            status_message=message or None,
            events=_events(span.get("events")),
        )
    )


def convert(objs: list[Any], source_file: str) -> Iterator[dict[str, Any]]:
    drafts: list[Draft] = []
    for obj in objs:
        if _is_nested_export(obj):
            drafts.extend(_nested_drafts(obj, source_file))
        elif _is_phoenix_span(obj):
            drafts.append(_phoenix_draft(obj, source_file))
    yield from finalize(drafts, source_file=source_file, source_format=NAME)


IMPORTER = FunctionImporter(NAME, sniff, convert)
