"""Everything that writes the store for `serve` and `tail`: OTLP requests (decoded, mapped, redacted, stored in
one transaction per round) and the followed directories (ingested as they grow and rotate).

`StoreWriter` does a round of that work and answers each request; the engine runs it in its own thread, or, for
`serve`, in a process of its own (`WriterProcess`): decoding and mapping spans is pure Python, and in the server's
process it would take turns at the GIL with the receiver, the event stream and the store follower. In its own
process it has a core to itself; what crosses over is request bodies in and a few numbers out (records never
do: they are stored where they are made).

Answers: (rejected spans, message) for a request stored; `BadRequest` for a body that does not parse (the receiver
answers 400 and the like); `StoreFailed` when the store failed (503: the exporter sends it again).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_debug.errors import AgentDebugError
from agent_debug.serve import otlp_http
from agent_debug.serve.mapping import SOURCE, LiveMapper, Mapped
from agent_debug.serve.watch import DirWatcher
from agent_debug.store.records import RecordIngest

MAX_RETRY = 100_000  # acknowledged spans kept in memory while the store fails
Job = tuple[int, "dict[str, Any] | tuple[bytes, str]"]  # (job id, a decoded request or (body, media type))


@dataclass
class BadRequest:
    status: int
    message: str


@dataclass
class StoreFailed:
    message: str


Answer = "tuple[int, str] | BadRequest | StoreFailed"


@dataclass
class Round:
    """What a round did: an answer per job, counters to add to the engine's, what is held, failures."""

    answers: dict[int, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    held: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, key: str, n: int) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + n


class StoreWriter:
    """The OTLP mapper, the store's ingester and the directory watcher, used by one thread at a time."""

    def __init__(self, db_path: str | os.PathLike[str], watch: list[Path] | None, idle: float) -> None:
        self.db_path = Path(db_path)
        self.mapper = LiveMapper(forget_after=max(idle, 5.0))
        self.watcher = DirWatcher(list(watch)) if watch else None
        self.ingester = RecordIngest(self.db_path, source=SOURCE)
        self._retry = Mapped()

    def round(self, jobs: list[Job], stopping: bool = False) -> Round:
        out = Round()
        try:
            self._requests(jobs, stopping, out)
        except Exception as exc:  # never let the writer die: report and go on
            out.errors.append(f"{type(exc).__name__}: {exc}")
            for job_id, _ in jobs:
                out.answers.setdefault(job_id, StoreFailed(f"{type(exc).__name__}: {exc}"))
        self._ingest_watched(out)
        out.held = self.mapper.held()
        return out

    def close(self) -> None:
        self.ingester.close()

    # -- OTLP requests ----------------------------------------------------------------------------------------

    def _requests(self, jobs: list[Job], stopping: bool, out: Round) -> None:
        records = Mapped()
        # per request: where its records are in `records`, spans the importer could not map, why
        spans: list[tuple[int, int, int, int, str]] = []
        for job_id, request in jobs:
            start = len(records)
            if isinstance(request, tuple):
                try:
                    request = otlp_http.parse(*request)
                except otlp_http.RequestError as exc:
                    out.answers[job_id] = BadRequest(exc.status, exc.message)
                    continue
            sent = otlp_http.span_count(request)
            try:
                records.extend_mapped(self.mapper.add(request))
            except Exception as exc:  # an importer fault: this request's spans are rejected, the rest go on
                spans.append((job_id, start, start, sent, f"could not map spans: {type(exc).__name__}: {exc}"))
                continue
            out.add("otlp_requests", 1)
            out.add("spans_received", sent)
            spans.append((job_id, start, len(records), max(0, sent - self.mapper.last_mapped), ""))
        # spans released from the hold: their requests were answered already, so a failed store keeps them
        # here to try again (a request's own spans are answered 503 instead, and its exporter sends them again)
        acknowledged = self._retry
        acknowledged.extend_mapped(self.mapper.due(float("inf") if stopping else None))
        self._retry = Mapped()
        if not records and not acknowledged:
            rejected_at: list[int] = []
        else:
            n = len(records)
            records.extend_mapped(acknowledged)
            try:
                rejected_at = self._store(records, out)
            except Exception as exc:
                self.mapper.unsee(records[:n])
                self._retry = Mapped(acknowledged[-MAX_RETRY:])
                self._retry.lines = acknowledged.lines[-MAX_RETRY:]
                if len(acknowledged) > MAX_RETRY:
                    out.errors.append(f"{len(acknowledged) - MAX_RETRY} held spans dropped: the store fails")
                out.errors.append(f"{type(exc).__name__}: {exc}")
                for job_id, *_ in spans:
                    out.answers[job_id] = StoreFailed(f"could not store: {exc}")
                return
        for job_id, start, end, unmapped, message in spans:
            bad = unmapped + bisect_left(rejected_at, end) - bisect_left(rejected_at, start)
            out.add("spans_rejected", bad)
            out.answers[job_id] = (bad, message or (f"{bad} spans are not valid records" if bad else ""))

    def _store(self, records: Mapped, out: Round) -> list[int]:
        """Store a round's records in one transaction; the positions of those rejected."""
        res = self.ingester.add(records, records.lines)
        out.add("records_stored", res.records)
        out.add("duplicates", res.duplicates)
        out.add("conflicts", res.conflicts)
        return res.rejected_at

    # -- followed directories ---------------------------------------------------------------------------------

    def _ingest_watched(self, out: Round) -> None:
        if self.watcher is None:
            return
        changed = self.watcher.changed()
        if not changed:
            return
        try:
            res = self.ingester.add_files(changed)
        except (AgentDebugError, OSError) as exc:  # the store failed, say: look at them all again next time
            out.errors.append(f"{type(exc).__name__}: {exc}")
            self.watcher.retry(changed)
            return
        out.add("file_ingests", 1)
        out.add("records_stored", res.records)
        out.add("duplicates", res.duplicates)
        out.add("conflicts", res.conflicts)
        out.add("spans_rejected", res.rejected)


# -- in a process of its own -----------------------------------------------------------------------------------


class WriterProcess:
    """A `StoreWriter` in a child process, driven round by round over a pipe (`round` blocks until the child
    answers). A child that dies is started again on the next round; that round's requests get `StoreFailed`."""

    def __init__(self, db_path: str | os.PathLike[str], watch: list[Path] | None, idle: float) -> None:
        self.args = (str(db_path), [str(p) for p in watch or []], idle)
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child, *self.args), name="agent-debug-store-writer",
                                 daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def round(self, jobs: list[Job], stopping: bool = False) -> Round:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            try:
                self._conn.send(("round", jobs, stopping))
                done: Round = self._conn.recv()
                return done
            except (EOFError, OSError) as exc:  # the child died (killed, out of memory): start it again next time
                self._stop_child()
                reason = f"the store writer process ended ({type(exc).__name__}); started again"
                return Round(answers={job_id: StoreFailed(reason) for job_id, _ in jobs}, errors=[reason])

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            if self._proc is None:
                return
            try:
                self._conn.send(("stop",))
                self._conn.recv()
            except (EOFError, OSError):
                pass
            self._proc.join(timeout)
            self._stop_child()

    def _stop_child(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


def _child_main(conn: Any, db_path: str, watch: list[str], idle: float) -> None:
    """The writer process: rounds until told to stop, or until the server goes away (the pipe closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops us in order
    writer = StoreWriter(db_path, [Path(p) for p in watch], idle)
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "stop":
                conn.send(True)
                return
            conn.send(writer.round(msg[1], msg[2]))
    finally:
        writer.close()
