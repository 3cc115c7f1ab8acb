"""The ASGI app of `agent-debug serve` (starlette; the `serve` extra): the OTLP/HTTP receiver, the JSON API, the
event stream, and the bearer-token guard in front of all of them.

Routes (JSON shapes as the CLI's `--json`, each document with `notices`):
    POST /v1/traces            OTLP/HTTP, protobuf or JSON, gzip; 400/413/415; partial_success
    GET  /api/runs             `traces --json` ({"traces": [...], "count"}), newest first, each with `state`
    GET  /api/runs/{trace_id}  summary, `tree`, `critical_path`, `why`, `eval`, and the `session`
    GET  /api/events           Server-Sent Events: `span`, `run`, `state` (each with its trace id); with
                               `?batch=1` a round's spans of one trace come as one `spans` event
    GET  /healthz              counters, sessions by state
    GET  /                     the live view (`live`): the report's page, fed by the three below
    GET  /api/live             its first document; /api/runs/{id}/report one run's data; .../spans/{id} a span's
No route reads or writes anything but the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

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
from agent_debug.serve.live import LIVE_CSP_HEADER, live_document, live_page, run_report, span_detail
from agent_debug.store.query import TraceFilter

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
    counted.

    A browser cannot put a header on the live page's own requests (`EventSource` has no way to), so the page
    logs in once: `GET /?token=<token>` answers with a cookie (HttpOnly, SameSite=Strict, holding a digest of the
    token, not the token) and a redirect to `/` (the token leaves the address bar). The cookie is taken for
    GET requests only: the page only reads, and nothing it does writes."""

    def __init__(self, app: ASGIApp, token: str, counters: dict[str, int]) -> None:
        self.app = app
        self.expected = b"Bearer " + token.encode()
        self.token = token.encode()
        self.cookie = hmac.new(self.token, b"agent-debug live view", hashlib.sha256).hexdigest().encode()
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            got = b""
            cookies = b""
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    got = value
                elif name == b"cookie":
                    cookies = value
            ok = hmac.compare_digest(got, self.expected)
            if not ok and scope["method"] in ("GET", "HEAD"):
                ok = hmac.compare_digest(_cookie(cookies, COOKIE), self.cookie)
                if not ok and scope["path"] == "/":
                    given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
                    if given and hmac.compare_digest(given.encode(), self.token):
                        await _respond(send, 303, b"", [
                            (b"location", b"/"), (b"cache-control", b"no-store"),
                            (b"set-cookie", COOKIE + b"=" + self.cookie + b"; Path=/; HttpOnly; SameSite=Strict")])
                        return
            if not ok:
                self.counters["unauthorized"] += 1
                if scope["path"] == "/":
                    await _respond(send, 401, LOGIN_HINT, [(b"content-type", b"text/html; charset=utf-8")])
                    return
                await _respond(send, 401, b'{"error":"missing or wrong bearer token","notices":[]}',
                               [(b"content-type", b"application/json"),
                                (b"www-authenticate", b'Bearer realm="agent-debug"')])
                return
        await self.app(scope, receive, send)


COOKIE = b"agent_debug_live"
LOGIN_HINT = (b"<!doctype html><title>agent-debug serve</title><p>This server needs its token. Open "
              b"<code>/?token=&lt;token&gt;</code> once: the page then keeps a cookie for it.</p>")


