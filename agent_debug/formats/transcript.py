"""Chat transcripts of multi-agent systems (AutoGen/AG2 group chats, Magentic-One, the Who&When logs):
`{"history": [{"content", "role", "name"?}, ...], "question"?, "ground_truth"?, "is_correct"?, ...}`
(also `chat_history` or `messages` instead of `history`).

One span per message, in order, each caused by the previous one (a transcript records who spoke after whom,
nothing finer), under a synthetic root span `run` for the whole run with agent `transcript` (not any speaker,
so blame never lands on it by accident). Message i is span `step-i` with attribute `transcript.step = i`.

- agent_name: the message's `name`, else its `role`, with a trailing annotation such as " (thought)" or
  " (-> WebSurfer)" removed and kept as `transcript.annotation` (and `transcript.to` for "-> X").
- event_type: TOOL_CALL for code execution output (a speaker named like a terminal, executor or
  computer_terminal; `tool.name` is the speaker, `tool.exit_code` is read from an "exitcode: N" prefix),
  AGENT for every other message (a turn of an agent: we cannot tell model calls from the rest).
- payload.content is the whole message (the writer truncates, not the reader); payload.role the raw role.
- root: payload `question`, `ground_truth` (and the system prompts), `outcome.passed = false` when `is_correct`
  or `is_corrected` is false or a `mistake_agent` is present, true when marked correct; the labels
  `mistake_agent`/`mistake_step`/`mistake_reason` as `label.*` attributes (for measuring analysis, never for it).
- time: transcripts have none. Timestamps are synthesized, one second per message from a fixed epoch, and the
  root says so with `timing.synthetic = true`.
- trace_id: transcripts carry no run id (`question_ID` names the task, shared by many runs), so it is derived
  from the file name and a hash of the content: stable across re-imports.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from agent_debug.formats.semconv import (
    AttrValue,
    Draft,
    FunctionImporter,
    SpanFields,
    as_int,
    finalize,
    flatten,
    span_draft,
    stable_id,
)

NAME = "transcript"
ROOT_AGENT = "transcript"
ROOT_SPAN = "run"
SYNTHETIC_EPOCH = 1_577_836_800.0  # 2020-01-01T00:00:00Z: obviously not a real time, stable across imports
STEP_NS = 1_000_000_000

_HISTORY_KEYS = ("history", "chat_history", "messages")
_SUFFIX = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")
_TOOL_SPEAKER = re.compile(r"terminal|executor|code_?runner", re.IGNORECASE)
_EXIT_CODE = re.compile(r"^\s*exit\s*code:\s*(-?\d+)", re.IGNORECASE)
_LABELS = (("mistake_agent", "label.mistake_agent"), ("mistake_reason", "label.mistake_reason"),
           ("mistake_type", "label.mistake_type"), ("labels", "label.category"))


def _history(obj: Mapping[str, Any]) -> list[Any] | None:
    for key in _HISTORY_KEYS:
        h = obj.get(key)
        if isinstance(h, str):
            h = _parse_text_list(h)
        if isinstance(h, list):
            return h
    return None


def _parse_text_list(text: str) -> list[Any] | None:
    """Some dumps store the history as text: JSON, or a Python repr of a list."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, list) else None


def _is_message(m: Any) -> bool:
    return isinstance(m, dict) and "content" in m and ("role" in m or "name" in m)


