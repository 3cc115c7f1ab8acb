"""The store's chunk format, writer and reader together (ingest writes chunks, every command reads them).

A row of `chunks` holds the new spans of one trace from one flush of an ingest: `trace_id`, `n` (spans),
`cols` (the analysis columns, JSON, below), `records` (the spans' raw lines, each ending in b"\\n", compressed
in zlib format: `codec` 'zlib'; isal writes the same format) and `ingest_id`. Loading a trace reads its rows
by id, in the order they were written.

`cols`, version 2 (CHUNK_VERSION), a JSON object:

- "v": the chunk format version (absent: version 1).
- "roots": {span_id: envelope} for the spans without a parent (`columns.envelope_of`), so listing needs no
  record.
- "hashes": the spans' content hashes (`content_hash`) in order, as the hex of little-endian 32-bit integers
  (only dedupe reads them; a string costs nothing to parse when loading).
- "batches": a list of {column: [value per span]} for STORED_COLUMNS, in the batches ingest took the spans in.
  Values as the records had them (the spec's defaults are applied when loading, to keep ingest cheap), except:
  `start_ns`, the timestamp as integer nanoseconds (`columns.start_ns_of`); `status`, null when every span of
  the batch is ok; `name`, a string or null (a name of another type is kept as its JSON text); `token_cost`,
  an object or null. In a big trace (BIG_TRACE) batches hold STORED_BATCH spans and agent_name, event_type and
  name may be dictionary-encoded: {"values": [distinct, first seen first], "codes": [index per span]}.
- in each batch (version 3), the spans' digests (`analysis.digest`): "df" (flags), "ol" (output lengths), "ih"
  (input digests) per span, and "da" (sparse attributes: {key: [[position in the batch, value]]}); what
  diagnosis reads instead of the records. Version-2 batches have none; a trace with such a batch is diagnosed
  from its records.
- "parents" (optional, every chunk of a big trace): {"parent_at": [each span's parent as a position in the
  trace, -1 for none or not seen yet], "base": the position of the chunk's first span, "adopt": [[children],
  [parents]]: earlier spans whose parent is in this chunk}. Loading then builds the tree without a map of
  every span id.

Versions: 1 is what agent-debug 0.1.0 wrote: the same layout without "v", hashes in the writing machine's byte
order, and (in stores older still) a name of any JSON type and a token_cost of any type. A version-1 chunk is
upgraded to version 2 when it is read (`upgrade`); ingest writes version 2 beside it, so a trace may mix both.
A chunk of a newer version than this code knows raises NewerChunk, naming both versions, rather than being
misread. To change the format: bump CHUNK_VERSION, write the new layout in `ChunkBuilder`, and add a step to
UPGRADES that turns the previous version into it.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import Any, TypedDict

import orjson

from agent_debug.columns import TraceSpans, text_of, token_columns
from agent_debug.errors import StoreError

_compress: Callable[[bytes, int], bytes]
crc32: Callable[[bytes, int], int]
_decompress: Callable[[bytes], bytes]
_isal_error: type[Exception]
try:  # the same formats as zlib (crc32 too), several times faster
    from isal import isal_zlib

    _compress, crc32, _decompress = isal_zlib.compress, isal_zlib.crc32, isal_zlib.decompress
    _isal_error = isal_zlib.error  # type: ignore[assignment]  # its stub says `error: Exception`: it is the class
except ImportError:  # pragma: no cover
    _compress, crc32, _decompress, _isal_error = zlib.compress, zlib.crc32, zlib.decompress, zlib.error

CHUNK_VERSION = 3

STORED_COLUMNS = ("span_id", "parent_id", "agent_name", "event_type", "name", "status", "start_ns", "duration_ns",
                  "token_cost")
# a trace this big (spans so far) has its columns stored in batches of STORED_BATCH spans, with agent_name,
# event_type and name dictionary-encoded: they load with a few C-level passes per 1024 spans and without a
# string per span (loading is what a big trace's tree and critical path wait for), and every chunk of it keeps
# its spans' parents as positions (`SpanKeys`; `store.ingest` positions a trace that becomes big later).
# That work costs ingest time that small traces, which load in milliseconds anyway, do not pay.
BIG_TRACE = 10_000
STORED_BATCH = 1024

_MINUS_ONE = -1
_ENCODED = ("agent_name", "event_type", "name")
_COPIED = ("span_id", "parent_id", "agent_name", "event_type", "name", "duration_ns", "token_cost")
_HASH_ARRAY = next(code for code in "IL" if array(code).itemsize == 4)  # content hashes are 32-bit
_BIG_ENDIAN = sys.byteorder == "big"
_NAME_TYPES = {str, type(None)}
_MICRO = 1_000_000.0
_THOUSANDS = repeat(1000)  # endless: zipped by map against each batch's timestamps


class NewerChunk(StoreError):
    """A stored chunk was written in a chunk format newer than this version reads."""


class Parents(TypedDict, total=False):
    """A chunk's parent positions (see the module docstring)."""

    parent_at: list[int]
    base: int
    adopt: list[list[int]]


