"""Following the store: which spans and runs it gained since the last look.

Whatever wrote them (an OTLP request, a watched file, another process's `agent-debug ingest`), new spans land
in new chunks, whose ids only grow, and their run summaries in `traces`. Reading those back, instead of being
told by each writer, makes `serve` and `tail --db` announce exactly what is stored, from any source. Each poll is
a fresh read (WAL: readers never block the writer, nor it them).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import TraceNotFound
from agent_debug.store import query
from agent_debug.store.chunks import ChunkCols, append_batch, decode
from agent_debug.store.db import connect

SPAN_FIELDS = ("span_id", "parent_id", "agent_name", "event_type", "name", "status", "start_ns", "duration_ns")
MAX_CHUNKS = 2000  # read per poll at most (a big backlog is announced over several polls)


@dataclass
class Gained:
    """What one poll found: per trace, how many spans and whether a root is among them; the new spans themselves
    (as `span` events carry them) and the summaries of their runs, when asked for."""

    counts: dict[str, tuple[int, bool]]
    spans: list[dict[str, Any]]
    runs: dict[str, TraceSummary]
    pending: bool  # more chunks are waiting (the poll stopped at MAX_CHUNKS)


class StoreFollower:
    """Reads chunks added to the store after `start` (by default: after those there when it was made)."""

    def __init__(self, db_path: str | os.PathLike[str], *, from_start: bool = False) -> None:
        self.db_path = Path(db_path)
        self.last_chunk = 0
        if not from_start:
            db = connect(self.db_path)
            self.last_chunk = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()[0])
            db.close()
        self._db: sqlite3.Connection | None = None  # opened by the thread that polls
        self._unsummarized: set[str] = set()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(self.db_path)
        return self._db

    def poll(self, *, spans: bool = True, runs: bool = True) -> Gained:
        """What the store gained; with `spans`, each new span (else only the counts: a server nobody watches
        needs no per-span work), with `runs`, the summaries of the runs it touched."""
        counts: dict[str, tuple[int, bool]] = {}
        out: list[dict[str, Any]] = []
        rows = self.db.execute("SELECT id, trace_id, n, cols FROM chunks WHERE id > ? ORDER BY id LIMIT ?",
                               (self.last_chunk, MAX_CHUNKS)).fetchall()
        for chunk_id, trace_id, n, cols in rows:
            self.last_chunk = chunk_id
            c = decode(cols)
            had = counts.get(trace_id, (0, False))
            counts[trace_id] = (had[0] + n, had[1] or bool(c.get("roots")))
            if spans:
                out.extend(_spans(trace_id, c))
        summaries: dict[str, TraceSummary] = {}
        if runs:
            for tid in dict.fromkeys([*self._unsummarized, *counts]):
                try:
                    summaries[tid] = query.summary(self.db, tid)
                    self._unsummarized.discard(tid)
                except TraceNotFound:  # chunks are committed before the summary: next time
                    self._unsummarized.add(tid)
        return Gained(counts, out, summaries, len(rows) == MAX_CHUNKS)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def chunk_spans(trace_id: str, cols: bytes) -> list[dict[str, Any]]:
    """A stored chunk's spans as small dicts (SPAN_FIELDS and the trace id), decoded as loading does."""
    return _spans(trace_id, decode(cols))


def _spans(trace_id: str, c: ChunkCols) -> list[dict[str, Any]]:
    ts = TraceSpans(trace_id)
    for batch in c["batches"]:
        append_batch(ts, batch)
    columns = [getattr(ts, f) for f in SPAN_FIELDS]
    return [{"trace_id": trace_id, **dict(zip(SPAN_FIELDS, values, strict=True))}
            for values in zip(*columns, strict=True)]
