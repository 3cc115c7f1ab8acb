"""A small stand-in for a ClickHouse server's HTTP interface, answering with chdb (ClickHouse's engine), so the
suite tests the real client path (clickhouse-connect over a socket) without a server installed.

    python tests/clickhouse_http_server.py --path DIR [--user U --password P] [--port N]

prints `listening on HOST:PORT` and serves until stdin closes (or it is killed). One process, one chdb engine.

The subset of the interface it speaks (what clickhouse-connect sends for the store: `tests/test_store_backends.py`):
- `GET /ping` and `GET /` -> `Ok.`
- `POST /` (or GET) with the query in the body, in the `query` URL parameter, or both (the body continues the
  query: an INSERT's data), or as multipart form fields (`query`, `param_*`: what clickhouse-connect sends when
  parameters are long);
- `param_NAME=VALUE` bound by the engine (`{NAME:Type}` in the query); any other URL parameter that is not one
  of the transport's own (`database`, `query_id`, `session_id`, `wait_end_of_query`, `compress`, ...) is a setting,
  applied for that request only; `client_protocol_version` is ignored (the client's probe then uses protocol 0,
  as behind a proxy that strips it);
- output in whatever format the query's trailing `FORMAT` names (chdb writes it: Native, RowBinary*, JSON*,
  TSV*, CSV, ...), `TabSeparated` without one; an `INSERT ... FORMAT F` takes its data in any input format chdb
  reads; request bodies may be gzip/deflate (`Content-Encoding`), lz4 and zstd too when those modules exist;
  responses are never compressed;
- users: `--user`/`--password` checked against Basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key` or the `user`/
  `password` parameters (516 AUTHENTICATION_FAILED otherwise);
- errors: the engine's message as the body (`Code: N. DB::Exception: ...`), `X-ClickHouse-Exception-Code: N`, HTTP
  500 (404 for an unknown table or database, 400 for a syntax error), as a server answers.
Response headers: `X-ClickHouse-Query-Id`, `-Format`, `-Timezone` (UTC), `-Summary`, `-Server-Display-Name`.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import gzip
import json
import re
import sys
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chdb_session

TRANSPORT = {"query", "database", "query_id", "session_id", "session_timeout", "session_check",
             "wait_end_of_query", "compress", "decompress", "client_protocol_version", "default_format", "user",
             "password", "quota_key", "buffer_size", "role"}
_INSERT = re.compile(rb"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(\w+)[ \t]*(?:\r?\n)?", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)\.")
_NAME = re.compile(r"\(([A-Z_]+)\)\s*$")
_NOT_FOUND = {"UNKNOWN_TABLE", "UNKNOWN_DATABASE"}
_BAD_REQUEST = {"SYNTAX_ERROR", "BAD_QUERY_PARAMETER", "UNKNOWN_IDENTIFIER"}


class Engine:
    """One chdb session, used by one request at a time (settings are set and restored around each)."""

    def __init__(self, path: str) -> None:
        self.session = chdb_session.Session(path)
        self.lock = threading.Lock()
        self.version = self.session.query("SELECT version()", "TSVRaw").bytes().decode().strip()

    def run(self, sql: bytes, params: dict[str, str], settings: dict[str, str], database: str | None
            ) -> tuple[bytes, str]:
        with self.lock:
            restore = self._apply(settings, database)
            try:
                return self._run(sql, params)
            finally:
                for stmt in restore:
                    self.session.query(stmt)

    def _apply(self, settings: dict[str, str], database: str | None) -> list[str]:
        restore = []
        if settings:
            names = ", ".join("'" + k.replace("'", "") + "'" for k in settings)
            old = self.session.query(f"SELECT name, value FROM system.settings WHERE name IN ({names})",
                                     "JSONCompact").bytes()
            for name, value in json.loads(old)["data"]:
                restore.append(f"SET {name} = {_quote(value)}")
            for key, value in settings.items():
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise ValueError(f"Code: 115. DB::Exception: Unknown setting '{key}'. (UNKNOWN_SETTING)")
                self.session.query(f"SET {key} = {_quote(value)}")
        if database:
            current = self.session.query("SELECT currentDatabase()", "TSVRaw").bytes().decode().strip()
            self.session.query(f"USE `{database}`")
            restore.append(f"USE `{current}`")
        return restore

    def _run(self, sql: bytes, params: dict[str, str]) -> tuple[bytes, str]:
        insert = _INSERT.match(sql)
        if insert is not None:
            stmt, fmt = insert.group(1).decode(), insert.group(2).decode()
            data = sql[insert.end():]
            ins = self.session.send_insert(stmt, fmt)
            if data:
                ins.append(data)
            ins.finish()
            return b"", fmt
        text = sql.decode()
        found = _TRAILING_FORMAT.search(text)
        fmt = found.group(1) if found else "TabSeparated"
        res = self.session.query(text, fmt, params=params or None)
        return res.bytes(), fmt


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _decompress(data: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "lz4":
        import lz4.frame  # type: ignore[import-not-found]

        return lz4.frame.decompress(data)  # type: ignore[no-any-return]
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        return zstd.decompress(data)  # type: ignore[no-any-return]
    raise ValueError(f"Code: 36. DB::Exception: Unknown Content-Encoding {encoding}. (BAD_ARGUMENTS)")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine: Engine
    user: str | None = None
    password: str = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet: the tests read stdout for the port
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/ping", "/") and "query=" not in self.path:
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        query_id = str(uuid.uuid4())
        try:
            params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            ctype = self.headers.get("Content-Type", "")
            body = _decompress(body, self.headers.get("Content-Encoding"))
            if ctype.startswith("multipart/form-data"):
                params.update(_form(ctype, body))
                body = b""
            self._authenticate(params)
            query_id = params.get("query_id") or query_id
            sql = params.get("query", "").encode()
            if sql and body:
                sql += b"\n" + body
            elif body:
                sql = body
            if not sql.strip():
                raise ValueError("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
            binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
            settings = {k: v for k, v in params.items() if k not in TRANSPORT and not k.startswith("param_")}
            data, fmt = self.engine.run(sql, binds, settings, params.get("database"))
        except Exception as exc:  # the engine's error, as a server sends it
            self._error(str(exc), query_id)
            return
        self._send(200, data, {
            "Content-Type": "text/plain; charset=UTF-8" if fmt.startswith(("TabSeparated", "TSV", "CSV"))
            else "application/octet-stream",
            "X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": "chdb-stand-in",
            "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "read_bytes": "0", "written_rows": "0",
                                                "written_bytes": "0", "total_rows_to_read": "0",
                                                "result_rows": "0", "result_bytes": str(len(data))})})

    def _authenticate(self, params: dict[str, str]) -> None:
        if self.user is None:
            return
        user, key = params.get("user"), params.get("password")
        if self.headers.get("X-ClickHouse-User"):
            user, key = self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key", "")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        if user != self.user or (key or "") != self.password:
            raise PermissionError(f"Code: 516. DB::Exception: {user or 'default'}: Authentication failed: password is "
                                  "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")

    def _error(self, message: str, query_id: str) -> None:
        at = message.find("Code: ")
        text = message[at:] if at >= 0 else f"Code: 1001. DB::Exception: {message}. (STD_EXCEPTION)"
        text = text.strip().split("\n")[0]
        code = _CODE.search(text)
        name = _NAME.search(text)
        status = 500
        if name and name.group(1) in _NOT_FOUND:
            status = 404
        elif name and name.group(1) in _BAD_REQUEST:
            status = 400
        elif code and code.group(1) == "516":
            status = 401
        body = f"{text} (version {self.engine.version})\n".encode()
        self._send(status, body, {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Query-Id": query_id,
                                  "X-ClickHouse-Exception-Code": code.group(1) if code else "1001"})

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _form(ctype: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data body."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            out[str(name)] = (part.get_payload(decode=True) or b"").decode()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True, help="chdb's data directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password", default="")
    args = ap.parse_args()
    Handler.engine = Engine(args.path)
    Handler.user = args.user
    Handler.password = args.password
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sys.stdin.read()  # until the parent closes our stdin (or ends)
    except KeyboardInterrupt:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