class ChunkCols(TypedDict, total=False):
    """A chunk's `cols`, decoded and upgraded to CHUNK_VERSION (see the module docstring)."""

    v: int
    roots: dict[str, dict[str, Any]]
    hashes: str
    parents: Parents
    batches: list[dict[str, Any]]


def content_hash(raw: bytes) -> int:
    """crc32 seeded with the length: cheap (one C call, mapped over a batch), stable across processes, ample
    for telling two versions of one span apart."""
    return crc32(raw, len(raw))


# -- writing -----------------------------------------------------------------------------------------------------


def stored_batch(cols: dict[str, Any]) -> dict[str, Any]:
    """A reader batch's columns (`formats.reader.record_columns`) as a chunk stores them: STORED_COLUMNS, with
    C-level passes only."""
    out: dict[str, Any] = {k: cols[k] for k in _COPIED}
    if not set(map(type, out["name"])) <= _NAME_TYPES:  # the spec's name is a string: kept as its JSON text
        out["name"] = [nm if nm is None or type(nm) is str else text_of(nm) for nm in out["name"]]
    status = cols["status"]
    out["status"] = status if "error" in status else None  # all ok: nothing to store or load
    # columns.start_ns_of, in C: round(t * 1e6) * 1000 (t * 1_000_000 is t * 1e6 for an int or float)
    out["start_ns"] = list(map(int.__mul__, map(round, map(_MICRO.__mul__, cols["timestamp"])), _THOUSANDS))
    return out


