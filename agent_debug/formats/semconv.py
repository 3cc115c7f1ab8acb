"""Shared mapping from foreign span vocabularies to our record (spec v1): OpenTelemetry GenAI semantic conventions
and OpenInference attributes, plus the helpers every importer needs (times, ids, attribute flattening).

Importers build one `Draft` per source span with `span_draft`, then hand all drafts of a file to `finalize`, which
does what needs the whole trace: agent names inherited from the nearest agent span, token counts kept only where
they are not an aggregate of descendants, duplicate span ids, and the `source.*` attributes on the top spans.

Mapping rules (documented here because analysis depends on them):

- event_type: `gen_ai.operation.name` (chat/text_completion/generate_content/embeddings -> LLM_CALL,
  execute_tool -> TOOL_CALL, invoke_agent/create_agent -> AGENT), else `openinference.span.kind`
  (LLM/EMBEDDING -> LLM_CALL, TOOL -> TOOL_CALL, RETRIEVER/RERANKER -> RETRIEVAL, AGENT/CHAIN -> AGENT,
  GUARDRAIL/EVALUATOR -> VERIFY), else `gen_ai.tool.name`/`tool.name` (the tool being executed) -> TOOL_CALL,
  else the importer's hint (Langfuse type, LangSmith run_type), else AGENT. Tool *definitions* offered to a model
  (`llm.tools.*`, `gen_ai.tool.definitions`, `gen_ai.request.tools`) are never read, so a chat span stays LLM_CALL.
- agent_name: `gen_ai.agent.name` (or `agent.name`, `agent_name`), else the agent of the nearest ancestor that
  names one (explicitly, or by being an *agent span*: OpenInference kind AGENT, gen_ai.operation.name
  invoke_agent/create_agent, an importer hint such as Langfuse type AGENT or a LangSmith chain named like an agent);
  an agent span's label is its explicit name, else the name in `invoke_agent X` or `agent_run [X]`, else
  `gen_ai.agent.id`, else its span name without a trailing `.run`; else the span's `service.name` (ignoring OTel's
  `unknown_service*` default), else the importer default ("unknown").
- attributes: the source's attributes flattened to dotted keys (lists of scalars kept, other values as JSON text,
  nulls dropped), plus `route.model`, `tool.name` and `retrieval.doc_count` when the source has their equivalents.
- payload: `input.value`/`output.value` (OpenInference) or the format's own input/output, and the span events.
- token_cost: from `gen_ai.usage.input_tokens`/`output_tokens` (or the older prompt_tokens/completion_tokens) or
  `llm.token_count.prompt`/`completion` (or the format's own usage fields), but only on spans with no descendant
  that also reports usage: agent and wrapper spans report the sum of their children, and keeping both would count
  every token and cent twice. The attributes themselves are always kept.
- errors: a span is an error when its status says so, or when it is unset and an `exception` event was recorded;
  the type comes from `exception.type`, else `error.type`, else a `Type: message` status message, else "Error".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from agent_debug.formats.accept import safe_dumps
from agent_debug.formats.registry import NotThisFormat

Scalar = str | int | float | bool
AttrValue = Scalar | list[Scalar]

DEFAULT_AGENT = "unknown"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_OPERATION_EVENT = {
    "chat": "LLM_CALL",
    "text_completion": "LLM_CALL",
    "generate_content": "LLM_CALL",
    "embeddings": "LLM_CALL",
    "execute_tool": "TOOL_CALL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
}
_KIND_EVENT = {
    "LLM": "LLM_CALL",
    "EMBEDDING": "LLM_CALL",
    "TOOL": "TOOL_CALL",
    "RETRIEVER": "RETRIEVAL",
    "RERANKER": "RETRIEVAL",
    "AGENT": "AGENT",
    "CHAIN": "AGENT",
    "GUARDRAIL": "VERIFY",
    "EVALUATOR": "VERIFY",
}
_AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
_EXPLICIT_AGENT_KEYS = ("gen_ai.agent.name", "agent.name", "agent_name")
_INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
_OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
_COST_KEYS = ("gen_ai.usage.cost", "llm.cost.total", "operation.cost")
_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")
_TOOL_KEYS = ("gen_ai.tool.name", "tool.name")
_RETRIEVAL_DOC = re.compile(r"^retrieval\.documents\.(\d+)\.")
_AGENT_IN_NAME = (re.compile(r"^(?:invoke_agent|create_agent)\s+(.+)$"), re.compile(r"\[([^\[\]]+)\]\s*$"))
_TYPE_PREFIX = re.compile(r"^([A-Za-z_][\w.]{0,120}(?:Error|Exception|Exit|Interrupt|Timeout|Failure)):\s")
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


# ---------------------------------------------------------------------------------------------------------------
# importer plumbing


@dataclass
class FunctionImporter:
    """An importer made of two functions: what `registry` expects, without a class per format."""

    name: str
    sniff_fn: Callable[[Any], bool]
    convert_fn: Callable[[list[Any], str], Iterator[dict[str, Any]]]

    def sniff(self, obj: Any) -> bool:
        """Never raises: a sniffer that breaks would break reading every file."""
        try:
            return bool(self.sniff_fn(obj))
        except Exception:
            return False

    def convert(self, objs: list[Any], source_file: str) -> Iterator[dict[str, Any]]:
        """Convert what this format recognises. Under `--format NAME` the reader hands over every value of the
        file: when none is of this format, fail, so the reader reports the file instead of reading nothing."""
        mine = [o for o in objs if self.sniff(o)]
        if objs and not mine:
            raise NotThisFormat(f"nothing in this file is {self.name} data")
        return self.convert_fn(mine, source_file)


@dataclass
class SpanEvent:
    """A span event (OTel `events`), normalized across formats."""

    name: str
    time: float | None
    attributes: dict[str, AttrValue]


@dataclass
class Draft:
    """One record in the making, with what `finalize` needs to resolve its agent name."""

    rec: dict[str, Any]
    explicit_agent: str | None = None  # named by the span itself (gen_ai.agent.name, a transcript speaker)
    agent_label: str | None = None  # set on agent spans: the agent their descendants belong to
    service: str | None = None  # service.name of the span's resource, the last resort before the default
    own_record: bool = False  # one of our own records round-tripped through OTLP: its token_cost is kept as is


# ---------------------------------------------------------------------------------------------------------------
# values, times and ids


def mapping(v: Any) -> Mapping[str, Any]:
    """`v` if it is an object, else an empty one: optional nested fields are often null or of another type."""
    return v if isinstance(v, Mapping) else {}


def is_scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


def json_text(v: Any) -> str:
    """Non-scalar attribute values are kept as JSON text, never dropped."""
    return _dumps(v, sort=False).decode()


def _dumps(v: Any, *, sort: bool) -> bytes:
    """JSON of any value a parser gives: orjson; the standard library for integers beyond 64 bits; and for what
    neither writes (nesting deeper than they go), `accept.safe_dumps`, which cuts it."""
    try:
        return orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort else 0))
    except TypeError:
        pass
    try:
        return json.dumps(v, default=str, sort_keys=sort).encode()
    except (RecursionError, TypeError, ValueError):
        return safe_dumps(v)


def flatten(obj: Mapping[str, Any] | None, prefix: str = "") -> dict[str, AttrValue]:
    """Nested dicts to dotted keys; lists of scalars kept; other values as JSON text; nulls dropped."""
    out: dict[str, AttrValue] = {}
    if not isinstance(obj, Mapping):
        return out
    stack: list[tuple[str, Mapping[str, Any], int]] = [(prefix, obj, 0)]
    while stack:
        pre, cur, depth = stack.pop()
        for k, v in cur.items():
            key = f"{pre}{k}"
            if v is None:
                continue
            if isinstance(v, Mapping):
                if depth < 32 and v:
                    stack.append((key + ".", v, depth + 1))
                elif v:
                    out[key] = json_text(v)
            elif isinstance(v, (list, tuple)):
                out[key] = list(v) if all(is_scalar(x) for x in v) else json_text(v)
            elif isinstance(v, float) and not math.isfinite(v):
                out[key] = str(v)
            elif is_scalar(v):
                out[key] = v
            else:
                out[key] = json_text(v)
    return out


def as_int(v: Any) -> int | None:
    """Counts arrive as ints, floats or strings ("39"); anything else is no count."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v.strip())  # exact: int64 nanoseconds do not survive a trip through float
    if not isinstance(v, int):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(f):
            return None
        v = int(f)
    return v if _INT64_MIN <= v <= _INT64_MAX else None


