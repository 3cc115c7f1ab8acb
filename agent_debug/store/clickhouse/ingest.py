"""Ingest trace files into a ClickHouse store: the same files, records, dedupe and counts as the SQLite store's
ingest (`store.ingest`), written as rows.

- The same reader (`formats.reader.read_file_batches`) and the same rules: a span already stored with the same
  content hash is a duplicate, with another a conflict (kept in `conflicts`, the first version stays); a growing
  file is read on from its offset, a rotated copy from where its plain file stopped (`files`).
- Dedupe happens before insert, against the keys stored for the traces of each flush (one query per flush for
  the traces not seen in the last one), so re-ingesting inserts nothing; `spans` being a ReplacingMergeTree
  covers what two writers insert at once.
- Each flush is one INSERT of FLUSH_RECORDS rows as `JSONColumns` (orjson writes it in C; the engine parses no
  per-row text), on a second connection in a thread, so the engine inserts while the next flush is parsed. Run
  summaries are maintained by the engine (`runs_mv`).
- No transactions: a file's offset is written after its rows, so an ingest stopped half-way reads the file again
  next time and finds its rows stored (duplicates, not inserted twice).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import compress, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from agent_debug.columns import envelope_of, text_of, token_columns
from agent_debug.errors import NothingReadable
from agent_debug.formats.reader import (
    GZ,
    Batch,
    Columns,
    FileReport,
    ReadReport,
    expand_paths,
    read_file_batches,
    record_columns,
)
from agent_debug.gcpause import gc_paused
from agent_debug.store.chunks import crc32 as _crc32, json_default as _json_default
from agent_debug.store.consistency import exclusive
from agent_debug.store.ingest import IngestResult, _head

if TYPE_CHECKING:
    from agent_debug.store.clickhouse.store import ClickHouseStore

FLUSH_RECORDS = 50_000  # rows per INSERT: fewer, bigger parts for the engine to write and merge
MAX_PENDING_TRACES = 1000
SPAN_COLUMNS = ["trace_id", "span_id", "pos", "parent_id", "agent_name", "event_type", "name", "status", "start_ns",
                "duration_ns", "prompt_tokens", "completion_tokens", "cost_usd", "hash", "envelope", "record",
                "ingest_id"]
_MICRO = 1_000_000.0
_THOUSANDS = repeat(1000)
_NAME_TYPES = {str, type(None)}


class _Keys:
    """A trace's stored spans: content hash by span id, and the next free position."""

    __slots__ = ("hashes", "next")

    def __init__(self) -> None:
        self.hashes: dict[str, int] = {}
        self.next = 0


