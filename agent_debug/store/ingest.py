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
JSON and its lines kept as one bytes object. Then the batch is dropped: nothing per record stays in memory
but the span ids kept for dedupe and the raw lines of the pending chunks, so memory is reused while hot instead
of growing and being walked again later. Every FLUSH_RECORDS records (or MAX_PENDING_TRACES traces) the pending
chunks' lines go to a compressor thread (one task per chunk: zlib and isal release the GIL, so the
compression runs on a second core while the next chunk is parsed), and the chunks of the flush before are
written (in the file's transaction). There is no
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
import zlib
from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import add, itemgetter
from pathlib import Path
from typing import IO, Any

import orjson

from agent_debug.analysis.spans import (
    TraceSpans,
    TraceSummary,
    envelope_of,
    saturated,
    summarize,
    text_of,
    token_columns,
)
from agent_debug.analysis.digest import digest_batch
from agent_debug.analysis.tree import gc_paused
from agent_debug.errors import NothingReadable, StoreError
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
from agent_debug.store.consistency import FAULT_ENV, Fault, InjectedFault, exclusive, write_summary
from agent_debug.store.db import connect
from agent_debug.store.load import LazyRecords, load_columns, unpack_columns

__all__ = ["FAULT_ENV", "IngestResult", "InjectedFault", "LazyRecords", "content_hash", "ingest", "load_columns",
           "rejects_path"]

try:  # the same formats as zlib (crc32 too), several times faster
    from isal import isal_zlib as _compress_impl  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    _compress_impl = zlib
_crc32 = _compress_impl.crc32

HEAD = 4096
FLUSH_RECORDS = 20_000
MAX_PENDING_TRACES = 1000  # traces with spans waiting for a flush (each holds a compressor of ~70 KB)

# A chunk's `cols` is a JSON object: "batches", a list of {column: [value per span]} for STORED_COLUMNS (in the
# batches ingest took the spans in), "roots": {span_id: envelope}, and "hashes": the spans' content hashes in the
# same order, as hex of 32-bit integers (only dedupe reads them; a string costs nothing to parse when loading).
# Values as the records had them (the spec's defaults are applied when loading, to keep ingest cheap), except
# the timestamp, kept as integer nanoseconds (`analysis.spans`' start_ns), `status`, null when every span of
# the batch is ok, and in a big trace (BIG_TRACE) agent_name, event_type and name, which may be dictionary-
# encoded ({"values": [...], "codes": [...]}). Each batch also has the spans' digests (`analysis.digest`: "df", "ol",
# "ih" per span, "da" sparse attributes by position in the batch); a batch without them (an older store) makes
# diagnosis read records. `records` is the spans' raw lines, each ending in b"\n", compressed (zlib format).
STORED_COLUMNS = ("span_id", "parent_id", "agent_name", "event_type", "name", "status", "start_ns", "duration_ns",
                  "token_cost")
# a trace this big (spans so far) has its columns stored in batches of STORED_BATCH spans, with agent_name,
# event_type and name dictionary-encoded: they load with a few C-level passes per 1024 spans and without a
# string per span (loading is what a big trace's tree and critical path wait for), and every chunk of it keeps
# its spans' parents as positions (`_Known`; `_Ingest._position_stored` for a trace that becomes big later).
# That work costs ingest time that small traces, which load in milliseconds anyway, do not pay.
BIG_TRACE = 10_000
STORED_BATCH = 1024
_MINUS_ONE = -1
_ENCODED = ("agent_name", "event_type", "name")
_HASH_ARRAY = next(code for code in "IL" if array(code).itemsize == 4)  # content hashes are 32-bit
_COPIED = ("span_id", "parent_id", "agent_name", "event_type", "name", "duration_ns", "token_cost")

_MICRO = 1_000_000.0
_THOUSANDS = repeat(1000)  # endless: zipped by map against each batch's timestamps
_NAME_TYPES = {str, type(None)}


def rejects_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.stem + ".rejects.jsonl")


def content_hash(raw: bytes) -> int:
    """crc32 seeded with the length: cheap (one C call, mapped over a batch), stable across processes, ample
    for telling two versions of one span apart."""
    return _crc32(raw, len(raw))  # type: ignore[no-any-return]


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