def as_float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def parse_time(v: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string (naive means UTC) or a number in s, ms, us or ns (by magnitude)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        num = as_float(s) if s[0].isdigit() and "-" not in s and ":" not in s else None
        if num is None:
            return _parse_iso(s)
        v = int(s) if s.isdigit() else num
    if isinstance(v, (int, float)):
        x = abs(v)
        if x >= 1e17:
            return v / 1e9
        if x >= 1e14:
            return v / 1e6
        if x >= 1e11:
            return v / 1e3
        return float(v)
    return None


def _parse_iso(s: str) -> float | None:
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", s)
    if m and len(m.group(2)) > 6:  # nanosecond fractions: keep microseconds
        s = f"{m.group(1)}.{m.group(2)[:6]}{m.group(3)}"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_iso_duration_ns(v: Any) -> int | None:
    """`PT1M48.7S`-style durations (TRAIL) to nanoseconds; None when not one."""
    if not isinstance(v, str):
        return None
    m = _ISO_DURATION.match(v.strip())
    if not m or v.strip() in ("P", "PT"):
        return None
    secs = sum(float(m.group(g) or 0) * mult for g, mult in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)))
    return seconds_ns(secs) if secs < 1e9 else None


def items(v: Any) -> list[Any]:
    """`v` if it is a list, else an empty one."""
    return v if isinstance(v, list) else []


