"""Replay packets: the compact, sanitized incident artifact of one failed or escalated run.

A packet holds the spec's required keys (`packet_version`, `trace_id`, `workflow`, `selected_model`,
`task_summary`, `retrieval_refs`, `tool_events`, `verifier`) and what replay needs: the run input, the
entrypoint (`module:function`) when known, the routing context, the recorded model/tool calls in order, and a
skeleton of the spans (no payloads) from which the failure bucket is re-derived. Packets are redacted like
traces, large values are truncated with a hash, and they are written with file mode 0600.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_debug.columns import TraceSpans, summarize
from agent_debug.errors import OutputError, PacketError
from agent_debug.model import check_record, file_stem
from agent_debug.sdk.redact import Redactor

PACKET_VERSION = 1
REQUIRED_KEYS = ("packet_version", "trace_id", "workflow", "selected_model", "task_summary", "retrieval_refs",
                 "tool_events", "verifier")
MAX_STRING = 16384  # packet strings above this are truncated with a hash (replay then cannot match them)
MAX_PACKET_BYTES = 256 << 20  # a packet file larger than this is refused rather than read into memory


def _calls_from_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Intercepted calls (spans carrying `call.hop`), in hop order, with their request and response."""
    calls = []
    for rec in records:
        attrs = rec.get("attributes") or {}
        if "call.hop" not in attrs:
            continue
        payload = rec.get("payload") or {}
        call: dict[str, Any] = {
            "hop": attrs["call.hop"],
            "kind": "llm" if rec["event_type"] == "LLM_CALL" else "tool",
            "agent": rec["agent_name"],
            "name": rec.get("name"),
            "event_type": rec["event_type"],
            "request_hash": attrs.get("call.request_hash"),
            "request": payload.get("request"),
            "span_id": rec["span_id"],
        }
        if "response" in payload:
            call["response"] = payload["response"]
        elif rec.get("status") == "error":
            call["error"] = rec.get("error") or {"type": "Exception", "message": ""}
        if attrs.get("payload.truncated"):
            call["truncated"] = True
        calls.append(call)
    calls.sort(key=lambda c: c["hop"])
    return calls


def _skeleton(rec: dict[str, Any]) -> dict[str, Any]:
    """A span without its payload (the calls hold requests and responses); the root keeps its output."""
    out = {k: v for k, v in rec.items() if k != "payload"}
    if rec.get("parent_id") is None and isinstance(rec.get("payload"), dict) and "output" in rec["payload"]:
        out["payload"] = {"output": rec["payload"]["output"]}
    return out


