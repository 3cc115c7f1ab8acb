"""The embedded store: SQLite in WAL mode, schema changed only through ordered, named migrations run on open.

Layout (why): spans are kept per trace in *chunks*: one row holds the analysis columns of many spans (a JSON
object of column lists, versioned per chunk) and their verbatim records (zlib-compressed JSON lines); the
format, its writer and its reader are `store.chunks`. A row per span would cost a B-tree insert per record;
chunks cost one per trace per batch, and the analysis columns load with one JSON parse per chunk and a few
C-level passes, without parsing any record. `traces` holds one summary row per run for listing and filtering.

Consistency (why ingest writes a file at a time): one transaction holds a file's chunks, the summaries of the
traces they touch and the file's new offset, so every committed state is one a reader may see and an ingest may
go on from: an ingest killed at any point leaves the store as it was after its last whole file.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

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
            cols BLOB NOT NULL,        -- JSON: column lists of the spans in this chunk (store.chunks)
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


def _m002_meta(db: sqlite3.Connection) -> None:
    # small facts about the store as a whole (the rejects file's committed size: see `store.ingest`)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")


def _m003_summaries_of_interrupted_ingests(db: sqlite3.Connection) -> None:
    # before 003, an ingest that stopped between writing chunks and writing summaries (a crash, a bad file) left
    # spans no `traces` row lists, and later ingests skipped their files: summarize those traces once
    from agent_debug.store.consistency import summarize_unlisted

    summarize_unlisted(db)


def _m004_verdicts(db: sqlite3.Connection) -> None:
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
    ("002_meta", _m002_meta),
    ("003_summaries_of_interrupted_ingests", _m003_summaries_of_interrupted_ingests),
    ("004_verdicts", _m004_verdicts),
]


def rejects_path(db_path: Path) -> Path:
    """The file beside the store that keeps rejected records verbatim (`store.ingest`)."""
    return db_path.with_name(db_path.stem + ".rejects.jsonl")


def default_path() -> Path:
    env = os.environ.get("AGENT_DEBUG_DB")
    return Path(env) if env else Path(".agent-debug") / "traces.db"


# Chunks are blobs of tens of KB: with 64 KiB pages instead of 4 KiB they take one page instead of a chain of
# overflow pages, and inserting them costs about a quarter as much. The page size of a file is fixed when it is
# first written, so it is set only when the store is created.
PAGE_SIZE = 65536


# The WAL file is reset after a checkpoint but keeps its size; one big file's transaction could leave it at
# hundreds of MB. Truncated back to this after a checkpoint.
WAL_SIZE_LIMIT = 64 << 20

BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's lock


def connect(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> sqlite3.Connection:
    """Open (creating if asked) the store and run pending migrations. Raises StoreError on a bad file.

    Without `create` (the read commands), a store that cannot be written (a read-only file, folder or mount)
    is opened read-only instead: reading needs no write, not even of the WAL's side files."""
    p = Path(path) if path is not None else default_path()
    new = not p.exists()
    if new:
        if not create:
            raise StoreError(f"no store at {p} (run `agent-debug ingest PATH` first, or use --from PATH)")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder must be, no permission, ...
            raise StoreError(f"cannot create a store at {p}: {exc.strerror or exc}: {exc.filename or p.parent}"
                             ) from None
    if not create and not _writable(p):
        return connect_readonly(p)
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(p, isolation_level=None, timeout=BUSY_TIMEOUT)
        if new:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        to_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        migrate(db)
    except sqlite3.OperationalError as exc:
        if db is not None:
            db.close()
        if create or not _cannot_write(exc):
            raise StoreError(f"cannot open store {p}: {exc}") from None
        return connect_readonly(p)
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        raise StoreError(f"cannot open store {p}: {exc}") from None
    return db


def to_wal(db: sqlite3.Connection, timeout: float = BUSY_TIMEOUT) -> None:
    """Put a database in write-ahead-log mode. Switching needs an exclusive lock, and SQLite reports "database is
    locked" at once, without waiting, when another process holds one (two ingests creating a store at the same
    moment: 6-9 of 120 opens failed so): wait and try again, for as long as any other lock is waited for."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _writable(p: Path) -> bool:
    """Whether this process may write the store and create its WAL side files (False on a read-only mount)."""
    side = [p.with_name(p.name + s) for s in ("-wal", "-shm")]
    return os.access(p, os.W_OK) and os.access(p.parent, os.W_OK | os.X_OK) and all(
        os.access(f, os.W_OK) for f in side if f.exists())


def _cannot_write(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "readonly" in msg or "read-only" in msg or "unable to open" in msg


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open the store for reading only: nothing is written, no migration runs.

    A store with no write-ahead log beside it (closed cleanly: its file holds every committed write) is opened
    `immutable`: SQLite then makes no side files at all. (With `mode=ro` alone it would create `-wal` and
    `-shm` files it cannot remove, owned by the reader, which would then stop the store's owner writing.)
    With a log, the writes in it must be read too: `mode=ro`, through the `-shm` index, which must exist or be
    creatable; a store with a log but no index in a folder nobody may write is refused rather than read
    without the log's writes."""
    p = Path(path)
    wal, shm = p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm")
    params = "mode=ro"
    if not (wal.exists() and wal.stat().st_size > 0):
        params += "&immutable=1"
    elif not shm.exists() and not os.access(p.parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot read store {p}: its write-ahead log {wal.name} has no {shm.name} index and "
                         "the folder is read-only (open it once where it can be written)")
    try:
        db = sqlite3.connect(f"file:{quote(str(p.resolve()))}?{params}", uri=True, isolation_level=None,
                             timeout=BUSY_TIMEOUT)
        names = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open store {p} read-only: {exc}") from None
    try:
        refuse_newer(names)
    except StoreError:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet applied, in order, each in its own transaction. Returns their names.

    Whether one is applied is checked inside its transaction: two processes opening a new store at once
    (two ingests) apply each migration once."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    refuse_newer(done)
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                applied.append(name)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return applied


def refuse_newer(done: set[str]) -> None:
    """Raise StoreError if the store has migrations this version does not know (a newer version wrote it)."""
    newer = done - {name for name, _ in MIGRATIONS}
    if newer:
        raise StoreError(f"store was written by a newer agent-debug (migrations {sorted(newer)}); upgrade to read it")