class ChIngest:
    def __init__(self, store: ClickHouseStore, progress: Callable[[int, int], None] | None) -> None:
        self.store = store
        self.conn = store.conn
        self.t = store.names
        self.progress = progress
        self.result = IngestResult(db=store.location.shown)
        self.keys: dict[str, _Keys] = {}  # the traces of the last flush (others are looked up again)
        self.pending: list[tuple[str, list[dict[str, Any]], list[bytes], Columns]] = []
        self.pending_traces: set[str] = set()
        self.pending_n = 0
        self.seen = 0
        self.touched: set[str] = set()
        self.conflicts: list[tuple[str, str, int, bytes]] = []
        self.conflict_keys: set[tuple[str, str, int]] = set()
        ids = orjson.loads(self.conn.query(f"SELECT max(id) FROM {self.t.ingests}"))
        self.ingest_id = int(ids[0][0] or 0) + 1
        self.started = time.time()
        self._writer: ThreadPoolExecutor | None = None
        self._writer_conn: Any = None
        self.inflight: Future[None] | None = None
        self.inflight_traces: set[str] = set()

    # -- files --------------------------------------------------------------------------------------------------

    def file(self, path: Path, report: ReadReport, format: str | None) -> None:
        """Read one file's new records into the store; its offset is written last (see the module docstring)."""
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
            row = self._file_row(key)
            if row and (row[6] or compressed) and row[0] == st.st_size and row[1] == st.st_mtime:
                self.result.files_skipped += 1
                return
            head = _head(path, fh)
            fh.seek(0)
            start, line, before = 0, 0, 0
            if row and not compressed and st.st_size >= row[2] and row[4] and _hash(head[: row[4]]) == row[5]:
                start, line, before = row[2], row[3], row[7]
            elif compressed and head:
                start, line = self._rotated_from(head)
            self.result.files += 1
            try:
                self.add_all(read_file_batches(path, report, start_offset=start, start_line=line, format=format,
                                               opened=fh))
                frep = report.files[-1]
                self.flush()
                self.settle()
                self._write_conflicts()
                self._write_rejects(report)
                self._remember(key, st, frep, head, compressed, line, before)
            except BaseException:
                self._abandon()
                raise

    def _file_row(self, key: str) -> tuple[Any, ...] | None:
        cols = orjson.loads(self.conn.query(
            f"SELECT size, mtime, offset, line, head_len, head_hash, complete, records FROM {self.t.files} FINAL "
            "WHERE path = {p:String} AND is_deleted = 0", {"p": key}))
        return tuple(c[0] for c in cols) if cols and cols[0] else None

    def _rotated_from(self, head: bytes) -> tuple[int, int]:
        """(offset, line) read of the plain file whose content this compressed file starts with, or (0, 0)."""
        cols = orjson.loads(self.conn.query(
            f"SELECT offset, line FROM {self.t.files} FINAL WHERE head_hash = {{h:String}} AND head_len = {{n:UInt32}}"
            " AND compressed = 0 AND is_deleted = 0 ORDER BY offset DESC LIMIT 1", {"h": _hash(head), "n": len(head)}))
        if cols and cols[0]:
            return int(cols[0][0]), int(cols[1][0])
        best = (0, 0)
        cols = orjson.loads(self.conn.query(
            f"SELECT offset, line, head_len, head_hash FROM {self.t.files} FINAL WHERE compressed = 0 AND "
            "head_len > 0 AND head_len < {n:UInt32} AND offset <= head_len AND is_deleted = 0", {"n": len(head)}))
        for offset, line, head_len, head_hash in zip(*cols, strict=True) if cols else ():
            if offset > best[0] and _hash(head[:head_len]) == head_hash:
                best = (int(offset), int(line))
        return best

    def _remember(self, key: str, st: os.stat_result, frep: FileReport, head: bytes, compressed: bool,
                  start_line: int, records_before: int) -> None:
        complete = compressed and frep.truncated is None
        now = time.time()
        row = {"path": [key], "size": [st.st_size], "mtime": [st.st_mtime], "offset": [frep.end_offset],
               "line": [max(frep.lines, start_line)], "head_len": [len(head)], "head_hash": [_hash(head)],
               "compressed": [int(compressed)], "complete": [int(complete)],
               "records": [records_before + frep.records], "updated_at": [now], "version": [time.time_ns()],
               "is_deleted": [0]}
        self.conn.insert(self.t.files, list(row), orjson.dumps(row))

    # -- records ------------------------------------------------------------------------------------------------

    def add_all(self, batches: Iterable[Batch]) -> None:
        """Queue each batch (split by trace when it holds several); flush every FLUSH_RECORDS records."""
        for recs, lines, cols in batches:
            if cols is None:  # records that needed a closer look: their fields as columns, lines as JSON
                cols = record_columns(recs)
                if None in lines:
                    dumps, opt = orjson.dumps, orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
                    lines = [line if line is not None else dumps(rec, option=opt, default=_json_default) + b"\n"
                             for rec, line in zip(recs, lines, strict=True)]
            tids = cols["trace_id"]
            if tids.count(tids[0]) == len(tids):
                self._queue(tids[0], recs, lines, cols)  # type: ignore[arg-type]  # no None line is left
            else:
                groups: dict[str, list[int]] = {}
                for i, tid in enumerate(tids):
                    groups.setdefault(tid, []).append(i)
                for tid, idx in groups.items():
                    self._queue(tid, _take(recs, idx), _take(lines, idx), {k: _take(v, idx) for k, v in cols.items()})
            if self.pending_n >= FLUSH_RECORDS or len(self.pending_traces) > MAX_PENDING_TRACES:
                self.flush()

    def _queue(self, tid: str, recs: list[dict[str, Any]], lines: list[bytes], cols: Columns) -> None:
        self.pending.append((tid, recs, lines, cols))
        self.pending_traces.add(tid)
        self.pending_n += len(recs)

    def flush(self) -> None:
        """Dedupe the pending batches against their traces' stored keys, in the order they came, and insert the
        new spans as one block (on the writer thread, after the previous block)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        tids = list(dict.fromkeys(p[0] for p in pending))
        self._load_keys([t for t in tids if t not in self.keys])
        out: dict[str, list[Any]] = {k: [] for k in SPAN_COLUMNS}
        for tid, recs, lines, cols in pending:
            self._add(tid, recs, lines, cols, out)
        self.touched.update(tids)
        self.seen += self.pending_n
        self.keys = {t: self.keys[t] for t in tids}
        self.pending_traces = set()
        self.pending_n = 0
        n = len(out["span_id"])
        self.result.records += n
        if n:
            out["ingest_id"] = [self.ingest_id] * n
            self._submit(out, set(tids))
        if self.progress is not None:
            self.progress(self.seen, self.result.records)

    def _load_keys(self, tids: list[str]) -> None:
        """The stored span ids, hashes and next position of these traces (none: a new trace)."""
        for tid in tids:
            self.keys[tid] = _Keys()
        if not tids:
            return
        if self.inflight_traces & set(tids):
            self.settle()
        cols = orjson.loads(self.conn.query(
            f"SELECT trace_id, span_id, hash, pos FROM {self.t.spans} FINAL WHERE trace_id IN {{ids:Array(String)}}",
            {"ids": tids}))
        if not cols or not cols[0]:
            return
        for tid, sid, h, pos in zip(*cols, strict=True):
            k = self.keys[tid]
            k.hashes[sid] = h
            if pos >= k.next:
                k.next = pos + 1

    def _add(self, tid: str, recs: list[dict[str, Any]], lines: list[bytes], cols: Columns,
             out: dict[str, list[Any]]) -> None:
        """One batch of one trace: dedupe, then its new spans' row values appended to `out`."""
        keys = self.keys[tid]
        hashes = list(map(_crc32, lines, map(len, lines)))  # store.ingest.content_hash of each, in C
        sids = cols["span_id"]
        new = dict(zip(sids, hashes, strict=True))
        if len(new) == len(sids) and keys.hashes.keys().isdisjoint(new):
            keys.hashes.update(new)
        else:
            keep = self._dedupe(tid, keys, sids, hashes, lines)
            if not keep:
                return
            recs, lines, hashes = _take(recs, keep), _take(lines, keep), _take(hashes, keep)
            cols = {k: _take(v, keep) for k, v in cols.items()}
            sids = cols["span_id"]
        n = len(lines)
        base = keys.next
        keys.next += n
        et = cols["event_type"]
        names = cols["name"]
        if not set(map(type, names)) <= _NAME_TYPES:  # the spec's name is a string: kept as its JSON text
            names = [nm if nm is None or type(nm) is str else text_of(nm) for nm in names]
        if None in names or "" in names:
            names = [nm or e for nm, e in zip(names, et, strict=True)]
        status = cols["status"]
        if None in status or "" in status:
            status = [s or "ok" for s in status]
        parents = cols["parent_id"]
        envelopes = [""] * n
        if not all(parents):
            for i, p in enumerate(parents):
                if p is None:
                    envelopes[i] = orjson.dumps(envelope_of(recs[i]), default=_json_default).decode()
        out["trace_id"] += [tid] * n
        out["span_id"] += sids
        out["pos"] += range(base, base + n)
        out["parent_id"] += parents
        out["agent_name"] += cols["agent_name"]
        out["event_type"] += et
        out["name"] += names
        out["status"] += status
        # analysis.spans.start_ns_of, in C (as store.ingest does)
        out["start_ns"] += map(int.__mul__, map(round, map(_MICRO.__mul__, cols["timestamp"])), _THOUSANDS)
        out["duration_ns"] += cols["duration_ns"]
        _token_values(cols["token_cost"], out)
        out["hash"] += hashes
        out["envelope"] += envelopes
        out["record"].append(b"".join(lines))  # the batch's lines, as read (each ends in a newline)

    def _dedupe(self, tid: str, keys: _Keys, sids: Any, hashes: list[int], lines: list[bytes]) -> list[int]:
        keep: list[int] = []
        known = keys.hashes
        for i, sid in enumerate(sids):
            h = hashes[i]
            old = known.get(sid)
            if old is None:
                known[sid] = h
                keep.append(i)
            elif old == h:
                self.result.duplicates += 1
            else:
                key = (tid, sid, h)
                if key not in self.conflict_keys:
                    self.conflict_keys.add(key)
                    self.conflicts.append((tid, sid, h, lines[i]))
        return keep

    def _submit(self, out: dict[str, list[Any]], tids: set[str]) -> None:
        data = _block(out)
        self.settle()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="agent-debug-insert")
            self._writer_conn = self.store.sibling()
        self.inflight = self._writer.submit(self._writer_conn.insert, self.t.spans, SPAN_COLUMNS, data)
        self.inflight_traces = tids

    def settle(self) -> None:
        """Wait for the block being inserted (raising what the insert raised)."""
        fut, self.inflight, self.inflight_traces = self.inflight, None, set()
        if fut is not None:
            fut.result()

    def _abandon(self) -> None:
        fut, self.inflight, self.inflight_traces = self.inflight, None, set()
        if fut is not None:
            try:
                fut.result()
            except Exception:  # the caller raises what stopped the file
                pass
        self.pending, self.pending_traces, self.pending_n = [], set(), 0
        self.keys = {}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    # -- conflicts, rejects, the ingest's row ---------------------------------------------------------------

    def _write_conflicts(self) -> None:
        """The conflicts met in this file that the store does not hold yet (as SQLite's INSERT OR IGNORE)."""
        if not self.conflicts:
            return
        found, self.conflicts = self.conflicts, []
        cols = orjson.loads(self.conn.query(
            f"SELECT trace_id, span_id, hash FROM {self.t.conflicts} FINAL WHERE trace_id IN {{ids:Array(String)}}",
            {"ids": sorted({c[0] for c in found})}))
        stored = set(zip(*cols, strict=True)) if cols and cols[0] else set()
        new = [c for c in found if c[:3] not in stored]
        if not new:
            return
        now = time.time()
        rows: dict[str, list[Any]] = {
            "trace_id": [c[0] for c in new], "span_id": [c[1] for c in new], "hash": [c[2] for c in new],
            "record_hex": [c[3].hex() for c in new], "seen_at": [now] * len(new)}
        self.conn.insert(self.t.conflicts, list(rows), _dumps(rows))
        self.result.conflicts += len(new)
        for c in new:
            if len(self.result.conflict_list) < 100:
                self.result.conflict_list.append({"trace_id": c[0], "span_id": c[1]})

    def _write_rejects(self, report: ReadReport) -> None:
        if not report.rejects:
            return
        rejects, report.rejects = list(report.rejects), []
        now = time.time()
        rows: dict[str, list[Any]] = {
            "source": [r.source for r in rejects], "location": [r.location for r in rejects],
            "reason": [r.reason for r in rejects], "raw_hex": [r.raw.hex() for r in rejects],
            "ingest_id": [self.ingest_id] * len(rejects), "at": [now] * len(rejects)}
        # raw bytes may be anything: sent as hex (`raw_hex`) and unhexed by the engine, no byte changed on the way
        self.conn.insert(self.t.rejects, list(rows), _dumps(rows))
        self.result.rejects_file = f"{self.store.location.shown} (table {self.t.rejects})"

    def write_ingest_row(self, res: IngestResult) -> None:
        row = {"id": [self.ingest_id], "started_at": [self.started], "seconds": [res.seconds], "files": [res.files],
               "records": [res.records], "duplicates": [res.duplicates], "rejected": [res.rejected],
               "conflicts": [res.conflicts], "traces": [res.traces]}
        self.conn.insert(self.t.ingests, list(row), orjson.dumps(row))


