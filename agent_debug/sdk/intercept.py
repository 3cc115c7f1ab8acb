"""Interception points for model and tool calls: `llm_call` / `allm_call` and `tool_call` / `atool_call`.

Live, they call through, time the call in an LLM_CALL or TOOL_CALL span, and record a normalized request
fingerprint and the response (on the span's payload and in the run's call log, which replay packets are made
from). Under replay (a `Player` installed with `replaying(...)`) they return the recorded response without
calling out. Calls are matched on hop order plus the normalized request hash, never on raw HTTP.
"""

from __future__ import annotations

import builtins
import contextvars
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import orjson

from agent_debug.sdk.tracer import Span, current_run, span

VOLATILE_KEYS = frozenset({"request_id", "timestamp", "time", "nonce", "trace_id", "span_id", "idempotency_key"})
_WS = re.compile(r"\s+")


def normalize_request(value: Any) -> Any:
    """Drop volatile keys, collapse whitespace, sort keys: what a request means, not how it was spelled."""
    if isinstance(value, dict):
        return {str(k): normalize_request(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
                if str(k) not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [normalize_request(v) for v in value]
    if isinstance(value, str):
        return _WS.sub(" ", value).strip()
    return value


def request_hash(request: Any) -> str:
    data = orjson.dumps(normalize_request(request), default=str, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()[:16]


class ReplayedError(Exception):
    """A recorded call failed with an exception type that cannot be rebuilt; raised in its place."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


def rebuild_exception(error: dict[str, Any]) -> BaseException:
    """The recorded exception, as the same built-in type when there is one."""
    name = str(error.get("type", "Exception"))
    message = str(error.get("message", ""))
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return ReplayedError(name, message)


class Player(Protocol):
    """What replay installs: answers a call from its recording (or an injected value, or a fallback)."""

    def respond(self, call: dict[str, Any]) -> dict[str, Any]:
        """Given {hop, kind, agent, name, request, request_hash}, return {"response": ...} or {"error": {...}}
        or {"call_through": True} to let the live call run (a documented fallback)."""
        ...


_PLAYER: contextvars.ContextVar[Player | None] = contextvars.ContextVar("agent_debug_player", default=None)


@contextmanager
def replaying(player: Player) -> Iterator[Player]:
    token = _PLAYER.set(player)
    try:
        yield player
    finally:
        _PLAYER.reset(token)


def _open(kind: str, name: str, agent: str | None, attrs: dict[str, Any], request: Any,
          event_type: str | None = None) -> tuple[Any, dict[str, Any]]:
    run = current_run()
    hop = 0
    if run is not None:
        hop = run.hops
        run.hops += 1
    event_type = event_type or ("LLM_CALL" if kind == "llm" else "TOOL_CALL")
    ctx = span(name, agent=agent, event_type=event_type, attributes=attrs)
    call = {"hop": hop, "kind": kind, "name": name, "request": request, "request_hash": request_hash(request)}
    return ctx, call


def _start(ctx: Any, call: dict[str, Any]) -> Span:
    s: Span = ctx.__enter__()
    call["agent"] = s.agent_name
    call["span_id"] = s.span_id
    s.attributes["call.hop"] = call["hop"]
    s.attributes["call.request_hash"] = call["request_hash"]
    s.set_payload({"request": call["request"]})
    return s


def _finish_llm(s: Span, response: Any, model: str) -> None:
    if isinstance(response, dict):
        usage = response.get("usage") or {}
        s.record_llm(
            model=response.get("model") or model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=response.get("finish_reason"),
            cost_usd=usage.get("cost_usd"),
        )


def _finish_tool(s: Span, response: Any) -> None:
    if isinstance(response, dict):
        output = response.get("output", response.get("stdout", ""))
        size = len(output.encode() if isinstance(output, str) else orjson.dumps(output, default=str))
        if output in (None, "", [], {}):
            size = 0
        s.record_tool(
            exit_code=int(response.get("exit_code", 0) or 0),
            result_size=int(response.get("result_size", size)),
            timeout_class=str(response.get("timeout_class", "none")),
        )


def _log_call(call: dict[str, Any], s: Span) -> None:
    run = s.run
    if run is not None:
        run.calls.append(call)


def _answer(call: dict[str, Any]) -> dict[str, Any] | None:
    player = _PLAYER.get()
    if player is None:
        return None
    answer = player.respond(call)
    return None if answer.get("call_through") else answer


def _llm_attrs(model: str, budget: int | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.request.model": model, "route.model": model, "gen_ai.operation.name": "chat"}
    if budget is not None:
        attrs["token.budget"] = budget
    return attrs


def _complete(kind: str, s: Span, call: dict[str, Any], response: Any, model: str,
              annotate: Callable[[Span, Any], None] | None) -> Any:
    call["response"] = response
    s.set_payload({"response": response})
    if kind == "llm":
        _finish_llm(s, response, model)
    else:
        _finish_tool(s, response)
    if annotate is not None:
        annotate(s, response)
    _log_call(call, s)
    return response


def _failed(s: Span, call: dict[str, Any], exc: BaseException) -> None:
    call["error"] = {"type": type(exc).__name__, "message": str(exc)}
    _log_call(call, s)


def _sync(kind: str, fn: Callable[[Any], Any], request: Any, name: str, agent: str | None,
          attrs: dict[str, Any], model: str, event_type: str | None = None,
          annotate: Callable[[Span, Any], None] | None = None) -> Any:
    ctx, call = _open(kind, name, agent, attrs, request, event_type)
    s = _start(ctx, call)
    try:
        answer = _answer(call)
        if answer is not None:
            s.attributes["replay.stubbed"] = True
            if "error" in answer:
                raise rebuild_exception(answer["error"])
            response = answer["response"]
        else:
            response = fn(request)
        result = _complete(kind, s, call, response, model, annotate)
    except BaseException as exc:
        _failed(s, call, exc)
        ctx.__exit__(type(exc), exc, exc.__traceback__)
        raise
    ctx.__exit__(None, None, None)
    return result


async def _async(kind: str, fn: Callable[[Any], Awaitable[Any]], request: Any, name: str, agent: str | None,
                 attrs: dict[str, Any], model: str, event_type: str | None = None,
                 annotate: Callable[[Span, Any], None] | None = None) -> Any:
    ctx, call = _open(kind, name, agent, attrs, request, event_type)
    s = _start(ctx, call)
    try:
        answer = _answer(call)
        if answer is not None:
            s.attributes["replay.stubbed"] = True
            if "error" in answer:
                raise rebuild_exception(answer["error"])
            response = answer["response"]
        else:
            response = await fn(request)
        result = _complete(kind, s, call, response, model, annotate)
    except BaseException as exc:
        _failed(s, call, exc)
        ctx.__exit__(type(exc), exc, exc.__traceback__)
        raise
    ctx.__exit__(None, None, None)
    return result


Annotate = Callable[[Span, Any], None]


def llm_call(fn: Callable[[Any], Any], request: Any, *, model: str, agent: str | None = None,
             name: str | None = None, budget: int | None = None, annotate: Annotate | None = None) -> Any:
    """Call a model through `fn(request)` in an LLM_CALL span. A dict response may carry `usage`
    (`prompt_tokens`, `completion_tokens`), `finish_reason` and `model`, which are recorded; `annotate(span,
    response)` may add attributes of its own before the span ends."""
    return _sync("llm", fn, request, name or f"llm:{model}", agent, _llm_attrs(model, budget), model,
                 None, annotate)


async def allm_call(fn: Callable[[Any], Awaitable[Any]], request: Any, *, model: str, agent: str | None = None,
                    name: str | None = None, budget: int | None = None, annotate: Annotate | None = None) -> Any:
    """`llm_call` for a coroutine function."""
    return await _async("llm", fn, request, name or f"llm:{model}", agent, _llm_attrs(model, budget), model,
                        None, annotate)


def tool_call(fn: Callable[[Any], Any], args: Any, *, tool: str, agent: str | None = None,
              name: str | None = None, event_type: str = "TOOL_CALL", annotate: Annotate | None = None) -> Any:
    """Run a tool through `fn(args)` in a TOOL_CALL span (or RETRIEVAL, ...). A dict response may carry
    `exit_code`, `output` (its size becomes `tool.result_size`) and `timeout_class`."""
    return _sync("tool", fn, args, name or f"tool:{tool}", agent, {"tool.name": tool}, tool, event_type, annotate)


async def atool_call(fn: Callable[[Any], Awaitable[Any]], args: Any, *, tool: str, agent: str | None = None,
                     name: str | None = None, event_type: str = "TOOL_CALL", annotate: Annotate | None = None) -> Any:
    """`tool_call` for a coroutine function."""
    return await _async("tool", fn, args, name or f"tool:{tool}", agent, {"tool.name": tool}, tool, event_type,
                        annotate)
