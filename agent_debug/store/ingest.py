"""Ingest trace files into the store: append-only, idempotent, incremental.

- Dedupe on (trace_id, span_id) with a content hash: the same record again is a duplicate; the same ids with
  different content are kept as a conflict and reported.
- Incremental: each file's consumed offset is remembered; a growing `x.jsonl` is read from where we stopped,
  and its rotated copy `x.<time>.jsonl.gz` is recognised by the hash of its first bytes, so only what follows
  the part already read is parsed.
- Rejected records go verbatim to a rejects file beside the store, with their source, location and reason.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import time
import zlib
from operator import itemgetter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import orjson

from agent_debug.analysis.spans import TraceSpans, TraceSummary, envelope_of, summarize
from agent_debug.errors import NothingReadable
from agent_debug.formats.reader import GZ, FileReport, ReadReport, expand_paths, open_binary, read_file_pairs
from agent_debug.store.db import connect

try:
    from isal import isal_zlib as _compress_impl  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    _compress_impl = zlib

HEAD = 4096
FLUSH_RECORDS = 20_000
KEY_CACHE_SPANS = 500_000  # span keys of existing traces kept in memory during one ingest


def rejects_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.stem + ".rejects.jsonl")


def content_hash(raw: bytes) -> int:
    """crc32 and length in one int64: cheap, stable across processes, ample for telling versions apart."""
    return (len(raw) << 32) | zlib.crc32(raw)


@dataclass
class IngestResult:
    """What one `ingest` did."""

    files: int = 0
    files_skipped: int = 0  # unchanged since the last ingest
    records: int = 0  # kept (new)
    duplicates: int = 0
    rejected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    conflict_list: list[dict[str, Any]] = field(default_factory=list)
    traces: int = 0  # traces touched
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    db: str = ""
    readable: int = 0  # valid records read, new or not
    nothing_readable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Chunk:
    """The new spans of one trace since the last flush: one row per span (see STORED_ROW) and its raw line."""

    __slots__ = ("keys", "rows", "raws", "roots")

    def __init__(self, keys: dict[str, int]) -> None:
        self.keys = keys
        self.rows: list[tuple[Any, ...]] = []
        self.raws: list[bytes] = []
        self.roots: dict[str, dict[str, Any]] = {}

    def pack(self) -> bytes:
        return msgpack.packb({"rows": self.rows, "roots": self.roots})


# A chunk's `cols` holds {"rows": [STORED_ROW...], "roots": {span_id: envelope}}: record values as they came
# (the spec's defaults are applied when loading, to keep ingest cheap).
STORED_ROW = ("span_id", "parent_id", "agent_name", "event_type", "name", "status", "timestamp", "duration_ns",
              "token_cost", "hash")


def unpack_rows(cols: bytes) -> dict[str, Any]:
    return msgpack.unpackb(cols, use_list=False)


class _Agg:
    """A new trace's summary, accumulated chunk by chunk during ingest (no reload, no per-record pass in
    Python beyond a few C-level maps). Must agree with `analysis.spans.summarize`."""

    __slots__ = ("n", "start", "end", "agents", "errors", "ptok", "ctok", "cost", "roots")

    def __init__(self) -> None:
        self.n = 0
        self.start = float("inf")
        self.end = float("-inf")
        self.agents: set[str] = set()
        self.errors = 0
        self.ptok = self.ctok = 0
        self.cost = 0.0
        self.roots: list[tuple[Any, ...]] = []  # (row, envelope)

    def update(self, rows: list[tuple[Any, ...]], roots: dict[str, dict[str, Any]]) -> None:
        self.n += len(rows)
        self.start = min(self.start, min(map(_ts, rows)))
        self.end = max(self.end, max(round(r[6] * 1_000_000) * 1000 + r[7] for r in rows))
        self.agents.update(map(_agent, rows))
        self.errors += sum(1 for r in rows if r[5] == "error")
        for tc in map(_tc, rows):
            if tc:
                self.ptok += int(tc.get("prompt_tokens") or 0)
                self.ctok += int(tc.get("completion_tokens") or 0)
                self.cost += float(tc.get("cost_usd") or 0.0)
        for r in rows:
            if r[1] is None:
                self.roots.append((r, roots.get(r[0], {})))

    def summary(self, trace_id: str) -> TraceSummary:
        ts = TraceSpans(trace_id)
        ts.extend_rows(r for r, _ in self.roots)
        ts.envelopes = {r[0]: env for r, env in self.roots}
        s = summarize(ts)
        s.start_ns = round(self.start * 1_000_000) * 1000
        s.end_ns = self.end
        if s.root_span_id is None:
            s.duration_ns = s.end_ns - s.start_ns
        s.span_count = self.n
        s.agents = sorted(self.agents)
        s.error_spans = self.errors
        s.prompt_tokens, s.completion_tokens, s.cost_usd = self.ptok, self.ctok, round(self.cost, 6)
        return s


_ts = itemgetter(6)
_agent = itemgetter(2)
_tc = itemgetter(8)


class _Ingest:
    def __init__(self, db: sqlite3.Connection, db_path: Path, progress: Callable[[int, int], None] | None) -> None:
        self.db = db
        self.db_path = db_path
        self.progress = progress
        self.result = IngestResult(db=str(db_path))
        self.known: set[str] = {r[0] for r in db.execute("SELECT trace_id FROM traces")}
        self.touched: set[str] = set()
        self.aggs: dict[str, _Agg] = {}
        self.keys: dict[str, dict[str, int]] = {}
        self.key_spans = 0
        self.pending: dict[str, _Chunk] = {}
        self.pending_n = 0
        self.ingest_id = int(db.execute("INSERT INTO ingests (started_at) VALUES (?) RETURNING id",
                                        (time.time(),)).fetchone()[0])
        self.rejects_fh: Any = None
        self.seen = 0

    # -- files ------------------------------------------------------------------------------------------------

    def file(self, path: Path, report: ReadReport, format: str | None) -> None:
        st = path.stat()
        compressed = path.name.endswith(GZ)
        row = self.db.execute("SELECT size, mtime, offset, line, head_len, head_hash, complete FROM files "
                              "WHERE path = ?", (str(path.resolve()),)).fetchone()
        if row and row[6] and row[0] == st.st_size and row[1] == st.st_mtime:
            self.result.files_skipped += 1
            return
        head = _head(path)
        start, line = 0, 0
        if row and not compressed and st.st_size >= row[2] and row[4] and _hash(head[: row[4]]) == row[5]:
            start, line = row[2], row[3]  # the same file, grown: read only the new bytes
        elif compressed and head:
            prior = self.db.execute(
                "SELECT offset, line FROM files WHERE head_hash = ? AND head_len = ? AND compressed = 0 "
                "ORDER BY offset DESC LIMIT 1", (_hash(head), len(head))).fetchone()
            if prior:
                start, line = prior  # a rotated copy of a file already read: skip what we have
        self.result.files += 1
        self.add_all(read_file_pairs(path, report, start_offset=start, start_line=line, format=format))
        frep = report.files[-1]
        self._flush_rejects(report)
        self.flush()
        self._remember(path, st, frep, head, compressed)

    def _remember(self, path: Path, st: os.stat_result, frep: FileReport, head: bytes, compressed: bool) -> None:
        complete = compressed and frep.truncated is None
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (str(path.resolve()), st.st_size, st.st_mtime, frep.end_offset, frep.lines, len(head), _hash(head),
             int(compressed), int(complete), frep.records, time.time()),
        )

    # -- records ----------------------------------------------------------------------------------------------

    def _builder(self, trace_id: str) -> _Chunk:
        b = self.pending.get(trace_id)
        if b is None:
            b = self.pending[trace_id] = _Chunk(self._existing_keys(trace_id))
        return b

    def _existing_keys(self, trace_id: str) -> dict[str, int]:
        keys = self.keys.get(trace_id)
        if keys is None:
            keys = {}
            if trace_id in self.known or trace_id in self.touched:
                for (cols,) in self.db.execute("SELECT cols FROM chunks WHERE trace_id = ?", (trace_id,)):
                    keys.update((row[0], row[9]) for row in unpack_rows(cols)["rows"])
            if self.key_spans > KEY_CACHE_SPANS:
                self.keys.clear()
                self.key_spans = 0
            self.keys[trace_id] = keys
            self.key_spans += len(keys)
        return keys

    def add_all(self, pairs: Iterable[tuple[dict[str, Any], bytes | None]]) -> None:
        """The hot loop of ingest: dedupe, and queue each new record as one row of its trace's chunk."""
        crc = zlib.crc32
        dumps = orjson.dumps
        pending = self.pending
        n = self.pending_n
        last_tid = None
        keys: dict[str, int] = {}
        rows: list[tuple[Any, ...]] = []
        raws: list[bytes] = []
        b: _Chunk | None = None
        for rec, raw in pairs:
            if raw is None:
                raw = dumps(rec, option=orjson.OPT_SORT_KEYS)
            tid = rec["trace_id"]
            if tid != last_tid or b is None:
                b = pending.get(tid) or self._builder(tid)
                keys, rows, raws, last_tid = b.keys, b.rows, b.raws, tid
            h = (len(raw) << 32) | crc(raw)
            sid = rec["span_id"]
            old = keys.get(sid)
            if old is not None:
                if old == h:
                    self.result.duplicates += 1
                else:
                    self._conflict(tid, sid, h, raw)
                continue
            keys[sid] = h
            parent = rec["parent_id"]
            rows.append((sid, parent, rec["agent_name"], rec["event_type"], rec.get("name"), rec.get("status"),
                         rec["timestamp"], rec["duration_ns"], rec.get("token_cost"), h))
            raws.append(raw)
            if parent is None:
                b.roots[sid] = envelope_of(rec)
            n += 1
            if n >= FLUSH_RECORDS:
                self.pending_n = n
                self.flush()
                n = 0
                b = None
        self.pending_n = n

    def flush(self) -> None:
        if not self.pending:
            return
        self.db.execute("BEGIN")
        try:
            for trace_id, chunk in self.pending.items():
                self.touched.add(trace_id)
                if chunk.raws:
                    if trace_id not in self.known:
                        agg = self.aggs.get(trace_id)
                        if agg is None:
                            agg = self.aggs[trace_id] = _Agg()
                        agg.update(chunk.rows, chunk.roots)
                    self.db.execute(
                        "INSERT INTO chunks (trace_id, n, cols, records, codec, ingest_id) VALUES (?,?,?,?,?,?)",
                        (trace_id, len(chunk.raws), chunk.pack(),
                         _compress_impl.compress(b"\n".join(chunk.raws), 1), "zlib", self.ingest_id),
                    )
                    self.result.records += len(chunk.raws)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.seen += self.pending_n
        self.pending.clear()
        self.pending_n = 0
        if self.progress is not None:
            self.progress(self.seen, self.result.records)

    def _conflict(self, trace_id: str, span_id: str, h: int, raw: bytes) -> None:
        cur = self.db.execute("INSERT OR IGNORE INTO conflicts VALUES (?,?,?,?,?,?,?)",
                              (trace_id, span_id, h, raw, None, None, time.time()))
        if cur.rowcount:
            self.result.conflicts += 1
            if len(self.result.conflict_list) < 100:
                self.result.conflict_list.append({"trace_id": trace_id, "span_id": span_id})

    def _flush_rejects(self, report: ReadReport) -> None:
        if not report.rejects:
            return
        if self.rejects_fh is None:
            path = rejects_path(self.db_path)
            self.rejects_fh = open(path, "ab")
            self.result.rejects_file = str(path)
        for r in report.rejects:
            entry: dict[str, Any] = {"source": r.source, "location": r.location, "reason": r.reason,
                                     "ingest": self.ingest_id}
            try:
                entry["raw"] = r.raw.decode("utf-8")
            except UnicodeDecodeError:
                entry["raw_base64"] = base64.b64encode(r.raw).decode()
            self.rejects_fh.write(orjson.dumps(entry) + b"\n")
        report.rejects.clear()

    # -- summaries --------------------------------------------------------------------------------------------

    def summarize_touched(self) -> None:
        self.db.execute("BEGIN")
        for trace_id in self.touched:
            agg = self.aggs.get(trace_id)
            if agg is not None:
                s = agg.summary(trace_id)
            elif trace_id in self.known:  # it had spans before: summarize all of them again
                s = summarize(load_columns(self.db, trace_id))
            else:  # touched, but every record was a duplicate or conflict
                continue
            self.db.execute(
                "INSERT OR REPLACE INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (s.trace_id, s.root_span_id, s.run_id, s.session_id, s.workflow, s.actor, s.status, s.start_ns,
                 s.end_ns, s.duration_ns, s.span_count, s.roots, orjson.dumps(s.agents).decode(), s.error_spans,
                 s.prompt_tokens, s.completion_tokens, s.cost_usd, s.source_file, s.source_format, time.time()),
            )
        self.db.execute("COMMIT")