class SpanKeys:
    """A trace's spans kept so far: for dedupe, and, in a big trace, for storing each span's parent as a position
    in the trace (positions follow the order its chunks are stored and read), so loading builds the tree
    without a map of every span id. A parent written after its child (writers write a span when it ends)
    adopts the child in its own chunk."""

    __slots__ = ("pos", "hashes", "waiting", "positioned", "tried")

    def __init__(self) -> None:
        # span id -> position; typed with None keys (never stored) so that a root's parent, None, looks up as any
        # unknown id does, in C: `map(pos.get, pids, repeat(-1))`
        self.pos: dict[str | None, int] = {}
        self.hashes = array(_HASH_ARRAY)  # content hash by position
        self.waiting: dict[str, list[int]] = {}  # a parent id not seen yet -> positions of its children
        # whether every chunk of the trace has its parents as positions (None: no chunk written yet; a trace
        # that is not gets them once, when it becomes big: see `store.ingest`)
        self.positioned: bool | None = None
        self.tried = False  # positions were added to the stored chunks (at most once per ingest)

    def add_stored(self, c: ChunkCols) -> None:
        """A chunk of the trace already in the store (an ingest that goes on with a trace), in order."""
        sids = span_ids(c)
        pids = parent_ids(c)
        hashes = chunk_hashes(c)
        if len(sids) != len(hashes):
            raise StoreError(f"a stored chunk has {len(sids)} spans and {len(hashes)} hashes")
        base = len(self.pos)
        self.pos.update(zip(sids, range(base, base + len(sids)), strict=True))
        self.hashes.extend(hashes)
        self.positioned = "parents" in c and self.positioned is not False
        if self.positioned:
            pos, waiting = self.pos, self.waiting
            for found in [p for p in waiting if p in pos]:
                del waiting[found]
            for i, pid in enumerate(pids):
                if pid is not None and pid not in pos:
                    waiting.setdefault(pid, []).append(base + i)

    def all_new(self, sids: Sequence[str], hashes: list[int]) -> bool:
        """Add a batch's span ids if none was seen before and none repeats (the common case, decided in C);
        otherwise change nothing and say so."""
        base = len(self.pos)
        new = dict(zip(sids, range(base, base + len(sids)), strict=True))
        if len(new) == len(sids) and self.pos.keys().isdisjoint(new):
            self.pos.update(new)
            self.hashes.extend(hashes)
            return True
        return False

    def big(self) -> bool:
        """Whether the trace is big enough for parent positions and joined, encoded batches."""
        return len(self.pos) >= BIG_TRACE

    def parents(self, base: int, pids: list[str | None]) -> Parents:
        """A chunk's "parents" (see the module docstring). Called at flush, when every span of the chunk is in
        `pos`."""
        pos = self.pos
        parent_at = list(map(pos.get, pids, repeat(-1)))  # in C: parents in this chunk or an earlier one
        out: Parents = {"parent_at": parent_at, "base": base}
        waiting = self.waiting
        if waiting:
            children: list[int] = []
            parents: list[int] = []
            for found in [p for p in waiting if p in pos]:
                kids = waiting.pop(found)
                children.extend(kids)
                parents.extend(repeat(pos[found], len(kids)))
            if children:
                out["adopt"] = [children, parents]
        for i in compress(range(len(pids)), map(_MINUS_ONE.__eq__, parent_at)):
            pid = pids[i]
            if pid is not None:
                waiting.setdefault(pid, []).append(base + i)
        return out


class ChunkBuilder:
    """The new spans of one trace since the last flush: their columns as JSON objects (one per reader batch; in
    a big trace, STORED_BATCH spans of them joined and dictionary-encoded, see BIG_TRACE), and their raw lines
    (each ending in b"\\n"), compressed at flush on ingest's compressor thread (`compress_records`)."""

    __slots__ = ("known", "base", "pids", "n", "batches", "waiting", "waiting_n", "hashes", "raw", "roots")

    def __init__(self, known: SpanKeys) -> None:
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
        """A batch of new spans: `cols` as `stored_batch` made them, their content hashes and raw lines."""
        if self.pids is not None:
            self.pids.extend(cols["parent_id"])
        if len(self.known.pos) < BIG_TRACE:  # stored as it is, while it is in the CPU cache
            self.batches.append(bytes(memoryview(to_json(cols))))
        else:
            self.waiting.append(cols)
            self.waiting_n += len(lines)
            if self.waiting_n >= STORED_BATCH:
                self._store_batch()
        self.hashes.append(_hash_bytes(hashes))
        self.raw.append(b"".join(lines))
        self.n += len(lines)

    def _store_batch(self) -> None:
        batches, self.waiting, self.waiting_n = self.waiting, [], 0
        cols = batches[0] if len(batches) == 1 else _joined(batches)
        for k in _ENCODED:
            cols[k] = dictionary_encode(cols[k])
        # a copy: orjson's own result keeps its whole output buffer (~100 KB) allocated while it lives
        self.batches.append(bytes(memoryview(to_json(cols))))

    def cols_json(self) -> bytes:
        """The chunk's `cols` (called once, at flush)."""
        if self.waiting:
            self._store_batch()
        known = self.known
        if known.positioned is None:  # the trace's first chunk: big enough for parent positions?
            known.positioned = self.base == 0 and known.big()
        parents = b""
        if known.positioned:
            if self.pids is None:  # decided since this chunk began: read back, once per trace
                self.pids = [pid for b in self.batches for pid in orjson.loads(b)["parent_id"]]
            parents = b',"parents":' + to_json(known.parents(self.base, self.pids))
        hashes = b"".join(self.hashes).hex().encode()
        return (b'{"v":%d,"roots":' % CHUNK_VERSION + to_json(self.roots) + b',"hashes":"' + hashes + b'"'
                + parents + b',"batches":[' + b",".join(self.batches) + b"]}")

    def raw_lines(self) -> bytes:
        return b"".join(self.raw)


