"""Reading the store: list runs, resolve trace-id prefixes, load a trace's spans."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson

from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import AmbiguousTrace, StoreError, TraceNotFound
from agent_debug.store.load import load_columns

_SUMMARY_COLS = (
    "trace_id, root_span_id, run_id, session_id, workflow, actor, status, start_ns, end_ns, duration_ns, "
    "span_count, roots, agents, error_spans, prompt_tokens, completion_tokens, cost_usd, source_file, source_format"
)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _store_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """SQLite failing to read (a garbled page, a file that is not a store) is the store's error, one line."""

    @wraps(fn)
    def inner(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the store: {exc}") from None

    return inner


@dataclass
class TraceFilter:
    """What `agent-debug traces` (and bucket, eval) select runs by."""

    failed: bool = False
    workflow: str | None = None
    agent: str | None = None
    since_ns: int | None = None
    session_id: str | None = None
    slowest: int | None = None
    limit: int | None = None

    def matches(self, s: TraceSummary) -> bool:
        if self.failed and not s.failed:
            return False
        if self.workflow and s.workflow != self.workflow:
            return False
        if self.agent and self.agent not in s.agents:
            return False
        if self.since_ns is not None and s.start_ns < self.since_ns:
            return False
        return not (self.session_id and s.session_id != self.session_id)


def _row_to_summary(row: tuple[Any, ...]) -> TraceSummary:
    vals = list(row)
    vals[12] = orjson.loads(vals[12]) if vals[12] else []
    return TraceSummary(*vals)


@_store_errors
def list_traces(db: sqlite3.Connection, flt: TraceFilter | None = None) -> list[TraceSummary]:
    flt = flt or TraceFilter()
    where: list[str] = []
    args: list[str | int] = []
    if flt.failed:
        where.append("status IN ('failed', 'error')")
    if flt.workflow:
        where.append("workflow = ?")
        args.append(flt.workflow)
    if flt.since_ns is not None:
        where.append("start_ns >= ?")
        args.append(flt.since_ns)
    if flt.session_id:
        where.append("session_id = ?")
        args.append(flt.session_id)
    sql = f"SELECT {_SUMMARY_COLS} FROM traces"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY duration_ns DESC" if flt.slowest else " ORDER BY start_ns"
    out = [s for s in map(_row_to_summary, db.execute(sql, args)) if flt.matches(s)]
    if flt.slowest:
        out = out[: flt.slowest]
    if flt.limit:
        out = out[: flt.limit]
    return out


@_store_errors
def resolve_trace(db: sqlite3.Connection, prefix: str) -> str:
    """A full trace id from an id or unique prefix (like git). Raises TraceNotFound / AmbiguousTrace."""
    exact = db.execute("SELECT trace_id FROM traces WHERE trace_id = ?", (prefix,)).fetchone()
    if exact:
        return str(exact[0])
    rows = db.execute(
        "SELECT trace_id FROM traces WHERE trace_id >= ? AND trace_id < ? ORDER BY trace_id LIMIT 6",
        (prefix, prefix + "\U0010ffff"),
    ).fetchall()
    return pick(prefix, [r[0] for r in rows])


def pick(prefix: str, candidates: list[str]) -> str:
    if not candidates:
        raise TraceNotFound(f"no trace matches {prefix!r}")
    if len(candidates) > 1:
        shown = ", ".join(c[:12] for c in candidates[:5])
        raise AmbiguousTrace(f"trace prefix {prefix!r} matches several traces: {shown}")
    return candidates[0]


def load_trace(db: sqlite3.Connection, trace_id: str, *, records: bool | str = False) -> TraceSpans:
    ts = load_columns(db, trace_id, with_records=records)
    if not len(ts):
        raise TraceNotFound(f"no spans for trace {trace_id!r}")
    return ts


@_store_errors
def summary(db: sqlite3.Connection, trace_id: str) -> TraceSummary:
    row = db.execute(f"SELECT {_SUMMARY_COLS} FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
    if row is None:
        raise TraceNotFound(f"no trace {trace_id!r}")
    return _row_to_summary(row)


def store_notices(db: sqlite3.Connection, db_path: Path) -> list[str]:
    """What a reader of the store must be told: records rejected at ingest (kept verbatim in the rejects file
    beside the store) and spans seen again with other content (the first version is the one shown)."""
    from agent_debug.store.db import rejects_path

    out = []
    rejected = db.execute("SELECT COALESCE(SUM(rejected), 0) FROM ingests").fetchone()[0]
    if rejected:
        rejects = rejects_path(db_path)
        where = f"kept verbatim in {rejects}" if rejects.exists() else f"the rejects file {rejects} is gone"
        out.append(f"{rejected} record{'s were' if rejected != 1 else ' was'} rejected at ingest ({where})")
    conflicts = db.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0]
    if conflicts:
        out.append(f"{conflicts} span{'s were' if conflicts != 1 else ' was'} ingested again with other content; "
                   "the first version is shown")
    return out
