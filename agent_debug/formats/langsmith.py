"""LangSmith runs: a single run, a list of runs, `{"runs": [...]}`, or the SDK's batch ingest payload
`{"post": [...], "patch": [...]}` (a patch completes the run posted earlier; the JS SDK's patches may omit `id`,
which is then read off the end of `dotted_order`). Nested `child_runs` are flattened.

Each run becomes a span: `id` -> span_id, `parent_run_id` (else the previous `dotted_order` segment) -> parent,
`trace_id` (else the first `dotted_order` segment, else the root run's id), `run_type` as the event type hint
(llm/chat_model/embedding -> LLM_CALL, tool -> TOOL_CALL, retriever -> RETRIEVAL, others AGENT), `inputs`/
`outputs`/`events` -> payload, `error` -> status error, `extra.metadata` -> `langsmith.metadata.*` (the keys
LangSmith's own OTel exporter uses), `extra.runtime` -> `langsmith.runtime.*`. A chain whose name contains
"agent" (AgentExecutor, a LangGraph `agent` node) is an agent span: its name is the agent of its descendants.
Tokens come from `outputs.usage_metadata`, `outputs.llm_output.token_usage`, `outputs.usage` or the run's own
`prompt_tokens`/`completion_tokens`; the model from `ls_model_name`, `invocation_params.model` or the response.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

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
    span_draft,
    stable_id,
)

NAME = "langsmith"

_RUN_TYPE_EVENT = {
    "llm": "LLM_CALL",
    "chat_model": "LLM_CALL",
    "embedding": "LLM_CALL",
    "tool": "TOOL_CALL",
    "retriever": "RETRIEVAL",
}
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?:\(|:\s)")
_SESSION_KEYS = ("thread_id", "session_id", "conversation_id")


def _is_run(obj: Any) -> bool:
    return isinstance(obj, dict) and (
        "run_type" in obj and ("id" in obj or "dotted_order" in obj)
        or "dotted_order" in obj and "trace_id" in obj
    )


def sniff(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    batch = [x for k in ("post", "patch") if isinstance(obj.get(k), list) for x in obj[k]]
    if batch and ("post" in obj or "patch" in obj):
        return _is_run(batch[0]) or isinstance(batch[0], dict) and "dotted_order" in batch[0]
    runs = obj.get("runs")
    if isinstance(runs, list):
        return bool(runs) and _is_run(runs[0])
    return _is_run(obj)


def _dotted(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`dotted_order` segments as (timestamp text, run id), root first."""
    order = run.get("dotted_order")
    if not isinstance(order, str):
        return []
    out = []
    for seg in order.split("."):
        ts, sep, rid = seg.partition("Z")
        if sep and rid:
            out.append((ts, rid))
    return out


def _run_id(run: Mapping[str, Any]) -> str | None:
    rid = clean_id(run.get("id"))
    if rid:
        return rid
    segs = _dotted(run)
    return clean_id(segs[-1][1]) if segs else None


def _collect(objs: list[Any]) -> list[dict[str, Any]]:
    """Every run of the file, patches merged into their posts, child runs flattened, in first-seen order."""
    merged: dict[str, dict[str, Any]] = {}
    anonymous: list[dict[str, Any]] = []
    stack: list[Any] = []
    for obj in reversed(objs):
        if not isinstance(obj, Mapping):
            continue
        if "post" in obj or "patch" in obj:
            stack.extend(reversed([*items(obj.get("post")), *items(obj.get("patch"))]))
        elif isinstance(obj.get("runs"), list):
            stack.extend(reversed(items(obj["runs"])))
        else:
            stack.append(obj)
    while stack:
        run = stack.pop()
        if not isinstance(run, Mapping):
            continue
        children = run.get("child_runs")
        body = {k: v for k, v in run.items() if k != "child_runs"}
        rid = _run_id(body)
        if rid is None:
            anonymous.append(body)
        elif rid in merged:
            merged[rid].update({k: v for k, v in body.items() if v is not None or k not in merged[rid]})
        else:
            merged[rid] = {**body, "id": rid}
        if isinstance(children, list):
            stack.extend(reversed(children))
    return [*merged.values(), *anonymous]


def _parent(run: Mapping[str, Any]) -> str | None:
    parent = clean_id(run.get("parent_run_id"))
    if parent:
        return parent
    segs = _dotted(run)
    return clean_id(segs[-2][1]) if len(segs) > 1 else None


def _trace_ids(runs: list[dict[str, Any]], source_file: str) -> dict[int, str]:
    """trace_id, else the first dotted_order segment, else the root run's id (following parents)."""
    by_id = {rid: r for r in runs if (rid := clean_id(r.get("id")))}
    out: dict[int, str] = {}
    for i, run in enumerate(runs):
        cur: Mapping[str, Any] | None = run
        seen: set[str] = set()
        tid: str | None = None
        while cur is not None and tid is None:
            segs = _dotted(cur)
            tid = clean_id(cur.get("trace_id")) or (clean_id(segs[0][1]) if segs else None)
            parent = _parent(cur)
            if tid is None and parent is None:
                tid = clean_id(cur.get("id"))
            if parent is None or parent in seen:
                break
            seen.add(parent)
            cur = by_id.get(parent)
        out[i] = tid or stable_id(source_file, "langsmith")
    return out


