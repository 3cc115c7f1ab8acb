"""The live engine behind `serve` and `tail`: one writer thread does every store write (OTLP batches, watched
files) and then reads back what the store gained; one analysis thread analyzes runs whose sessions ended.

One writer keeps SQLite free of lock contention and lets concurrent OTLP requests share one ingest transaction
under load. After each round it polls the store (`follow`), so whatever was stored, by this process or any
other writing the same store, is announced: `span` events, `run` events (the run's summary and state) and the
sessions' `state` events. Events go to `sink` in batches, once per round.
"""

from __future__ import annotations

import os
import queue
from bisect import bisect_left
import threading
import time
from collections import deque
from collections.abc import Callable
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_debug.analysis.buckets import Rules
from agent_debug.errors import AgentDebugError
from agent_debug.eval.cases import CaseFile
from agent_debug.serve import otlp_http
from agent_debug.serve.analyze import RunAnalyzer, analyze_batch, init_worker
from agent_debug.serve.follow import StoreFollower
from agent_debug.serve.mapping import SOURCE, LiveMapper, Mapped
from agent_debug.serve.sessions import DEFAULT_IDLE, SessionManager, State
from agent_debug.serve.watch import DirWatcher
from agent_debug.store.records import RecordIngest

Event = tuple[str, dict[str, Any]]
Sink = Callable[[list[Event]], None]
POLL_INTERVAL = 0.02
MAX_RETRY = 100_000  # acknowledged spans kept in memory while the store fails


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
        self._events: list[Event] = []
        self._retry = Mapped()
        self._events_lock = threading.Lock()
        self.sessions = SessionManager(self._emit, idle=idle)
        self.mapper = LiveMapper(forget_after=max(idle, 5.0))
        self.watcher = DirWatcher(list(watch)) if watch else None
        self.follower = StoreFollower(self.db_path, from_start=from_start)
        self.ingester = RecordIngest(self.db_path, source=SOURCE)  # the writer thread's
        self._jobs: queue.SimpleQueue[tuple[dict[str, Any] | tuple[bytes, str], Future[tuple[int, str]]] | None] = queue.SimpleQueue()
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
        """Queue one ExportTraceServiceRequest, decoded or as its body and media type (then decoded by the writer
        thread: one thread doing the CPU work, instead of the receiver's threads taking turns at the GIL with it);
        the future gives (rejected spans, message) once its spans are stored (or held for their parents, see
        `mapping`), or raises `otlp_http.RequestError` for a body that does not parse."""
        fut: Future[tuple[int, str]] = Future()
        self._jobs.put((request, fut))
        return fut

    # -- the writer thread ------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            jobs = self._take_jobs()
            stopping = self._stop.is_set()
            try:
                self._round(jobs, stopping)
            except Exception as exc:  # never let the writer die: report and go on
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(exc)
            if stopping:
                self.follower.close()
                self.ingester.close()
                return

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

    def _round(self, jobs: list[tuple[dict[str, Any] | tuple[bytes, str], Future[tuple[int, str]]]],
               stopping: bool) -> None:
        records = Mapped()
        # per request: its future, where its records are in `records`, spans the importer could not map, why
        answers: list[tuple[Future[tuple[int, str]], int, int, int, str]] = []
        for request, fut in jobs:
            start = len(records)
            if isinstance(request, tuple):
                try:
                    request = otlp_http.parse(*request)
                except otlp_http.RequestError as exc:
                    fut.set_exception(exc)
                    continue
            sent = otlp_http.span_count(request)
            try:
                records.extend_mapped(self.mapper.add(request))
            except Exception as exc:  # an importer fault: this request's spans are rejected, the rest go on
                answers.append((fut, start, start, sent, f"could not map spans: {type(exc).__name__}: {exc}"))
                continue
            self.stats.otlp_requests += 1
            self.stats.spans_received += sent
            answers.append((fut, start, len(records), max(0, sent - self.mapper.last_mapped), ""))
        # spans released from the hold: their requests were answered already, so a failed store keeps them
        # here to try again (a request's own spans are answered 503 instead, and its exporter sends them again)
        acknowledged = self._retry
        acknowledged.extend_mapped(self.mapper.due(float("inf") if stopping else None))
        self._retry = Mapped()
        rejected_at: list[int] = []
        try:
            if records or acknowledged:
                n = len(records)
                records.extend_mapped(acknowledged)
                rejected_at = self._store(records)
                del records[n:]
        except Exception as exc:
            self.mapper.unsee(records[:n])
            self._retry = Mapped(acknowledged[-MAX_RETRY:])
            self._retry.lines = acknowledged.lines[-MAX_RETRY:]
            if len(acknowledged) > MAX_RETRY:
                self.stats.errors.append(f"{len(acknowledged) - MAX_RETRY} held spans dropped: the store fails")
            for fut, *_ in answers:
                fut.set_exception(exc)
            raise
        for fut, start, end, unmapped, message in answers:
            bad = unmapped + bisect_left(rejected_at, end) - bisect_left(rejected_at, start)
            self.stats.spans_rejected += bad
            fut.set_result((bad, message or (f"{bad} spans are not valid records" if bad else "")))
        self._ingest_watched()
        self._announce_store()
        for tid in self.sessions.due():
            self._to_analyze.put(tid)
        self._flush_events()

    def _store(self, records: Mapped) -> list[int]:
        """Store a round's records in one transaction; the positions of those rejected."""
        res = self.ingester.add(records, records.lines)
        self.stats.records_stored += res.records
        self.stats.duplicates += res.duplicates
        self.stats.conflicts += res.conflicts
        return res.rejected_at

    def _ingest_watched(self) -> None:
        if self.watcher is None:
            return
        changed = self.watcher.changed()
        if not changed:
            return
        try:
            res = self.ingester.add_files(changed)
        except (AgentDebugError, OSError) as exc:  # the store failed, say: look at them all again next time
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            self.watcher.retry(changed)
            return
        self.stats.file_ingests += 1
        self.stats.records_stored += res.records
        self.stats.duplicates += res.duplicates
        self.stats.conflicts += res.conflicts
        self.stats.spans_rejected += res.rejected

    def _announce_store(self) -> None:
        while True:
            want = self.wants_events()
            gained = self.follower.poll(spans=want, runs=want)
            if gained.counts:
                self.sessions.counts_arrived(gained.counts, gained.runs)
                if want:
                    with self._events_lock:
                        self._events.extend(("span", sp) for sp in gained.spans)
                        for tid, summary in gained.runs.items():
                            self._events.append(("run", {**summary.as_dict(),
                                                         "state": self.sessions.state_of(tid).value}))
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
        return {"sessions": self.sessions.counts(), "held_spans": self.mapper.held(), **self.stats.as_dict(),
                "watching": [str(p) for p in (self.watcher.dirs if self.watcher else [])]}

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and benchmarks: True once nothing is queued or held."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._jobs.empty() and not self.mapper.held():
                return True
            time.sleep(0.01)
        return False