def _cookie(header: bytes, name: bytes) -> bytes:
    for part in header.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == name:
            return value
    return b""


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    engine.wants_events = lambda: bool(hub.subscribers)

    async def receive_traces(request: Request) -> Response:
        kind = otlp_http.JSON
        try:
            kind = otlp_http.media_type(request.headers.get("content-type"))
            body = await _read_body(request, max_body)
            data = otlp_http.decompress(body, request.headers.get("content-encoding"), max_body)
            rejected, message = await asyncio.wrap_future(engine.submit((data, kind)))  # decoded by the engine
        except otlp_http.RequestError as exc:
            counters["bad_requests"] += 1
            return Response(otlp_http.status_body(kind, 3, exc.message), status_code=exc.status, media_type=kind)
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
            store = analyzer().src.store
            rows = store.list_traces(flt)
            rows.sort(key=lambda s: s.start_ns, reverse=True)
            return ([{**s.as_dict(), "state": engine.sessions.state_of(s.trace_id).value} for s in rows[:limit]],
                    store.notices())

        listed, notices = await run_in_threadpool(read)
        return _json({"traces": listed, "count": len(listed)}, notices=notices + engine.notices())

    async def run_detail(request: Request) -> Response:
        try:
            tid = request.path_params["trace_id"]
            out, notices = await run_in_threadpool(
                lambda: (analyzer().details(tid), analyzer().src.store.notices()))
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
        grouped = request.query_params.get("batch") in ("1", "true")
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
                    if only is not None:
                        batch = [(kind, data) for kind, data in batch if data.get("trace_id") == only]
                    if grouped:
                        batch = _grouped(batch)
                    chunk = b"".join(_sse(kind, data) for kind, data in batch)
                    if chunk:
                        yield chunk
            finally:
                hub.subscribers.discard(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "db": str(engine.db_path), **counters, "subscribers": len(hub.subscribers),
                      **engine.health()}, notices=engine.notices())

    page = live_page()

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": LIVE_CSP_HEADER, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    async def live_doc(request: Request) -> Response:
        run = request.query_params.get("run") or None
        try:
            doc = await run_in_threadpool(lambda: live_document(analyzer(), engine.sessions, selected=run))
            notices = await run_in_threadpool(lambda: analyzer().src.store.notices())
        except AmbiguousTrace as exc:
            return _json({"error": str(exc)}, 409)
        except StoreError as exc:
            return _json({"error": str(exc)}, 500)
        doc["notices"] = notices + engine.notices()
        return _json(doc, notices=doc["notices"])

    async def run_data(request: Request) -> Response:
        tid = request.path_params["trace_id"]
        try:
            out = await run_in_threadpool(lambda: run_report(analyzer(), engine.sessions, tid))
        except TraceNotFound as exc:
            return _json({"error": str(exc)}, 404)
        except AmbiguousTrace as exc:
            return _json({"error": str(exc)}, 409)
        except StoreError as exc:
            return _json({"error": str(exc)}, 500)
        return _json(out)

    async def span_data(request: Request) -> Response:
        tid, sid = request.path_params["trace_id"], request.path_params["span_id"]
        try:
            detail = await run_in_threadpool(lambda: span_detail(analyzer(), tid, sid))
        except TraceNotFound as exc:
            return _json({"error": str(exc)}, 404)
        except AmbiguousTrace as exc:
            return _json({"error": str(exc)}, 409)
        except StoreError as exc:
            return _json({"error": str(exc)}, 500)
        if detail is None:
            return _json({"error": f"no span {sid} in trace {tid}"}, 404)
        return _json({"trace_id": tid, "span_id": sid, "detail": detail})

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
        Route("/api/runs/{trace_id}/report", run_data, methods=["GET"]),
        Route("/api/runs/{trace_id}/spans/{span_id}", span_data, methods=["GET"]),
        Route("/api/live", live_doc, methods=["GET"]),
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


def _grouped(batch: list[Event]) -> list[Event]:
    """The `span` events of a batch as one `spans` event per trace ({"trace_id", "spans": [...]}), at the place of
    its first span: what the live page applies at once (`?batch=1`)."""
    out: list[Event] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for kind, data in batch:
        if kind != "span":
            out.append((kind, data))
            continue
        group = groups.get(data["trace_id"])
        if group is None:
            group = groups[data["trace_id"]] = []
            out.append(("spans", {"trace_id": data["trace_id"], "spans": group}))
        group.append(data)
    return out


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data, default=str) + b"\n\n"
