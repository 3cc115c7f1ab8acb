"""The plain values of the store interface (`store.api`): where a store is (`Location`, parsed from `--db`), and
what its methods take and return. Below both backends and the interface, so the backends import these without
importing the interface that opens them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from agent_debug.errors import UsageError

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