def build_packet_from_records(records: Iterable[dict[str, Any]], calls: list[dict[str, Any]] | None = None,
                              *, redactor: Redactor | None = None) -> dict[str, Any]:
    """A packet from a run's records (and, from the SDK, its call log with full responses)."""
    from agent_debug.analysis.buckets import diagnose, load_rules

    records = list(records)
    if not records:
        raise PacketError("no records to make a packet from")
    ts = TraceSpans.from_records(records[0]["trace_id"], records)
    summary = summarize(ts)
    root = next((r for r in records if r["span_id"] == summary.root_span_id), records[0])
    root_attrs = root.get("attributes") or {}
    payload = root.get("payload") or {}
    calls = calls if calls is not None else _calls_from_records(records)
    routing: dict[str, Any] = {}
    retrieval_refs: list[str] = []
    tool_events: list[dict[str, Any]] = []
    verifier: dict[str, Any] = {"passed": None, "reason": None}
    for rec in sorted(records, key=lambda r: r["timestamp"]):
        a = rec.get("attributes") or {}
        if rec["event_type"] == "ROUTING_DECISION" or "route.lane" in a:
            routing = {k.split(".", 1)[1]: v for k, v in a.items() if k.startswith("route.")}
            if "token.budget" in a:
                routing["budget"] = a["token.budget"]
        if isinstance(a.get("retrieval.refs"), list):
            retrieval_refs.extend(str(x) for x in a["retrieval.refs"])
        if "tool.exit_code" in a and rec["event_type"] != "RETRIEVAL":
            tool_events.append({"tool": a.get("tool.name", rec.get("name")), "exit_code": a["tool.exit_code"]})
        if "verifier.passed" in a:
            verifier = {"passed": a["verifier.passed"], "reason": a.get("verifier.reason")}
    diag = diagnose(ts, summary, load_rules())
    packet: dict[str, Any] = {
        "packet_version": PACKET_VERSION,
        "trace_id": summary.trace_id,
        "workflow": summary.workflow,
        "selected_model": routing.get("lane") or routing.get("model") or root_attrs.get("route.model"),
        "task_summary": root_attrs.get("task.summary") or _summary_of(payload.get("input")),
        "retrieval_refs": retrieval_refs,
        "tool_events": tool_events,
        "verifier": verifier,
        "run": {
            "run_id": root.get("run_id"),
            "actor": root.get("actor"),
            "session_id": root.get("session_id"),
            "started_at": root_attrs.get("run.started_at"),
            "status": summary.status,
            "outcome": {"passed": root_attrs.get("outcome.passed"), "reason": root_attrs.get("outcome.reason")},
            "output": payload.get("output"),
            "error": root.get("error"),
        },
        "entrypoint": root_attrs.get("run.entrypoint"),
        "input": payload.get("input"),
        "routing": routing,
        "failure": None if diag is None else {
            "bucket": diag.bucket, "root_cause": {k: v for k, v in diag.root_cause.items() if k != "attributes"},
            "next_action": diag.next_action, "evidence": diag.evidence[:5],
        },
        "calls": calls,
        "spans": [_skeleton(r) for r in records],
        "created_at": datetime.now(UTC).isoformat(),
    }
    return sanitize(packet, redactor)


def _summary_of(inp: Any) -> str | None:
    if isinstance(inp, dict):
        for key in ("task", "question", "query", "prompt"):
            if isinstance(text := inp.get(key), str):
                return text[:200]
    if isinstance(inp, str):
        return inp[:200]
    return None


def sanitize(packet: dict[str, Any], redactor: Redactor | None = None) -> dict[str, Any]:
    """Redact secrets like traces, then truncate very long strings with a hash; note what was done."""
    red = redactor or Redactor()
    packet, count = red.scrub_value(packet)
    truncated = 0

    def cut(v: Any) -> Any:
        nonlocal truncated
        if isinstance(v, str) and len(v) > MAX_STRING:
            truncated += 1
            digest = hashlib.sha256(v.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            return f"{v[:MAX_STRING]}...[truncated {len(v) - MAX_STRING} chars sha256:{digest}]"
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        if isinstance(v, list):
            if len(v) < 64:
                return [cut(x) for x in v]
            try:  # a long list (a big run's spans): an item whose JSON is no longer than MAX_STRING holds no
                # longer string (each character is a byte at least), and is kept as it is
                sizes = list(map(len, map(orjson.dumps, v)))
            except (TypeError, orjson.JSONEncodeError):
                return [cut(x) for x in v]
            return [x if size <= MAX_STRING else cut(x) for x, size in zip(v, sizes, strict=True)]
        return v

    packet = cut(packet)
    packet["sanitized"] = {"redactions": count, "truncated_strings": truncated}
    return packet


def default_path(packet: dict[str, Any], directory: str | os.PathLike[str] = "packets") -> Path:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    return Path(directory) / day / f"{file_stem(str(packet['trace_id']))}.json"


def write_packet(packet: dict[str, Any], directory: str | os.PathLike[str] = "packets",
                 path: str | os.PathLike[str] | None = None) -> Path:
    """Write with mode 0600 (packets are incident artifacts). Default `directory/YYYY-MM-DD/<trace_id>.json`."""
    target = Path(path) if path is not None else default_path(packet, directory)
    data = _dumps(packet)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):  # not a device given as -o (/dev/stdout)
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError.from_os(target, exc) from None
    return target


