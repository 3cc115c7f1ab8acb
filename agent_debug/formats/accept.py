"""The one acceptance rule every reader applies, so `validate`, `ingest` and `--from` cannot disagree.

A value that passes `model.check_record` (the spec's required fields and their types) is a record, and it is
stored as it is, with two exceptions that make every record storable and readable back by every command:

- Containers nested deeper than MAX_DEPTH levels (the record itself is level 1) are replaced by the string
  DEEP_MARKER. No real trace nests that deep; orjson, which the store and every `--json` output use, writes at most
  254 levels, so a record deeper than that could be read but never written back or shown. MAX_DEPTH leaves room
  for the levels a store chunk or a command's JSON puts around a record's values.
- A foreign document is held to the same limits before its importer sees it (`within_limits`).
- A record that did not come from JSON (MessagePack, or a foreign importer fed from it) is made JSON: map keys
  become strings, bytes UTF-8 text (invalid bytes as U+FFFD), MessagePack timestamps and extension values their
  text, integers beyond 64 bits floats, NaN and infinities null. A string holding invalid UTF-8 (MessagePack `str`
  data that is not UTF-8) rejects the record: ids and names must be compared exactly.

Optional fields with values outside the spec (a token count that is text, an actor that is an object) are kept in
the record as they are; what the store derives from them is decided where the columns are made
(`columns.token_count`, `columns.envelope_of`).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from agent_debug.model import RECORD_MAX_DEPTH, check_record

MAX_DEPTH = RECORD_MAX_DEPTH
DEEP_MARKER = f"<nested deeper than {MAX_DEPTH} levels: cut>"
ORJSON_DEPTH = 254  # orjson writes at most this many nested containers
_OPENERS = (b"{", b"[")
_INT_MIN, _INT_MAX = -(1 << 63), 1 << 64  # what orjson writes as an integer


class _Probe:
    """`fits(obj)`: is `obj` plain JSON (orjson writes it unchanged) no deeper than MAX_DEPTH levels? One C-level
    `orjson.dumps` of `obj` inside ORJSON_DEPTH - MAX_DEPTH lists: orjson's own depth limit fails it exactly when
    `obj` is too deep. The lists are made once and the innermost one's item swapped."""

    def __init__(self) -> None:
        self.inner: list[Any] = [None]
        outer: list[Any] = self.inner
        for _ in range(ORJSON_DEPTH - MAX_DEPTH - 1):
            outer = [outer]
        self.outer = outer

    def fits(self, obj: Any) -> bool:
        self.inner[0] = obj
        try:
            orjson.dumps(self.outer, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return False
        finally:
            self.inner[0] = None
        return True


_probe = _Probe()


def may_be_deep(line: bytes) -> bool:
    """Could this JSON text nest deeper than MAX_DEPTH? (Cheap: it has fewer openers than that, it cannot.)"""
    return line.count(b"{") + line.count(b"[") > MAX_DEPTH


def accept(rec: Any, line: bytes | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(the record to keep, None) or (None, why it is rejected). The record is `rec` itself (normalized in place
    by `check_record`) unless it had to be made storable, then a copy (see the module docstring). `line`: the
    JSON text `rec` was parsed from, when it is all of it (its values are then plain JSON already)."""
    reason = check_record(rec)
    if reason is not None:
        return None, reason
    if line is not None and not may_be_deep(line) or _probe.fits(rec):
        return rec, None
    return storable(rec)


def storable(rec: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A checked record that `_probe` refused, as plain JSON no deeper than MAX_DEPTH; or why it cannot be one."""
    try:
        out = _plain(rec, 1)
    except _InvalidText:
        return None, "invalid UTF-8 in a string"
    out = out if isinstance(out, dict) else {}
    return (out, None) if check_record(out) is None else (None, "not a valid record once made JSON")


class _InvalidText(Exception):
    """A string with surrogates (MessagePack `str` bytes that are not UTF-8)."""


def _text(s: str, strict: bool) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        if strict:
            raise _InvalidText from None
        return s.encode("utf-8", "replace").decode("utf-8")
    return s


def _key(k: Any, strict: bool) -> str:
    if isinstance(k, str):
        return _text(k, strict)
    if isinstance(k, (bytes, bytearray, memoryview)):
        return bytes(k).decode("utf-8", "replace")
    if k is None or isinstance(k, bool):
        return "null" if k is None else ("true" if k else "false")
    return _text(str(k), False)


def _plain(v: Any, depth: int, strict: bool = True) -> Any:
    """`v` as plain JSON, containers below MAX_DEPTH replaced by DEEP_MARKER. Recursion is bounded by MAX_DEPTH.
    `strict`: a string with invalid UTF-8 raises `_InvalidText` (else its bad parts become U+FFFD)."""
    if isinstance(v, str):
        return _text(v, strict)
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if _INT_MIN <= v < _INT_MAX else float(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (dict, list, tuple, set, frozenset)):
        if depth > MAX_DEPTH:
            return DEEP_MARKER
        if isinstance(v, dict):
            return {_key(k, strict): _plain(x, depth + 1, strict) for k, x in v.items()}
        return [_plain(x, depth + 1, strict) for x in v]
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "replace")
    return _text(str(v), False)  # a MessagePack Timestamp or ExtType, or anything else a reader may meet


def within_limits(obj: Any) -> Any:
    """A parsed value handed to a foreign importer, under the same rule: as it is when it is plain JSON within
    MAX_DEPTH levels (one C-level check), else a copy that is (importers may then walk, print and write it
    freely; invalid text becomes U+FFFD, the importer's records are checked again anyway)."""
    return obj if _probe.fits(obj) else _plain(obj, 1, strict=False)


def safe_dumps(obj: Any) -> bytes:
    """JSON for a value being kept verbatim as a reject: never raises (deep parts cut, bad text as U+FFFD)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=str)
    except TypeError:
        return orjson.dumps(_plain(obj, 1, strict=False))