def encode(c: ChunkCols) -> bytes:
    """A decoded chunk's `cols` written back (ingest adds parent positions to the chunks of a trace that became
    big): in the current version, whatever version it was read from (`decode` upgraded it)."""
    c["v"] = CHUNK_VERSION
    return to_json(c)


def compress_records(raw: bytes) -> bytes:
    """A chunk's raw lines, zlib format (level 1). Runs on ingest's compressor thread: zlib and isal release the
    GIL, so it overlaps with the parsing of the next chunk on a second core."""
    return _compress(raw, 1)


def _hash_bytes(hashes: list[int]) -> bytes:
    a = array(_HASH_ARRAY, hashes)
    if _BIG_ENDIAN:
        a.byteswap()
    return a.tobytes()


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
    """The batches' sparse attributes (`da`: {key: [[position, value]]}) with positions in the joined batch."""
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
    Values that cannot be keys, or mostly distinct ones, stay as they are."""
    codes: dict[Any, int] = {}
    try:  # one C-level pass: a new value gets the next code (the dict's size when it is met)
        coded = list(map(codes.setdefault, values, map(len, repeat(codes))))
    except TypeError:
        return values
    if len(codes) > len(coded) // 2:
        return values
    return {"values": list(codes), "codes": coded}


def to_json(obj: Any) -> bytes:
    """JSON as chunks store it; never fails on a value a record may hold (see `json_default`)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=json_default)
    except TypeError:  # an integer JSON cannot hold exactly (a token count beyond 64 bits): as a float
        return orjson.dumps(_json_safe(obj), option=orjson.OPT_NON_STR_KEYS, default=json_default)


