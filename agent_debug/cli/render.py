"""Shared rendering helpers for rich output: durations, statuses, bars."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from agent_debug.errors import UsageError
from agent_debug.model import MAX_DURATION_NS

STATUS_STYLE = {"passed": "green", "ok": "green", "failed": "red", "error": "bold red", "unknown": "yellow"}


def fmt_ns(ns: int | float | None) -> str:
    if ns is None:
        return "-"
    ns = float(ns)
    if ns >= 60e9:
        return f"{ns / 60e9:.1f}m"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f}s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f}ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.0f}us"
    return f"{ns:.0f}ns"


_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d)?\s*$")
_UNIT = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9, "d": 86400e9}


def parse_duration(text: str, default_unit: str = "ms") -> int:
    """'250ms', '1.5s', '30us', '2m' -> nanoseconds. A bare number is in `default_unit`."""
    m = _DUR.match(text)
    if not m:
        raise UsageError(f"not a duration: {text!r} (examples: 250ms, 1.5s, 30us)")
    ns = float(m.group(1)) * _UNIT[m.group(2) or default_unit]
    if not ns <= MAX_DURATION_NS:  # also catches inf from a very long number
        raise UsageError(f"duration out of range: {text!r} (at most {MAX_DURATION_NS // int(_UNIT['d'])} days)")
    return int(ns)


def parse_since(text: str) -> int:
    """An ISO date/time or a look-back like '2h', '30m', '7d' -> epoch nanoseconds."""
    if _DUR.match(text):
        return int(time.time() * 1e9) - parse_duration(text, default_unit="s")
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1e9)
    except (ValueError, OverflowError, OSError):  # not ISO, or a date the platform's clock cannot hold
        raise UsageError(f"not a time: {text!r} (examples: 2h, 7d, 2026-11-21T10:00)") from None


def bar(start: int, dur: int, t0: int, total: int, width: int = 30) -> tuple[int, int]:
    """Offset and length, in characters, of a span on the run's timeline."""
    if total <= 0:
        return 0, 1
    off = int((start - t0) / total * width)
    off = max(0, min(width - 1, off))
    length = max(1, round(dur / total * width))
    return off, min(length, width - off)


def status_text(status: str) -> Any:
    from rich.text import Text

    return Text(status, style=STATUS_STYLE.get(status, ""))