def _token_values(costs: Sequence[Any], out: dict[str, list[Any]]) -> None:
    """Prompt tokens, completion tokens and cost of each span, as `TraceSpans.extend_columns` counts them."""
    n = len(costs)
    if costs.count(None) == n:
        zeros = [0] * n
        out["prompt_tokens"] += zeros
        out["completion_tokens"] += zeros
        out["cost_usd"] += [0.0] * n
        return
    # the spans with costs, their values read in C and put in place with map(list.__setitem__)
    at = list(compress(range(n), costs))
    p_vals, c_vals, u_vals = token_columns(list(compress(costs, costs)))
    prompt, completion, cost = [0] * n, [0] * n, [0.0] * n
    deque(map(prompt.__setitem__, at, p_vals), maxlen=0)
    deque(map(completion.__setitem__, at, c_vals), maxlen=0)
    deque(map(cost.__setitem__, at, u_vals), maxlen=0)
    out["prompt_tokens"] += prompt
    out["completion_tokens"] += completion
    out["cost_usd"] += cost


def _block(out: dict[str, list[Any]]) -> bytes:
    """The flush's rows as JSONColumns, the records put in as they were read, without a step per record.

    Each record is one line holding a JSON object, and the engine keeps an object given for a String column as
    its text, byte for byte (`input_format_json_read_objects_as_strings`): the joined lines with each newline
    made a comma are the column. Whitespace around an object would not be kept, so a block with a line that
    starts or ends in some (a CRLF file) has its records escaped as JSON strings instead."""
    raw = b"".join(out.pop("record"))
    head = _dumps(out)
    if not raw:
        return head[:-1] + b',"record":[]}'
    if not _padded(raw):
        return b"".join((memoryview(head)[:-1], b',"record":[', memoryview(raw.replace(b"\n", b","))[:-1], b"]}"))
    if b"\\" in raw:  # each replace is a pass over the whole block: only those that find something
        raw = raw.replace(b"\\", b"\\\\")
    raw = raw.replace(b'"', b'\\"')
    if b"\t" in raw:
        raw = raw.replace(b"\t", b"\\t")
    if b"\r" in raw:
        raw = raw.replace(b"\r", b"\\r")
    raw = raw.replace(b"\n", b'","')
    return b"".join((memoryview(head)[:-1], b',"record":["', memoryview(raw)[:-3], b'"]}'))