class _Call(BaseModel):
    """A recorded call as replay reads it (the SDK's call log and `_calls_from_records` write more keys)."""

    model_config = ConfigDict(extra="allow", strict=True)
    hop: int = Field(ge=0)
    kind: Literal["llm", "tool"]
    agent: str
    name: str | None
    event_type: str | None = None
    request_hash: str | None = None
    error: dict[str, Any] = Field(default_factory=dict)  # present only when the call raised


class _Run(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    status: str | None = None


class _Failure(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    bucket: str | None = None


class _PacketShape(BaseModel):
    """The types replay relies on, checked once when a packet is read so that a malformed one is a one-line
    PacketError naming the field, never a TypeError deep in the engine."""

    model_config = ConfigDict(extra="allow", strict=True)
    packet_version: int
    trace_id: str = Field(min_length=1)
    workflow: str | None
    selected_model: str | None
    task_summary: str | None
    retrieval_refs: list[Any]
    tool_events: list[dict[str, Any]]
    verifier: dict[str, Any]
    run: _Run | None = None
    failure: _Failure | None = None
    entrypoint: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    calls: list[_Call] = Field(default_factory=list)
    spans: list[dict[str, Any]] = Field(default_factory=list)
    sanitized: dict[str, Any] | None = None


def _dumps(packet: dict[str, Any]) -> bytes:
    """orjson, or the stdlib for what orjson does not write (records nested over 254 levels, huge integers)."""
    try:
        return orjson.dumps(packet, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
    except orjson.JSONEncodeError:
        import json
        import sys

        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10_000))  # orjson reads records up to 1024 levels deep
        try:
            return json.dumps(packet, default=str).encode()
        except (RecursionError, ValueError) as exc:
            raise PacketError(f"the packet of trace {packet.get('trace_id')!r} cannot be written as JSON: "
                              f"{exc}") from None
        finally:
            sys.setrecursionlimit(limit)


def load_packet(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A packet read and checked: PacketError (naming the packet and the field) when it cannot be replayed."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_PACKET_BYTES:
            raise PacketError(f"packet {p} is {size / (1 << 20):.0f} MiB; packets over "
                              f"{MAX_PACKET_BYTES >> 20} MiB are not read (a packet's strings are cut to "
                              f"{MAX_STRING // 1024} KiB)")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PacketError(f"no such packet: {p}") from None
    except OSError as exc:
        raise PacketError(f"cannot read packet {p}: {exc.strerror or type(exc).__name__}") from None
    try:
        packet = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PacketError(f"packet {p} is not valid JSON: {exc}") from None
    if not isinstance(packet, dict):
        raise PacketError(f"packet {p} is not a JSON object (it is a JSON {_json_type(packet)})")
    missing = [k for k in REQUIRED_KEYS if k not in packet]
    if missing:
        raise PacketError(f"packet {p} lacks required keys: {', '.join(missing)}")
    version = packet["packet_version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= PACKET_VERSION:
        raise PacketError(f"packet {p} has packet_version {version!r}; this agent-debug reads 1 to {PACKET_VERSION}")
    check_packet(packet, p)
    return packet


def check_packet(packet: dict[str, Any], where: str | os.PathLike[str]) -> None:
    """Raise PacketError naming the first field of `packet` that replay could not use."""
    try:
        _PacketShape.model_validate(packet)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in err["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        got = f"; got a JSON {_json_type(err['input'])}" if err["type"] != "missing" else ""
        msg = "Input should be an object" if err["type"] in ("model_type", "dict_type") else err["msg"]
        raise PacketError(f"packet {where}: field {field}: {msg}{got}{more}") from None
    for i, rec in enumerate(packet.get("spans") or []):
        reason = check_record(rec)
        if reason is not None:
            raise PacketError(f"packet {where}: field spans.{i}: {reason}")


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
