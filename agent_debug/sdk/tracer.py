"""Spans and the run envelope. Parents propagate through contextvars: correct under asyncio tasks and gather,
and across threads with `handoff`. Nothing here raises into the agent: SDK faults are counted and logged
(re-raised under pytest so bugs surface); the agent's own exceptions pass through untouched.

The caller's hot path is inlined, by measurement (a call costs a sizeable share of a span's few microseconds):
`span()` builds a Span without `__init__`, `Span.__enter__` starts a child without `_start`, and `Span.__exit__`
serializes and enqueues an ok child without `_exit`/`_emit`/`runtime.emit`/`Writer.emit`. The other paths
(roots, errors, retries, spans outside a run) go through those methods. tests/test_sdk_paths.py emits spans
through every path and compares their bytes with the documented format, and checks that both enqueues drop
alike, so a change to one copy that misses the other fails there.

That hot path is also compiled: `agent_debug/sdk/_cspan.c` (built by the install when a C compiler is there; see
hatch_build.py) holds a span's fields and does `span()`, `__enter__`, `set_payload` and `__exit__` of an ok
child in C, writing the record's bytes itself (the envelope directly, payload and attributes by orjson), the
same bytes as here. It is the base class of `Span` when built; the Python methods below stay as its
specification and the fallback (`AGENT_DEBUG_PURE_PYTHON=1` selects them). tests/test_cspan.py checks the two
write the same bytes for generated spans and runs the SDK's tests without the compiled core.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from agent_debug.model import FORMAT_VERSION
from agent_debug.sdk import runtime
from agent_debug.sdk.safe import dumps_record
from agent_debug.sdk.writer import F_ERROR, F_KEEP, F_ROOT, WAKE_AT, YIELD_MASK

if TYPE_CHECKING:
    from agent_debug.schema import RunEnvelope

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar("agent_debug_span", default=None)

_rng = random.Random(int.from_bytes(os.urandom(16), "big"))


def _reseed() -> None:
    _rng.seed(int.from_bytes(os.urandom(16), "big"))
    _id_pool.clear()  # a forked child must not hand out the ids its parent will


# span ids are cut from one random draw per 1,024 spans: a pop is cheaper than formatting a fresh number
_id_pool: list[str] = []
_pop_id = _id_pool.pop


def _new_span_id() -> str:
    try:
        return _pop_id()
    except IndexError:
        h = _rng.randbytes(8 * 1024).hex()
        _id_pool.extend([h[i : i + 16] for i in range(0, len(h), 16)])
        return _pop_id()


os.register_at_fork(after_in_child=_reseed)


def new_trace_id() -> str:
    return str(uuid.UUID(int=_rng.getrandbits(128), version=4))


def _copy_attributes(attributes: Any) -> dict[str, Any]:
    """A copy of the attributes given at span creation; anything but a mapping is a counted fault."""
    try:
        return dict(attributes)
    except Exception as exc:
        runtime.internal_error(exc)
        return {}


def _flatten(prefix: str, value: dict[str, Any], out: dict[str, Any]) -> None:
    for k, v in value.items():
        key = f"{prefix}.{k}"
        if type(v) is dict:
            _flatten(key, v, out)
        else:
            out[key] = v


class _PySpanFields:
    """A span's fields: the base of `Span` when the compiled `_cspan.SpanCore` (the same fields, and the hot path in
    C) is not built or `AGENT_DEBUG_PURE_PYTHON` is set."""

    __slots__ = (
        "trace_id",
        "span_id",
        "parent_id",
        "agent_name",
        "event_type",
        "name",
        "attributes",
        "payload",
        "status",
        "error",
        "token_cost",
        "run",
        "timestamp",
        "_t0",
        "_token",
        "_ended",
        "duration_ns",
        "_retry",
    )


_CSPAN_ABI = 1  # the _cspan.c this file is written for (its module's ABI constant)


def _load_core() -> ModuleType | None:
    """The compiled span core, or None: not built (no C compiler at install: the Python methods below do the
    same), built from another version of _cspan.c, or AGENT_DEBUG_PURE_PYTHON set."""
    if os.environ.get("AGENT_DEBUG_PURE_PYTHON"):
        return None
    try:
        from agent_debug.sdk import _cspan
    except ImportError:
        return None
    return _cspan if _cspan.ABI == _CSPAN_ABI else None


_core = _load_core()
if TYPE_CHECKING:
    _SpanBase = _PySpanFields
else:
    _SpanBase = _PySpanFields if _core is None else _core.SpanCore
COMPILED = _core is not None  # the hot path is `_cspan.SpanCore`'s (False again below if it refuses `bind`)


class Span(_SpanBase):
    """One step of a run: a context manager (`with` / `async with`) and a decorator (sync and async).

    Created by `span(...)`, `run(...)` or the helpers. The caller's cost is kept to a few microseconds: the
    record is built and serialized once, at exit, and handed to the writer's buffer. All methods are safe to
    call after the span ended (they are then ignored)."""

    # set when the span starts (`_start`, `__enter__`) and ends
    trace_id: str
    span_id: str
    parent_id: str | None
    timestamp: float
    _t0: int
    duration_ns: int

    __slots__ = ()

    def __init__(
        self,
        name: str,
        agent: str | None = None,
        event_type: str = "AGENT",
        attributes: dict[str, Any] | None = None,
        retry_of: Span | str | None = None,
    ) -> None:
        self.name = name
        self.agent_name = agent
        self.event_type = event_type
        # a plain copy: nested dicts, if any, are flattened to dotted keys by the writer thread, off the hot path
        self.attributes: dict[str, Any] = _copy_attributes(attributes) if attributes else {}
        self.payload: dict[str, Any] | None = None
        self.status = "ok"
        self.error: dict[str, str] | None = None
        self.token_cost: dict[str, Any] | None = None
        self.run: Run | None = None
        self._token: contextvars.Token[Span | None] | None = None
        self._ended = False
        self._retry = retry_of
        # trace_id, span_id, parent_id, timestamp, _t0 are set when the span starts; duration_ns when it ends

    def _start(self, parent: Span | None, run: Run | None = None) -> Span:
        self.span_id = _new_span_id()
        if parent is not None:
            self.trace_id = parent.trace_id
            self.parent_id = parent.span_id
            self.run = run or parent.run
            if self.agent_name is None:
                self.agent_name = parent.agent_name
        else:
            self.trace_id = new_trace_id()
            self.parent_id = None
            self.run = run
            if self.agent_name is None:
                self.agent_name = self.name
        if self._retry is not None:
            self.retry_of(self._retry)
        self.timestamp = time.time()
        self._t0 = time.perf_counter_ns()
        return self

    def __enter__(self) -> Span:
        parent = _CURRENT.get()
        if parent is None or self._retry is not None:
            self._start(parent)
        else:  # the hot path of _start, inlined: a child span in a run
            try:
                self.span_id = _pop_id()
            except IndexError:
                self.span_id = _new_span_id()
            self.trace_id = parent.trace_id
            self.parent_id = parent.span_id
            self.run = parent.run
            if self.agent_name is None:
                self.agent_name = parent.agent_name
            t0 = self._t0 = _perf_ns()
            # wall time from the monotonic clock, anchored at the run's start: one clock read, not two
            run = self.run
            self.timestamp = run.anchor_wall + (t0 - run.anchor_ns) / 1e9 if run is not None else _time()
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        run = self.run
        if exc is not None or self._ended or self.status != "ok" or run is None or run.root is self:
            self._exit(exc)
            return
        # the hot path of _exit/end/_emit/_record and runtime.emit, inlined: an ok child span
        self.duration_ns = dur = _perf_ns() - self._t0
        self._ended = True
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # exited in another context than it was entered in
                pass
            self._token = None
        try:
            trace_id = self.trace_id
            rec: dict[str, Any] = {
                "trace_id": trace_id, "span_id": self.span_id, "parent_id": self.parent_id,
                "agent_name": self.agent_name, "event_type": self.event_type, "timestamp": self.timestamp,
                "duration_ns": dur, "name": self.name, "format_version": FORMAT_VERSION}
            if self.payload is not None:
                rec["payload"] = self.payload
            if self.token_cost is not None:
                rec["token_cost"] = self.token_cost
            if self.attributes:
                rec["attributes"] = self.attributes
            fault = None
            try:
                data = _dumps(rec)
            except TypeError:  # a value JSON has no type for, a non-string key, ...: rare, so paid for only then
                data, fault = dumps_record(rec)
            w = runtime._writer
            if w is None or runtime._collectors:
                runtime.emit(trace_id, 0, data)
            else:
                q = w._q  # Writer.emit for flags 0, inlined (tests/test_sdk_paths.py checks both drop alike)
                if len(q) < w.buffer_size:
                    q.append(data)
                    if len(q) & YIELD_MASK == 0 and len(q) >= _WAKE_AT:  # a burst: see Writer.emit
                        w._wake.set()
                        _yield(0)
                else:
                    w.stats.dropped += 1
            if run.records is not None:
                run.records.append(data)
            if fault is not None:
                raise fault  # counted below, once the record is on its way
        except Exception as e:
            runtime.internal_error(e)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        self._exit(exc)

    def __call__(self, fn: F) -> F:
        """Use as a decorator: every call of `fn` runs in a new span configured like this one."""
        name, agent, et, attrs = self.name, self.agent_name, self.event_type, self.attributes or None
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                async with Span(name, agent, et, attrs):
                    return await fn(*args, **kwargs)

            return awrapper  # type: ignore[return-value]  # functools.wraps: fn's signature, so an F

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Span(name, agent, et, attrs):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]  # functools.wraps: fn's signature, so an F

    # -- what the agent calls ---------------------------------------------------------------------------------

    def set_attribute(self, key: str, value: Any) -> Span:
        try:
            if type(value) is dict:
                _flatten(key, value, self.attributes)
            else:
                self.attributes[key] = value
        except Exception as exc:  # a dict that contains itself, ...
            runtime.internal_error(exc)
        return self

    def set_attributes(self, attributes: dict[str, Any]) -> Span:
        try:
            for k, v in attributes.items():
                self.set_attribute(k, v)
        except Exception as exc:  # not a mapping
            runtime.internal_error(exc)
        return self

    def set_payload(self, payload: dict[str, Any]) -> Span:
        try:
            if self.payload is None:
                self.payload = dict(payload)
            else:
                self.payload.update(payload)
        except Exception as exc:  # not a mapping
            runtime.internal_error(exc)
        return self

    def add_tokens(self, prompt: int = 0, completion: int = 0, cost_usd: float | None = None) -> Span:
        try:
            prompt, completion = int(prompt), int(completion)  # before anything changes: all or nothing
            cost = None if cost_usd is None else float(cost_usd)
        except Exception as exc:  # "n/a", None, an object
            runtime.internal_error(exc)
            return self
        tc = self.token_cost
        if tc is None:
            tc = self.token_cost = {"prompt_tokens": 0, "completion_tokens": 0}
        tc["prompt_tokens"] += prompt
        tc["completion_tokens"] += completion
        if cost is not None:
            tc["cost_usd"] = round(tc.get("cost_usd", 0.0) + cost, 8)
        if self.run is not None:
            self.run.tokens += prompt + completion
        return self

    def set_error(self, type_: str, message: str = "") -> Span:
        """Mark the span failed without an exception (a tool that exited non-zero, say)."""
        self.status = "error"
        self.error = {"type": type_, "message": message}
        return self

    def retry_of(self, previous: Span | str, count: int | None = None) -> Span:
        """Mark this span as a retry of `previous` (its span or span id)."""
        try:
            prev_id = previous if isinstance(previous, str) else previous.span_id
            if count is None and not isinstance(previous, str):
                count = int(previous.attributes.get("retry.count", 0)) + 1
        except Exception as exc:  # not a span, or a span not started yet
            runtime.internal_error(exc)
            return self
        self.attributes["retry.of"] = prev_id
        self.attributes["retry.count"] = count if count is not None else 1
        return self

    def record_llm(
        self,
        *,
        model: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        finish_reason: str | None = None,
        budget: int | None = None,
        cost_usd: float | None = None,
    ) -> Span:
        if model:
            self.attributes["gen_ai.request.model"] = model
            self.attributes["route.model"] = model
        if finish_reason:
            self.attributes["llm.finish_reason"] = finish_reason
        if budget is not None:
            self.attributes["token.budget"] = budget
        self.add_tokens(prompt_tokens, completion_tokens, cost_usd)
        return self

    def record_tool(
        self, *, exit_code: int = 0, result_size: int | None = None, timeout_class: str = "none"
    ) -> Span:
        self.attributes["tool.exit_code"] = exit_code
        if result_size is not None:
            self.attributes["tool.result_size"] = result_size
        self.attributes["tool.timeout_class"] = timeout_class
        if exit_code != 0 and self.status == "ok":
            self.set_error("ToolError", f"exit code {exit_code}")
        return self

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _exit(self, exc: BaseException | None) -> None:
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # exited in another context than it was entered in
                pass
            self._token = None
        if exc is not None and self.status == "ok":
            self.status = "error"
            self.error = {"type": type(exc).__name__, "message": str(exc)}
        self.end()

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.duration_ns = time.perf_counter_ns() - self._t0
        try:
            self._emit()
        except Exception as exc:
            runtime.internal_error(exc)

    def _record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "agent_name": self.agent_name,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "duration_ns": self.duration_ns,
            "name": self.name,
            "format_version": FORMAT_VERSION,
        }
        if self.status != "ok":
            rec["status"] = self.status
            if self.error:
                rec["error"] = self.error
        if self.payload is not None:
            rec["payload"] = self.payload
        if self.token_cost is not None:
            rec["token_cost"] = self.token_cost
        if self.attributes:
            rec["attributes"] = self.attributes
        return rec

    def _emit(self) -> None:
        run = self.run
        flags = 0
        if self.status == "error":
            flags = F_ERROR
            if run is not None:
                run.errors += 1
        rec = self._record()
        root = run is not None and run.root is self
        if root:
            assert run is not None
            flags |= F_ROOT
            run.finish_record(rec)
            if run.keep_whole():
                flags |= F_KEEP
        try:
            data, fault = _dumps(rec), None
        except TypeError:  # a value JSON has no type for, a non-string key, ...: rare, so paid for only then
            data, fault = dumps_record(rec)
        runtime.emit(self.trace_id, flags, data)
        if run is not None and run.records is not None:
            run.records.append(data)
        if root:
            assert run is not None
            run.on_finished(rec)
        if fault is not None:
            raise fault  # counted by `end`, after the record was emitted


_dumps = orjson.dumps
_WAKE_AT = WAKE_AT
_yield = time.sleep
_getrandbits = _rng.getrandbits
_time = time.time
_perf_ns = time.perf_counter_ns


class Run:
    """The run envelope and its root span. Created before any model call by `run(...)`."""

    def __init__(
        self,
        workflow: str,
        actor: str,
        agent: str,
        session_id: str | None,
        input: Any,
        attributes: dict[str, Any] | None,
        trace_id: str | None,
    ) -> None:
        self.workflow = workflow
        self.actor = actor
        self.session_id = session_id
        self.run_id = str(uuid.UUID(int=_rng.getrandbits(128), version=4))
        self.started_at = datetime.now(UTC).isoformat()
        self.errors = 0
        self.spans = 0
        self.tokens = 0
        self.hops = 0
        self.calls: list[dict[str, Any]] = []  # recorded model/tool calls, in order (for replay packets)
        cfg = runtime.config()
        self.records: list[bytes] | None = [] if cfg is not None and cfg.packets else None
        self.input = input
        self.entrypoint: str | None = None
        self.outcome: bool | None = None
        self.root = Span(workflow, agent, "AGENT", attributes)._start(None, self)
        self.anchor_wall, self.anchor_ns = self.root.timestamp, self.root._t0
        if trace_id:
            self.root.trace_id = trace_id
        self.root.attributes["run.started_at"] = self.started_at
        if input is not None:
            self.root.set_payload({"input": input})

    @property
    def trace_id(self) -> str:
        return self.root.trace_id

    @property
    def envelope(self) -> RunEnvelope:
        """The run envelope as its pydantic model (imported here: the SDK does not load pydantic otherwise)."""
        from agent_debug.schema import RunEnvelope

        return RunEnvelope(
            trace_id=self.trace_id,
            run_id=self.run_id,
            workflow=self.workflow,
            actor=self.actor,
            started_at=self.started_at,
            session_id=self.session_id,
        )

    @property
    def span(self) -> Span:
        return self.root

    def set_outcome(self, passed: bool, output: Any = None, reason: str | None = None) -> None:
        """Record whether the run achieved its task; `output` becomes the root's `payload.output`."""
        self.outcome = bool(passed)
        self.root.attributes["outcome.passed"] = bool(passed)
        if reason:
            self.root.attributes["outcome.reason"] = reason
        if output is not None:
            self.root.set_payload({"output": output})

    def set_attribute(self, key: str, value: Any) -> Run:
        self.root.set_attribute(key, value)
        return self

    def escalate(self, reason: str = "") -> Run:
        """Mark the run escalated (handed to a human or a stronger lane): it is kept whole by sampling and gets a
        replay packet like a failed run."""
        self.root.attributes["run.escalated"] = True
        if reason:
            self.root.attributes["run.escalation_reason"] = reason
        return self

    def set_entrypoint(self, entrypoint: str | Callable[..., Any]) -> None:
        """`module:function` that re-runs this workflow from its input (used by replay)."""
        if callable(entrypoint):
            entrypoint = f"{entrypoint.__module__}:{entrypoint.__qualname__}"
        self.entrypoint = entrypoint
        self.root.attributes["run.entrypoint"] = entrypoint

    def finish_record(self, rec: dict[str, Any]) -> None:
        rec["run_id"] = self.run_id
        rec["workflow"] = self.workflow
        rec["actor"] = self.actor
        if self.session_id is not None:
            rec["session_id"] = self.session_id
        dropped = runtime.dropped()
        if dropped:
            rec.setdefault("attributes", {})["sdk.dropped_records"] = dropped

    def failed(self) -> bool:
        return self.root.status == "error" or self.outcome is False

    def keep_whole(self) -> bool:
        cfg = runtime.config()
        slow = cfg is not None and self.root.duration_ns > cfg.slow_threshold_s * 1e9
        return self.failed() or self.errors > 0 or slow or bool(self.root.attributes.get("run.escalated"))

    def on_finished(self, rec: dict[str, Any]) -> None:
        runtime.run_finished(self, rec)




