"""The live engine behind `serve` and `tail`: one writer does every store write (OTLP batches, watched files:
`writer`, in the engine's thread or in a process of its own) round after round, and after each round the engine
reads back what the store gained; one analysis thread analyzes runs whose sessions ended (in a worker process).

One writer keeps SQLite free of lock contention and lets concurrent OTLP requests share one ingest transaction
under load. After each round the engine polls the store (`follow`), so whatever was stored, by this process or
any other writing the same store, is announced: `span` events, `run` events (the run's summary and state) and
the sessions' `state` events. Events go to `sink` in batches, once per round.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_debug.analysis.buckets import Rules
from agent_debug.eval.cases import CaseFile
from agent_debug.serve import otlp_http
from agent_debug.serve.analyze import RunAnalyzer, analyze_batch, init_worker
from agent_debug.serve.follow import StoreFollower
from agent_debug.serve.sessions import DEFAULT_IDLE, SessionManager, State
from agent_debug.serve.writer import BadRequest, Round, StoreFailed, StoreWriter, WriterProcess

Event = tuple[str, dict[str, Any]]
Sink = Callable[[list[Event]], None]
POLL_INTERVAL = 0.02


@dataclass
class Stats:
    """Counters for `/healthz` and `tail`."""

    otlp_requests: int = 0
    spans_received: int = 0
    spans_rejected: int = 0
    records_stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    file_ingests: int = 0
    spans_announced: int = 0
    runs_analyzed: int = 0
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["errors"] = list(self.errors)
        return d


class StoreUnavailable(Exception):
    """The store failed to take a request's spans (the receiver answers 503: the exporter sends them again)."""


