"""What keeps the store consistent when ingests are killed, fail, or run at once.

- Ingests into one store take turns (`exclusive`): each dedupes against the spans it knows when it starts.
- A trace's summary is written in the same transaction as its chunks (`write_summary`, called per file by
  `store.ingest`), so `traces` always counts what the chunks hold; `summarize_unlisted` repairs stores that
  versions before that left half-summarized.
- `Fault`, a test hook, stops an ingest at any of its steps, so tests can show the above holds at every one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from agent_debug.columns import TraceSummary, summarize
from agent_debug.errors import StoreError
from agent_debug.store.load import load_columns

if sys.platform != "win32":  # Windows has no flock
    import fcntl

FAULT_ENV = "AGENT_DEBUG_INGEST_FAULT"  # a test hook: see `Fault`


@contextmanager
def exclusive(db_path: Path) -> Iterator[float]:
    """Hold the store's ingest lock (waiting for another ingest to finish); yields the seconds waited.

    Ingests must not interleave: each dedupes against the spans it knows, and two reading the same new file
    would both keep it. SQLite alone would only serialize their transactions. An flock on a file beside the
    store is released by the system however the holder ends, SIGKILL included."""
    if sys.platform == "win32":  # pragma: no cover - no flock: SQLite's own locking only
        yield 0.0
        return
    lock_path = db_path.with_name(db_path.name + ".ingest-lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot lock store {db_path} for ingest: {exc.strerror or exc}") from None
    try:
        t0 = time.monotonic()
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield time.monotonic() - t0
    finally:
        os.close(fd)  # releases the lock


class Fault:
    """A test hook: `AGENT_DEBUG_INGEST_FAULT=kill:N` (SIGKILL this process) or `raise:N` (an exception, as a file
    that fails would raise) at the N-th step of an ingest: a file's transaction begun, chunks or positions
    written, a flush, summaries, rejects written, a commit. `raise:N@NAME` counts only the steps of files named
    NAME. Lets tests stop an ingest at every point and check what the next one makes of it."""

    def __init__(self, kind: str | None = None, at: int = 0, name: str | None = None) -> None:
        self.kind, self.at, self.name, self.steps = kind, at, name, 0
        self.file = ""  # the name of the file being read

    @classmethod
    def from_env(cls) -> Fault:
        kind, _, at = os.environ.get(FAULT_ENV, "").partition(":")
        at, _, name = at.partition("@")
        if kind not in ("kill", "raise") or not at.isdigit():
            return cls()
        return cls(kind, int(at), name or None)

    def step(self, where: str) -> None:
        if self.kind is None or (self.name is not None and self.name != self.file):
            return
        self.steps += 1
        if self.steps != self.at:
            return
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"fault injected at ingest step {self.steps} ({where} of {self.file})")


class InjectedFault(RuntimeError):
    """Raised by the `_Fault` test hook."""


def write_summary(db: sqlite3.Connection, s: TraceSummary) -> None:
    db.execute(
        "INSERT OR REPLACE INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (s.trace_id, s.root_span_id, s.run_id, s.session_id, s.workflow, s.actor, s.status, s.start_ns,
         s.end_ns, s.duration_ns, s.span_count, s.roots, orjson.dumps(s.agents).decode(), s.error_spans,
         s.prompt_tokens, s.completion_tokens, s.cost_usd, s.source_file, s.source_format, time.time()),
    )


def summarize_unlisted(db: sqlite3.Connection) -> int:
    """Summarize every trace whose chunks hold spans its `traces` row does not count (or that has none): what
    an ingest before this version left when it stopped half-way. Returns how many."""
    stale = [tid for (tid,) in db.execute(
        "SELECT c.trace_id FROM (SELECT trace_id, sum(n) AS n FROM chunks GROUP BY trace_id) AS c "
        "LEFT JOIN traces AS t ON t.trace_id = c.trace_id WHERE t.span_count IS NOT c.n")]
    for tid in stale:
        write_summary(db, summarize(load_columns(db, tid)))
    return len(stale)


