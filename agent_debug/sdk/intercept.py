"""Interception points for model and tool calls: `llm_call` / `allm_call` and `tool_call` / `atool_call`.

Live, they call through, time the call in an LLM_CALL or TOOL_CALL span, and record a normalized request
fingerprint and the response (on the span's payload and in the run's call log, which replay packets are made
from). Under replay (a `Player` installed with `replaying(...)`) they return the recorded response without
calling out. Calls are matched on hop order plus the normalized request hash, never on raw HTTP.

Only the wrapped function's own exceptions (and, under replay, the recorded ones) reach the caller: whatever the
SDK fails at around the call (hashing the request, reading usage from the reply, recording) is counted in
`stats()["internal_errors"]` and logged, and the live response is returned.
"""

from __future__ import annotations

import builtins
import contextvars
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import orjson

from agent_debug.sdk import runtime
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
    """A short, stable fingerprint of what a request means (see `normalize_request`)."""
    norm = normalize_request(request)
    try:
        data = orjson.dumps(norm, default=str, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, say (`{"seed": 2**70}`): the standard library takes them
        text = json.dumps(norm, default=str, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        data = text.encode("utf-8", "surrogatepass")
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


def _begin(kind: str, name: str, agent: str | None, attrs: dict[str, Any], request: Any,
           event_type: str | None) -> tuple[Span | None, dict[str, Any]]:
    """Open the call's span and its entry in the call log. Never raises: a fault is counted, and the call
    then runs unrecorded (no span) rather than not at all."""
    call: dict[str, Any] = {"hop": 0, "kind": kind, "name": name, "request": request, "request_hash": None}
    try:
        run = current_run()
        if run is not None:
            call["hop"] = run.hops
            run.hops += 1
    except Exception as exc:
        runtime.internal_error(exc)
    try:
        call["request_hash"] = request_hash(request)
    except Exception as exc:  # an object whose str() fails, a cycle, ...
        runtime.internal_error(exc)
    try:
        attrs["call.hop"] = call["hop"]
        attrs["call.request_hash"] = call["request_hash"]
        s = span(name, agent=agent, event_type=event_type or ("LLM_CALL" if kind == "llm" else "TOOL_CALL"),
                 attributes=attrs)
        s.payload = {"request": request}
        s.__enter__()
        call["agent"] = s.agent_name
        call["span_id"] = s.span_id
        return s, call
    except Exception as exc:
        runtime.internal_error(exc)
        return None, call


def _tokens(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"usage.{key} is not a number: {value!r}")
    return int(value)


def _finish_llm(s: Span, response: Any, model: str) -> None:
    """Model, finish reason and token counts from a dict reply. Raises on a usage it cannot read, after
    recording what it could (the caller counts the fault)."""
    if not isinstance(response, dict):
        return
    s.record_llm(model=response.get("model") or model, finish_reason=response.get("finish_reason"))
    usage = response.get("usage") or {}
    if not isinstance(usage, dict):
        raise TypeError(f"usage is a {type(usage).__name__}, not a mapping")
    cost = usage.get("cost_usd")
    s.add_tokens(_tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens"),
                 None if cost is None else float(cost))


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


def _end_ok(kind: str, s: Span | None, call: dict[str, Any], response: Any, model: str,
            annotate: Callable[[Span, Any], None] | None) -> None:
    """Record the response and end the span. SDK faults are counted (after the span has ended); an exception
    from the caller's own `annotate` ends the span as failed and propagates."""
    fault: Exception | None = None
    user_exc: BaseException | None = None
    try:
        call["response"] = response
        run = s.run if s is not None else current_run()
        if run is not None:
            run.calls.append(call)
        if s is not None:
            s.set_payload({"response": response})
            if kind == "llm":
                _finish_llm(s, response, model)
            else:
                _finish_tool(s, response)
    except Exception as exc:  # a usage field that is not a number, ...
        fault = exc
    if annotate is not None and s is not None:
        try:
            annotate(s, response)
        except BaseException as exc:
            user_exc = exc
    if s is not None:
        s.__exit__(None if user_exc is None else type(user_exc), user_exc, None)
    if fault is not None:
        runtime.internal_error(fault)
    if user_exc is not None:
        raise user_exc


def _end_failed(s: Span | None, call: dict[str, Any], exc: BaseException) -> None:
    """The call raised: note it in the call log and end the span as failed (never raises itself)."""
    try:
        call["error"] = {"type": type(exc).__name__, "message": str(exc)}
        run = s.run if s is not None else current_run()
        if run is not None:
            run.calls.append(call)
    except Exception as fault:
        runtime.internal_error_quiet(fault)
    if s is not None:
        try:
            s.__exit__(type(exc), exc, exc.__traceback__)
        except Exception as fault:
            runtime.internal_error_quiet(fault)


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


def _replayed(s: Span | None, call: dict[str, Any]) -> dict[str, Any] | None:
    """Under replay, the recorded answer (raising the recorded exception); None when the live call runs."""
    answer = _answer(call)
    if answer is None:
        return None
    if s is not None:
        s.attributes["replay.stubbed"] = True
    if "error" in answer:
        raise rebuild_exception(answer["error"])
    return answer


def _sync(kind: str, fn: Callable[[Any], Any], request: Any, name: str, agent: str | None,
          attrs: dict[str, Any], model: str, event_type: str | None = None,
          annotate: Callable[[Span, Any], None] | None = None) -> Any:
    s, call = _begin(kind, name, agent, attrs, request, event_type)
    try:
        answer = _replayed(s, call)
        response = fn(request) if answer is None else answer["response"]
    except BaseException as exc:
        _end_failed(s, call, exc)
        raise
    _end_ok(kind, s, call, response, model, annotate)
    return response


async def _async(kind: str, fn: Callable[[Any], Awaitable[Any]], request: Any, name: str, agent: str | None,
                 attrs: dict[str, Any], model: str, event_type: str | None = None,
                 annotate: Callable[[Span, Any], None] | None = None) -> Any:
    s, call = _begin(kind, name, agent, attrs, request, event_type)
    try:
        answer = _replayed(s, call)
        response = (await fn(request)) if answer is None else answer["response"]
    except BaseException as exc:
        _end_failed(s, call, exc)
        raise
    _end_ok(kind, s, call, response, model, annotate)
    return response


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