def seconds_ns(v: Any) -> int:
    """A duration in seconds (number or text) to nanoseconds; 0 for anything that is not a sane duration."""
    secs = as_float(v)
    if secs is None or not 0 <= secs < 1e9:
        return 0
    return round(secs * 1e6) * 1000


def duration_ns(start: float | None, end: float | None) -> int:
    """Nanoseconds between two epoch-second floats, rounded to the microsecond: floats near 1.7e9 hold no finer
    time, and rounding keeps `1.115000010 s` from appearing out of `1728803137.170 -> 1728803138.285`."""
    if start is None or end is None:
        return 0
    return seconds_ns(end - start) if end > start else 0


def stable_id(*parts: Any) -> str:
    """32 hex digits from canonical JSON: the same input always gives the same id (re-import changes nothing)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(_dumps(p, sort=True))
        h.update(b"\0")
    return h.hexdigest()[:32]


def clean_id(v: Any) -> str | None:
    """An id as a non-empty string: hex is lowercased and a `0x` prefix dropped; numbers become text."""
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        return None
    s = str(v).strip()
    if s.lower().startswith("0x") and len(s) > 2 and _is_hex(s[2:]):
        s = s[2:]
    if _is_hex(s):
        s = s.lower()
    return s or None


def _is_hex(s: str) -> bool:
    return bool(s) and all(c in "0123456789abcdefABCDEF" for c in s)


# ---------------------------------------------------------------------------------------------------------------
# attribute semantics


def _first(attrs: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return v
    return None


def event_type_from_attributes(attrs: Mapping[str, Any]) -> str | None:
    op = attrs.get("gen_ai.operation.name")
    if isinstance(op, str) and op.lower() in _OPERATION_EVENT:
        return _OPERATION_EVENT[op.lower()]
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str) and kind.upper() in _KIND_EVENT:
        return _KIND_EVENT[kind.upper()]
    if _first(attrs, _TOOL_KEYS) is not None:
        return "TOOL_CALL"
    return None


def explicit_agent_name(attrs: Mapping[str, Any]) -> str | None:
    v = _first(attrs, _EXPLICIT_AGENT_KEYS)
    return str(v) if v is not None else None


def is_agent_span(attrs: Mapping[str, Any]) -> bool:
    op = attrs.get("gen_ai.operation.name")
    kind = attrs.get("openinference.span.kind")
    return (isinstance(op, str) and op.lower() in _AGENT_OPERATIONS) or (
        isinstance(kind, str) and kind.upper() == "AGENT"
    )


def agent_label(attrs: Mapping[str, Any], name: str | None) -> str:
    """The agent an agent span stands for, when no attribute names it."""
    explicit = explicit_agent_name(attrs)
    if explicit:
        return explicit
    if name:
        for pat in _AGENT_IN_NAME:
            m = pat.search(name)
            if m and m.group(1).strip():
                return m.group(1).strip()
    agent_id = attrs.get("gen_ai.agent.id")
    if agent_id:
        return str(agent_id)
    if name:
        return re.sub(r"\.(?:run|arun|invoke|ainvoke|run_sync|kickoff)$", "", name) or name
    return DEFAULT_AGENT


def service_name(attrs: Mapping[str, Any]) -> str | None:
    v = _first(attrs, ("resource.service.name", "service.name"))
    if not isinstance(v, str) or not v or v.startswith("unknown_service"):
        return None
    return v


def token_cost_from_attributes(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    prompt = as_int(_first(attrs, _INPUT_TOKEN_KEYS))
    completion = as_int(_first(attrs, _OUTPUT_TOKEN_KEYS))
    cost = as_float(_first(attrs, _COST_KEYS))
    if prompt is not None:
        out["prompt_tokens"] = prompt
    if completion is not None:
        out["completion_tokens"] = completion
    if cost is not None:
        out["cost_usd"] = cost
    return out or None


def derived_attributes(attrs: Mapping[str, Any]) -> dict[str, AttrValue]:
    """Our convention keys (route.model, tool.name, retrieval.doc_count) read off the source's keys."""
    out: dict[str, AttrValue] = {}
    model = _first(attrs, _MODEL_KEYS)
    if model is not None and "route.model" not in attrs:
        out["route.model"] = str(model)
    tool = attrs.get("gen_ai.tool.name")
    if tool is not None and "tool.name" not in attrs:
        out["tool.name"] = str(tool)
    if "retrieval.doc_count" not in attrs:
        docs = {m.group(1) for k in attrs if (m := _RETRIEVAL_DOC.match(k))}
        if docs:
            out["retrieval.doc_count"] = len(docs)
    return out


