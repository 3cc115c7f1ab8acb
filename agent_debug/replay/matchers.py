"""Named matchers between a live call and a recorded one. Each is a small function returning (ok, why);
a miss reports the closest recorded calls and which matchers passed and why the others failed.

Calls are matched on their order within their agent (the n-th call an agent makes; robust when agents run
concurrently and the global hop order shifts) plus the normalized request hash — never on raw HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from agent_debug.errors import UsageError

Matcher = Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str]]


class Mode(str, Enum):
    """How replay treats a call whose request differs from the recording."""

    STRICT = "strict"  # any difference is a ReplayMiss
    LENIENT = "lenient"  # a changed request goes to the fallback

    @classmethod
    def parse(cls, value: str) -> Mode:
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"unknown replay mode {value!r}; use strict or lenient") from None


class Fallback(str, Enum):
    """Where a call with no matching recording goes (lenient mode, and downstream of an injection)."""

    ERROR = "error"  # fail clearly
    LIVE = "live"  # call the wrapped function (the demo's fake model and tools; the network stays blocked)
    RECORDED = "recorded"  # answer with the recording for that position anyway

    @classmethod
    def parse(cls, value: str) -> Fallback:
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"unknown fallback {value!r}; use error, live or recorded") from None


def agent_order(live: dict[str, Any], rec: dict[str, Any]) -> tuple[bool, str]:
    ok = live["agent"] == rec["agent"] and live["agent_index"] == rec["agent_index"]
    return ok, f"call #{live['agent_index']} of {live['agent']} vs #{rec['agent_index']} of {rec['agent']}"


def kind(live: dict[str, Any], rec: dict[str, Any]) -> tuple[bool, str]:
    return live["kind"] == rec["kind"], f"{live['kind']} vs {rec['kind']}"


def name(live: dict[str, Any], rec: dict[str, Any]) -> tuple[bool, str]:
    return live["name"] == rec["name"], f"{live['name']!r} vs {rec['name']!r}"


def request_hash(live: dict[str, Any], rec: dict[str, Any]) -> tuple[bool, str]:
    return live["request_hash"] == rec.get("request_hash"), f"{live['request_hash']} vs {rec.get('request_hash')}"


MATCHERS: dict[str, Matcher] = {"agent_order": agent_order, "kind": kind, "name": name,
                                "request_hash": request_hash}


def check(live: dict[str, Any], rec: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    return {n: m(live, rec) for n, m in MATCHERS.items()}


def closest(live: dict[str, Any], recorded: list[dict[str, Any]], n: int = 3) -> list[dict[str, Any]]:
    """The recorded calls most like `live`, each with the result of every matcher."""
    scored = []
    for rec in recorded:
        results = check(live, rec)
        scored.append((sum(ok for ok, _ in results.values()), rec, results))
    scored.sort(key=lambda x: -x[0])
    return [{"hop": rec["hop"], "agent": rec["agent"], "name": rec["name"],
             "matchers": {k: {"ok": ok, "detail": why} for k, (ok, why) in results.items()}}
            for _, rec, results in scored[:n]]