class _Known:
    """A trace's spans kept so far: for dedupe, and, in a big trace, for storing each span's parent as a position
    in the trace (positions follow the order its chunks are stored and read), so loading builds the tree
    without a map of every span id. A parent written after its child (writers write a span when it ends)
    adopts the child in its own chunk."""

    __slots__ = ("pos", "hashes", "waiting", "positioned", "tried")

    def __init__(self) -> None:
        self.pos: dict[str, int] = {}  # span id -> position
        self.hashes = array(_HASH_ARRAY)  # content hash by position
        self.waiting: dict[str, list[int]] = {}  # a parent id not seen yet -> positions of its children
        # whether every chunk of the trace has its parents as positions (None: no chunk written yet; a trace
        # that is not gets them once, when it becomes big: see `_Ingest._position_stored`)
        self.positioned: bool | None = None
        self.tried = False  # `_position_stored` ran (it runs at most once per ingest)

    def add_stored(self, sids: list[str], hashes: array[int], pids: list[str | None], positioned: bool) -> None:
        """A chunk of the trace already in the store (an ingest that goes on with a trace), in order."""
        if len(sids) != len(hashes):
            raise StoreError(f"a stored chunk has {len(sids)} spans and {len(hashes)} hashes")
        base = len(self.pos)
        self.pos.update(zip(sids, range(base, base + len(sids))))
        self.hashes.extend(hashes)
        self.positioned = positioned and self.positioned is not False
        if self.positioned:
            pos, waiting = self.pos, self.waiting
            for pid in [pid for pid in waiting if pid in pos]:
                del waiting[pid]
            for i, pid in enumerate(pids):
                if pid is not None and pid not in pos:
                    waiting.setdefault(pid, []).append(base + i)

    def all_new(self, sids: Sequence[str], hashes: list[int]) -> bool:
        """Add a batch's span ids if none was seen before and none repeats (the common case, decided in C);
        otherwise change nothing and say so."""
        base = len(self.pos)
        new = dict(zip(sids, range(base, base + len(sids))))
        if len(new) == len(sids) and self.pos.keys().isdisjoint(new):
            self.pos.update(new)
            self.hashes.extend(hashes)
            return True
        return False

    def parents(self, base: int, pids: list[str | None]) -> dict[str, Any]:
        """A chunk's `parent_at` (each span's parent as a position in the trace, -1 for none or not seen yet),
        `base` (its first span's position: loading checks it) and `adopt` ([children], [parents]: earlier spans
        whose parent is in this chunk). Called at flush, when every span of the chunk is in `pos`."""
        pos = self.pos
        parent_at = list(map(pos.get, pids, repeat(-1)))  # in C: parents in this chunk or an earlier one
        out: dict[str, Any] = {"parent_at": parent_at, "base": base}
        waiting = self.waiting
        if waiting:
            children: list[int] = []
            parents: list[int] = []
            for pid in [pid for pid in waiting if pid in pos]:
                kids = waiting.pop(pid)
                children.extend(kids)
                parents.extend(repeat(pos[pid], len(kids)))
            if children:
                out["adopt"] = [children, parents]
        for i in compress(range(len(pids)), map(_MINUS_ONE.__eq__, parent_at)):
            pid = pids[i]
            if pid is not None:
                waiting.setdefault(pid, []).append(base + i)
        return out


