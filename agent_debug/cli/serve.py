"""`agent-debug serve` (an OTLP/HTTP endpoint, watched trace directories, debug sessions and a JSON API) and
`agent-debug tail` (the terminal live view). Heavy imports happen inside the commands: `--help` stays fast, and
every other command works without the `serve` extra."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any

import typer

from agent_debug.cli.common import DbOption, FromOption, db_path, fail
from agent_debug.gcpause import one_shot_process

LOOPBACK_NAMES = ("localhost",)
TOKEN_ENV = "AGENT_DEBUG_TOKEN"

WatchOption = Annotated[list[Path] | None, typer.Option(
    "--watch", help="Follow the trace files under this directory as they grow and rotate (repeatable).")]
IdleOption = Annotated[float, typer.Option(
    "--idle", min=0.1, help="Seconds without a span after which a run is analyzed (its root span may never end).")]


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _need_extra() -> None:
    missing = []
    for module, package in (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("google.protobuf", "protobuf"),
                            ("opentelemetry.proto", "opentelemetry-proto")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        fail(f"`serve` needs the serve extra: pip install 'agent-debug[serve]' (missing: {', '.join(missing)})", 3)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 3)
    sock.set_inheritable(True)
    return sock


def _existing_dirs(paths: list[Path] | None, what: str) -> list[Path]:
    out = []
    for p in paths or []:
        if not p.exists():
            fail(f"{what}: no such file or directory: {p}")
        out.append(p)
    return out


def _sqlite_store(db: str | None, command: str) -> str:
    """The SQLite store `--db` names: the live path (records ingested as they arrive, followed by the analysis)
    is SQLite's; a ClickHouse store is a one-line usage error, not a file named after the URL."""
    from agent_debug.store.types import parse_location

    location = db_path(db)
    if parse_location(location).kind != "sqlite":
        fail(f"{command} keeps its live store in SQLite: give --db a SQLite file (then `agent-debug store copy` "
             f"moves it to ClickHouse), not {location.split('://', 1)[0]}://...")
    return location


def serve(
    db: DbOption = None,
    watch: WatchOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs --token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port; the one bound is "
                                                                     "printed).")] = 4318,
    cases: Annotated[list[Path] | None, typer.Option("--cases", help="Eval case files: the cases whose workflow "
                                                     "matches run on each finished run (repeatable).")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar=TOKEN_ENV, show_envvar=True,
                                              help="Require `Authorization: Bearer TOKEN` on every route.")] = None,
    idle: IdleOption = 30.0,
    max_body: Annotated[int, typer.Option("--max-body", min=1024, help="Largest OTLP body accepted, in bytes "
                                          "(also once decompressed); larger ones get 413.")] = 32 << 20,
) -> None:
    """Receive OpenTelemetry traces (OTLP/HTTP at /v1/traces) and follow trace directories, run a debug session
    per run (attached, recording, analyzing, done), and serve the runs as a live view in the browser (/), as JSON
    (/api/runs) and as events (/api/events).
    Exit codes: 2 usage (a non-local --host without --token), 3 could not run (missing extra, port in use)."""
    one_shot_process(False)  # it runs on: keep collecting what its passes leave
    if not is_loopback(host) and not token:
        fail(f"--host {host} is not a loopback address: set --token (or ${TOKEN_ENV}) so that every request must "
             "carry it")
    _need_extra()
    watch_dirs = _existing_dirs(watch, "--watch")
    from agent_debug.eval.cases import load_case_files
    from agent_debug.serve.app import create_app, run
    from agent_debug.serve.engine import Engine

    case_files = load_case_files(_existing_dirs(cases, "--cases")) if cases else []
    store = _sqlite_store(db, "serve")
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    engine = Engine(store, lambda events: None, watch=watch_dirs, idle=idle, cases=case_files, writer_process=True)
    app, hub = create_app(engine, token=token, max_body=max_body)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    print(f"agent-debug serve: listening on {url} (store {store})")
    print(f"  point an exporter at it: OTEL_EXPORTER_OTLP_ENDPOINT={url}  (OTLP/HTTP, protobuf or JSON)")
    for d in watch_dirs:
        print(f"  watching {d}")
    if token:
        print("  every request needs: Authorization: Bearer <token>")
        print(f"  live view: open {url}/?token=<token> once (it keeps a cookie)")
    else:
        print(f"  live view: {url}/")
    print(f"  runs: {url}/api/runs  events: {url}/api/events  health: {url}/healthz", flush=True)
    run(app, hub, sock)


