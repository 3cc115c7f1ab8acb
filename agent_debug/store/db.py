"""The embedded store: SQLite in WAL mode, schema changed only through ordered, named migrations run on open.

Layout (why): spans are kept per trace in *chunks*: one row holds the analysis columns of many spans
(MessagePack column lists) and their verbatim records (compressed JSON lines). A row per span would cost a
B-tree insert per record; chunks cost one per trace per batch, and the analysis columns load without parsing
any JSON. `traces` holds one summary row per run for listing and filtering.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from agent_debug.errors import StoreError

SCHEMA_VERSION_NAME = "agent_debug_store"


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: `executescript` would COMMIT the migration's transaction half-way."""
    for stmt in script.split(";"):
        body = "\n".join(line.split("--", 1)[0] for line in stmt.splitlines()).strip()
        if body:
            db.execute(body)


def _m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            trace_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            cols BLOB NOT NULL,        -- msgpack: column lists of the spans in this chunk
            records BLOB NOT NULL,     -- compressed JSON lines, one record per span, in column order
            codec TEXT NOT NULL,       -- 'zlib' (isal or stdlib zlib write the same format)
            ingest_id INTEGER
        );
        CREATE INDEX chunks_trace ON chunks(trace_id);
        CREATE TABLE traces (
            trace_id TEXT PRIMARY KEY,
            root_span_id TEXT,
            run_id TEXT,
            session_id TEXT,
            workflow TEXT,
            actor TEXT,
            status TEXT,               -- passed | failed | error | unknown
            start_ns INTEGER,
            end_ns INTEGER,
            duration_ns INTEGER,
            span_count INTEGER,
            roots INTEGER,
            agents TEXT,               -- JSON list
            error_spans INTEGER,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            source_file TEXT,
            source_format TEXT,
            updated_at REAL
        ) WITHOUT ROWID;
        CREATE INDEX traces_start ON traces(start_ns);
        CREATE INDEX traces_session ON traces(session_id);
        CREATE TABLE conflicts (
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            hash INTEGER NOT NULL,
            record BLOB NOT NULL,
            source TEXT,
            location TEXT,
            seen_at REAL
        );
        CREATE UNIQUE INDEX conflicts_key ON conflicts(trace_id, span_id, hash);
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            size INTEGER,
            mtime REAL,
            offset INTEGER,            -- bytes of (decompressed) content consumed up to the last complete record
            line INTEGER,
            head_len INTEGER,
            head_hash TEXT,            -- sha1 of the first head_len content bytes: recognises a rotated copy
            compressed INTEGER,
            complete INTEGER,
            records INTEGER,
            updated_at REAL
        ) WITHOUT ROWID;
        CREATE INDEX files_head ON files(head_hash);
        CREATE TABLE ingests (
            id INTEGER PRIMARY KEY,
            started_at REAL,
            seconds REAL,
            files INTEGER,
            records INTEGER,
            duplicates INTEGER,
            rejected INTEGER,
            conflicts INTEGER,
            traces INTEGER
        );
        """
    )


def _m002_verdicts(db: sqlite3.Connection) -> None:
    """Human verdicts on runs (`agent-debug mark`): kept beside the traces, never written into them, so a re-ingest
    keeps them and the files stay as the agent wrote them."""
    _script(
        db,
        """
        CREATE TABLE verdicts (
            trace_id TEXT PRIMARY KEY,
            passed INTEGER NOT NULL,   -- 1 passed, 0 failed
            reason TEXT,
            source TEXT,               -- 'mark' or the verdict file it came from
            marked_at REAL
        ) WITHOUT ROWID;
        """
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_initial", _m001_initial),
    ("002_verdicts", _m002_verdicts),
]


def default_path() -> Path:
    env = os.environ.get("AGENT_DEBUG_DB")
    return Path(env) if env else Path(".agent-debug") / "traces.db"


# Chunks are blobs of tens of KB: with 64 KiB pages instead of 4 KiB they take one page instead of a chain of
# overflow pages, and inserting them costs about a quarter as much. The page size of a file is fixed when it is
# first written, so it is set only when the store is created.
PAGE_SIZE = 65536


def connect(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> sqlite3.Connection:
    """Open (creating if asked) the store and run pending migrations. Raises StoreError on a bad file."""
    p = Path(path) if path is not None else default_path()
    new = not p.exists()
    if new:
        if not create:
            raise StoreError(f"no store at {p} (run `agent-debug ingest PATH` first, or use --from PATH)")
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(p, isolation_level=None, timeout=30)
        if new:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open store {p}: {exc}") from None
    return db


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet applied, in order, each in its own transaction. Returns their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    known = {name for name, _ in MIGRATIONS}
    newer = done - known
    if newer:
        raise StoreError(f"store was written by a newer agent-debug (migrations {sorted(newer)}); upgrade to read it")
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
