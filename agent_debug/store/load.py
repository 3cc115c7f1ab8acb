"""Reading a trace back from the store: its chunks' columns, and its full records at once or lazily (the
chunk format itself: `store.chunks`).

A damaged chunk (a flipped byte in its blob, a page the disk garbled) is the store's failure, not the
caller's: it is raised as StoreError naming the trace and the chunk, and every other trace stays readable
(each reads only its own chunks).
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from agent_debug.columns import TraceSpans
from agent_debug.errors import StoreError
from agent_debug.gcpause import gc_paused
from agent_debug.store.chunks import NewerChunk, TraceReader, decode, record_lines

# what reading a damaged chunk raises: zlib (a bad blob), orjson (ValueError), the column code on wrong shapes,
# SQLite on a garbled page
DAMAGE = (zlib.error, ValueError, KeyError, TypeError, IndexError, AttributeError, sqlite3.DatabaseError)


def damaged(trace_id: str, chunk_id: int | None, exc: BaseException) -> StoreError:
    """The one-line error for a chunk that cannot be read (None: which one is not known)."""
    text = str(exc).strip().splitlines()
    where = f"chunk {chunk_id}" if chunk_id is not None else "a chunk"
    return StoreError(f"trace {trace_id}: stored {where} is damaged ({type(exc).__name__}"
                      + (f": {text[0]}" if text else "") + "); other traces are unaffected")


def load_columns(db: sqlite3.Connection, trace_id: str, with_records: bool | str = False) -> TraceSpans:
    """A trace's spans from its chunks; the full records too when asked (decompress + parse), or with
    `with_records="lazy"` a `LazyRecords` that reads only the records an analysis asks for."""
    with gc_paused():
        return _load_columns(db, trace_id, with_records)


def _load_columns(db: sqlite3.Connection, trace_id: str, with_records: bool | str) -> TraceSpans:
    at: list[int | None] = [None]  # the chunk being read
    try:
        return _load_chunks(db, trace_id, with_records, at)
    except NewerChunk as exc:
        raise NewerChunk(f"trace {trace_id}: stored chunk {at[0]}: {exc}") from None
    except DAMAGE as exc:
        raise damaged(trace_id, at[0], exc) from None


def _load_chunks(db: sqlite3.Connection, trace_id: str, with_records: bool | str, at: list[int | None]
                 ) -> TraceSpans:
    lazy = with_records == "lazy"
    eager = bool(with_records) and not lazy
    loaded: list[dict[str, Any]] | None = [] if eager else None
    ts = TraceSpans(trace_id, records=loaded)
    reader = TraceReader(ts)
    loads = orjson.loads
    chunk_ids: list[int] = []
    for chunk_id, cols, records in db.execute(
        f"SELECT id, cols, {'records' if eager else 'NULL'} FROM chunks WHERE trace_id = ? ORDER BY id", (trace_id,)
    ):
        at[0] = chunk_id
        chunk_ids.append(chunk_id)
        reader.add(decode(cols))
        if loaded is not None:
            lines = record_lines(records)
            lines.pop()  # after the last line's b"\n"
            loaded.extend(map(loads, lines))
            if len(loaded) != len(ts):
                raise ValueError(f"{len(loaded)} records for {len(ts)} spans")
        at[0] = None
    if lazy:
        ts.records = LazyRecords(db, chunk_ids, reader.offsets, len(ts), trace_id=trace_id)
    return reader.finish()


class LazyRecords(Sequence[dict[str, Any]]):
    """A trace's full records, read from the store only when asked for: `records[i]` decompresses the one chunk
    that holds span i (a few recent chunks stay cached) and parses that one line. Lets `critical-path` and
    `tree` look at the attributes of the few spans they report on without parsing a 1M-span trace."""

    CACHED_CHUNKS = 8

    def __init__(self, db: sqlite3.Connection, chunk_ids: list[int], offsets: list[int], n: int, *,
                 trace_id: str = "?") -> None:
        self._db = db
        self._trace_id = trace_id
        self._chunk_ids = chunk_ids
        self._offsets = offsets
        self._n = n
        self._lines: dict[int, list[bytes]] = {}  # chunk position -> its raw lines, least recently used first
        self._parsed: dict[int, dict[str, Any]] = {}
        self._pending: threading.Thread | None = None
        self._error: Exception | None = None

    def __len__(self) -> int:
        return self._n

    def prefetch(self, indices: Iterable[int], *, background: bool = False) -> None:
        """Parse these records now, reading each chunk they fall in once (nothing but them is kept).

        With `background`, the chunks are read here and decompressed and parsed on a thread (zlib lets go of
        the GIL), so the caller can go on with other work; the next access waits for it."""
        self._wait()
        by_chunk: dict[int, list[int]] = {}
        offsets = self._offsets
        for i in indices:
            if 0 <= i < self._n and i not in self._parsed:
                by_chunk.setdefault(bisect_right(offsets, i) - 1, []).append(i)
        work: list[tuple[int, bytes | list[bytes], list[int]]] = []
        for k, wanted in by_chunk.items():
            work.append((k, self._lines.get(k) or self._blob(k), wanted))
        if background and work:
            self._pending = threading.Thread(target=self._parse, args=(work,), name="agent-debug-prefetch",
                                             daemon=True)
            self._pending.start()
        else:
            self._parse(work)
            self._raise()

    def _parse(self, work: list[tuple[int, bytes | list[bytes], list[int]]]) -> None:
        loads = orjson.loads
        k = None
        try:
            for k, data, wanted in work:
                base = self._offsets[k]
                lines = record_lines(data) if isinstance(data, bytes) else data
                for i in wanted:
                    self._parsed[i] = loads(lines[i - base])
        except Exception as exc:  # a damaged chunk: raised to the caller on its next access
            self._error = damaged(self._trace_id, None if k is None else self._chunk_ids[k], exc)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.join()
            self._pending = None
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]  # positions only, no slices
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        if self._pending is not None:
            self._wait()
        rec = self._parsed.get(i)
        if rec is None:
            k = bisect_right(self._offsets, i) - 1
            try:
                lines = self._lines.pop(k, None)
                if lines is None:
                    lines = record_lines(self._blob(k))
                    if len(self._lines) >= self.CACHED_CHUNKS:
                        del self._lines[next(iter(self._lines))]
                self._lines[k] = lines  # most recently used last
                rec = self._parsed[i] = orjson.loads(lines[i - self._offsets[k]])
            except DAMAGE as exc:
                raise damaged(self._trace_id, self._chunk_ids[k], exc) from None
        return rec

    def _blob(self, k: int) -> bytes:
        try:
            (blob,) = self._db.execute("SELECT records FROM chunks WHERE id = ?", (self._chunk_ids[k],)).fetchone()
        except (sqlite3.DatabaseError, TypeError) as exc:  # TypeError: the row is gone
            raise damaged(self._trace_id, self._chunk_ids[k], exc) from None
        data: bytes = blob
        return data
