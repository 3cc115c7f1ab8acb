"""A SQLite cache of judge scores, so re-running an evaluation sends no request for what was already judged.

Only `scored` results are stored: an unscored result (timeout, unparseable reply) is asked again next time.
The schema is built by ordered, named migrations run on every open (`_migrations` records which ran).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

from agent_debug.errors import StoreError
from agent_debug.eval.judge import JudgeScore
from agent_debug.store.db import to_wal

CACHE_FILE = "judge_cache.db"

# (name, SQL), applied in order, each once. Append new ones; never edit or reorder applied ones.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "001_create_judge_scores",
        """
        CREATE TABLE judge_scores (
            task_hash TEXT NOT NULL,
            expected_hash TEXT NOT NULL,
            actual_hash TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            repeat_index INTEGER NOT NULL,
            score_json TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (task_hash, expected_hash, actual_hash, model, prompt_version, repeat_index)
        )
        """,
    ),
)


class CacheKey(NamedTuple):
    """What makes two judgements the same judgement."""

    task_hash: str
    expected_hash: str
    actual_hash: str
    model: str
    prompt_version: str
    repeat_index: int


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def default_cache_path() -> Path:
    """`$AGENT_DEBUG_HOME/judge_cache.db`, else under `~/.cache/agent-debug`."""
    home = os.environ.get("AGENT_DEBUG_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "agent-debug"
    return base / CACHE_FILE


class JudgeCache:
    """Judge scores by (task, expected, actual, model, prompt version, repeat index); WAL so readers never block."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            to_wal(self._conn, 5.0)  # two `eval --judge` runs creating the cache at once: the loser waits
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"judge cache {self.path} cannot be opened: {exc}") from None
        except OSError as exc:
            raise StoreError(f"judge cache {self.path} cannot be created: {exc}") from None

    @staticmethod
    def key_for(task: str, expected: str | None, actual: str, *, model: str, prompt_version: str,
                repeat: int) -> CacheKey:
        """Hashes keep the table small and keep outputs (which may be sensitive) out of the cache file.

        The task is part of the key although the issue names only expected and actual: the same output can be
        right for one task and wrong for another ("42" answers some questions), so two cases sharing an
        output must not share a score. `expected=None` gets its own marker, distinct from the empty string.
        """
        expected_hash = "-" if expected is None else _digest(expected)
        return CacheKey(_digest(task), expected_hash, _digest(actual), model, prompt_version, repeat)

    def get(self, key: CacheKey) -> JudgeScore | None:
        """The stored score, or None; a row that no longer validates is treated as a miss."""
        with self._lock:
            row = self._conn.execute(
                "SELECT score_json FROM judge_scores WHERE task_hash = ? AND expected_hash = ? AND actual_hash = ?"
                " AND model = ? AND prompt_version = ? AND repeat_index = ?",
                tuple(key),
            ).fetchone()
        if row is None:
            return None
        try:
            return JudgeScore.model_validate_json(row[0])
        except ValidationError:
            return None

    def put(self, key: CacheKey, score: JudgeScore) -> bool:
        """Store a scored result; unscored ones are refused (returns False) so they are retried later."""
        if score.status != "scored":
            return False
        payload = score.model_copy(update={"cached": False, "attempts": 0}).model_dump_json()
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO judge_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, payload, time.time()),
            )
        return True

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judge_scores").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        """Apply missing migrations in order, each in its own transaction; refuse a newer schema by name."""
        conn = self._conn
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        applied = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        known = {name for name, _ in MIGRATIONS}
        unknown = sorted(applied - known)
        if unknown:
            raise StoreError(f"judge cache {self.path} has a newer schema (migration {unknown[0]}); "
                             "upgrade agent-debug or delete the cache")
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                    conn.execute(sql)
                    conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
