"""Helpers for the `serve` tests: the real server in a subprocess, plain HTTP with urllib, an SSE listener, and
OTLP senders (the real OpenTelemetry SDK + OTLP/HTTP exporter, run as a separate process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
SENDER = Path(__file__).with_name("otel_sender.py")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


class Server:
    """`agent-debug serve --port 0 ...` as a user runs it; the URL is read from what it prints."""

    def __init__(self, db: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent_debug.cli.main", "serve", "--db", str(db), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or cli_env())
        self.banner: list[str] = []
        self.url = ""
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"serve exited: {self.proc.wait()} {self.proc.stderr.read()}")  # type: ignore[union-attr]
            self.banner.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
            if "runs:" in line:
                break
        assert self.url, self.banner

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read() if self.proc.stderr else ""  # type: ignore[union-attr]
        return self.proc.returncode, err

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        status, body, _ = self.request("GET", path, headers=headers)
        assert status == 200, (status, body)
        return orjson.loads(body)

    def wait_for(self, check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
        """Poll `check` until it is true or `timeout` passes. A poll whose request times out (a server slowed by
        the rest of a parallel suite) is a "not yet", not a failure: what the caller waits for is the condition
        within its deadline. A server that hangs (the lock-order deadlock fixed in `Engine._announce_store`) still
        fails: every poll times out."""
        deadline = time.monotonic() + timeout
        last: Any = None
        slow = 0
        while time.monotonic() < deadline:
            try:
                last = check()
            except (TimeoutError, urllib.error.URLError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    raise
                slow += 1
                last = exc
                continue
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {last!r} ({slow} polls timed out); "
                             f"health {self.get_json('/healthz')}")


class EventListener:
    """Reads `/api/events` on a thread; keeps (receive time, kind, data) for every event."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        req = urllib.request.Request(url + "/api/events", headers=headers or {})
        self.resp = urllib.request.urlopen(req, timeout=120)
        first = self.resp.readline()
        assert first.startswith(b": connected"), first
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        kind = None
        try:
            for raw in self.resp:
                line = raw.rstrip(b"\n")
                if line.startswith(b"event: "):
                    kind = line[7:].decode()
                elif line.startswith(b"data: ") and kind is not None:
                    with self.lock:
                        self.events.append((time.time(), kind, orjson.loads(line[6:])))
                    kind = None
        except Exception:
            return

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [d for _, k, d in self.events if k == kind]

    def close(self) -> None:
        """Stop reading. The socket itself closes when the server ends the stream (as it does on shutdown):
        closing it here would wait for the reader thread's blocked read."""
        import socket

        sock = getattr(getattr(getattr(self.resp, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)


def run_senders(endpoint: str, processes: int, spans: int, spans_per_run: int, *, error_every: int = 0,
                extra: list[str] | None = None) -> list[dict[str, Any]]:
    """Start `processes` sender processes at once; each prints one JSON line of what it sent."""
    procs = [subprocess.Popen([sys.executable, str(SENDER), endpoint, "--spans", str(spans), "--per-run",
                               str(spans_per_run), "--error-every", str(error_every), "--seed", str(i),
                               *(extra or [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(processes)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        out.append(orjson.loads(stdout.strip().splitlines()[-1]))
    return out