class _Chunk:
    """The new spans of one trace since the last flush: their columns as JSON objects (one per reader batch; in
    a big trace, STORED_BATCH spans of them joined and dictionary-encoded, see BIG_TRACE), and their raw lines
    (each ending in b"\\n"), compressed at flush on the compressor thread."""

    __slots__ = ("known", "base", "pids", "n", "batches", "waiting", "waiting_n", "hashes", "raw", "roots")

    def __init__(self, known: _Known) -> None:
        self.known = known  # every span of the trace kept so far
        self.base = len(known.pos)  # the position of this chunk's first span in its trace
        self.pids: list[str | None] | None = [] if known.positioned else None  # parent ids, when positioned
        self.n = 0
        self.batches: list[bytes] = []
        self.waiting: list[dict[str, Any]] = []  # reader batches not yet joined into a stored batch
        self.waiting_n = 0
        self.hashes: list[bytes] = []
        self.raw: list[bytes] = []
        self.roots: dict[str, dict[str, Any]] = {}  # span id -> envelope, for spans without a parent

    def add(self, cols: dict[str, Any], hashes: list[int], lines: list[bytes]) -> None:
        if self.pids is not None:
            self.pids.extend(cols["parent_id"])
        if len(self.known.pos) < BIG_TRACE:  # stored as it is, while it is in the CPU cache
            self.batches.append(bytes(memoryview(_json(cols))))
        else:
            self.waiting.append(cols)
            self.waiting_n += len(lines)
            if self.waiting_n >= STORED_BATCH:
                self._store_batch()
        self.hashes.append(array(_HASH_ARRAY, hashes).tobytes())
        self.raw.append(b"".join(lines))
        self.n += len(lines)

    def _store_batch(self) -> None:
        batches, self.waiting, self.waiting_n = self.waiting, [], 0
        cols = batches[0] if len(batches) == 1 else _joined(batches)
        for k in _ENCODED:
            cols[k] = dictionary_encode(cols[k])
        # a copy: orjson's own result keeps its whole output buffer (~100 KB) allocated while it lives
        self.batches.append(bytes(memoryview(_json(cols))))

    def cols_json(self) -> bytes:
        if self.waiting:
            self._store_batch()
        known = self.known
        if known.positioned is None:  # the trace's first chunk: big enough for parent positions?
            known.positioned = self.base == 0 and len(known.pos) >= BIG_TRACE
        parents = b""
        if known.positioned:
            if self.pids is None:  # decided since this chunk began: read back, once per trace
                self.pids = [pid for b in self.batches for pid in orjson.loads(b)["parent_id"]]
            parents = b',"parents":' + _json(known.parents(self.base, self.pids))
        hashes = b"".join(self.hashes).hex().encode()
        return (b'{"roots":' + _json(self.roots) + b',"hashes":"' + hashes + b'"' + parents + b',"batches":['
                + b",".join(self.batches) + b"]}")

    def raw_lines(self) -> bytes:
        return b"".join(self.raw)