_new = object.__new__


def span(
    name: str,
    *,
    agent: str | None = None,
    event_type: str = "AGENT",
    attributes: dict[str, Any] | None = None,
    retry_of: Span | str | None = None,
) -> Span:
    """A child of the current span (or a new trace's root when there is none); the agent defaults to the
    parent's. A context manager (`with` / `async with`) and a decorator (sync or async)."""
    # Span.__init__, inlined: a class call with keyword arguments costs more than this whole function
    s: Span = _new(Span)
    s.name = name
    s.agent_name = agent
    s.event_type = event_type
    try:
        s.attributes = dict(attributes) if attributes else {}
    except Exception:  # not a mapping
        s.attributes = _copy_attributes(attributes)
    s.payload = None
    s.status = "ok"
    s.error = None
    s.token_cost = None
    s.run = None
    s._token = None
    s._ended = False
    s._retry = retry_of
    return s


class _RunContext:
    __slots__ = ("_args", "_run")

    def __init__(self, args: dict[str, Any]) -> None:
        self._args = args
        self._run: Run | None = None

    def __enter__(self) -> Run:
        try:
            self._run = Run(**self._args)
        except Exception as exc:  # attributes that are not a mapping, ...: the run goes on, with what is sane
            runtime.internal_error(exc)
            a = self._args
            self._run = Run(str(a["workflow"]), str(a["actor"]), str(a["agent"]), None, None, None, None)
        root = self._run.root
        root._token = _CURRENT.set(root)
        return self._run

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        if self._run is not None:
            self._run.root._exit(exc)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(et, exc, tb)


