"""A local stand-in for the Gemini REST API, so judge tests run the real google-genai client offline.

It serves `POST /{v1,v1beta}/models/{model}:generateContent`, records every request (path, headers, JSON body)
and answers from a per-test script: a queue of behaviours (`ok`, `status`, `slow`) consumed one per request,
then an optional `responder(body) -> Behaviour`, then `default`. Tests wrap `running_gemini_server()` in a
fixture of their own (tests/conftest.py belongs to the whole suite).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ROUTE = re.compile(r"^/(v1|v1beta)/models/([^/:?]+):generateContent(\?.*)?$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Ok:
    """Answer 200 with one candidate whose single text part is `text`."""

    text: str
    finish_reason: str = "STOP"


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error and a Google-style error body."""

    code: int
    message: str = "scripted error"


@dataclass(frozen=True)
class Slow:
    """Wait `seconds` before answering with `then` (the client may have given up by then)."""

    seconds: float
    then: Ok | Status


Behaviour = Ok | Status | Slow


def ok(text: str, finish_reason: str = "STOP") -> Ok:
    return Ok(text, finish_reason)


def status(code: int, message: str = "scripted error") -> Status:
    return Status(code, message)


def slow(seconds: float, then: Ok | Status | None = None) -> Slow:
    return Slow(seconds, then or ok(judge_reply(4)))


def judge_reply(score: int, accuracy: int | None = None, completeness: int | None = None,
                coherence: int | None = None, rationale: str = "scripted rationale") -> str:
    """The JSON text a well-behaved judge model returns; each criterion defaults to `score`."""
    return json.dumps({
        "rationale": rationale,
        "breakdown": {
            "accuracy": score if accuracy is None else accuracy,
            "completeness": score if completeness is None else completeness,
            "coherence": score if coherence is None else coherence,
        },
        "score": score,
    })


def body_text(body: Any) -> str:
    """The user text of a generateContent body (for responders that answer by content)."""
    parts = [p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", [])]
    return "\n".join(parts)


@dataclass
class Recorded:
    """One request as the server saw it; headers are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def model(self) -> str:
        match = _ROUTE.match(self.path)
        return match.group(2) if match else ""

    def prompt_text(self) -> str:
        """Every text part of every content turn, joined: what the judge model was asked."""
        return body_text(self.body)

    def system_text(self) -> str:
        instruction = self.body.get("systemInstruction") or {}
        return "\n".join(p.get("text", "") for p in instruction.get("parts", []))


@dataclass
class GeminiServer:
    """The scripted server's state; `base_url` is what to hand to the client."""

    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    queue: deque[Behaviour] = field(default_factory=deque)
    responder: Callable[[Any], Behaviour] | None = None
    default: Behaviour = field(default_factory=lambda: ok(judge_reply(4)))
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0

    def push(self, *behaviours: Behaviour) -> None:
        with self.lock:
            self.queue.extend(behaviours)

    def next_behaviour(self, body: Any) -> Behaviour:
        with self.lock:
            if self.queue:
                return self.queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return self.default

    def record(self, entry: Recorded) -> None:
        with self.lock:
            self.requests.append(entry)

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _success_body(model: str, reply: Ok) -> dict[str, Any]:
    return {
        "candidates": [{
            "content": {"parts": [{"text": reply.text}], "role": "model"},
            "finishReason": reply.finish_reason,
            "index": 0,
        }],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": model,
        "responseId": "local-test",
    }


def _error_body(reply: Status) -> dict[str, Any]:
    name = _STATUS_NAMES.get(reply.code, "UNKNOWN")
    return {"error": {"code": reply.code, "message": reply.message, "status": name}}


def _handler_for(state: GeminiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests assert on `state.requests`, not on a log."""

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.record(Recorded("POST", self.path, headers, body))
            match = _ROUTE.match(self.path)
            if not match:
                self._send(404, _error_body(Status(404, f"no route {self.path}")))
                return
            state.enter()
            try:
                self._answer(match.group(2), state.next_behaviour(body))
            finally:
                state.leave()

        def _answer(self, model: str, behaviour: Behaviour) -> None:
            if isinstance(behaviour, Slow):
                if state.stopping.wait(behaviour.seconds):
                    return
                behaviour = behaviour.then
            if isinstance(behaviour, Status):
                self._send(behaviour.code, _error_body(behaviour))
            else:
                self._send(200, _success_body(model, behaviour))

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (a timeout test); nothing to tell it

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections are expected when the client times out; keep test output clean."""


@contextmanager
def running_gemini_server() -> Iterator[GeminiServer]:
    """A local Gemini server on a free port, stopped (slow handlers released) on exit."""
    state = GeminiServer()
    server = _QuietServer(("127.0.0.1", 0), _handler_for(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