def load_columns(db: sqlite3.Connection, trace_id: str, with_records: bool = False) -> TraceSpans:
    """A trace's spans from its chunks; the full records too when asked (decompress + parse)."""
    ts = TraceSpans(trace_id, records=[] if with_records else None)
    for cols, records in db.execute(
        "SELECT cols, records FROM chunks WHERE trace_id = ? ORDER BY id", (trace_id,)
    ):
        c = unpack_rows(cols)
        ts.extend_rows(c["rows"])
        ts.envelopes.update(c.get("roots") or {})
        if with_records:
            assert ts.records is not None
            ts.records.extend(orjson.loads(line) for line in zlib.decompress(records).split(b"\n"))
    return ts


def _head(path: Path) -> bytes:
    try:
        with open_binary(path) as fh:
            return fh.read(HEAD)[:HEAD]
    except OSError:
        return b""


def _hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def ingest(
    paths: Iterable[str | os.PathLike[str]],
    db_path: str | os.PathLike[str],
    *,
    format: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Ingest every trace file under `paths` into the store at `db_path`.

    Raises UsageError for a missing path and NothingReadable when no trace file is found. A result with
    `nothing_readable` means files were read but not one record in them was valid (everything already ingested
    is not that: it is a success with 0 new records).
    """
    t0 = time.perf_counter()
    db_path = Path(db_path)
    report = ReadReport()
    paths = list(paths)
    files = expand_paths(paths, report)
    if not files:
        raise NothingReadable("no trace files found in " + ", ".join(str(p) for p in paths))
    db = connect(db_path)
    job = _Ingest(db, db_path, progress)
    try:
        for path in files:
            job.file(path, report, format)
        job.flush()
        job.summarize_touched()
    finally:
        if job.rejects_fh is not None:
            job.rejects_fh.close()
    res = job.result
    res.rejected = report.rejected
    res.rejects_by_reason = dict(report.reject_reasons)
    res.notices = report.notices
    res.traces = len(job.touched)
    res.seconds = round(time.perf_counter() - t0, 3)
    db.execute("UPDATE ingests SET seconds=?, files=?, records=?, duplicates=?, rejected=?, conflicts=?, traces=? "
               "WHERE id=?", (res.seconds, res.files, res.records, res.duplicates, res.rejected, res.conflicts,
                              res.traces, job.ingest_id))
    db.close()
    res.readable = sum(f.records for f in report.files)
    res.nothing_readable = res.readable == 0 and res.files > 0 and res.files_skipped == 0 and (
        res.rejected > 0 or any(f.truncated or f.skipped for f in report.files))
    return res
