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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import StoreError, UsageError
from agent_debug.store.query import TraceFilter
from agent_debug.store.verdicts import Verdict

Kind = Literal["sqlite", "chdb", "clickhouse"]
EXTRA_HINT = "pip install 'agent-debug[clickhouse]'"


@dataclass(frozen=True)
class Location:
    """Where a store is, parsed from `--db`."""

    kind: Kind
    text: str  # as given
    path: Path | None = None  # the SQLite file, or chdb's directory
    host: str = ""
    port: int = 0
    user: str = "default"
    password: str = field(default="", repr=False)
    database: str = "agent_debug"
    secure: bool = False
    options: dict[str, str] = field(default_factory=dict)  # ?key=value: ttl_days

    @property
    def shown(self) -> str:
        """The location as messages show it: never the password."""
        if self.kind == "sqlite":
            return str(self.path)
        if self.kind == "chdb":
            database = self.options.get("database")
            return f"chdb://{self.path}" + (f"?database={database}" if database else "")
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_location(text: str | os.PathLike[str]) -> Location:
    """A `--db` value as a Location. A value with no scheme is a SQLite file path."""
    raw = os.fspath(text)
    scheme, sep, rest = raw.partition("://")
    if not sep or "/" in scheme or "\\" in scheme:
        return Location("sqlite", raw, path=Path(raw))
    scheme = scheme.lower()
    body, _, query = rest.partition("?")
    options = dict(parse_qsl(query))
    if scheme == "sqlite":
        return Location("sqlite", raw, path=Path(unquote(body)))
    if scheme == "chdb":
        if not body:
            raise UsageError(f"--db {raw}: a chdb store needs a directory, e.g. chdb:///var/lib/agent-debug")
        return Location("chdb", raw, path=Path(unquote(body)), options=options)
    if scheme in ("clickhouse", "clickhouses"):
        return _server_location(raw, scheme == "clickhouses", options)
    raise UsageError(f"--db {raw}: unknown store scheme {scheme!r} (a file path, chdb:///DIR or "
                     "clickhouse://[user[:password]@]host[:port]/database)")


def _server_location(raw: str, secure: bool, options: dict[str, str]) -> Location:
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--db {_masked(raw)}: the port is not a number") from None
    if not parts.hostname:
        raise UsageError(f"--db {_masked(raw)}: no host (clickhouse://[user[:password]@]host[:port]/database)")
    database = unquote(parts.path.strip("/")) or "agent_debug"
    if "/" in database or not database.replace("_", "a").isalnum():
        raise UsageError(f"--db {_masked(raw)}: the database name {database!r} must be letters, digits and _")
    return Location("clickhouse", raw, host=parts.hostname, port=port or (8443 if secure else 8123),
                    user=unquote(parts.username or "default"), password=unquote(parts.password or ""),
                    database=database, secure=secure, options=options)


def _masked(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.password is None:
        return raw
    return raw.replace(f":{parts.password}@", ":***@", 1)


def default_location() -> str:
    """`$AGENT_DEBUG_DB`, else ./.agent-debug/traces.db."""
    env = os.environ.get("AGENT_DEBUG_DB")
    return env if env else str(Path(".agent-debug") / "traces.db")


@dataclass
class Conflict:
    """A span seen again with other content than the stored one (kept verbatim, never shown as the span)."""

    trace_id: str
    span_id: str
    hash: int
    record: bytes
    seen_at: float


@dataclass
class FileOffset:
    """How far ingest has read one file (what lets the next ingest go on from there)."""

    path: str
    size: int
    mtime: float
    offset: int
    line: int
    head_len: int
    head_hash: str
    compressed: bool
    complete: bool
    records: int
    updated_at: float

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.path, self.size, self.mtime, self.offset, self.line, self.head_len, self.head_hash,
                int(self.compressed), int(self.complete), self.records, self.updated_at)


@dataclass
class StoreCounts:
    """What a store holds, as `store copy` compares it."""

    traces: int
    spans: int
    conflicts: int
    rejects: int
    verdicts: int
    files: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


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