def _json_safe(v: Any) -> Any:
    if isinstance(v, int) and not -(1 << 63) <= v < 1 << 64:
        return float(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def json_default(obj: Any) -> Any:
    """Values a MessagePack record may hold that JSON has no type for."""
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


# -- reading -----------------------------------------------------------------------------------------------------


def decode(cols: bytes) -> ChunkCols:
    """A chunk's `cols`, upgraded to CHUNK_VERSION. Raises NewerChunk for a newer version; a damaged blob
    raises what parsing raises (ValueError, KeyError, TypeError: see `store.load.DAMAGE`)."""
    c: ChunkCols = orjson.loads(cols)
    version = c.get("v", 1)
    if version == CHUNK_VERSION:
        return c
    if type(version) is not int or version < 1:
        raise ValueError(f"chunk format version {version!r} is not a version")
    if version > CHUNK_VERSION:
        raise NewerChunk(f"a chunk was written in chunk format {version}, newer than this agent-debug reads "
                         f"({CHUNK_VERSION}); upgrade agent-debug to read this store")
    while version < CHUNK_VERSION:
        c = UPGRADES[version](c)
        version = c["v"]
    return c


def _upgrade_1(c: ChunkCols) -> ChunkCols:
    """Version 1 (agent-debug 0.1.0) to 2: hashes in little-endian order, names strings or null, token costs
    objects or null (stores older than 0.1.0 kept any value in both; what loading made of them is unchanged)."""
    if _BIG_ENDIAN:
        a = array(_HASH_ARRAY)
        a.frombytes(bytes.fromhex(c["hashes"]))
        a.byteswap()
        c["hashes"] = a.tobytes().hex()
    for batch in c["batches"]:
        names = batch["name"]
        if isinstance(names, dict):
            if not set(map(type, names["values"])) <= _NAME_TYPES:
                names["values"] = [_name_text(nm) for nm in names["values"]]
        elif not set(map(type, names)) <= _NAME_TYPES:
            batch["name"] = [_name_text(nm) for nm in names]
        costs = batch["token_cost"]
        if not all(tc is None or type(tc) is dict for tc in costs):
            batch["token_cost"] = [tc if type(tc) is dict else None for tc in costs]
    c["v"] = 2
    return c


def _name_text(nm: Any) -> str | None:
    return nm if nm is None or type(nm) is str else text_of(nm)


def _upgrade_2(c: ChunkCols) -> ChunkCols:
    """Version 2 to 3: 3 adds the span digests to each batch, which cannot be made without the records; a batch
    without them stays so (`append_batch` then marks the trace as having none)."""
    c["v"] = 3
    return c


UPGRADES: dict[int, Callable[[ChunkCols], ChunkCols]] = {1: _upgrade_1, 2: _upgrade_2}  # version -> one step up


def span_ids(c: ChunkCols) -> list[str]:
    return [sid for batch in c["batches"] for sid in batch["span_id"]]


def parent_ids(c: ChunkCols) -> list[str | None]:
    return [pid for batch in c["batches"] for pid in batch["parent_id"]]


def chunk_hashes(c: ChunkCols) -> array[int]:
    """The spans' content hashes, in order."""
    hashes = array(_HASH_ARRAY)
    hashes.frombytes(bytes.fromhex(c["hashes"]))
    if _BIG_ENDIAN:
        hashes.byteswap()
    return hashes


def record_lines(blob: bytes) -> list[bytes]:
    """A chunk's stored records, one line each (the last element is the empty rest after the final newline)."""
    try:
        return _decompress(blob).split(b"\n")
    except _isal_error as exc:  # damage reads the same whichever library found it
        raise zlib.error(str(exc)) from None


def _shared_values(share: Any, col: list[Any] | dict[str, list[Any]]) -> list[Any]:
    """A column's values with one shared object per distinct value; `col` may be dictionary-encoded."""
    if isinstance(col, dict):
        values = [share(v, v) for v in col["values"]]
        return list(map(values.__getitem__, col["codes"]))
    return list(map(share, col, col))


def append_batch(ts: TraceSpans, cols: dict[str, Any]) -> None:
    """Append a stored batch to `ts` with the defaults the spec gives (a missing name is the event type, a
    missing status ok, missing token counts 0). Column-wise: a 1M-span trace loads with a few C-level passes per
    batch. Agents, event types, names and statuses repeat: one shared string per distinct value (a 1M-span
    trace keeps a few hundred instead of 4M, and equality tests on them succeed on identity)."""
    share = ts.shared.setdefault
    et = _shared_values(share, cols["event_type"])
    names = _shared_values(share, cols["name"])
    status = cols["status"]
    tc = cols["token_cost"]
    n = len(et)
    ts.span_id.extend(cols["span_id"])
    ts.parent_id.extend(cols["parent_id"])
    ts.agent_name.extend(_shared_values(share, cols["agent_name"]))
    ts.event_type.extend(et)
    if None in names or "" in names:
        ts.name.extend([nm or e for nm, e in zip(names, et, strict=True)])
    else:
        ts.name.extend(names)
    if status is None:  # every one ok
        ts.status.extend(["ok"] * n)
    elif None in status or "" in status:
        ts.status.extend([share(s, s) if s else "ok" for s in status])
    else:
        ts.status.extend(map(share, status, status))
    ts.start_ns.extend(cols["start_ns"])
    ts.duration_ns.extend(cols["duration_ns"])
    _append_digest(ts, cols, len(ts.span_id) - n)
    if tc.count(None) == n:
        zeros = [0] * n
        ts.prompt_tokens.extend(zeros)
        ts.completion_tokens.extend(zeros)
        ts.cost_usd.extend([0.0] * n)
        return
    # the spans with token costs (often a fifth of them): their values read in C and put in place with
    # map(list.__setitem__); anything unusual (null counts, strings) takes the per-span loop
    prompt, completion, cost = [0] * n, [0] * n, [0.0] * n
    at = list(compress(range(n), tc))
    p_vals, c_vals, u_vals = token_columns(list(compress(tc, tc)))
    deque(map(prompt.__setitem__, at, p_vals), maxlen=0)
    deque(map(completion.__setitem__, at, c_vals), maxlen=0)
    deque(map(cost.__setitem__, at, u_vals), maxlen=0)
    ts.prompt_tokens.extend(prompt)
    ts.completion_tokens.extend(completion)
    ts.cost_usd.extend(cost)


def _append_digest(ts: TraceSpans, cols: dict[str, Any], base: int) -> None:
    """The batch's span digests (`analysis.digest`) onto `ts.digest`; a batch without them (chunk format 2 or
    older) leaves the trace without digests (False): diagnosis then reads its records."""
    if ts.digest is False:
        return
    if "df" not in cols or (ts.digest is None and base):
        ts.digest = False
        return
    if ts.digest is None:
        ts.digest = {"df": [], "ol": [], "ih": [], "da": {}}
    d = ts.digest
    d["df"].extend(cols["df"])
    d["ol"].extend(cols["ol"])
    d["ih"].extend(cols["ih"])
    for key, pairs in cols["da"].items():
        d["da"].setdefault(key, []).extend([[pos + base, v] for pos, v in pairs] if base else pairs)


class TraceReader:
    """Assembles a trace's chunks, read in order, into its columns (and its parent positions, when every chunk
    has them)."""

    def __init__(self, ts: TraceSpans) -> None:
        self.ts = ts
        self.offsets: list[int] = []  # each chunk's first span
        self._parents: list[int] | None = []  # None once a chunk without parent positions is met
        self._adopted: list[list[list[int]]] = []

    def add(self, c: ChunkCols) -> None:
        ts = self.ts
        self.offsets.append(len(ts))
        if self._parents is not None:
            got = c.get("parents")
            if not isinstance(got, dict) or got.get("base") != len(ts):
                self._parents = None
            else:
                self._parents.extend(got["parent_at"])
                if "adopt" in got:
                    self._adopted.append(got["adopt"])
        for batch in c["batches"]:
            append_batch(ts, batch)
        ts.envelopes.update(c["roots"])

    def finish(self) -> TraceSpans:
        if self._parents:
            self.ts.parent_index = parent_index(self._parents, self._adopted, len(self.ts))
        return self.ts


def parent_index(parents: list[int], adopted: list[list[list[int]]], n: int) -> list[int | None] | None:
    """`TraceSpans.parent_index` from the chunks' `parent_at` and `adopt` (None when a position is out of range:
    the tree then maps the ids itself)."""
    if len(parents) != n or min(parents) < -1 or max(parents) >= n:
        return None
    for children, ps in adopted:
        if len(children) != len(ps) or min(children + ps, default=0) < 0 or max(children + ps, default=0) >= n:
            return None
    out: list[int | None] = parents  # type: ignore[assignment]  # the same list: its -1s become None below
    none = list(compress(range(n), map(_MINUS_ONE.__eq__, parents)))
    deque(map(out.__setitem__, none, repeat(None)), maxlen=0)
    for children, ps in adopted:
        deque(map(out.__setitem__, children, ps), maxlen=0)
    return out
