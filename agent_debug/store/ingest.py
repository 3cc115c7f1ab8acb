"""Ingest trace files into the store: append-only, idempotent, incremental.

- Dedupe on (trace_id, span_id) with a content hash: the same record again is a duplicate; the same ids with
  different content are kept as a conflict and reported.
- Incremental: each file's consumed offset is remembered; a growing `x.jsonl` is read from where we stopped,
  and its rotated copy `x.<time>.jsonl.gz` is recognised by the hash of its first bytes, so only what follows
  the part already read is parsed.
- Rejected records go verbatim to a rejects file beside the store, with their source, location and reason.
- Crash-consistent: a file is one transaction (its chunks, the summaries of the traces it touched, its offset,
  the rejects file's size), so an ingest killed or failing anywhere leaves the store as of its last whole
  file, and the next one goes on from there as if it had never stopped (rejects past the committed size are
  cut off; an unfinished ingest's id is reused). A file is read through one open handle: rotation renaming or
  replacing it meanwhile cannot mix two files, and one gone since it was listed is skipped (its content is read
  under its rotated name). Ingests into one store take turns (`store.consistency`).

Speed (why it looks the way it does): the reader hands over records in small batches, already checked and
split into columns with C-level passes (`formats.reader.read_file_batches`). Ingest finishes each batch while
it is still in the CPU cache: content hashes, dedupe against the trace's known span ids (set and dict operations;
a per-record loop only when an id repeats), the trace's running summary, and the batch's columns encoded as
JSON and its lines kept as one bytes object (the chunk format, its writer and its reader: `store.chunks`).
Then the batch is dropped: nothing per record stays in memory but the span ids kept for dedupe and the raw
lines of the pending chunks, so memory is reused while hot instead of growing and being walked again later.
Every FLUSH_RECORDS records (or MAX_PENDING_TRACES traces) the pending chunks' lines go to a compressor thread
(one task per chunk: zlib and isal release the GIL, so the compression runs on a second core while the next
chunk is parsed), and the chunks of the flush before are written (in the file's transaction). There is no
Python loop per record on the common path. (A writer thread that also did SQLite and handed batches over
one by one was measured slower: GIL hand-offs cost more than the overlap gained. The compressor alone, a few
tasks per second, measured 0.56 against 0.50 of the bare loop's rate back to back.) The cyclic GC is paused
meanwhile: records form no cycles, and the collector would only rescan the dedupe keys over and over.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Container, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from operator import add
from pathlib import Path
from typing import IO, Any

import orjson

from agent_debug.columns import TraceSpans, TraceSummary, envelope_of, saturated, summarize, token_columns
from agent_debug.digest import digest_batch
from agent_debug.errors import NothingReadable
from agent_debug.formats.reader import (
    GZ,
    Batch,
    Columns,
    FileReport,
    ReadReport,
    expand_paths,
    open_binary,
    read_file_batches,
    record_columns,
)
from agent_debug.gcpause import gc_paused
from agent_debug.store.chunks import (
    STORED_COLUMNS,
    ChunkBuilder,
    SpanKeys,
    append_batch,
    compress_records,
    content_hash,
    crc32,
    decode,
    encode,
    json_default,
    parent_ids,
    stored_batch,
)
from agent_debug.store.consistency import FAULT_ENV, Fault, InjectedFault, exclusive, write_summary
from agent_debug.store.db import connect, rejects_path
from agent_debug.store.load import LazyRecords, load_columns

__all__ = ["FAULT_ENV", "IngestResult", "InjectedFault", "LazyRecords", "content_hash", "ingest", "load_columns",
           "rejects_path"]

HEAD = 4096
FLUSH_RECORDS = 20_000
MAX_PENDING_TRACES = 1000  # traces with spans waiting for a flush (each holds a compressor of ~70 KB)


@dataclass
class IngestResult:
    """What one `ingest` did."""

    files: int = 0
    files_skipped: int = 0  # unchanged since the last ingest
    files_gone: int = 0  # removed between listing and reading (rotation): read under their new names
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


def _take(seq: Sequence[Any], idx: list[int]) -> list[Any]:
    return [seq[i] for i in idx]


DIGEST_RECORDS = 1024


def _take_cols(cols: Columns, idx: list[int]) -> Columns:
    """A batch's columns (and span digests) of the records at `idx`."""
    out: dict[str, Any] = {k: _take(v, idx) for k, v in cols.items() if k != "dg"}
    if "dg" in cols:
        d: dict[str, Any] = cols["dg"]  # type: ignore[assignment]  # the digests: a dict among the columns
        at = {old: new for new, old in enumerate(idx)}
        out["dg"] = {"df": _take(d["df"], idx), "ol": _take(d["ol"], idx), "ih": _take(d["ih"], idx),
                     "da": {k: kept for k, pairs in d["da"].items()
                            if (kept := [[at[p], v] for p, v in pairs if p in at])}}
    return out


