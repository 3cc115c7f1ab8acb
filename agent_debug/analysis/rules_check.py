"""The shape of a `--rules` file, checked before it is merged over the defaults.

Bucketing tolerates any span content (a rule that meets an odd attribute simply does not match), so a rule with
a typo would never match and nobody would know. A rules file is written by a person: every key, type, operator,
detector and regex is checked here, and the first mistake is a one-line UsageError naming the file and the place.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, NoReturn

from agent_debug.errors import UsageError

TABLES = ("thresholds", "bucket", "rule")
RULE_KEYS = ("name", "bucket", "strength", "reason", "detector", "when", "enabled")
WHEN_KEYS = ("event_type", "name", "status", "attr", "op", "value")
STRENGTHS = ("strong", "weak")
OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "exists", "missing")


def check_rules_file(data: dict[str, Any], path: str | Path, defaults: dict[str, Any],
                     detectors: Collection[str]) -> None:
    """Raise UsageError at the first part of `data` the bucketing could not use as written."""
    where = _Where(path)
    for key in data:
        if key not in TABLES:
            where.bad(key, f"unknown table (known: {', '.join(TABLES)})")
    _thresholds(where, data.get("thresholds", {}), defaults.get("thresholds", {}))
    buckets = data.get("bucket", {})
    if not isinstance(buckets, dict):
        where.bad("bucket", "must be a table of [bucket.NAME] tables")
    for name, body in buckets.items():
        if not isinstance(body, dict):
            where.bad(f"bucket.{name}", "must be a table")
        if not isinstance(body.get("next_action", ""), str):
            where.bad(f"bucket.{name}.next_action", "must be a string")
    rules = data.get("rule", [])
    if not isinstance(rules, list):
        where.bad("rule", "must be an array of [[rule]] tables")
    for i, rule in enumerate(rules):
        _rule(where, f"rule #{i + 1}", rule, detectors)


class _Where:
    def __init__(self, path: str | Path) -> None:
        self.path = path

    def bad(self, place: str, what: str) -> NoReturn:
        raise UsageError(f"rules file {self.path}: {place}: {what}")


def _thresholds(where: _Where, th: Any, defaults: dict[str, Any]) -> None:
    if not isinstance(th, dict):
        where.bad("thresholds", "must be a table")
    for key, value in th.items():
        if key not in defaults:
            where.bad(f"thresholds.{key}", f"unknown threshold (known: {', '.join(sorted(defaults))})")
        default = defaults[key]
        if isinstance(default, list):
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                where.bad(f"thresholds.{key}", "must be a list of strings")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            where.bad(f"thresholds.{key}", "must be a number")


def _rule(where: _Where, place: str, rule: Any, detectors: Collection[str]) -> None:
    if not isinstance(rule, dict):
        where.bad(place, "must be a table")
    if isinstance(rule.get("name"), str):
        place = f"rule {rule['name']!r}"
    for key in rule:
        if key not in RULE_KEYS:
            where.bad(f"{place}.{key}", f"unknown key (known: {', '.join(RULE_KEYS)})")
    for key in ("name", "bucket", "reason", "detector"):
        if key in rule and not isinstance(rule[key], str):
            where.bad(f"{place}.{key}", "must be a string")
    if "bucket" not in rule:
        where.bad(place, "needs a bucket")
    if rule.get("strength", "strong") not in STRENGTHS:
        where.bad(f"{place}.strength", f"must be one of {', '.join(STRENGTHS)}")
    if not isinstance(rule.get("enabled", True), bool):
        where.bad(f"{place}.enabled", "must be true or false")
    if "detector" in rule and rule["detector"] not in detectors:
        where.bad(f"{place}.detector", f"unknown detector {rule['detector']!r} (known: {', '.join(sorted(detectors))})")
    if "when" in rule:
        _when(where, f"{place}.when", rule["when"])
    elif "detector" not in rule:
        where.bad(place, "needs a detector or a when table")


def _when(where: _Where, place: str, when: Any) -> None:
    if not isinstance(when, dict):
        where.bad(place, "must be a table, e.g. { attr = \"retrieval.doc_count\", op = \"==\", value = 0 }")
    if not when:
        where.bad(place, "needs at least one condition (it would match nothing)")
    for key in when:
        if key not in WHEN_KEYS:
            where.bad(f"{place}.{key}", f"unknown key (known: {', '.join(WHEN_KEYS)})")
    ets = when.get("event_type")
    strings = isinstance(ets, list) and all(isinstance(e, str) for e in ets)
    if ets is not None and not (isinstance(ets, str) or strings):
        where.bad(f"{place}.event_type", "must be a string or a list of strings")
    for key in ("name", "status", "attr"):
        if key in when and not isinstance(when[key], str):
            where.bad(f"{place}.{key}", "must be a string")
    if "name" in when:
        try:
            re.compile(when["name"])
        except re.error as exc:
            where.bad(f"{place}.name", f"not a valid regex ({exc})")
    if "op" in when:
        if when["op"] not in OPS:
            where.bad(f"{place}.op", f"unknown operator {when['op']!r} (known: {' '.join(OPS)})")
        if "attr" not in when:
            where.bad(place, "an op needs an attr")
        if when["op"] not in ("exists", "missing") and "value" not in when:
            where.bad(place, f"op {when['op']!r} needs a value")