def _tokens(run: Mapping[str, Any]) -> dict[str, Any] | None:
    outputs = mapping(run.get("outputs"))
    llm_output = mapping(outputs.get("llm_output"))
    sources = [
        (outputs.get("usage_metadata"), "input_tokens", "output_tokens"),
        (llm_output.get("token_usage"), "prompt_tokens", "completion_tokens"),
        (outputs.get("usage"), "prompt_tokens", "completion_tokens"),
        (outputs.get("usage"), "input_tokens", "output_tokens"),
        (run, "prompt_tokens", "completion_tokens"),
    ]
    out: dict[str, Any] = {}
    for src, pk, ck in sources:
        if isinstance(src, Mapping) and (src.get(pk) is not None or src.get(ck) is not None):
            for key, value in (("prompt_tokens", as_int(src.get(pk))), ("completion_tokens", as_int(src.get(ck)))):
                if value is not None:
                    out[key] = value
            break
    cost = as_float(run.get("total_cost"))
    if cost:
        out["cost_usd"] = cost
    return out or None


def _model(run: Mapping[str, Any], meta: Mapping[str, Any], extra: Mapping[str, Any]) -> str | None:
    params = mapping(extra.get("invocation_params"))
    for src in (meta, params, run.get("inputs"), run.get("outputs")):
        if isinstance(src, Mapping):
            v = src.get("ls_model_name") or src.get("model") or src.get("model_name")
            if isinstance(v, str) and v:
                return v
    return None


def _attributes(run: Mapping[str, Any]) -> dict[str, AttrValue]:
    extra = mapping(run.get("extra"))
    meta = mapping(extra.get("metadata"))
    attrs: dict[str, AttrValue] = flatten(meta, "langsmith.metadata.")
    attrs.update(flatten(extra.get("runtime"), "langsmith.runtime."))
    attrs.update(flatten(extra.get("invocation_params"), "langsmith.invocation_params."))
    attrs.update(flatten({k: v for k, v in extra.items() if k not in ("metadata", "runtime", "invocation_params")},
                         "langsmith.extra."))
    for key in ("run_type", "session_name", "dotted_order", "tags", "reference_example_id", "status"):
        if run.get(key) not in (None, [], ""):
            attrs.update(flatten({f"langsmith.{key}": run[key]}))
    if isinstance(run.get("serialized"), Mapping) and run["serialized"].get("name"):
        attrs["langsmith.serialized.name"] = str(run["serialized"]["name"])
    model = _model(run, meta, extra)
    if model:
        attrs["route.model"] = model
    return attrs


def _error(run: Mapping[str, Any]) -> tuple[bool | None, str | None, dict[str, AttrValue]]:
    err = run.get("error")
    if err in (None, ""):
        return (True if run.get("status") == "error" else None), None, {}
    text = err if isinstance(err, str) else str(err)
    m = _ERROR_TYPE.match(text)
    return True, text, ({"error.type": m.group(1)} if m else {})


def _draft(run: Mapping[str, Any], trace_id: str, source_file: str) -> Draft:
    attrs = _attributes(run)
    status_error, message, err_attrs = _error(run)
    attrs.update(err_attrs)
    run_type = str(run.get("run_type") or "").lower()
    name = run.get("name") if isinstance(run.get("name"), str) else None
    segs = _dotted(run)
    start = parse_time(run.get("start_time"))
    if start is None and segs:
        start = parse_time(f"{segs[-1][0][:8]}T{segs[-1][0][9:15]}.{segs[-1][0][15:]}")
    meta = flatten(mapping(mapping(run.get("extra")).get("metadata")))
    session = next((str(meta[k]) for k in _SESSION_KEYS if meta.get(k)), None)
    payload = {k: run[k] for k in ("inputs", "outputs", "events") if run.get(k) not in (None, {}, [])}
    return span_draft(
        SpanFields(
            trace_id=trace_id,
            span_id=clean_id(run.get("id")) or stable_id(source_file, run)[:16],
            parent_id=_parent(run),
            name=name,
            start=start,
            duration_ns=duration_ns(start, parse_time(run.get("end_time"))),
            attributes=attrs,
            status_error=status_error,
            status_message=message,
            payload=payload or None,
            token_cost=_tokens(run),
            event_type_hint=_RUN_TYPE_EVENT.get(run_type),
            agent_span_hint=run_type == "chain" and bool(name) and "agent" in (name or "").lower(),
            envelope={"session_id": session},
        )
    )


def convert(objs: list[Any], source_file: str) -> Iterator[dict[str, Any]]:
    runs = _collect(objs)
    trace_ids = _trace_ids(runs, source_file)
    drafts = [_draft(run, trace_ids[i], source_file) for i, run in enumerate(runs)]
    yield from finalize(drafts, source_file=source_file, source_format=NAME)


IMPORTER = FunctionImporter(NAME, sniff, convert)
