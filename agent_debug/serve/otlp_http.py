"""Decoding OTLP/HTTP trace requests (`POST /v1/traces`), per the OTLP specification: the body as protobuf
(`application/x-protobuf`) or JSON (`application/json`), optionally gzip-compressed, within a size limit.

A protobuf body is walked into the very dict shape the OTLP/JSON importer reads (`formats.otlp`), with ids as
hex, so both encodings go through one mapping. No web framework is imported here: the app hands over bytes and
headers and turns `RequestError` into a status code.
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import Any

import orjson

DEFAULT_MAX_BODY = 32 << 20  # bytes, after decompression too

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class RequestError(Exception):
    """A request the receiver refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, or raise 415 for anything OTLP/HTTP does not define."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise RequestError(415, f"unsupported content type {content_type or '(none)'!r}: "
                                f"send {PROTOBUF} or {JSON}")
    return kind


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding undone; a decompressed size over `limit` is 413 (a gzip bomb too)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        return body
    if enc != "gzip":
        raise RequestError(415, f"unsupported content encoding {encoding!r}: send gzip or none")
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(400, f"gzip body does not decompress: {exc}") from None
    if len(out) > limit:
        raise RequestError(413, f"body larger than {limit} bytes once decompressed")
    if not d.eof:
        raise RequestError(400, "gzip body is truncated")
    return out


def parse(body: bytes, kind: str) -> dict[str, Any]:
    """An ExportTraceServiceRequest as the OTLP/JSON importer reads it; 400 when it does not parse."""
    if kind == JSON:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("resourceSpans", obj.get("resource_spans", [])),
                                                         list):
            raise RequestError(400, "body is not an ExportTraceServiceRequest (no resourceSpans list)")
        return obj
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    msg = ExportTraceServiceRequest()
    try:
        msg.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise RequestError(400, f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    return request_dict(msg)


def request_dict(msg: Any) -> dict[str, Any]:
    """A protobuf ExportTraceServiceRequest walked into OTLP/JSON's shape (hex ids, lowerCamelCase keys), but for
    attributes: those are maps of values decoded as the importer decodes OTLP/JSON's (`formats.otlp.any_value`),
    which it takes as they are. (Building OTLP/JSON's KeyValue objects only for the importer to take them apart
    again cost half of this walk and a tenth of the importer.)"""
    out = []
    for rs in msg.resource_spans:
        scopes = []
        for ss in rs.scope_spans:
            sc = ss.scope
            scopes.append({"scope": {"name": sc.name, "version": sc.version, "attributes": _attrs(sc.attributes)},
                           "spans": [_span(s) for s in ss.spans]})
        out.append({"resource": {"attributes": _attrs(rs.resource.attributes)}, "scopeSpans": scopes})
    return {"resourceSpans": out}


def _span(s: Any) -> dict[str, Any]:
    """One span; fields at their proto3 default are left out, as the protobuf JSON mapping leaves them out."""
    d: dict[str, Any] = {"traceId": s.trace_id.hex(), "spanId": s.span_id.hex(), "attributes": _attrs(s.attributes)}
    if s.parent_span_id:
        d["parentSpanId"] = s.parent_span_id.hex()
    if s.name:
        d["name"] = s.name
    if s.kind:
        d["kind"] = s.kind
    if s.start_time_unix_nano:
        d["startTimeUnixNano"] = s.start_time_unix_nano
    if s.end_time_unix_nano:
        d["endTimeUnixNano"] = s.end_time_unix_nano
    if s.events:
        d["events"] = [{"timeUnixNano": e.time_unix_nano, "name": e.name, "attributes": _attrs(e.attributes)}
                       for e in s.events]
    if s.HasField("status"):
        d["status"] = {"code": s.status.code, "message": s.status.message}
    return d


def _attrs(items: Any) -> dict[str, Any]:
    """KeyValues to {key: value}, as `formats.otlp.key_values` decodes them (values it drops are left out; a
    repeated key keeps its last value)."""
    out: dict[str, Any] = {}
    for kv in items:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind == "string_value":  # the usual case, without a call
            out[kv.key] = v.string_value
        elif kind is not None:
            val = _value(v, kind)
            if val is not None:
                out[kv.key] = val
    return out


def _value(v: Any, kind: str | None = None) -> Any:
    """One AnyValue as `formats.otlp.any_value` decodes its OTLP/JSON form."""
    kind = kind or v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "double_value":
        f = v.double_value  # not finite: as OTLP/JSON spells it (the protobuf JSON mapping), and the importer keeps
        return f if math.isfinite(f) else "NaN" if f != f else "Infinity" if f > 0 else "-Infinity"
    if kind == "array_value":
        return [x for x in map(_value, v.array_value.values) if x is not None]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def span_count(obj: dict[str, Any]) -> int:
    """Spans in a request (what `partial_success.rejected_spans` is counted against)."""
    n = 0
    for rs in obj.get("resourceSpans") or obj.get("resource_spans") or []:
        if isinstance(rs, dict):
            for ss in (rs.get("scopeSpans") or rs.get("scope_spans") or []):
                if isinstance(ss, dict) and isinstance(ss.get("spans"), list):
                    n += len(ss["spans"])
    return n


def response_body(kind: str, rejected: int, message: str) -> bytes:
    """ExportTraceServiceResponse, with `partial_success` set only when something was rejected (the spec)."""
    if kind == JSON:
        if not rejected and not message:
            return b"{}"
        return orjson.dumps({"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}})
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    resp = ExportTraceServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    body: bytes = resp.SerializeToString()  # (protobuf's messages are not annotated)
    return body


def status_body(kind: str, code: int, message: str) -> bytes:
    """A google.rpc.Status (the error body OTLP/HTTP specifies), in the request's encoding. Encoded by hand:
    two fields (1: code, 2: message) do not need a dependency."""
    if kind != PROTOBUF:
        return orjson.dumps({"code": code, "message": message})
    msg = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
