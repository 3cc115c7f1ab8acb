"""Human verdicts on runs: `agent-debug mark TRACE... --failed|--passed [--reason TEXT]` stores one per run in the
store's `verdicts` table (the trace files are never changed); a verdict file does the same for `--from` sources.

A verdict is a recorded outcome given after the fact: wherever a run's status is read (`traces`, `bucket`,
`why`, `eval`, the clusters), a verdict overrides what the run recorded: `--failed` makes it `failed`,
`--passed` makes it `passed`, and the summary carries `verdict = {passed, reason, source, recorded_status}`.

Verdict file (for `--from` sources, or `--verdicts FILE`): JSON Lines, one object per run,
`{"trace_id": "...", "passed": false, "reason": "wrong answer"}`; `reason` is optional, a later line for the same
run wins, and a trace id may be a unique prefix of one.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from agent_debug.columns import TraceSummary
from agent_debug.errors import UsageError


@dataclass(frozen=True)
class Verdict:
    trace_id: str
    passed: bool
    reason: str | None = None
    source: str = "mark"

    def as_dict(self, recorded_status: str | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"passed": self.passed, "reason": self.reason, "source": self.source}
        if recorded_status is not None:
            d["recorded_status"] = recorded_status
        return d


def has_table(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'verdicts'").fetchone() is not None


def put(db: sqlite3.Connection, verdicts: list[Verdict]) -> int:
    """Store (or replace) verdicts in one transaction; returns how many."""
    now = time.time()
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR REPLACE INTO verdicts (trace_id, passed, reason, source, marked_at) "
                       "VALUES (?, ?, ?, ?, ?)",
                       [(v.trace_id, int(v.passed), v.reason, v.source, now) for v in verdicts])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(verdicts)


def clear(db: sqlite3.Connection, trace_ids: list[str]) -> int:
    """Forget the verdicts of these runs; returns how many there were."""
    db.execute("BEGIN IMMEDIATE")
    try:
        n = sum(db.execute("DELETE FROM verdicts WHERE trace_id = ?", (t,)).rowcount for t in trace_ids)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return n


def load(db: sqlite3.Connection) -> dict[str, Verdict]:
    """Every stored verdict by trace id (none when the store predates the table and was opened read-only)."""
    if not has_table(db):
        return {}
    return {r[0]: Verdict(r[0], bool(r[1]), r[2], r[3] or "mark")
            for r in db.execute("SELECT trace_id, passed, reason, source FROM verdicts")}


def apply(summary: TraceSummary, verdict: Verdict | None) -> TraceSummary:
    """The run as the verdict says it went (unchanged without one)."""
    if verdict is None:
        return summary
    return replace(summary, status="passed" if verdict.passed else "failed",
                   verdict=verdict.as_dict(summary.status))


def is_verdict_line(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("trace_id"), str) and isinstance(obj.get("passed"), bool) \
        and "span_id" not in obj


def sniff(path: Path) -> bool:
    """Is this file a verdict file (its first non-empty line a verdict object)? Read at most 64 KB."""
    try:
        with path.open("rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    for line in head.splitlines():
        if line.strip():
            try:
                return is_verdict_line(orjson.loads(line))
            except orjson.JSONDecodeError:
                return False
    return False


def read_file(path: Path) -> list[Verdict]:
    """The verdicts of a verdict file; a line that is not a verdict is a usage error naming file and line."""
    out = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read verdict file {path}: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UsageError(f"{path}:{n}: not JSON (a verdict file has one {{trace_id, passed, reason}} "
                             "object per line)") from None
        if not is_verdict_line(obj):
            raise UsageError(f"{path}:{n}: a verdict needs a string trace_id and a boolean passed")
        reason = obj.get("reason")
        out.append(Verdict(obj["trace_id"], obj["passed"], reason if isinstance(reason, str) else None, str(path)))
    return out


@dataclass
class MarkResult:
    """`agent-debug mark`: the verdicts recorded (or, with `clear`, the runs whose verdicts were forgotten)."""

    marked: list[Verdict]
    cleared: list[str] | None = None  # the runs asked to be cleared (None: a mark)
    count: int = 0  # verdicts recorded, or cleared
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        if self.cleared is not None:
            return {"cleared": self.cleared, "count": self.count}
        return {"marked": [{"trace_id": v.trace_id, **v.as_dict()} for v in self.marked], "count": self.count}