def run(
    workflow: str,
    *,
    actor: str = "unknown",
    agent: str = "orchestrator",
    session_id: str | None = None,
    input: Any = None,
    attributes: dict[str, Any] | None = None,
    trace_id: str | None = None,
) -> _RunContext:
    """Open a run: the envelope (trace_id, run_id, workflow, actor, started_at) and its root span."""
    return _RunContext(
        {
            "workflow": workflow,
            "actor": actor,
            "agent": agent,
            "session_id": session_id,
            "input": input,
            "attributes": attributes,
            "trace_id": trace_id,
        }
    )


def current_span() -> Span | None:
    return _CURRENT.get()


def current_run() -> Run | None:
    s = _CURRENT.get()
    return s.run if s is not None else None


def handoff(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Capture the current span so `fn` runs under it in another thread (`executor.submit(ad.handoff(f))`)."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return ctx.run(fn, *args, **kwargs)

    return wrapper


class Message:
    """An inter-agent message in flight: what `send` returns and `receive` takes."""

    __slots__ = ("trace_id", "span_id", "sender", "recipient", "content")

    def __init__(self, trace_id: str, span_id: str, sender: str, recipient: str, content: Any) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sender = sender
        self.recipient = recipient
        self.content = content


def send(recipient: str, content: Any = None, *, agent: str | None = None) -> Message:
    """Record a SEND span from the current agent (or `agent`) to `recipient`; hand the result to `receive`."""
    with span(f"send:{recipient}", agent=agent, event_type="SEND") as s:
        s.set_attribute("message.to", recipient)
        if content is not None:
            s.set_payload({"content": content})
    return Message(s.trace_id, s.span_id, s.agent_name or s.name, recipient, content)  # (started: never None)


class _Receive(Span):
    """A RECEIVE span whose causal parent is the message's SEND span (which crosses agents)."""

    __slots__ = ("_message",)

    def __init__(self, message: Message, agent: str | None) -> None:
        super().__init__(f"receive:{message.sender}", agent or message.recipient, "RECEIVE",
                         {"message.from": message.sender})
        self._message = message

    def __enter__(self) -> Span:
        parent = _CURRENT.get()
        self._start(parent)
        self.trace_id = self._message.trace_id
        self.parent_id = self._message.span_id
        self._token = _CURRENT.set(self)
        return self


def receive(message: Message, *, agent: str | None = None) -> Span:
    """A RECEIVE span whose causal parent is the message's SEND span; work done inside nests under it."""
    return _Receive(message, agent)


def llm_span(model: str, *, agent: str | None = None, name: str | None = None, budget: int | None = None) -> Span:
    attrs: dict[str, Any] = {"gen_ai.request.model": model, "route.model": model}
    if budget is not None:
        attrs["token.budget"] = budget
    return span(name or f"llm:{model}", agent=agent, event_type="LLM_CALL", attributes=attrs)


def tool_span(tool: str, *, agent: str | None = None, name: str | None = None) -> Span:
    return span(name or f"tool:{tool}", agent=agent, event_type="TOOL_CALL", attributes={"tool.name": tool})


def _use_the_compiled_core(core: ModuleType) -> bool:
    """Hand the compiled base its references; then its __enter__, __exit__ and set_payload, and its `span`,
    replace the Python ones (which stay as their specification and the fallback: tests/test_cspan.py runs the SDK
    both ways and compares the bytes). False, and the Python path kept, if the module refuses them: the SDK must
    not fail to import because of it."""
    try:
        core.bind(current=_CURRENT, id_pool=_id_pool, new_span_id=_new_span_id, perf_ns=_perf_ns, time=_time,
                    dumps=_dumps, dumps_record=dumps_record, runtime=runtime, format_version=FORMAT_VERSION,
                    sleep=_yield, yield_mask=YIELD_MASK, wake_at=_WAKE_AT, span_type=Span,
                    copy_attributes=_copy_attributes)
    except Exception as exc:  # the ABI check in _core makes this a bug of ours; counted, and the SDK goes on
        runtime.internal_error_quiet(exc)
        return False
    del Span.__enter__, Span.__exit__, Span.set_payload  # the base's, compiled, now answer
    return True


if _core is not None:
    COMPILED = _use_the_compiled_core(_core)
    if COMPILED:
        span = _core.span  # noqa: F811  # the same as the Python `span` above, compiled
