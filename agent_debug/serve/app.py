"""The ASGI app of `agent-debug serve` (starlette; the `serve` extra): the OTLP/HTTP receiver, the JSON API, the
event stream, and the bearer-token guard in front of all of them.

Routes (JSON shapes as the CLI's `--json`):
    POST /v1/traces            OTLP/HTTP, protobuf or JSON, gzip; 400/413/415; partial_success
    GET  /api/runs             `traces --json` ({"traces": [...], "count"}), newest first, each with `state`
    GET  /api/runs/{trace_id}  summary, `tree`, `critical_path`, `why`, `eval`, and the `session`
    GET  /api/events           Server-Sent Events: `span`, `run`, `state` (each with its trace id)
    GET  /healthz              counters, sessions by state
No route reads or writes anything but the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_debug.errors import AmbiguousTrace, StoreError, TraceNotFound
from agent_debug.serve import otlp_http
from agent_debug.serve.analyze import RunAnalyzer
from agent_debug.serve.engine import Engine, Event
from agent_debug.store.query import TraceFilter, list_traces, store_notices

SUBSCRIBER_BACKLOG = 2000  # event batches a slow SSE client may fall behind before it is dropped
KEEPALIVE_SECONDS = 15.0


def _json(obj: dict[str, Any], status: int = 200, notices: list[str] | None = None) -> Response:
    """A JSON answer; like every CLI `--json` document it has `notices` (an empty list when there are none)."""
    body = {**obj, "notices": list(notices or [])}
    return Response(orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS), status_code=status,
                    media_type="application/json")


class EventHub:
    """Fans the engine's event batches out to SSE subscribers, on the event loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribers: set[asyncio.Queue[list[Event] | None]] = set()

    def publish_threadsafe(self, events: list[Event]) -> None:
        """The engine's sink (called from its writer thread)."""
        if self.loop is not None and self.subscribers:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self.loop.call_soon_threadsafe(self._publish, events)

    def _publish(self, events: list[Event]) -> None:
        for q in list(self.subscribers):
            try:
                q.put_nowait(events)
            except asyncio.QueueFull:  # too slow: tell it, and let it reconnect
                self.subscribers.discard(q)
                while not q.empty():
                    q.get_nowait()
                q.put_nowait([("error", {"message": "event stream lagged; events were dropped, reconnect"})])
                q.put_nowait(None)

    def subscribe(self) -> asyncio.Queue[list[Event] | None]:
        q: asyncio.Queue[list[Event] | None] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self.subscribers.add(q)
        return q

    def close(self) -> None:
        for q in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        self.subscribers.clear()


class BearerAuth:
    """Every HTTP route needs `Authorization: Bearer <token>` (constant-time compare); refusals are 401 and
    counted."""

    def __init__(self, app: ASGIApp, token: str, counters: dict[str, int]) -> None:
        self.app = app
        self.expected = b"Bearer " + token.encode()
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            got = b""
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    got = value
                    break
            if not hmac.compare_digest(got, self.expected):
                self.counters["unauthorized"] += 1
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="agent-debug"')]})
                await send({"type": "http.response.body",
                            "body": b'{"error":"missing or wrong bearer token"}'})
                return
        await self.app(scope, receive, send)


class _Readers(threading.local):
    analyzer: RunAnalyzer | None = None