def payload_from_attributes(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenInference's `input.value`/`output.value` are the message content: give them to the payload too."""
    out = {k: attrs[f"{k}.value"] for k in ("input", "output") if attrs.get(f"{k}.value") is not None}
    return out or None


def error_from(
    status_error: bool | None, status_message: str | None, events: Iterable[SpanEvent], attrs: Mapping[str, Any]
) -> dict[str, str] | None:
    """The record's `error` when the span failed, else None. `status_error` None means the status was unset."""
    exc = next((e for e in events if e.name == "exception"), None)
    status_message = str(status_message) if status_message not in (None, "") else None
    if status_error is False or (status_error is None and exc is None):
        return None
    etype = exc.attributes.get("exception.type") if exc else None
    emsg = exc.attributes.get("exception.message") if exc else None
    message = status_message or (str(emsg) if emsg is not None else "")
    if not etype:
        etype = attrs.get("error.type")
    if not etype and status_message:
        m = _TYPE_PREFIX.match(status_message)
        etype = m.group(1) if m else None
    return {"type": str(etype or "Error"), "message": message}


def events_payload(events: list[SpanEvent]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in (("name", e.name), ("time", e.time), ("attributes", e.attributes or None)) if v is not None}
        for e in events
    ]


# ---------------------------------------------------------------------------------------------------------------
# drafts


