"""OTLP/JSON traces (`TracesData` / `ExportTraceServiceRequest`): the OpenTelemetry file exporter's lines and
single documents. Accepts what real writers produce: hex or base64 ids, int64 times as strings or numbers,
lowerCamelCase or proto field names, the legacy `instrumentationLibrarySpans`, numeric or named enums.

Resource attributes become `resource.*`, the scope `scope.name`/`scope.version`, the span kind `span.kind`.
Spans this package exported itself (they carry `agent_debug.event_type`, see `otlp_export`) get back their
original ids, event type, payload, usage, envelope and attributes, so our format -> OTLP -> our format gives the
same records (plus `source.*` on the roots).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from agent_debug.formats.semconv import (
    AttrValue,
    Draft,
    FunctionImporter,
    SpanEvent,
    SpanFields,
    as_float,
    as_int,
    finalize,
    flatten,
    is_scalar,
    json_text,
    span_draft,
    stable_id,
)

NAME = "otlp"

_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_ENVELOPE = ("run_id", "session_id", "workflow", "actor", "modality")


def _get(obj: Any, *keys: str) -> Any:
    """The first present key: protobuf JSON allows both lowerCamelCase and the proto field names."""
    if not isinstance(obj, Mapping):
        return None
    for k in keys:
        if k in obj:
            return obj[k]
    return None


def _list(obj: Any, *keys: str) -> list[Any]:
    v = _get(obj, *keys)
    return [x for x in v if isinstance(x, Mapping)] if isinstance(v, list) else []


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(_get(obj, "resourceSpans", "resource_spans"), list)


# ---------------------------------------------------------------------------------------------------------------
# values


def any_value(v: Any) -> Any:
    """Decode an OTLP AnyValue to Python; kvlists become dicts (flattened later), unknown shapes None."""
    if not isinstance(v, Mapping):
        return v if is_scalar(v) else None
    if (s := _get(v, "stringValue", "string_value")) is not None:
        return s
    if (b := _get(v, "boolValue", "bool_value")) is not None:
        return b if isinstance(b, bool) else str(b).lower() == "true"
    if (i := _get(v, "intValue", "int_value")) is not None:
        n = as_int(i)
        return n if n is not None else str(i)
    if (d := _get(v, "doubleValue", "double_value")) is not None:
        f = as_float(d)
        return f if f is not None else str(d)
    if (arr := _get(v, "arrayValue", "array_value")) is not None:
        values = _get(arr, "values")
        return [x for x in map(any_value, values if isinstance(values, list) else []) if x is not None]
    if (kv := _get(v, "kvlistValue", "kvlist_value")) is not None:
        return key_values(_get(kv, "values"))
    if (by := _get(v, "bytesValue", "bytes_value")) is not None:
        return str(by)
    return None


def key_values(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            val = any_value(item.get("value"))
            if val is not None:
                out[item["key"]] = val
    return out


def attributes(items: Any, prefix: str = "") -> dict[str, AttrValue]:
    """OTLP attributes to our flat map: kvlists to dotted keys, mixed arrays as JSON text. `items` is OTLP/JSON's
    list of KeyValues, or a map of values already decoded as `any_value` decodes them (`serve` decodes protobuf
    straight to that: `serve.otlp_http`)."""
    decoded = dict(items) if isinstance(items, dict) else key_values(items)
    for k, v in list(decoded.items()):
        if isinstance(v, list) and not all(is_scalar(x) for x in v):
            decoded[k] = json_text(v)
    return flatten(decoded, prefix)


_HEX = re.compile(r"[0-9a-fA-F]+")


def otlp_id(v: Any, size: int) -> str | None:
    """Hex ids (any case) to lowercase hex; base64 ids (the protobuf JSON mapping) to hex; all-zero to None."""
    if not isinstance(v, str) or not v.strip():
        return None
    s = v.strip()
    is_hex = _HEX.fullmatch(s) is not None
    if is_hex and len(s) == 2 * size:
        out = s.lower()
    else:
        try:
            raw = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        out = raw.hex() if len(raw) == size else (s.lower() if is_hex else s)
    return None if out.strip("0") == "" else out


def _nanos(v: Any) -> int | None:
    n = as_int(v)
    return n if n is not None and n > 0 else None


def _seconds(ns: int) -> float:
    """Epoch seconds at microsecond precision (the spec's): exact microseconds give back the float we wrote."""
    return ((ns + 500) // 1000) / 1e6


# ---------------------------------------------------------------------------------------------------------------
# spans


def _events(span: Mapping[str, Any]) -> list[SpanEvent]:
    out = []
    for e in _list(span, "events"):
        t = _nanos(_get(e, "timeUnixNano", "time_unix_nano"))
        out.append(SpanEvent(str(e.get("name") or ""), _seconds(t) if t else None, attributes(e.get("attributes"))))
    return out


def _status(span: Mapping[str, Any]) -> tuple[bool | None, str | None]:
    status = span.get("status")
    if not isinstance(status, Mapping):
        return None, None
    code = status.get("code")
    message = status.get("message") or None
    if code in (2, "2", "STATUS_CODE_ERROR", "ERROR"):
        return True, message
    if code in (1, "1", "STATUS_CODE_OK", "OK"):
        return False, message
    return None, message


def _kind(v: Any) -> str | None:
    if isinstance(v, int):
        return _KINDS.get(v)
    if isinstance(v, str) and v:
        return v.removeprefix("SPAN_KIND_").lower()
    return None


def _restore(attrs: dict[str, AttrValue], fields: SpanFields) -> None:
    """Undo what `otlp_export` did to one of our records: original ids, event type, payload, envelope, usage,
    and the attributes it derived (listed in `agent_debug.derived`)."""
    fields.own_record = True
    agent = attrs.get("gen_ai.agent.name")
    fields.agent_name = str(agent) if agent is not None else None
    derived = attrs.pop("agent_debug.derived", [])
    for key in derived if isinstance(derived, list) else []:
        attrs.pop(str(key), None)
    fields.event_type = str(attrs.pop("agent_debug.event_type"))
    for key in ("trace_id", "span_id"):
        v = attrs.pop(f"agent_debug.{key}", None)
        if isinstance(v, str) and v:
            setattr(fields, key, v)
    if "agent_debug.parent_id" in attrs:
        v = attrs.pop("agent_debug.parent_id")
        fields.parent_id = str(v) if v else None
    payload = attrs.pop("agent_debug.payload", None)
    if isinstance(payload, str):
        try:
            loaded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            loaded = {"text": payload}
        fields.payload = loaded if isinstance(loaded, dict) else {"value": loaded}
    for key in _ENVELOPE:
        v = attrs.pop(f"agent_debug.{key}", None)
        if isinstance(v, str):
            fields.envelope[key] = v
    tokens = attrs.pop("agent_debug.token_cost", None)
    try:
        loaded = orjson.loads(tokens) if isinstance(tokens, str) else None
    except orjson.JSONDecodeError:
        loaded = None
    fields.token_cost = loaded if isinstance(loaded, dict) and loaded else None


def _span_draft(
    span: Mapping[str, Any], resource: dict[str, AttrValue], scope: dict[str, AttrValue],
    fallback_trace: Callable[[], str]
) -> Draft:
    own = attributes(span.get("attributes"))
    is_own = isinstance(own.get("agent_debug.event_type"), str)
    attrs: dict[str, AttrValue] = own if is_own else {**resource, **scope, **own}
    kind = _kind(span.get("kind"))
    if kind and not is_own and "span.kind" not in attrs:
        attrs["span.kind"] = kind
    start = _nanos(_get(span, "startTimeUnixNano", "start_time_unix_nano"))
    end = _nanos(_get(span, "endTimeUnixNano", "end_time_unix_nano"))
    status_error, status_message = _status(span)
    span_id = otlp_id(_get(span, "spanId", "span_id"), 8) or stable_id(fallback_trace(), span)[:16]
    fields = SpanFields(
        trace_id=otlp_id(_get(span, "traceId", "trace_id"), 16) or fallback_trace(),
        span_id=span_id,
        parent_id=otlp_id(_get(span, "parentSpanId", "parent_span_id"), 8),
        name=span.get("name") if isinstance(span.get("name"), str) else None,
        start=_seconds(start) if start else None,
        duration_ns=max(0, end - start) if start and end else 0,
        attributes=attrs,
        status_error=status_error,
        status_message=status_message,
        events=_events(span),
    )
    if is_own:
        _restore(attrs, fields)
    return span_draft(fields)


def _drafts(obj: Mapping[str, Any], source_file: str) -> Iterator[Draft]:
    memo: list[str] = []

    def fallback_trace() -> str:
        """The id of spans without a valid one, made from the whole document: only when one needs it."""
        if not memo:
            memo.append(stable_id(source_file, obj))
        return memo[0]

    for rs in _list(obj, "resourceSpans", "resource_spans"):
        resource = attributes(_get(rs.get("resource"), "attributes"), "resource.")
        groups = _list(rs, "scopeSpans", "scope_spans") + _list(
            rs, "instrumentationLibrarySpans", "instrumentation_library_spans"
        )
        for ss in groups:
            lib = _get(ss, "scope", "instrumentationLibrary", "instrumentation_library")
            scope: dict[str, AttrValue] = {}
            if isinstance(lib, Mapping):
                scope = {f"scope.{k}": str(lib[k]) for k in ("name", "version") if lib.get(k)}
                scope.update(attributes(lib.get("attributes"), "scope."))
            for span in _list(ss, "spans"):
                yield _span_draft(span, resource, scope, fallback_trace)


def convert(objs: list[Any], source_file: str) -> Iterator[dict[str, Any]]:
    """Every TracesData of the file at once: a trace's spans may be spread over many exporter lines."""
    drafts = [d for obj in objs if isinstance(obj, Mapping) for d in _drafts(obj, source_file)]
    yield from finalize(drafts, source_file=source_file, source_format=NAME)


IMPORTER = FunctionImporter(NAME, sniff, convert)