def create_app(engine: Engine, *, token: str | None = None,
               max_body: int = otlp_http.DEFAULT_MAX_BODY) -> tuple[ASGIApp, EventHub]:
    """The app, and its event hub (`run` closes the hub's streams when the server begins to shut down)."""
    hub = EventHub()
    counters = {"unauthorized": 0, "bad_requests": 0}
    readers = _Readers()

    def analyzer() -> RunAnalyzer:
        if readers.analyzer is None:
            readers.analyzer = RunAnalyzer(engine.db_path, engine.cases, engine.rules)
        return readers.analyzer

    engine.sink = hub.publish_threadsafe

    async def receive_traces(request: Request) -> Response:
        kind = otlp_http.JSON
        try:
            kind = otlp_http.media_type(request.headers.get("content-type"))
            body = await _read_body(request, max_body)
            data = otlp_http.decompress(body, request.headers.get("content-encoding"), max_body)
            parsed = await run_in_threadpool(otlp_http.parse, data, kind)
        except otlp_http.RequestError as exc:
            counters["bad_requests"] += 1
            return Response(otlp_http.status_body(kind, 3, exc.message), status_code=exc.status, media_type=kind)
        try:
            rejected, message = await asyncio.wrap_future(engine.submit(parsed))
        except Exception as exc:  # the store failed: 503 is retryable, so the exporter sends it again
            return Response(otlp_http.status_body(kind, 14, f"could not store: {exc}"), status_code=503,
                            media_type=kind)
        return Response(otlp_http.response_body(kind, rejected, message), media_type=kind)

    async def runs(request: Request) -> Response:
        try:
            limit = max(1, int(request.query_params.get("limit", "200")))
        except ValueError:
            return _json({"error": "limit must be an integer"}, 400)
        flt = TraceFilter(failed=request.query_params.get("failed") in ("1", "true"),
                          workflow=request.query_params.get("workflow") or None)

        def read() -> tuple[list[dict[str, Any]], list[str]]:
            db = analyzer().src.db
            rows = list_traces(db, flt)
            rows.sort(key=lambda s: s.start_ns, reverse=True)
            return ([{**s.as_dict(), "state": engine.sessions.state_of(s.trace_id).value} for s in rows[:limit]],
                    store_notices(db, engine.db_path))

        listed, notices = await run_in_threadpool(read)
        return _json({"traces": listed, "count": len(listed)}, notices=notices + engine.notices())

    async def run_detail(request: Request) -> Response:
        try:
            tid = request.path_params["trace_id"]
            out, notices = await run_in_threadpool(
                lambda: (analyzer().details(tid), store_notices(analyzer().src.db, engine.db_path)))
        except TraceNotFound as exc:
            return _json({"error": str(exc)}, 404)
        except AmbiguousTrace as exc:
            return _json({"error": str(exc)}, 409)
        except StoreError as exc:  # a damaged chunk, say: the store's failure, one line
            return _json({"error": str(exc)}, 500)
        session = engine.sessions.get(out["trace_id"])
        out["state"] = session["state"] if session else "idle"
        out["summary"]["state"] = out["state"]
        out["session"] = session
        return _json(out, notices=notices + engine.notices())

    async def events(request: Request) -> Response:
        only = request.query_params.get("trace_id") or None
        q = hub.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": connected\n\n"
                while True:
                    try:
                        batch = await asyncio.wait_for(q.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if batch is None:
                        return
                    chunk = b"".join(_sse(kind, data) for kind, data in batch
                                     if only is None or data.get("trace_id") == only)
                    if chunk:
                        yield chunk
            finally:
                hub.subscribers.discard(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "db": str(engine.db_path), **counters, "subscribers": len(hub.subscribers),
                      **engine.health()}, notices=engine.notices())

    async def index(request: Request) -> Response:
        return _json({"name": "agent-debug serve", "otlp": "/v1/traces",
                      "api": ["/api/runs", "/api/runs/{trace_id}", "/api/events", "/healthz"]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        engine.start()
        try:
            yield
        finally:
            hub.close()
            await run_in_threadpool(engine.stop)

    app = Starlette(routes=[
        Route("/v1/traces", receive_traces, methods=["POST"]),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/api/runs/{trace_id}", run_detail, methods=["GET"]),
        Route("/api/events", events, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/", index, methods=["GET"]),
    ], lifespan=lifespan)
    if token:
        return BearerAuth(app, token, counters), hub
    return app, hub


def run(app: ASGIApp, hub: EventHub, sock: socket.socket) -> None:
    """Serve on a bound socket until SIGINT or SIGTERM; then end the event streams (so open SSE clients do not
    hold the shutdown up), stop the engine, and return normally: a requested stop is not an error."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            hub.close()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    _Server(config).run(sockets=[sock])


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) one over `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise otlp_http.RequestError(413, f"body larger than {limit} bytes")
        except ValueError:
            raise otlp_http.RequestError(400, "bad Content-Length") from None
    parts: list[bytes] = []
    got = 0
    async for chunk in request.stream():
        got += len(chunk)
        if got > limit:
            raise otlp_http.RequestError(413, f"body larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data, default=str) + b"\n\n"