@dataclass
class SpanFields:
    """What an importer read off one source span, before the shared mapping."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str | None
    start: float | None
    duration_ns: int
    attributes: dict[str, AttrValue]
    status_error: bool | None = None  # None: unset
    status_message: str | None = None
    events: list[SpanEvent] = field(default_factory=list)
    payload: dict[str, Any] | None = None
    token_cost: dict[str, Any] | None = None  # the format's own usage fields, preferred over attributes
    event_type: str | None = None  # forced (our own records round-tripped through OTLP)
    event_type_hint: str | None = None  # the format's own kind (Langfuse type, LangSmith run_type)
    agent_span_hint: bool = False
    agent_name: str | None = None  # named by the format itself (a transcript speaker, our own exported record)
    envelope: dict[str, Any] = field(default_factory=dict)  # run_id, session_id, workflow, actor, modality
    own_record: bool = False


def span_draft(f: SpanFields) -> Draft:
    """The shared mapping of one span; agent names are resolved later, by `finalize`, over the whole trace."""
    attrs = dict(f.attributes)
    if not f.own_record:
        attrs.update(derived_attributes(attrs))
    event_type = f.event_type or event_type_from_attributes(attrs) or f.event_type_hint or "AGENT"
    rec: dict[str, Any] = {
        "trace_id": f.trace_id,
        "span_id": f.span_id,
        "parent_id": f.parent_id,
        "agent_name": DEFAULT_AGENT,
        "event_type": event_type,
        "timestamp": f.start,
        "duration_ns": max(0, int(f.duration_ns)),
    }
    if f.name is not None:
        rec["name"] = str(f.name)
    error = error_from(f.status_error, f.status_message, f.events, attrs)
    if error is not None:
        rec["status"] = "error"
        rec["error"] = error
    if f.own_record:  # exactly what we exported: no content or usage read off attributes
        payload, tokens = dict(f.payload or {}), f.token_cost
    else:
        payload = dict(payload_from_attributes(attrs) or {})
        payload.update(f.payload or {})
        if f.events:
            payload.setdefault("events", events_payload(f.events))
        tokens = f.token_cost or token_cost_from_attributes(attrs)
    if payload:
        rec["payload"] = payload
    if tokens:
        rec["token_cost"] = tokens
    rec.update({k: v for k, v in f.envelope.items() if v is not None})
    rec["attributes"] = attrs
    agent_span = f.agent_span_hint or is_agent_span(attrs)
    return Draft(
        rec=rec,
        explicit_agent=f.agent_name or explicit_agent_name(attrs),
        agent_label=agent_label(attrs, f.name) if agent_span else None,
        service=service_name(attrs),
        own_record=f.own_record,
    )


def finalize(
    drafts: Iterable[Draft], *, source_file: str, source_format: str, default_agent: str = DEFAULT_AGENT
) -> list[dict[str, Any]]:
    """Whole-trace steps, per trace: duplicate ids, agent names, aggregate tokens, missing times, source marks."""
    by_trace: dict[str, list[Draft]] = {}
    for d in drafts:
        by_trace.setdefault(d.rec["trace_id"], []).append(d)
    out: list[dict[str, Any]] = []
    for ds in by_trace.values():
        ds = _dedupe(ds)
        by_id = {d.rec["span_id"]: d for d in ds}
        _resolve_agents(ds, by_id, default_agent)
        _drop_aggregate_tokens(ds, by_id)
        _fill_missing_times(ds)
        for d in ds:
            if d.rec["parent_id"] is None or d.rec["parent_id"] not in by_id:
                d.rec["attributes"]["source.file"] = source_file
                d.rec["attributes"]["source.format"] = source_format
            out.append(d.rec)
    return out


def _dedupe(ds: list[Draft]) -> list[Draft]:
    """An exact copy of a span (TRAIL has one) is the same span exported twice: keep it once. Different spans
    that share an id are all kept, the later ones under `<id>#<n>` with `source.duplicate_of`."""
    seen: dict[str, list[dict[str, Any]]] = {}
    kept: list[Draft] = []
    for d in ds:
        sid = d.rec["span_id"]
        prior = seen.setdefault(sid, [])
        if any(p == d.rec for p in prior):
            continue
        prior.append(d.rec)
        if len(prior) > 1:
            d.rec = {**d.rec, "span_id": f"{sid}#{len(prior)}"}
            d.rec["attributes"] = {**d.rec["attributes"], "source.duplicate_of": sid}
        kept.append(d)
    return kept


def _resolve_agents(ds: list[Draft], by_id: dict[str, Draft], default_agent: str) -> None:
    """Nearest agent-defining ancestor-or-self, in O(n) with memo; parent cycles stop the walk."""
    found: dict[str, str | None] = {}
    for d in ds:
        chain: list[str] = []
        cur: Draft | None = d
        name: str | None = None
        while cur is not None:
            sid = cur.rec["span_id"]
            if sid in found:
                name = found[sid]
                break
            if sid in chain:
                break
            chain.append(sid)
            name = cur.explicit_agent or cur.agent_label
            if name:
                break
            parent = cur.rec["parent_id"]
            cur = by_id.get(parent) if parent is not None else None
        for sid in chain:
            found.setdefault(sid, name)
        d.rec["agent_name"] = d.explicit_agent or name or d.service or default_agent


def _drop_aggregate_tokens(ds: list[Draft], by_id: dict[str, Draft]) -> None:
    """A span whose descendants report usage reports their sum: drop its token_cost (its attributes stay)."""
    aggregates: set[str] = set()
    for d in ds:
        if not d.rec.get("token_cost") or d.own_record:
            continue
        seen: set[str] = {d.rec["span_id"]}
        parent = d.rec["parent_id"]
        while parent is not None and parent in by_id and parent not in seen and parent not in aggregates:
            seen.add(parent)
            aggregates.add(parent)
            parent = by_id[parent].rec["parent_id"]
    for sid in aggregates:
        if not by_id[sid].own_record:
            by_id[sid].rec.pop("token_cost", None)


def _fill_missing_times(ds: list[Draft]) -> None:
    known = [d.rec["timestamp"] for d in ds if d.rec["timestamp"] is not None]
    base = min(known) if known else 0.0
    for d in ds:
        if d.rec["timestamp"] is None:
            d.rec["timestamp"] = base
            d.rec["attributes"]["timing.missing"] = True