def sniff(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    for key in _HISTORY_KEYS:
        h = obj.get(key)
        if isinstance(h, list) and h and _is_message(h[0]):
            return True
        if isinstance(h, str) and key == "history" and h.lstrip().startswith("[") and "content" in h[:2000]:
            return True
    return False


def speaker(message: Mapping[str, Any]) -> tuple[str, str | None]:
    """(agent, annotation): `Orchestrator (-> WebSurfer)` -> (`Orchestrator`, `-> WebSurfer`)."""
    raw = message.get("name") or message.get("role") or "unknown"
    text = str(raw).strip() or "unknown"
    m = _SUFFIX.match(text)
    if m and m.group(1).strip():
        return m.group(1).strip(), m.group(2).strip() or None
    return text, None


def _content(message: Mapping[str, Any]) -> Any:
    c = message.get("content")
    return c if isinstance(c, (str, int, float, bool)) or c is None else orjson.loads(orjson.dumps(c, default=str))


def _step(message: Mapping[str, Any], i: int, trace_id: str, parent: str) -> Draft:
    agent, note = speaker(message)
    attrs: dict[str, AttrValue] = {"transcript.step": i}
    if note:
        attrs["transcript.annotation"] = note
        if note.startswith("->"):
            attrs["transcript.to"] = note[2:].strip()
    content = _content(message)
    is_tool = bool(_TOOL_SPEAKER.search(agent))
    if is_tool:
        attrs["tool.name"] = agent
        m = _EXIT_CODE.match(content) if isinstance(content, str) else None
        if m:
            attrs["tool.exit_code"] = int(m.group(1))
    attrs.update(flatten({k: v for k, v in message.items() if k not in ("content", "role", "name")}, "message."))
    payload: dict[str, Any] = {"content": content}
    if message.get("role") is not None:
        payload["role"] = message["role"]
    return span_draft(
        SpanFields(
            trace_id=trace_id,
            span_id=f"step-{i}",
            parent_id=parent,
            name=str(message.get("name") or message.get("role") or agent),
            start=SYNTHETIC_EPOCH + (i + 1) * STEP_NS / 1e9,
            duration_ns=STEP_NS,
            attributes=attrs,
            payload=payload,
            event_type="TOOL_CALL" if is_tool else "AGENT",
            agent_name=agent,
        )
    )


def _outcome(obj: Mapping[str, Any]) -> bool | None:
    flags = [obj.get(k) for k in ("is_correct", "is_corrected") if k in obj]
    bools = [_truth(f) for f in flags]
    if any(b is False for b in bools) or obj.get("mistake_agent"):
        return False
    if any(b is True for b in bools):
        return True
    return None


def _truth(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    return None


def _root(obj: Mapping[str, Any], trace_id: str, steps: int) -> Draft:
    attrs: dict[str, AttrValue] = {"timing.synthetic": True, "transcript.messages": steps}
    passed = _outcome(obj)
    if passed is not None:
        attrs["outcome.passed"] = passed
    for src, dst in _LABELS:
        if obj.get(src) not in (None, ""):
            attrs.update(flatten({dst: obj[src]}))
    if obj.get("mistake_step") not in (None, ""):
        step = as_int(obj["mistake_step"])
        attrs["label.mistake_step"] = step if step is not None else str(obj["mistake_step"])
    for src in ("question_ID", "level"):
        if obj.get(src) not in (None, ""):
            attrs.update(flatten({f"transcript.{src.lower()}": obj[src]}))
    payload = {k: obj[k] for k in ("question", "ground_truth", "system_prompt") if obj.get(k) is not None}
    return span_draft(
        SpanFields(
            trace_id=trace_id,
            span_id=ROOT_SPAN,
            parent_id=None,
            name=str(obj.get("question_ID") or "transcript"),
            start=SYNTHETIC_EPOCH,
            duration_ns=(steps + 1) * STEP_NS,
            attributes=attrs,
            payload=payload or None,
            event_type="AGENT",
            agent_name=ROOT_AGENT,
        )
    )


def _drafts(obj: Mapping[str, Any], source_file: str, index: int) -> Iterator[Draft]:
    history = _history(obj) or []
    trace_id = stable_id(source_file, index, obj)
    yield _root(obj, trace_id, len(history))
    parent = ROOT_SPAN
    for i, message in enumerate(history):
        if not isinstance(message, Mapping):  # keep the numbering: transcript.step is the index in `history`
            continue
        draft = _step(message, i, trace_id, parent)
        parent = draft.rec["span_id"]
        yield draft


def convert(objs: list[Any], source_file: str) -> Iterator[dict[str, Any]]:
    drafts = [d for i, obj in enumerate(objs) if isinstance(obj, Mapping) for d in _drafts(obj, source_file, i)]
    yield from finalize(drafts, source_file=source_file, source_format=NAME, default_agent=ROOT_AGENT)


IMPORTER = FunctionImporter(NAME, sniff, convert)
