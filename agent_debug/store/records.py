"""Ingest records already in memory (the spans of OTLP requests, say) with the guarantees of file ingest, and
files over time (a followed directory).

Each batch goes through the very path a file takes (`ingest._Ingest.unit`): the same acceptance check, dedupe
against the spans the store holds, conflicts kept, chunks and the touched traces' summaries written in one
transaction, under the store's ingest lock (`consistency.exclusive`), so a batch is stored whole or not at all
and never interleaves with an `agent-debug ingest` or a watched directory's ingest of the same store.

`RecordIngest` is made to be fed over time (`serve` stores every round of requests through one): between
batches it keeps what a file ingest keeps while it reads (the span keys of live traces for dedupe, and the
running summaries of the traces it created), so a run that arrives in a hundred pieces is not read back from
the store a hundred times. What another writer stored meanwhile is noticed when the lock is taken again (the
chunks added since this ingester's last commit) and those traces are read from the store afresh. A failed batch
drops all of it: the next batch starts from the store as committed.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agent_debug.formats.reader import Batch, FileReport, ReadReport, Reject, _checked_columns
from agent_debug.gcpause import gc_paused
from agent_debug.model import check_record
from agent_debug.store.chunks import SpanKeys, json_default as _json_default
from agent_debug.store.consistency import exclusive
from agent_debug.store.db import connect
from agent_debug.store.ingest import IngestResult, _Ingest, rejects_path

MAX_LIVE_TRACES = 2_000  # traces whose span keys and running summaries stay in memory between batches
LINE_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def record_line(rec: dict[str, Any]) -> bytes:
    """A record as the store keeps one it did not read from a file: canonical JSON (sorted keys) and a newline.
    The same record always gives the same bytes, so the content hash tells a repeat from a change."""
    return orjson.dumps(rec, option=LINE_OPTIONS, default=_json_default) + b"\n"


@dataclass
class RecordsResult(IngestResult):
    """What one batch did; `rejected_at` are the positions of the records rejected (in the batch's order)."""

    rejected_at: list[int] = field(default_factory=list)


class _KnownTraces:
    """Whether a trace had spans in the store when this ingester first met it (then its summary is recomputed
    from the store; otherwise it is accumulated), asked of the store once per trace instead of listing them all."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.memo: dict[str, bool] = {}

    def __contains__(self, trace_id: object) -> bool:
        if not isinstance(trace_id, str):
            return False
        got = self.memo.get(trace_id)
        if got is None:
            got = self.memo[trace_id] = self.db.execute(
                "SELECT 1 FROM traces WHERE trace_id = ?", (trace_id,)).fetchone() is not None
        return got


class RecordIngest:
    """Batches of records into one store, over time. Not thread-safe: one owner (serve's writer thread)."""

    def __init__(self, db_path: str | os.PathLike[str], *, source: str = "records",
                 keep_traces: int = MAX_LIVE_TRACES) -> None:
        self.db_path = Path(db_path)
        self.source = source
        self.keep_traces = keep_traces
        self._db: sqlite3.Connection | None = None
        self._job: _Ingest | None = None
        self._known: _KnownTraces | None = None
        self._last_chunk = 0  # the highest chunk id once this ingester's last batch committed
        self._live: OrderedDict[str, SpanKeys] = OrderedDict()  # trace -> its span keys, least recent first
        self._rejected = 0  # over this ingester's life (its `ingests` row)
        self._seconds = 0.0

    def add(self, records: Sequence[Any], lines: Sequence[bytes] | None = None) -> RecordsResult:
        """Store a batch in one transaction. `lines`, when given, are the records as `record_line` makes them
        (a caller that serialized them already saves doing it again). A record that is not valid is a counted
        reject, kept in the rejects file under `source`; it never aborts the batch."""
        t0 = time.perf_counter()
        report = ReadReport()
        frep = FileReport(self.source, format="records")
        report.files.append(frep)
        batch, rejected_at = self._checked(records, lines, report, frep)
        out = RecordsResult(rejected_at=rejected_at)
        self._run(out, report, lambda job: job.unit(self.source, [batch] if batch[0] else [], report), t0)
        out.nothing_readable = out.readable == 0 and out.rejected > 0
        return out

    def add_files(self, paths: Sequence[Path]) -> IngestResult:
        """Ingest trace files as `agent-debug ingest` does (each file in its own transaction, only what it gained
        since it was last read, rotated copies recognised), keeping this ingester's state: `serve --watch`."""
        t0 = time.perf_counter()
        report = ReadReport()
        out = IngestResult()

        def files(job: _Ingest) -> None:
            for path in paths:
                job.file(Path(path), report, None)

        self._run(out, report, files, t0)
        out.notices = report.notices + out.notices
        return out

    def _run(self, out: IngestResult, report: ReadReport, work: Callable[[_Ingest], None], t0: float) -> None:
        """Do `work` under the store's ingest lock with this ingester's state; fill `out` with what it did."""
        with exclusive(self.db_path) as waited, gc_paused():
            job = self._begin()
            res = job.result
            before = (res.records, res.duplicates, res.conflicts, len(res.conflict_list), res.files,
                      res.files_skipped, res.files_gone)
            touched: set[str] = set()

            def before_commit() -> None:  # in each unit's transaction, its chunks and summaries written
                touched.update(job.file_touched)
                self._keep(job, job.file_touched)
                job.keys = dict(self._live)  # for the next unit (a flush keeps only the keys of its own traces)
                self._finish(job, self._rejected + report.rejected, self._seconds + time.perf_counter() - t0)

            job.before_commit = before_commit
            try:
                work(job)
                self._last_chunk = int(job.db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()[0])
            except BaseException:
                self._reset()  # what is in memory may be ahead of the store: start again from the store
                raise
            finally:
                job.before_commit = None
                if job.rejects_fh is not None:  # the next call appends at the end, whoever wrote meanwhile
                    job.rejects_fh.close()
                    job.rejects_fh = None
            self._rejected += report.rejected
            self._seconds += time.perf_counter() - t0
        out.db = str(self.db_path)
        out.records, out.duplicates, out.conflicts = (res.records - before[0], res.duplicates - before[1],
                                                      res.conflicts - before[2])
        out.conflict_list = res.conflict_list[before[3]:]
        out.files, out.files_skipped, out.files_gone = (res.files - before[4], res.files_skipped - before[5],
                                                        res.files_gone - before[6])
        out.rejected, out.rejects_by_reason = report.rejected, dict(report.reject_reasons)
        out.traces, out.rejects_file = len(touched), res.rejects_file
        out.readable = out.records + out.duplicates + out.conflicts
        if waited >= 1.0:
            out.notices.append(f"waited {waited:.1f}s for another ingest into {self.db_path} to finish")
        out.seconds = round(time.perf_counter() - t0, 3)

    def close(self) -> None:
        if self._job is not None:
            self._job.close()
            self._job = None
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- checking -----------------------------------------------------------------------------------------------

    def _checked(self, records: Sequence[Any], lines: Sequence[bytes] | None, report: ReadReport,
                 frep: FileReport) -> tuple[Batch, list[int]]:
        """The valid records as one reader batch (columns checked in C when every record passes at once, as
        the readers do), and the positions of the others, counted and kept as rejects."""
        recs = list(records)
        cols = _checked_columns(recs) if recs else None
        if cols is not None and math.isfinite(math.fsum(cols["timestamp"])):  # NaN is no JSON value: not checked
            frep.records = len(recs)
            return (recs, list(lines) if lines is not None else list(map(record_line, recs)), cols), []
        keep: list[int] = []
        rejected_at: list[int] = []
        for i, rec in enumerate(recs):
            reason = check_record(rec) if isinstance(rec, dict) else "not an object"
            if reason is None:
                keep.append(i)
                continue
            rejected_at.append(i)
            frep.rejected += 1
            report.reject_reasons[reason.split(":", 1)[0]] += 1
            report.rejects.append(Reject(self.source, f"record {i}", reason, _raw(rec)))
        frep.records = len(keep)
        kept = [recs[i] for i in keep]
        kept_lines: list[bytes | None] = [lines[i] for i in keep] if lines is not None else [None] * len(keep)
        return (kept, kept_lines, None), rejected_at

    # -- state between batches ------------------------------------------------------------------------------------

    def _begin(self) -> _Ingest:
        """The ingest to store the next batch with (under the lock): made on first use; otherwise told what
        other writers stored since this one's last commit."""
        if self._db is None:
            self._db = connect(self.db_path)
        db = self._db
        if self._job is None:
            self._known = _KnownTraces(db)
            self._job = _Ingest(db, self.db_path, None, known=self._known)
            self._last_chunk = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()[0])
            self._live.clear()
        job = self._job
        others = [tid for (tid,) in db.execute("SELECT DISTINCT trace_id FROM chunks WHERE id > ?",
                                               (self._last_chunk,))]
        for tid in others:  # another writer gave these spans: what we hold of them is stale
            self._forget(job, tid)
        # another ingest appended rejects and committed them, or was stopped before its commit: as an ingest
        # starts (but only then: it writes to the store)
        row = db.execute("SELECT value FROM meta WHERE key = 'rejects_size'").fetchone()
        try:
            size = os.stat(rejects_path(self.db_path)).st_size
        except FileNotFoundError:
            size = 0
        if row is None or int(row[0]) != job.rejects_committed or size != job.rejects_committed:
            job.rejects_committed = job._recover_rejects()
        job.keys = dict(self._live)  # `flush` keeps those of the batch's traces (see `_keep`)
        return job

    def _keep(self, job: _Ingest, touched: Iterable[str]) -> None:
        """Keep the span keys of the traces this batch touched (most recent last), up to `keep_traces`."""
        for tid in touched:
            keys = job.keys.get(tid)
            if keys is None:
                continue
            self._live[tid] = keys
            self._live.move_to_end(tid)
        while len(self._live) > self.keep_traces:
            tid = next(iter(self._live))
            self._forget(job, tid)

    def _forget(self, job: _Ingest, tid: str) -> None:
        """Drop what is in memory of a trace; it is read from the store when it comes back."""
        self._live.pop(tid, None)
        job.aggs.pop(tid, None)
        job.touched.discard(tid)
        job.keys.pop(tid, None)
        if self._known is not None:
            self._known.memo.pop(tid, None)

    def _finish(self, job: _Ingest, rejected: int, seconds: float) -> None:
        """In a unit's transaction: this ingester's `ingests` row counts everything it stored so far, and is
        marked finished (an ingest starting meanwhile takes a row without `seconds` for one it must take over)."""
        res = job.result
        job.db.execute("UPDATE ingests SET seconds=?, files=?, records=?, duplicates=?, rejected=?, conflicts=?, "
                       "traces=? WHERE id=?", (round(seconds, 3), res.files, res.records, res.duplicates, rejected,
                                               res.conflicts, len(job.touched), job.ingest_id))

    def _reset(self) -> None:
        if self._job is not None:
            self._job._rollback()  # a failure before the batch's transaction body began is not rolled back yet
            self._job.close()
        self._job = None
        self._known = None
        self._live.clear()


def ingest_records(records: Iterable[Any], db_path: str | os.PathLike[str], *,
                   source: str = "records") -> RecordsResult:
    """One batch of in-memory records into the store (see `RecordIngest.add`)."""
    ing = RecordIngest(db_path, source=source)
    try:
        return ing.add(list(records))
    finally:
        ing.close()


def _raw(rec: Any) -> bytes:
    """A rejected record as it can be kept (whatever it holds)."""
    try:
        return orjson.dumps(rec, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return repr(rec).encode("utf-8", "replace")
