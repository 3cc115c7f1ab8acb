"""The embedded SQLite store behind the `Store` interface: the functions of `store.db`, `store.query`,
`store.load`, `store.ingest` and `store.verdicts`, unchanged, with SQLite's failures raised as StoreError."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import StoreError
from agent_debug.store import query, verdicts as verdict_store
from agent_debug.store.chunks import record_lines
from agent_debug.store.db import connect
from agent_debug.store.query import TraceFilter
from agent_debug.store.types import Conflict, FileOffset, Location, StoreCounts
from agent_debug.store.verdicts import Verdict


class SqliteStore:
    """A SQLite store file. The connection opens on first use: `ingest` opens its own (and creates the file)."""

    def __init__(self, location: Location, *, create: bool = True) -> None:
        assert location.path is not None
        self.location = location
        self.path: Path = location.path
        self._create = create
        self._db: sqlite3.Connection | None = None
        if not create:
            self._db = connect(self.path, create=False)  # a missing or newer store fails here, as before

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(self.path, create=self._create)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path} could not be read: {exc}") from None

    # -- reading ------------------------------------------------------------------------------------------------

    def notices(self) -> list[str]:
        with self._reading():
            return query.store_notices(self.db, self.path)

    def list_traces(self, flt: TraceFilter | None = None) -> list[TraceSummary]:
        with self._reading():
            return query.list_traces(self.db, flt)

    def resolve(self, prefix: str) -> str:
        with self._reading():
            return query.resolve_trace(self.db, prefix)

    def summary(self, trace_id: str) -> TraceSummary:
        with self._reading():
            return query.summary(self.db, trace_id)

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        with self._reading():
            return query.load_trace(self.db, trace_id, records=records)

    def record_lines(self, trace_id: str) -> list[bytes]:
        out: list[bytes] = []
        with self._reading():
            for (blob,) in self.db.execute("SELECT records FROM chunks WHERE trace_id = ? ORDER BY id", (trace_id,)):
                lines = record_lines(blob)
                lines.pop()  # after the last line's newline
                out.extend(lines)
        return out

    def counts(self) -> StoreCounts:
        with self._reading():
            one = self.db.execute
            return StoreCounts(
                traces=int(one("SELECT COUNT(*) FROM traces").fetchone()[0]),
                spans=int(one("SELECT COALESCE(SUM(n), 0) FROM chunks").fetchone()[0]),
                conflicts=int(one("SELECT COUNT(*) FROM conflicts").fetchone()[0]),
                rejects=len(self.rejects()),
                verdicts=len(self.verdicts()),
                files=int(one("SELECT COUNT(*) FROM files").fetchone()[0]))

    # -- verdicts -------------------------------------------------------------------------------------------------

    def verdicts(self) -> dict[str, Verdict]:
        with self._reading():
            return verdict_store.load(self.db)

    def put_verdicts(self, verdicts: list[Verdict]) -> int:
        return verdict_store.put(self.db, verdicts)

    def clear_verdicts(self, trace_ids: list[str]) -> int:
        return verdict_store.clear(self.db, trace_ids)

    # -- bookkeeping ----------------------------------------------------------------------------------------------

    def conflicts(self) -> list[Conflict]:
        with self._reading():
            return [Conflict(t, s, int(h), bytes(r), float(at or 0.0)) for t, s, h, r, at in self.db.execute(
                "SELECT trace_id, span_id, hash, record, seen_at FROM conflicts ORDER BY rowid")]

    def rejects(self) -> list[dict[str, Any]]:
        """The rejects file's entries up to its committed size (what a finished ingest wrote)."""
        from agent_debug.store.ingest import rejects_path

        path = rejects_path(self.path)
        if not path.exists():
            return []
        with self._reading():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'rejects_size'").fetchone()
        data = path.read_bytes()
        if row is not None:
            data = data[: int(row[0])]
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]

    def files(self) -> list[FileOffset]:
        with self._reading():
            return [FileOffset(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), bool(r[8]), r[9], r[10])
                    for r in self.db.execute("SELECT path, size, mtime, offset, line, head_len, head_hash, "
                                             "compressed, complete, records, updated_at FROM files ORDER BY path")]

    # -- writing --------------------------------------------------------------------------------------------------

    def ingest(self, paths: Iterable[str | os.PathLike[str]], *, format: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Any:
        from agent_debug.store.ingest import ingest

        return ingest(paths, self.path, format=format, progress=progress)

    def put_bookkeeping(self, files: list[FileOffset], conflicts: list[Conflict],
                        rejects: list[dict[str, Any]]) -> None:
        """In one transaction: the offsets, the conflicts, and the rejects appended to the rejects file (counted
        by an `ingests` row, as an ingest that rejected them would be)."""
        from agent_debug.store.ingest import rejects_path

        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)", [f.as_tuple() for f in files])
            db.executemany("INSERT OR IGNORE INTO conflicts VALUES (?,?,?,?,?,?,?)",
                           [(c.trace_id, c.span_id, c.hash, c.record, None, None, c.seen_at) for c in conflicts])
            if rejects:
                path = rejects_path(self.path)
                row = db.execute("SELECT value FROM meta WHERE key = 'rejects_size'").fetchone()
                with open(path, "ab") as fh:
                    if row is not None:
                        fh.truncate(int(row[0]))
                    fh.write(b"".join(orjson.dumps(_reject_entry(r)) + b"\n" for r in rejects))
                    fh.flush()
                    size = fh.tell()
                db.execute("INSERT INTO ingests (started_at, seconds, files, records, duplicates, rejected, "
                           "conflicts, traces) VALUES (?, 0, 0, 0, 0, ?, 0, 0)", (time.time(), len(rejects)))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('rejects_size', ?)", (size,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def forget_files(self, paths: list[str]) -> None:
        self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])


def _reject_entry(r: dict[str, Any]) -> dict[str, Any]:
    """A reject as the rejects file keeps it (raw text, or base64 for bytes that are not UTF-8)."""
    out = {k: r.get(k) for k in ("source", "location", "reason", "ingest")}
    raw = r.get("raw")
    if isinstance(raw, bytes):
        try:
            out["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            out["raw_base64"] = base64.b64encode(raw).decode()
    elif raw is not None:
        out["raw"] = raw
    elif r.get("raw_base64") is not None:
        out["raw_base64"] = r["raw_base64"]
    return out