class Engine:
    def __init__(
        self,
        db_path: str | os.PathLike[str],
        sink: Sink,
        *,
        watch: list[Path] | None = None,
        idle: float = DEFAULT_IDLE,
        cases: list[CaseFile] | None = None,
        rules: Rules | None = None,
        poll_interval: float = POLL_INTERVAL,
        from_start: bool = False,
        analysis_process: bool = True,
        writer_process: bool = False,
    ) -> None:
        self.db_path = Path(db_path)
        self.sink = sink
        # whether anyone reads the events (an event stream client, tail): else no per-span event is made
        self.wants_events: Callable[[], bool] = lambda: True
        self.poll_interval = poll_interval
        self.cases = cases or []
        self.rules = rules
        self.analysis_process = analysis_process
        self.stats = Stats()
        self.watch = list(watch or [])
        self._events: list[Event] = []
        self._events_lock = threading.Lock()
        self._held = 0  # spans the writer holds for their parents, as of its last round
        self.sessions = SessionManager(self._emit, idle=idle)
        self.follower = StoreFollower(self.db_path, from_start=from_start)
        # every store write, in this engine's thread or (serve) in a process of its own: see `writer`
        self.writer: StoreWriter | WriterProcess = (WriterProcess(self.db_path, self.watch, idle) if writer_process
                                                    else StoreWriter(self.db_path, self.watch, idle))
        self._jobs: queue.SimpleQueue[tuple[dict[str, Any] | tuple[bytes, str], Future[tuple[int, str]]] | None] = \
            queue.SimpleQueue()
        self._to_analyze: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._write_loop, "agent-debug-writer"), (self._analyze_loop, "agent-debug-analyze")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Store what is still held, announce it, and stop the threads."""
        self._stop.set()
        self._jobs.put(None)
        self._to_analyze.put(None)
        for t in self._threads:
            t.join(timeout)

    # -- OTLP -------------------------------------------------------------------------------------------------

    def submit(self, request: dict[str, Any] | tuple[bytes, str]) -> Future[tuple[int, str]]:
        """Queue one ExportTraceServiceRequest, decoded or as its body and media type (decoded by the writer);
        the future gives (rejected spans, message) once its spans are stored (or held for their parents, see
        `mapping`), or raises `otlp_http.RequestError` for a body that does not parse, `StoreUnavailable` when
        the store failed."""
        fut: Future[tuple[int, str]] = Future()
        self._jobs.put((request, fut))
        return fut

    # -- the writer thread ------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            jobs = self._take_jobs()
            stopping = self._stop.is_set()
            try:
                done = self.writer.round(list(enumerate(req for req, _ in jobs)), stopping)
            except Exception as exc:  # never let the loop die: report and go on
                done = Round(errors=[f"{type(exc).__name__}: {exc}"])
            self._answer(jobs, done)
            try:
                self._announce_store()
            except Exception as exc:
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            for tid in self.sessions.due():
                self._to_analyze.put(tid)
            self._flush_events()
            if stopping:
                self.follower.close()
                self.writer.close()
                return

    def _answer(self, jobs: list[tuple[dict[str, Any] | tuple[bytes, str], Future[tuple[int, str]]]],
                done: Round) -> None:
        for key, n in done.counts.items():
            setattr(self.stats, key, getattr(self.stats, key) + n)
        self.stats.errors.extend(done.errors)
        self._held = done.held
        for i, (_, fut) in enumerate(jobs):
            answer = done.answers.get(i, StoreFailed(done.errors[-1] if done.errors else "not stored"))
            if isinstance(answer, BadRequest):
                fut.set_exception(otlp_http.RequestError(answer.status, answer.message))
            elif isinstance(answer, StoreFailed):
                fut.set_exception(StoreUnavailable(answer.message))
            else:
                fut.set_result(answer)

    def _take_jobs(self) -> list[tuple[dict[str, Any] | tuple[bytes, str], Future[tuple[int, str]]]]:
        jobs = []
        try:
            job = self._jobs.get(timeout=self.poll_interval)
            while True:
                if job is not None:
                    jobs.append(job)
                job = self._jobs.get_nowait()
        except queue.Empty:
            return jobs

    def _announce_store(self) -> None:
        while True:
            want = self.wants_events()
            gained = self.follower.poll(spans=want, runs=want)
            if gained.counts:
                self.sessions.counts_arrived(gained.counts, gained.runs)
                if want:
                    # the sessions' lock is never taken inside the events lock: the analysis thread holds the
                    # sessions' lock when it emits (`SessionManager._announce`), so the other order deadlocks
                    runs = [("run", {**summary.as_dict(), "state": self.sessions.state_of(tid).value})
                            for tid, summary in gained.runs.items()]
                    with self._events_lock:
                        self._events.extend(("span", sp) for sp in gained.spans)
                        self._events.extend(runs)
                self.stats.spans_announced += sum(n for n, _ in gained.counts.values())
            if not gained.pending:
                return

    # -- events -----------------------------------------------------------------------------------------------

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        with self._events_lock:
            self._events.append((kind, data))

    def _flush_events(self) -> None:
        with self._events_lock:
            events, self._events = self._events, []
        if events:
            self.sink(events)

    # -- the analysis thread ----------------------------------------------------------------------------------

    def _analyze_loop(self) -> None:
        """Sends the runs due for analysis, in batches, to a worker process (see `analyze`); in this thread
        when no worker process can be started."""
        pool = self._analysis_pool()
        local: RunAnalyzer | None = None
        stopping = False
        while not stopping:
            batch = [self._to_analyze.get()]
            while True:
                try:
                    batch.append(self._to_analyze.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            tids = [t for t in dict.fromkeys(batch) if t is not None
                    and self.sessions.state_of(t) is State.ANALYZING]
            if not tids:
                continue
            try:
                if pool is not None:
                    results = pool.submit(analyze_batch, tids).result()
                else:
                    local = local or RunAnalyzer(self.db_path, self.cases, self.rules)
                    results = {t: local.session_results(t) for t in tids}
            except Exception as exc:  # the worker died, say: these runs finish with the reason
                results = {t: {"error": f"{type(exc).__name__}: {exc}"} for t in tids}
            for tid, res in results.items():
                if self.sessions.analyzed(tid, res):
                    self.stats.runs_analyzed += 1
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if local is not None:
            local.close()

    def _analysis_pool(self) -> ProcessPoolExecutor | None:
        if not self.analysis_process:
            return None
        try:
            return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                                       initargs=(str(self.db_path), self.cases, self.rules))
        except (OSError, ValueError) as exc:
            self.stats.errors.append(f"analysis runs in-process: no worker process ({exc})")
            return None

    def notices(self) -> list[str]:
        """What a reader of the API must be told about the server itself: its recent failures (a store that
        failed, a watched file that could not be ingested, an analysis that could not run)."""
        return [f"serve: {e}" for e in list(self.stats.errors)[-5:]]

    def health(self) -> dict[str, Any]:
        return {"sessions": self.sessions.counts(), "held_spans": self._held, **self.stats.as_dict(),
                "watching": [str(p) for p in self.watch], "writer_pid": getattr(self.writer, "pid", None)}

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and benchmarks: True once nothing is queued or held."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._jobs.empty() and not self._held:
                return True
            time.sleep(0.01)
        return False