class _TailView:
    """What `tail` shows, fed by the engine's events (from its threads) and drawn by rich Live."""

    def __init__(self, engine: Any, source: str) -> None:
        self.engine = engine
        self.source = source
        self.lock = threading.Lock()
        self.spans: deque[dict[str, Any]] = deque(maxlen=12)
        self.failures: deque[dict[str, Any]] = deque(maxlen=8)
        self.finished = 0

    def events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        with self.lock:
            for kind, data in events:
                if kind == "span":
                    self.spans.append(data)
                elif kind == "state" and data["state"] == "done":
                    self.finished += 1
                    res = data.get("results") or {}
                    if res.get("status") in ("failed", "error") or res.get("error"):
                        self.failures.append({"trace_id": data["trace_id"], **res})

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from agent_debug.cli.render import fmt_ns, status_text

        now = time.time()
        with self.lock:
            spans, failures = list(self.spans), list(self.failures)
        live = self.engine.sessions.live()
        runs = Table("run", "workflow", "state", "spans", "elapsed", title=f"{len(live)} runs in flight",
                     title_justify="left")
        for s in live[-15:]:
            runs.add_row(s.trace_id[:16], s.workflow or "-", s.state.value, str(s.spans), f"{now - s.first_wall:.1f}s")
        newest = Table("run", "agent", "type", "span", "duration", "status", title="newest spans", title_justify="left")
        for sp in reversed(spans):
            newest.add_row(sp["trace_id"][:12], sp["agent_name"], sp["event_type"], str(sp["name"])[:40],
                           fmt_ns(sp["duration_ns"]), status_text(sp["status"]))
        fails = Table("run", "status", "bucket", "root cause", title="failures analyzed", title_justify="left")
        for f in reversed(failures):
            rc = f.get("root_cause") or {}
            cause = f"{rc.get('agent_name', '')} {rc.get('name', '')}".strip() or f.get("error") or "-"
            fails.add_row(f["trace_id"][:12], status_text(f.get("status") or "error"), f.get("bucket") or "-",
                          cause[:60])
        st = self.engine.stats
        head = Text(f"agent-debug tail  {self.source}  {st.spans_announced} spans, {self.finished} runs done"
                    "  (Ctrl-C to stop)", style="bold")
        return Group(head, runs, newest, fails)


def tail(
    db: DbOption = None,
    watch: WatchOption = None,
    from_: FromOption = None,
    idle: IdleOption = 30.0,
    refresh: Annotated[float, typer.Option("--refresh", min=0.05, help="Seconds between screen updates.")] = 0.25,
) -> None:
    """The live view for incidents: runs in flight with their state, span counts and elapsed time, the newest
    spans, and failures with their bucket and root cause as they are analyzed. Follows the store (what `serve`
    or `ingest` write), or trace directories with --watch (ingested into the store), or files with --from (read
    into a temporary store). Ctrl-C stops it."""
    import tempfile

    one_shot_process(False)  # it runs on: keep collecting what its passes leave

    from rich.live import Live

    from agent_debug.cli.common import stdout_console
    from agent_debug.serve.engine import Engine

    if from_ and (watch or db):
        fail("--from reads files on its own: give it without --db and --watch")
    follow = _existing_dirs(from_ or watch, "--from" if from_ else "--watch")
    tmp = tempfile.TemporaryDirectory(prefix="agent-debug-tail-") if from_ else None
    store = Path(tmp.name) / "traces.db" if tmp else _sqlite_store(db, "tail")
    engine = Engine(store, lambda events: None, watch=follow or None, idle=idle, from_start=bool(tmp))
    view = _TailView(engine, f"{'files ' + ', '.join(map(str, follow)) if follow else 'store ' + str(store)}")
    engine.sink = view.events

    def stop_on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # a stop: the view is drawn once more, the engine stopped
        signal.signal(sig, stop_on_term)
    engine.start()
    console = stdout_console()
    try:
        with Live(view.render(), console=console, refresh_per_second=max(1, int(1 / refresh)),
                  transient=False) as live:
            while True:
                time.sleep(refresh)
                live.update(view.render())
    except KeyboardInterrupt:
        pass
    finally:
        engine.stop(timeout=5)
        if tmp is not None:
            tmp.cleanup()
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("tail")(tail)