def _digest_slice(d: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """The span digests (`digest.digest_batch`) of records start..end of a batch, positions from start."""
    da: dict[str, list[list[Any]]] = {}
    for k, pairs in d["da"].items():
        got = [[p - start, v] for p, v in pairs if start <= p < end]
        if got:
            da[k] = got
    return {"df": d["df"][start:end], "ol": d["ol"][start:end], "ih": d["ih"][start:end], "da": da}



class _Agg:
    """A new trace's summary, accumulated chunk by chunk during ingest (no reload, no per-record pass in
    Python beyond a few C-level maps). Must agree with `columns.summarize` (a property test checks it)."""

    __slots__ = ("n", "start", "end", "agents", "errors", "ptok", "ctok", "cost", "root_cols", "envelopes")

    def __init__(self) -> None:
        self.n = 0
        self.start = 0  # set by the first update
        self.end = 0
        self.agents: set[str] = set()
        self.errors = 0
        self.ptok = self.ctok = 0
        self.cost = 0.0
        self.root_cols: dict[str, list[Any]] = {k: [] for k in STORED_COLUMNS}
        self.envelopes: dict[str, dict[str, Any]] = {}

    def update(self, cols: dict[str, Any], roots: list[int]) -> None:
        """Add a batch of the trace's new spans (`roots`: positions of those without a parent)."""
        start, dur = cols["start_ns"], cols["duration_ns"]
        first = self.n == 0
        self.n += len(start)
        self.start = min(start) if first else min(self.start, min(start))
        end = max(map(add, start, dur))
        self.end = end if first else max(self.end, end)
        self.agents.update(cols["agent_name"])
        if cols["status"] is not None:
            self.errors += cols["status"].count("error")
        costs = list(filter(None, cols["token_cost"]))
        if costs:
            self._add_tokens(costs)
        for i in roots:
            for k, v in self.root_cols.items():
                col = cols[k]
                v.append(col[i] if col is not None else "ok")  # None: a status column of all "ok"

    def _add_tokens(self, costs: list[dict[str, Any]]) -> None:
        p, c, usd = token_columns(costs)  # what counts, as loading counts it (summed in C)
        self.ptok += sum(p)
        self.ctok += sum(c)
        self.cost += sum(usd)

    def summary(self, trace_id: str) -> TraceSummary:
        ts = TraceSpans(trace_id)
        append_batch(ts, self.root_cols)
        ts.envelopes = self.envelopes
        s = summarize(ts)
        s.start_ns = self.start
        s.end_ns = self.end
        if s.root_span_id is None:
            s.duration_ns = saturated(s.end_ns - s.start_ns)
        s.span_count = self.n
        s.agents = sorted(self.agents)
        s.error_spans = self.errors
        s.prompt_tokens, s.completion_tokens = saturated(self.ptok), saturated(self.ctok)
        s.cost_usd = round(self.cost, 6)
        return s


class _Ingest:
    def __init__(self, db: sqlite3.Connection, db_path: Path, progress: Callable[[int, int], None] | None,
                 known: Container[str] | None = None) -> None:
        self.db = db
        self.db_path = db_path
        self.progress = progress
        self.result = IngestResult(db=str(db_path))
        # traces that had spans before (their summaries are recomputed from the store); `store.records` asks
        # the store per trace instead of listing them all
        self.known: Container[str] = (known if known is not None
                                      else {r[0] for r in db.execute("SELECT trace_id FROM traces")})
        self.touched: set[str] = set()
        self.file_touched: set[str] = set()  # traces given spans by the file being read (its summaries)
        self.aggs: dict[str, _Agg] = {}
        self.keys: dict[str, SpanKeys] = {}  # the known spans of the traces in the last flush (see `flush`)
        self.pending: dict[str, ChunkBuilder] = {}
        self.pending_n = 0
        # an ingest that never finished (killed; its files' transactions that committed are kept) is continued
        # by this one, under its id: the store ends as if it had never stopped
        db.execute("DELETE FROM ingests WHERE seconds IS NULL")
        self.ingest_id = int(db.execute("INSERT INTO ingests (started_at) VALUES (?) RETURNING id",
                                        (time.time(),)).fetchall()[0][0])
        self.rejects_fh: Any = None
        self.seen = 0
        self._compressor: ThreadPoolExecutor | None = None
        self.inflight: list[tuple[tuple[Any, ...], Future[bytes]]] = []  # the last flush's chunks, compressing
        self.inflight_traces: set[str] = set()
        self.rejects_committed = self._recover_rejects()
        self.fault = Fault.from_env()
        # written in every unit's transaction (an ingester fed over time keeps its `ingests` row up to date)
        self.before_commit: Callable[[], None] | None = None

    # -- files ------------------------------------------------------------------------------------------------

    def file(self, path: Path, report: ReadReport, format: str | None) -> None:
        """Read one file into the store in one transaction (see `store.db`: its chunks, the summaries of the
        traces they touch, its offset). It is read through one handle, so rotation renaming or replacing it
        meanwhile changes nothing we read; a file gone since it was listed is skipped: its content is found
        under its rotated name (by its head, see `_rotated_from`)."""
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            self.result.files_gone += 1
            return
        except OSError as exc:
            report.files.append(FileReport(str(path), skipped=f"cannot open: {exc.strerror or exc}"))
            return
        with fh:
            st = os.fstat(fh.fileno())
            compressed = path.name.endswith(GZ)
            key = str(path.resolve())
            row = self.db.execute("SELECT size, mtime, offset, line, head_len, head_hash, complete, records "
                                  "FROM files WHERE path = ?", (key,)).fetchone()
            if row and (row[6] or compressed) and row[0] == st.st_size and row[1] == st.st_mtime:
                # a complete .gz seen before, or a cut one that has not changed since (a compressed file is not
                # appended to: a cut one only ever gets longer while it is being written, and is then read again)
                self.result.files_skipped += 1
                return
            head = _head(path, fh)
            fh.seek(0)
            start, line, before = 0, 0, 0
            if row and not compressed and st.st_size >= row[2] and row[4] and _hash(head[: row[4]]) == row[5]:
                start, line, before = row[2], row[3], row[7]  # the same file, grown: read only the new bytes
            elif compressed and head:
                start, line = self._rotated_from(head)  # a rotated copy of a file already read: skip what we have
            self.result.files += 1
            self.unit(path.name, read_file_batches(path, report, start_offset=start, start_line=line, format=format,
                                                   opened=fh), report,
                      lambda: self._remember(key, st, report.files[-1], head, compressed, line, before))

    def unit(self, name: str, batches: Iterable[Batch], report: ReadReport,
             finish: Callable[[], None] | None = None) -> None:
        """Store one unit (a file, or a batch of records in memory) in one transaction: its chunks, the summaries
        of the traces it touched, its rejects' committed size, and whatever `finish` writes (a file's offset);
        on any failure, none of it."""
        self._begin(name)
        try:
            self.add_all(batches)
            self.flush()
            self.settle()  # everything read is in the store before a file's offset is remembered
            self._summarize(self.file_touched)
            self._flush_rejects(report)
            if finish is not None:
                finish()
            if self.before_commit is not None:
                self.before_commit()
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def _begin(self, name: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.file_touched = set()
        self.fault.file = name
        self.fault.step("begin")

    def _commit(self) -> None:
        size = self.rejects_committed
        if self.rejects_fh is not None:
            self.rejects_fh.flush()  # on disk (the OS's) before the store says it is
            size = self.rejects_fh.tell()
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rejects_size', ?)", (size,))
            self.fault.step("rejects")
        self.db.execute("COMMIT")
        self.rejects_committed = size
        self.fault.step("commit")

    def _rollback(self) -> None:
        """Undo the file being read: the store's transaction, and the rejects written for it."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        for _, future in self.inflight:
            future.cancel()
        self.inflight, self.inflight_traces = [], set()
        if self.rejects_fh is not None:
            self.rejects_fh.flush()
            self.rejects_fh.truncate(self.rejects_committed)

    def _recover_rejects(self) -> int:
        """The rejects file's size as of the last committed file. Lines past it were written for a file whose
        transaction never committed (a killed ingest): that file is read again, so they are cut off here."""
        path = rejects_path(self.db_path)
        size = path.stat().st_size if path.exists() else 0
        row = self.db.execute("SELECT value FROM meta WHERE key = 'rejects_size'").fetchone()
        committed = int(row[0]) if row else size
        if size > committed:
            with open(path, "r+b") as fh:
                fh.truncate(committed)
        committed = min(size, committed)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rejects_size', ?)", (committed,))
        return committed

    def _rotated_from(self, head: bytes) -> tuple[int, int]:
        """(offset, line) read of the plain file whose content this compressed file starts with, or (0, 0).

        The plain file may have been shorter than HEAD when it was read (its head is then all of it), so a
        prefix of `head` of every recorded length is tried, the full head first."""
        prior = self.db.execute(
            "SELECT offset, line FROM files WHERE head_hash = ? AND head_len = ? AND compressed = 0 "
            "ORDER BY offset DESC LIMIT 1", (_hash(head), len(head))).fetchone()
        if prior:
            return int(prior[0]), int(prior[1])
        best = (0, 0)
        for offset, line, head_len, head_hash in self.db.execute(
            "SELECT offset, line, head_len, head_hash FROM files WHERE compressed = 0 AND head_len > 0 "
            "AND head_len < ? AND offset <= head_len", (len(head),)
        ):
            if offset > best[0] and _hash(head[:head_len]) == head_hash:
                best = (int(offset), int(line))
        return best

    def _remember(self, key: str, st: os.stat_result, frep: FileReport, head: bytes, compressed: bool,
                  start_line: int, records_before: int) -> None:
        """The file's new offset; its line count and records read so far (a resumed file: plus those before;
        a read that found nothing new leaves them as they were)."""
        complete = compressed and frep.truncated is None
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (key, st.st_size, st.st_mtime, frep.end_offset, max(frep.lines, start_line), len(head), _hash(head),
             int(compressed), int(complete), records_before + frep.records, time.time()),
        )

    # -- records ----------------------------------------------------------------------------------------------

    def _builder(self, trace_id: str) -> ChunkBuilder:
        b = self.pending.get(trace_id)
        if b is None:
            b = self.pending[trace_id] = ChunkBuilder(self._existing_keys(trace_id))
        return b

    def _existing_keys(self, trace_id: str) -> SpanKeys:
        keys = self.keys.get(trace_id)
        if keys is None:
            keys = SpanKeys()
            if trace_id in self.known or trace_id in self.touched:
                if trace_id in self.inflight_traces:
                    self.settle()
                for (cols,) in self.db.execute("SELECT cols FROM chunks WHERE trace_id = ? ORDER BY id",
                                               (trace_id,)):
                    keys.add_stored(decode(cols))
            self.keys[trace_id] = keys
        return keys

    def add_all(self, batches: Iterable[Batch]) -> None:
        """The hot loop of ingest (see the module docstring): each batch goes to its trace's pending chunk. The
        span digests (`analysis.digest`) are made for DIGEST_RECORDS records at a time (their C-level passes cost
        little per record, and a fixed amount per call)."""
        held: list[tuple[list[dict[str, Any]], list[bytes], Columns]] = []
        held_n = 0
        for recs, lines, cols in batches:
            if cols is None:  # records that needed a closer look (envelopes, MessagePack, normalized values)
                cols = record_columns(recs)
                if None in lines:  # not the record's own line: keep the record as canonical JSON
                    dumps, opt = orjson.dumps, orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
                    lines = [line if line is not None else dumps(rec, option=opt, default=json_default) + b"\n"
                             for rec, line in zip(recs, lines, strict=True)]
            held.append((recs, lines, cols))  # type: ignore[arg-type]  # no None line is left
            held_n += len(recs)
            if held_n >= DIGEST_RECORDS:
                self._add_held(held)
                held, held_n = [], 0
        if held:
            self._add_held(held)

    def _add_held(self, held: list[tuple[list[dict[str, Any]], list[bytes], Columns]]) -> None:
        """Held reader batches: their digests made at once, and consecutive batches of one trace joined into one
        (a stored batch of up to DIGEST_RECORDS spans: fewer, bigger batches to write and to load)."""
        d = digest_batch([r for recs, _, _ in held for r in recs])
        n = self.pending_n
        base = i = 0
        while i < len(held):
            recs, lines, cols = held[i]
            tids = cols["trace_id"]
            single = tids.count(tids[0]) == len(tids)
            j = i + 1
            # join while no flush would have come between them (flushes stay where batch by batch puts them)
            joined = n + len(recs)
            join = single and (tids[0] in self.pending or len(self.pending) < MAX_PENDING_TRACES)
            while join and j < len(held) and joined < FLUSH_RECORDS:
                nxt = held[j][2]["trace_id"]
                if nxt[0] != tids[0] or nxt.count(nxt[0]) != len(nxt):
                    break
                joined += len(nxt)
                j += 1
            if j - i > 1:
                part = held[i:j]
                recs = [r for h in part for r in h[0]]
                lines = [ln for h in part for ln in h[1]]
                cols = {k: list(chain.from_iterable(h[2][k] for h in part)) for k in cols}
            size = len(recs)
            cols = dict(cols)
            cols["dg"] = _digest_slice(d, base, base + size)  # type: ignore[assignment]  # the digests: a dict
            if single:  # one trace, as writers usually write them
                self._add(tids[0], recs, lines, cols)
            else:
                groups: dict[str, list[int]] = {}
                for k, tid in enumerate(tids):
                    groups.setdefault(tid, []).append(k)
                for tid, idx in groups.items():
                    self._add(tid, _take(recs, idx), _take(lines, idx), _take_cols(cols, idx))
            n += size
            if n >= FLUSH_RECORDS or len(self.pending) > MAX_PENDING_TRACES:
                self.pending_n = n
                self.flush()
                n = 0
            base += size
            i = j
        self.pending_n = n

    def _add(self, trace_id: str, recs: list[dict[str, Any]], lines: list[bytes], cols: Columns) -> None:
        """Dedupe a batch of one trace against its known spans, and queue what is new."""
        chunk = self.pending.get(trace_id) or self._builder(trace_id)
        hashes = list(map(crc32, lines, map(len, lines)))  # content_hash of each, in C
        sids = cols["span_id"]
        if not chunk.known.all_new(sids, hashes):
            keep = self._dedupe(trace_id, chunk.known, sids, hashes, lines)
            if not keep:
                return
            recs, lines, hashes = _take(recs, keep), _take(lines, keep), _take(hashes, keep)
            cols = _take_cols(cols, keep)
        out = stored_batch(cols)
        out.update(cols["dg"])  # what diagnosis reads instead of the records
        parents = cols["parent_id"]
        roots: list[int] = []
        if not all(parents):  # a root (a parent id is never "")
            sids = cols["span_id"]
            for i, p in enumerate(parents):
                if p is None and sids[i] not in chunk.roots:
                    chunk.roots[sids[i]] = envelope_of(recs[i])
                    roots.append(i)
        if trace_id not in self.known:
            agg = self.aggs.get(trace_id)
            if agg is None:
                agg = self.aggs[trace_id] = _Agg()
            agg.update(out, roots)
            if roots:
                agg.envelopes.update(chunk.roots)
        chunk.add(out, hashes, lines)

    def _dedupe(self, trace_id: str, known: SpanKeys, sids: Sequence[str], hashes: list[int],
                lines: list[bytes]) -> list[int]:
        """Positions of the new spans; repeats are counted as duplicates or kept as conflicts, in order."""
        keep: list[int] = []
        pos, known_hashes = known.pos, known.hashes
        for i, sid in enumerate(sids):
            h = hashes[i]
            old = pos.get(sid)
            if old is None:
                pos[sid] = len(pos)
                known_hashes.append(h)
                keep.append(i)
            elif known_hashes[old] == h:
                self.result.duplicates += 1
            else:
                self._conflict(trace_id, sid, h, lines[i])
        return keep

    def flush(self) -> None:
        """Hand the pending chunks' records to the compressor thread, then write the previous flush's chunks
        (compressed meanwhile). `settle` writes the last ones."""
        if not self.pending:
            return
        rows: list[tuple[tuple[Any, ...], Future[bytes]]] = []
        for trace_id, chunk in self.pending.items():
            self.touched.add(trace_id)
            self.file_touched.add(trace_id)
            if chunk.n:
                known = chunk.known
                if known.positioned is False and not known.tried and known.big():
                    self._position_stored(trace_id, chunk)
                if self._compressor is None:
                    self._compressor = ThreadPoolExecutor(1, thread_name_prefix="agent-debug-compress")
                rows.append(((trace_id, chunk.n, chunk.cols_json()),
                             self._compressor.submit(compress_records, chunk.raw_lines())))
                self.result.records += chunk.n
        self.seen += self.pending_n
        # keep the span keys of the traces still being written (writers write a trace in one go, so a trace
        # not in this flush is usually done); one that shows up again has its keys read back from the store
        self.keys = {tid: self.keys[tid] for tid in self.pending if tid in self.keys}
        self.pending.clear()
        self.pending_n = 0
        self.settle()
        self.inflight = rows
        self.inflight_traces = {row[0][0] for row in rows}
        self.fault.step("flush")
        if self.progress is not None:
            self.progress(self.seen, self.result.records)

    def _position_stored(self, trace_id: str, chunk: ChunkBuilder) -> None:
        """A trace that has just become big over several chunks (or was stored before parent positions existed):
        give its stored chunks parent positions, once, so the whole trace loads without an id map. With every
        span now known, each parent is looked up directly; the ones still missing wait for a later chunk."""
        if trace_id in self.inflight_traces:
            self.settle()
        known = chunk.known
        known.tried = True
        known.waiting = {}
        base = 0
        updates: list[tuple[bytes, int]] = []
        for chunk_id, cols in self.db.execute("SELECT id, cols FROM chunks WHERE trace_id = ? ORDER BY id",
                                              (trace_id,)):
            c = decode(cols)
            pids = parent_ids(c)
            c["parents"] = known.parents(base, pids)
            base += len(pids)
            updates.append((encode(c), chunk_id))
        if base != chunk.base:  # the store does not hold what this ingest counted: leave the trace mapped by id
            known.waiting = {}
            return
        self.db.executemany("UPDATE chunks SET cols = ? WHERE id = ?", updates)  # in the file's transaction
        self.fault.step("positions")
        known.positioned = True

    def settle(self) -> None:
        """Write the chunks still being compressed, in the order they were made (loading reads them by id)."""
        rows, self.inflight, self.inflight_traces = self.inflight, [], set()
        if not rows:
            return
        values = [(*head, future.result(), "zlib", self.ingest_id) for head, future in rows]
        self.db.executemany(  # in the file's transaction
            "INSERT INTO chunks (trace_id, n, cols, records, codec, ingest_id) VALUES (?,?,?,?,?,?)", values)
        self.fault.step("chunks")

    def close(self) -> None:
        if self._compressor is not None:
            self._compressor.shutdown(wait=True)
            self._compressor = None
        if self.rejects_fh is not None:
            self.rejects_fh.close()
            self.rejects_fh = None

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

    def _summarize(self, trace_ids: Iterable[str]) -> None:
        """Write the summaries of traces given spans by this file (in its transaction)."""
        for trace_id in trace_ids:
            agg = self.aggs.get(trace_id)
            if agg is not None:
                s = agg.summary(trace_id)
            elif trace_id in self.known:  # it had spans before: summarize all of them again
                s = summarize(load_columns(self.db, trace_id))
            else:  # touched, but every record was a duplicate or conflict
                continue
            write_summary(self.db, s)
        self.fault.step("summaries")


def _head(path: Path, raw: IO[bytes]) -> bytes:
    """The first HEAD bytes of a file's (decompressed) content, or all of it if shorter, read through `raw`
    (left open; the caller seeks back)."""
    try:
        fh = open_binary(path, raw)
        parts: list[bytes] = []
        got = 0
        while got < HEAD:
            data = fh.read(HEAD - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)[:HEAD]
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
    try:
        with exclusive(db_path) as waited:
            job = _Ingest(db, db_path, progress)
            try:
                with gc_paused():
                    for path in files:
                        job.file(path, report, format)
            finally:
                job.close()
            res = job.result
            res.rejected = report.rejected
            res.rejects_by_reason = dict(report.reject_reasons)
            res.notices = report.notices
            if waited >= 1.0:
                res.notices.append(f"waited {waited:.1f}s for another ingest into {db_path} to finish")
            res.traces = len(job.touched)
            res.seconds = round(time.perf_counter() - t0, 3)
            db.execute("UPDATE ingests SET seconds=?, files=?, records=?, duplicates=?, rejected=?, conflicts=?, "
                       "traces=? WHERE id=?", (res.seconds, res.files, res.records, res.duplicates, res.rejected,
                                               res.conflicts, res.traces, job.ingest_id))
    finally:
        db.close()
    res.readable = sum(f.records for f in report.files)
    res.nothing_readable = res.readable == 0 and res.files > 0 and res.files_skipped == 0 and (
        res.rejected > 0 or any(f.damaged or f.skipped for f in report.files))
    return res

