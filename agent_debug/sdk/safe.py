"""Serializing a record whatever the agent put in it, in the caller, at span end.

The hot path calls `orjson.dumps(rec)` itself; only when that fails does it come here. Values JSON has no type
for become strings (`str()`, or a placeholder when `str()` itself fails), keys that are not strings become
strings, integers beyond 64 bits become their digits, lone surrogates their escapes, and cycles or nesting too
deep for the format become placeholders. The record is always written; a fault (something replaced by a
placeholder) is returned so the caller can count it.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent_debug.model import RECORD_MAX_DEPTH

# a payload or attribute value is at level 2 of its record: cut where every reader would (model.RECORD_MAX_DEPTH)
MAX_DEPTH = RECORD_MAX_DEPTH - 2
_OPTS = orjson.OPT_NON_STR_KEYS
_ENVELOPE = ("trace_id", "span_id", "parent_id", "agent_name", "event_type", "timestamp", "duration_ns", "name",
             "format_version", "run_id", "workflow", "actor", "session_id", "status")


class SerializationFault(ValueError):
    """Part of a record could not be represented as it was (an unprintable object, a cycle, too deep)."""


class _Strings:
    """orjson's `default`: str() of an object, or a placeholder when str() fails (noted as a fault)."""

    def __init__(self) -> None:
        self.fault: str | None = None

    def __call__(self, obj: Any) -> str:
        try:
            return str(obj)
        except Exception as exc:
            self.fault = f"str() of a {type(obj).__name__} failed: {type(exc).__name__}: {exc}"
            return f"<unprintable {type(obj).__name__}>"


def dumps_record(rec: dict[str, Any]) -> tuple[bytes, Exception | None]:
    """The record's JSON bytes, and the fault to count (None when nothing was lost)."""
    strings = _Strings()
    try:
        data = orjson.dumps(rec, default=strings, option=_OPTS)
        return data, None if strings.fault is None else SerializationFault(strings.fault)
    except TypeError:  # integers beyond 64 bits, cycles, nesting deeper than 254, odd keys
        pass
    try:
        plain = _plain(rec, 0, set(), strings)
        data = orjson.dumps(plain, default=strings, option=_OPTS)
        # big integers written as their digits lose nothing: only a placeholder is a fault
        return data, None if strings.fault is None else SerializationFault(strings.fault)
    except Exception as exc:  # last resort: the span without its content, so the tree keeps it
        return _skeleton(rec, exc), exc


def _text(value: str, strings: _Strings) -> str:
    """The string, or when it holds a lone surrogate (no UTF-8 for it: orjson refuses it), the string with each
    surrogate written as its escape (`\\ud800`), noted as a fault."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        strings.fault = strings.fault or "a string with a lone surrogate (written as its escape)"
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _plain(value: Any, depth: int, seen: set[int], strings: _Strings) -> Any:
    """A copy orjson can write: big integers as strings, keys as strings, lone surrogates escaped, cycles and depth
    cut."""
    t = type(value)
    if t is str:
        return _text(value, strings)
    if t is float or t is bool or value is None:
        return value
    if t is int:
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_DEPTH:
            strings.fault = strings.fault or f"nesting deeper than {MAX_DEPTH} levels"
            return "[too deep]"
        if id(value) in seen:
            strings.fault = strings.fault or "a value that contains itself"
            return "[circular]"
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                return {_text(k if type(k) is str else strings(k), strings): _plain(v, depth + 1, seen, strings)
                        for k, v in value.items()}
            return [_plain(v, depth + 1, seen, strings) for v in value]
        finally:
            seen.discard(id(value))
    if isinstance(value, int):  # an int subclass (a bool is handled above)
        return _plain(int(value), depth, seen, strings)
    return value  # orjson writes it natively or through `strings`


def _skeleton(rec: dict[str, Any], exc: Exception) -> bytes:
    """The envelope fields only (as strings where needed), with the fault as an attribute."""
    strings = _Strings()
    out: dict[str, Any] = {}
    for key in _ENVELOPE:
        if key in rec:
            v = rec[key]
            if type(v) in (int, float, bool) or v is None:
                out[key] = v
            else:
                out[key] = _text(v if type(v) is str else strings(v), strings)
    out["attributes"] = {"sdk.serialization_error": f"{type(exc).__name__}: {strings(exc)}"}
    return orjson.dumps(out, default=strings)