def _padded(raw: bytes) -> bool:
    """Does a line start or end with whitespace, or not hold an object (`raw`: lines, each ending in a newline)?
    Two counting passes in C: no padding exactly when every newline but the last stands between `}` and `{`
    (a newline cannot stand inside a JSON line, so the matches cannot overlap)."""
    return raw[:1] != b"{" or raw[-2:] != b"}\n" or raw.count(b"}\n{") != raw.count(b"\n") - 1


def _dumps(cols: dict[str, list[Any]]) -> bytes:
    try:
        return orjson.dumps(cols)
    except TypeError:  # a value orjson does not write as it is (a lone surrogate from MessagePack)
        return orjson.dumps(cols, default=_json_default)


def _take(seq: Any, idx: list[int]) -> list[Any]:
    return [seq[i] for i in idx]


def _hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def ingest(store: ClickHouseStore, paths: Iterable[str | os.PathLike[str]], *, format: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> IngestResult:
    """Ingest every trace file under `paths` into a ClickHouse store (`store.ingest.ingest`'s contract)."""
    t0 = time.perf_counter()
    report = ReadReport()
    paths = list(paths)
    files = expand_paths(paths, report)
    if not files:
        raise NothingReadable("no trace files found in " + ", ".join(str(p) for p in paths))
    with exclusive(_lock_path(store)) as waited:
        job = ChIngest(store, progress)
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
            res.notices.append(f"waited {waited:.1f}s for another ingest into {store.location.shown} to finish")
        res.traces = len(job.touched)
        res.seconds = round(time.perf_counter() - t0, 3)
        job.write_ingest_row(res)
    res.readable = sum(f.records for f in report.files)
    res.nothing_readable = res.readable == 0 and res.files > 0 and res.files_skipped == 0 and (
        res.rejected > 0 or any(f.damaged or f.skipped for f in report.files))
    return res


def _lock_path(store: ClickHouseStore) -> Path:
    """Ingests into one store from this machine take turns (each dedupes against what it finds stored): a lock
    file in the chdb directory, or one per server store in the temp folder."""
    loc = store.location
    if loc.kind == "chdb" and loc.path is not None:
        return Path(loc.path) / "ingest"
    digest = hashlib.sha1(loc.shown.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"agent-debug-{digest}"
