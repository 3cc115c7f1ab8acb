"""What the commands need from a store, whichever engine keeps it: one interface, two backends.

`--db` (or `$AGENT_DEBUG_DB`) names the store:

- a file path (or `sqlite:///path`): the embedded SQLite store (`store.sqlite_store`), the default;
- `chdb:///path/to/dir`: ClickHouse's engine embedded in this process (chdb), its data in that directory;
- `clickhouse://[user[:password]@]host[:port]/database`: a ClickHouse server over HTTP (clickhouse-connect;
  `clickhouses://` for HTTPS). Default port 8123 (8443), user `default`, database `agent_debug`.

Both ClickHouse forms are the same backend (`store.clickhouse`), behind the `clickhouse` extra; without it they
are a one-line store error (exit 5) naming the extra. Every command reads and writes through `Store`, so a
command works the same on either backend, and `store copy` moves a store between them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import StoreError
from agent_debug.store.query import TraceFilter
from agent_debug.store.types import (
    EXTRA_HINT,
    Conflict,
    FileOffset,
    Kind,
    Location,
    StoreCounts,
    default_location,
    parse_location,
)
from agent_debug.store.verdicts import MarkResult, Verdict

__all__ = ["EXTRA_HINT", "Conflict", "FileOffset", "Kind", "Location", "Store", "StoreCounts", "default_location",
           "mark", "open_store", "parse_location"]

class Store(Protocol):
    """A store of traces, as the commands use it (SQLite: `SqliteStore`; ClickHouse: `ClickHouseStore`)."""

    location: Location

    def close(self) -> None: ...

    # -- reading --------------------------------------------------------------------------------------------------
    def notices(self) -> list[str]:
        """What a reader must be told about the store (records rejected at ingest, spans seen in two versions)."""

    def list_traces(self, flt: TraceFilter | None = None) -> list[TraceSummary]: ...

    def resolve(self, prefix: str) -> str:
        """A full trace id from an id or unique prefix. Raises TraceNotFound / AmbiguousTrace."""

    def summary(self, trace_id: str) -> TraceSummary: ...

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        """A trace's columns; `records`: False, True (every record parsed) or "lazy" (read when asked for)."""

    def record_lines(self, trace_id: str) -> list[bytes]:
        """The trace's records as stored (one JSON line each, no newline), in the order `load` gives."""

    def counts(self) -> StoreCounts: ...

    # -- verdicts (`agent-debug mark`) ------------------------------------------------------------------------
    def verdicts(self) -> dict[str, Verdict]: ...

    def put_verdicts(self, verdicts: list[Verdict]) -> int: ...

    def clear_verdicts(self, trace_ids: list[str]) -> int: ...

    # -- bookkeeping ----------------------------------------------------------------------------------------------
    def conflicts(self) -> list[Conflict]: ...

    def rejects(self) -> list[dict[str, Any]]:
        """Records rejected at ingest, as the rejects file holds them ({source, location, reason, raw|raw_base64})."""

    def files(self) -> list[FileOffset]: ...

    # -- writing ----------------------------------------------------------------------------------------------------
    def ingest(self, paths: Iterable[str | os.PathLike[str]], *, format: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Any:
        """Ingest trace files (`store.ingest.IngestResult`)."""

    def put_bookkeeping(self, files: list[FileOffset], conflicts: list[Conflict],
                        rejects: list[dict[str, Any]]) -> None:
        """Take over another store's file offsets, conflicts and rejects (`store copy`)."""

    def forget_files(self, paths: list[str]) -> None:
        """Drop these files' offsets (a copy's staging files)."""


def open_store(location: str | os.PathLike[str] | Location | None = None, *, create: bool = True) -> Store:
    """The store `--db` names (default: `default_location()`). `create=False` (the read commands): a store that
    does not exist is a StoreError, not an empty one."""
    loc = location if isinstance(location, Location) else parse_location(
        location if location is not None else default_location())
    if loc.kind == "sqlite":
        from agent_debug.store.sqlite_store import SqliteStore

        return SqliteStore(loc, create=create)
    try:
        from agent_debug.store.clickhouse.store import ClickHouseStore
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in ("chdb", "clickhouse_connect"):
            raise StoreError(f"--db {loc.shown} needs ClickHouse support ({missing} is not installed): "
                             f"{EXTRA_HINT}") from None
        raise
    return ClickHouseStore(loc, create=create)


def mark(location: str | os.PathLike[str] | None, traces: list[str], passed: bool | None,
         reason: str | None = None) -> MarkResult:
    """`agent-debug mark`: record that these runs (ids or unique prefixes) passed or failed, in whichever store
    `location` names; `passed=None` forgets their verdicts."""
    store = open_store(location, create=False)
    try:
        ids = list(dict.fromkeys(store.resolve(t) for t in traces))
        if passed is None:
            return MarkResult([], ids, store.clear_verdicts(ids))
        marked = [Verdict(t, passed, reason) for t in ids]
        store.put_verdicts(marked)
        return MarkResult(marked, None, len(marked))
    finally:
        store.close()
