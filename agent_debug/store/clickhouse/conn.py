"""One way to talk to ClickHouse, embedded (chdb) or over HTTP (clickhouse-connect): SQL text with `{name:Type}`
parameters in, bytes in a named format out; inserts as bytes in a named input format.

Both transports see the same SQL and the same bytes, so the store's code is one, and the suite's chdb runs test
what a server gets. The formats the store uses (what a stand-in server must answer: `tests/clickhouse_http_server.py`):
output `JSONCompactColumns`, `JSONEachRow` and `TSVRaw`, input `JSONColumns`; parameters are bound by the
engine (`param_NAME` over HTTP), never pasted into SQL.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from agent_debug.errors import StoreError
from agent_debug.store.types import EXTRA_HINT, Location

if sys.platform != "win32":  # Windows has no flock
    import fcntl

# session settings every query runs with: 64-bit integers as JSON numbers (orjson reads them exactly), and
# inserts that may span many months of partitions (a file may hold old and new spans)
SETTINGS: dict[str, Any] = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 0,
    "throw_on_max_partitions_per_insert_block": 0,
    # ingest inserts no span twice (it dedupes first): no collapsing pass over each inserted block (merges and
    # FINAL still collapse what two writers insert)
    "optimize_on_insert": 0,
    # a record (a JSON object) inserted into a String column is kept as its text (store.clickhouse.ingest._block)
    "input_format_json_read_objects_as_strings": 1,
    # the cluster form: an insert into a Distributed table is on its shards when it returns (ingest reads what it
    # wrote), and a query naming one trace goes to that trace's shard only
    "distributed_foreground_insert": 1,
    "optimize_skip_unused_shards": 1,
}
LOCK_WAIT_ENV = "AGENT_DEBUG_LOCK_WAIT"  # seconds to wait for a chdb store another process has open (default 30)


class Conn(Protocol):
    location: Location

    def query(self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompactColumns") -> bytes: ...

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...

    def insert(self, table: str, columns: list[str], data: bytes, fmt: str = "JSONColumns") -> None: ...

    def close(self) -> None: ...


def connect(location: Location, *, create: bool) -> Conn:
    if location.kind == "chdb":
        return ChdbConn(location, create=create)
    return HttpConn(location)


_REFUSED = re.compile(r"\[Errno -?\d+\] ([^\"')(]+)")


def one_line(exc: BaseException) -> str:
    """An engine's error as one line: its first line, without the stack trace chdb and servers append; a
    connection that failed as the system's reason (not urllib3's retry story)."""
    text = str(exc).strip()
    if "Code: " not in text and (found := _REFUSED.search(text)):
        return f"cannot connect: {found.group(1).strip()}"
    at = text.find("Code: ")
    if at > 0:
        text = text[at:]
    first = text.splitlines()[0] if text else type(exc).__name__
    return first.split(". Stack trace")[0][:500]


# -- chdb ---------------------------------------------------------------------------------------------------------


def param_text(value: Any) -> str:
    """A parameter's value in ClickHouse's escaped text form (what `param_NAME` carries over HTTP)."""
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return "\\N"
    return str(value)


def _escape(s: str) -> str:
    if "\\" in s or "\t" in s or "\n" in s or "'" in s or "`" in s or "\r" in s:
        s = (s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
             .replace("'", "\\'").replace("`", "\\`"))
    return s


def _literal(v: Any) -> str:
    if isinstance(v, str):
        return "'" + _escape(v) + "'"
    if v is None:
        return "NULL"
    return str(v)


class ChdbConn:
    """ClickHouse embedded in this process (chdb), its data in one directory.

    chdb lets one process at a time open a directory; a second one fails with an engine error (and a line on
    stderr). So every process takes an flock beside the data first and holds it while the store is open:
    a command waits for another (up to $AGENT_DEBUG_LOCK_WAIT seconds, default 30) instead of failing."""

    def __init__(self, location: Location, *, create: bool) -> None:
        chdb_session = _import_chdb(location)
        self.location = location
        assert location.path is not None
        path = Path(location.path).expanduser()
        if not path.exists():
            if not create:
                raise StoreError(f"no store at {location.shown} (run `agent-debug ingest PATH --db "
                                 f"{location.text}` first, or use --from PATH)")
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create a store at {location.shown}: {exc.strerror or exc}") from None
        elif not path.is_dir():
            raise StoreError(f"cannot open store {location.shown}: {path} is not a directory")
        self._lock_key: str | None = _lock(path, location)
        self._path = str(path.resolve())
        if location.options.get("config"):  # a ClickHouse config file for the engine (clusters, macros)
            self._path += "?" + urlencode({"config-file": str(Path(location.options["config"]).resolve())})
        try:
            self._session = chdb_session.Session(self._path)
            for key, value in SETTINGS.items():
                self._session.query(f"SET {key} = {value}")
        except Exception as exc:
            self._unlock()
            raise StoreError(f"cannot open store {location.shown}: {one_line(exc)}") from None

    @classmethod
    def sibling_of(cls, conn: ChdbConn) -> ChdbConn:
        """A second session on the same engine and data (this process holds the lock already)."""
        chdb_session = _import_chdb(conn.location)

        out = cls.__new__(cls)
        out.location = conn.location
        out._path = conn._path
        out._lock_key = _lock(Path(conn._path.partition("?")[0]), conn.location)
        out._session = chdb_session.Session(conn._path)
        for key, value in SETTINGS.items():
            out._session.query(f"SET {key} = {value}")
        return out

    def query(self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompactColumns") -> bytes:
        try:
            res = self._session.query(sql, fmt, params=_texts(params))
        except Exception as exc:
            raise StoreError(f"store {self.location.shown}: {one_line(exc)}") from None
        data: bytes = res.bytes()  # (chdb is not annotated)
        return data

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.query(sql, params, "TSV")

    def insert(self, table: str, columns: list[str], data: bytes, fmt: str = "JSONColumns") -> None:
        try:
            ins = self._session.send_insert(f"INSERT INTO {table} ({', '.join(columns)})", fmt)
            ins.append(data)
            ins.finish()
        except Exception as exc:
            raise StoreError(f"store {self.location.shown}: insert into {table}: {one_line(exc)}") from None

    def close(self) -> None:
        session, self._session = getattr(self, "_session", None), None
        if session is not None:
            session.close()
        self._unlock()

    def _unlock(self) -> None:
        key, self._lock_key = getattr(self, "_lock_key", None), None
        if key is not None:
            _unlock(key)


def _import_chdb(location: Location) -> Any:
    """chdb's session module. chdb imports pyarrow when it can, for Arrow results the store never asks for; kept
    out (when nothing imported it before), a command starts 0.3-0.4 s sooner. pyarrow imports normally later."""
    blocked = "pyarrow" not in sys.modules
    if blocked:
        sys.modules["pyarrow"] = None  # type: ignore[assignment]  # None there makes `import pyarrow` fail
    try:
        from chdb import session as chdb_session
    except ImportError:
        raise StoreError(f"--db {location.shown} needs chdb, which is not installed: {EXTRA_HINT}") from None
    finally:
        if blocked and sys.modules.get("pyarrow", 0) is None:
            del sys.modules["pyarrow"]
    return chdb_session


def _texts(params: dict[str, Any] | None) -> dict[str, str] | None:
    return {k: param_text(v) for k, v in params.items()} if params else None


_held: dict[str, list[int]] = {}  # directory -> [lock fd, users in this process]


def _lock(path: Path, location: Location) -> str:
    """Hold an exclusive flock on DIR/agent-debug.lock (waiting for another process to let go); stores of one
    directory opened again in this process share it (chdb shares its engine between them)."""
    key = str(path.resolve())
    held = _held.get(key)
    if held is not None:
        held[1] += 1
        return key
    try:
        fd = os.open(path / "agent-debug.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open store {location.shown}: {exc.strerror or exc}") from None
    wait = float(os.environ.get(LOCK_WAIT_ENV) or 30)
    deadline = time.monotonic() + wait
    while sys.platform != "win32":
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StoreError(f"store {location.shown} is open in another process (chdb opens a store in one "
                                 f"process at a time; waited {wait:g}s)") from None
            time.sleep(0.05)
    _held[key] = [fd, 1]
    return key


def _unlock(key: str) -> None:
    held = _held.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _held[key]
        os.close(held[0])  # releases the flock


# -- HTTP ---------------------------------------------------------------------------------------------------------


class HttpConn:
    """A ClickHouse server through clickhouse-connect's HTTP client (`raw_query`, `raw_insert`, `command`)."""

    def __init__(self, location: Location) -> None:
        try:
            import clickhouse_connect
            from clickhouse_connect.driver.exceptions import ClickHouseError
        except ImportError:
            raise StoreError(f"--db {location.shown} needs clickhouse-connect, which is not installed: "
                             f"{EXTRA_HINT}") from None
        # the client logs a warning before raising what we report ourselves: not on the user's stderr
        logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
        self.location = location
        self._errors = (ClickHouseError,)
        timeout = float(location.options.get("timeout", 300))
        try:
            self._client = clickhouse_connect.get_client(
                host=location.host, port=location.port, username=location.user, password=location.password,
                secure=location.secure, compress=False, settings=dict(SETTINGS), connect_timeout=10,
                send_receive_timeout=timeout, autogenerate_session_id=False)
        except ClickHouseError as exc:
            raise StoreError(f"cannot open store {location.shown}: {one_line(exc)}") from None

    def query(self, sql: str, params: dict[str, Any] | None = None, fmt: str = "JSONCompactColumns") -> bytes:
        try:
            return self._client.raw_query(sql, parameters=params or None, fmt=fmt)
        except self._errors as exc:
            raise StoreError(f"store {self.location.shown}: {one_line(exc)}") from None

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=params or None)
        except self._errors as exc:
            raise StoreError(f"store {self.location.shown}: {one_line(exc)}") from None

    def insert(self, table: str, columns: list[str], data: bytes, fmt: str = "JSONColumns") -> None:
        try:
            self._client.raw_insert(table, columns, data, fmt=fmt)
        except self._errors as exc:
            raise StoreError(f"store {self.location.shown}: insert into {table}: {one_line(exc)}") from None

    def close(self) -> None:
        self._client.close()