def _joined(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Several batches' columns as one batch (`status`: None when every span is ok)."""
    out: dict[str, Any] = {}
    for key in batches[0]:
        if key == "da":
            out[key] = _joined_sparse(batches)
        elif key != "status":
            out[key] = list(chain.from_iterable(map(itemgetter(key), batches)))
    statuses = list(map(itemgetter("status"), batches))
    if statuses.count(None) == len(statuses):
        out["status"] = None
    else:
        out["status"] = list(chain.from_iterable(
            repeat("ok", len(b["span_id"])) if st is None else st for b, st in zip(batches, statuses, strict=True)))
    return out


def _joined_sparse(batches: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    """The batches' sparse attributes (`analysis.digest`: {key: [[position, value]]}) with positions in the joined
    batch."""
    out: dict[str, list[list[Any]]] = {}
    base = 0
    for b in batches:
        for key, pairs in b["da"].items():
            out.setdefault(key, []).extend([[pos + base, v] for pos, v in pairs] if base else pairs)
        base += len(b["span_id"])
    return out


def dictionary_encode(values: Sequence[Any]) -> Sequence[Any] | dict[str, list[Any]]:
    """A column of few distinct values as {"values": [distinct, first seen first], "codes": [index per span]}:
    small integers parse without allocating and decode with one C-level map that shares one string per value.
    Values that cannot be keys (a name may be any JSON value), or mostly distinct ones, stay as they are."""
    codes: dict[Any, int] = {}
    try:  # one C-level pass: a new value gets the next code (the dict's size when it is met)
        coded = list(map(codes.setdefault, values, map(len, repeat(codes))))
    except TypeError:
        return values
    if len(codes) > len(coded) // 2:
        return values
    return {"values": list(codes), "codes": coded}


def _compress_records(raw: bytes) -> bytes:
    """A chunk's raw lines, zlib format (level 1). Runs on the compressor thread: zlib and isal release the GIL,
    so it overlaps with the parsing of the next chunk on a second core."""
    return _compress_impl.compress(raw, 1)  # type: ignore[no-any-return]


def _take(seq: Sequence[Any], idx: list[int]) -> list[Any]:
    return [seq[i] for i in idx]


DIGEST_RECORDS = 1024


def _take_cols(cols: Columns, idx: list[int]) -> Columns:
    """A batch's columns (and span digests) of the records at `idx`."""
    out: dict[str, Any] = {k: _take(v, idx) for k, v in cols.items() if k != "dg"}
    if "dg" in cols:
        d: dict[str, Any] = cols["dg"]  # type: ignore[assignment]
        at = {old: new for new, old in enumerate(idx)}
        out["dg"] = {"df": _take(d["df"], idx), "ol": _take(d["ol"], idx), "ih": _take(d["ih"], idx),
                     "da": {k: kept for k, pairs in d["da"].items()
                            if (kept := [[at[p], v] for p, v in pairs if p in at])}}
    return out


def _split_digest(d: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """`analysis.digest.digest_batch` of several batches at once, cut back into one digest per batch."""
    out = []
    base = 0
    sparse = {k: sorted(pairs, key=itemgetter(0)) for k, pairs in d["da"].items()}
    for size in sizes:
        end = base + size
        da: dict[str, list[list[Any]]] = {}
        for k, pairs in sparse.items():
            got = [[p - base, v] for p, v in pairs if base <= p < end]
            if got:
                da[k] = got
        out.append({"df": d["df"][base:end], "ol": d["ol"][base:end], "ih": d["ih"][base:end], "da": da})
        base = end
    return out


def _json(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=_json_default)
    except TypeError:  # an integer JSON cannot hold exactly (a token count beyond 64 bits): as a float
        return orjson.dumps(_json_safe(obj), option=orjson.OPT_NON_STR_KEYS, default=_json_default)


def _json_safe(v: Any) -> Any:
    if isinstance(v, int) and not -(1 << 63) <= v < 1 << 64:
        return float(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _json_default(obj: Any) -> Any:
    """Values a MessagePack record may hold that JSON has no type for."""
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


class _Agg:
    """A new trace's summary, accumulated chunk by chunk during ingest (no reload, no per-record pass in
    Python beyond a few C-level maps). Must agree with `analysis.spans.summarize`."""

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
        ts.extend_columns(self.root_cols)
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
    def __init__(self, db: sqlite3.Connection, db_path: Path, progress: Callable[[int, int], None] | None) -> None:
        self.db = db
        self.db_path = db_path
        self.progress = progress
        self.result = IngestResult(db=str(db_path))
        self.known: set[str] = {r[0] for r in db.execute("SELECT trace_id FROM traces")}
        self.touched: set[str] = set()
        self.file_touched: set[str] = set()  # traces given spans by the file being read (its summaries)
        self.aggs: dict[str, _Agg] = {}
        self.keys: dict[str, _Known] = {}  # the known spans of the traces in the last flush (see `flush`)
        self.pending: dict[str, _Chunk] = {}
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
            self._begin(path)
            try:
                self.add_all(read_file_batches(path, report, start_offset=start, start_line=line, format=format,
                                               opened=fh))
                frep = report.files[-1]
                self.flush()
                self.settle()  # everything read from this file is in the store before its offset is remembered
                self._summarize(self.file_touched)
                self._flush_rejects(report)
                self._remember(key, st, frep, head, compressed, line, before)
                self._commit()
            except BaseException:
                self._rollback()
                raise

    def _begin(self, path: Path) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.file_touched = set()
        self.fault.file = path.name
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

    def _builder(self, trace_id: str) -> _Chunk:
        b = self.pending.get(trace_id)
        if b is None:
            b = self.pending[trace_id] = _Chunk(self._existing_keys(trace_id))
        return b

    def _existing_keys(self, trace_id: str) -> _Known:
        keys = self.keys.get(trace_id)
        if keys is None:
            keys = _Known()
            if trace_id in self.known or trace_id in self.touched:
                if trace_id in self.inflight_traces:
                    self.settle()
                for (cols,) in self.db.execute("SELECT cols FROM chunks WHERE trace_id = ? ORDER BY id",
                                               (trace_id,)):
                    c = unpack_columns(cols)
                    hashes = array(_HASH_ARRAY)
                    hashes.frombytes(bytes.fromhex(c["hashes"]))
                    sids = [sid for batch in c["batches"] for sid in batch["span_id"]]
                    pids = [pid for batch in c["batches"] for pid in batch["parent_id"]]
                    keys.add_stored(sids, hashes, pids, "parents" in c)
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
                    lines = [line if line is not None else dumps(rec, option=opt, default=_json_default) + b"\n"
                             for rec, line in zip(recs, lines, strict=True)]
            held.append((recs, lines, cols))  # type: ignore[arg-type]
            held_n += len(recs)
            if held_n >= DIGEST_RECORDS:
                self._add_held(held)
                held, held_n = [], 0
        if held:
            self._add_held(held)

    def _add_held(self, held: list[tuple[list[dict[str, Any]], list[bytes], Columns]]) -> None:
        parts = _split_digest(digest_batch([r for recs, _, _ in held for r in recs]), [len(h[0]) for h in held])
        n = self.pending_n
        for (recs, lines, cols), part in zip(held, parts, strict=True):
            cols = dict(cols)
            cols["dg"] = part  # type: ignore[assignment]
            tids = cols["trace_id"]
            if tids.count(tids[0]) == len(tids):  # one trace, as writers usually write them
                self._add(tids[0], recs, lines, cols)
            else:
                groups: dict[str, list[int]] = {}
                for i, tid in enumerate(tids):
                    groups.setdefault(tid, []).append(i)
                for tid, idx in groups.items():
                    self._add(tid, _take(recs, idx), _take(lines, idx), _take_cols(cols, idx))
            n += len(recs)
            if n >= FLUSH_RECORDS or len(self.pending) > MAX_PENDING_TRACES:
                self.pending_n = n
                self.flush()
                n = 0
        self.pending_n = n

    def _add(self, trace_id: str, recs: list[dict[str, Any]], lines: list[bytes], cols: Columns) -> None:
        """Dedupe a batch of one trace against its known spans, and queue what is new."""
        chunk = self.pending.get(trace_id) or self._builder(trace_id)
        hashes = list(map(_crc32, lines, map(len, lines)))  # content_hash of each, in C
        sids = cols["span_id"]
        if not chunk.known.all_new(sids, hashes):
            keep = self._dedupe(trace_id, chunk.known, sids, hashes, lines)
            if not keep:
                return
            recs, lines, hashes = _take(recs, keep), _take(lines, keep), _take(hashes, keep)
            cols = _take_cols(cols, keep)
        out: dict[str, Any] = {k: cols[k] for k in _COPIED}
        if not set(map(type, out["name"])) <= _NAME_TYPES:  # the spec's name is a string: kept as its JSON text
            out["name"] = [nm if nm is None or type(nm) is str else text_of(nm) for nm in out["name"]]
        status = cols["status"]
        out["status"] = status if "error" in status else None  # all ok: nothing to store or load
        # analysis.spans.start_ns_of, in C: round(t * 1e6) * 1000 (t * 1_000_000 is t * 1e6 for an int or float)
        out["start_ns"] = list(map(int.__mul__, map(round, map(_MICRO.__mul__, cols["timestamp"])), _THOUSANDS))
        out.update(cols["dg"])  # type: ignore[arg-type]  # what diagnosis reads instead of the records
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

    def _dedupe(self, trace_id: str, known: _Known, sids: Sequence[str], hashes: list[int],
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
                if known.positioned is False and not known.tried and len(known.pos) >= BIG_TRACE:
                    self._position_stored(trace_id, chunk)
                if self._compressor is None:
                    self._compressor = ThreadPoolExecutor(1, thread_name_prefix="agent-debug-compress")
                rows.append(((trace_id, chunk.n, chunk.cols_json()),
                             self._compressor.submit(_compress_records, chunk.raw_lines())))
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

    def _position_stored(self, trace_id: str, chunk: _Chunk) -> None:
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
            c = unpack_columns(cols)
            pids = [pid for batch in c["batches"] for pid in batch["parent_id"]]
            c["parents"] = known.parents(base, pids)
            base += len(pids)
            updates.append((_json(c), chunk_id))
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
