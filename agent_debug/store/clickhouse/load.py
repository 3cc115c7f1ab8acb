"""Reading one trace back from ClickHouse: its columns in one query (the same `TraceSpans` the SQLite store gives,
value for value, so every analysis and every rendering comes out the same), its records at once or lazily.

Columns come as `JSONCompactColumns` (orjson parses them in C; no loop per span in Python but the passes that
share repeated strings, as the SQLite store's loading does); records as `TSVRaw` lines (one JSON line each,
unescaped), read by position.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from agent_debug.columns import TraceSpans
from agent_debug.errors import StoreError, TraceNotFound
from agent_debug.gcpause import gc_paused
from agent_debug.store.clickhouse.conn import Conn

_COLUMNS = ("pos, span_id, parent_id, agent_name, event_type, name, status, start_ns, duration_ns, prompt_tokens, "
            "completion_tokens, cost_usd")


def load_trace(conn: Conn, spans: str, trace_id: str, records: bool | str = False) -> TraceSpans:
    with gc_paused():
        return _load(conn, spans, trace_id, records)


def _load(conn: Conn, spans: str, trace_id: str, records: bool | str) -> TraceSpans:
    params = {"t": trace_id}
    cols = orjson.loads(conn.query(
        f"SELECT {_COLUMNS} FROM {spans} FINAL WHERE trace_id = {{t:String}} ORDER BY pos", params))
    if not cols or not cols[0]:
        raise TraceNotFound(f"no spans for trace {trace_id!r}")
    pos, sid, pid, agent, et, name, status, start, dur, ptok, ctok, cost = cols
    ts = TraceSpans(trace_id)
    share = ts.shared.setdefault
    ts.span_id = sid
    ts.parent_id = pid
    ts.agent_name = list(map(share, agent, agent))
    ts.event_type = list(map(share, et, et))
    ts.name = list(map(share, name, name))
    ts.status = list(map(share, status, status))
    ts.start_ns = start
    ts.duration_ns = dur
    ts.prompt_tokens = ptok
    ts.completion_tokens = ctok
    ts.cost_usd = list(map(float, cost))  # JSON writes a whole number without its point
    if None in pid:
        roots = orjson.loads(conn.query(
            f"SELECT span_id, envelope FROM {spans} FINAL WHERE trace_id = {{t:String}} AND parent_id IS NULL "
            "ORDER BY pos", params))
        ts.envelopes = {s: orjson.loads(e) if e else {} for s, e in zip(*roots, strict=True)}
    n = len(sid)
    if records == "lazy":
        ts.records = LazyRecords(conn, spans, trace_id, pos)
    elif records:
        lines = record_lines(conn, spans, trace_id)
        if len(lines) != n:
            raise StoreError(f"trace {trace_id}: {len(lines)} records for {n} spans; the store changed while read")
        ts.records = list(map(orjson.loads, lines))
    return ts


def record_lines(conn: Conn, spans: str, trace_id: str) -> list[bytes]:
    """The trace's records as stored, in position order."""
    data = conn.query(f"SELECT record FROM {spans} FINAL WHERE trace_id = {{t:String}} ORDER BY pos",
                      {"t": trace_id}, "TSVRaw")
    lines = data.split(b"\n")
    lines.pop()  # after the last line's newline
    return lines


class LazyRecords(Sequence[dict[str, Any]]):
    """A trace's records, read from the store only when asked for (as `store.load.LazyRecords`): `records[i]`
    reads the block of BLOCK positions around span i (a few recent blocks stay cached) and parses that one
    record; `prefetch` reads the records an analysis is about to show in one query."""

    BLOCK = 1024
    CACHED_BLOCKS = 8

    def __init__(self, conn: Conn, spans: str, trace_id: str, positions: list[int]) -> None:
        self._conn = conn
        self._spans = spans
        self._trace_id = trace_id
        self._pos = positions  # each index's stored position (0..n-1 but for spans lost to a race)
        self._n = len(positions)
        self._lines: dict[int, dict[int, bytes]] = {}  # block -> position -> line, least recently used first
        self._parsed: dict[int, dict[str, Any]] = {}
        self._pending: threading.Thread | None = None
        self._error: Exception | None = None

    def __len__(self) -> int:
        return self._n

    def _fetch(self, positions: list[int]) -> dict[int, bytes]:
        """The stored lines at these positions: a key range when they are consecutive (a block: the usual case),
        every line of the trace in order when they are most of it, else the set of them."""
        if not positions:
            return {}
        lo, hi = min(positions), max(positions)
        params: dict[str, int | list[int]]
        if hi - lo + 1 == len(positions) or len(positions) > self._n // 4:
            where, params = "pos >= {lo:UInt32} AND pos <= {hi:UInt32}", {"lo": lo, "hi": hi}
        else:
            where, params = "pos IN {p:Array(UInt32)}", {"p": positions}
        data = self._conn.query(
            f"SELECT concat(toString(pos), '\t', record) FROM {self._spans} FINAL WHERE trace_id = {{t:String}} "
            f"AND {where} ORDER BY pos", {"t": self._trace_id, **params}, "TSVRaw")
        wanted = set(positions)
        out: dict[int, bytes] = {}
        for line in data.split(b"\n"):
            if line:
                p, _, rec = line.partition(b"\t")
                k = int(p)
                if k in wanted:
                    out[k] = rec
        return out

    def prefetch(self, indices: Iterable[int], *, background: bool = False) -> None:
        """Parse these records now, in one query (`background`: on a thread; the next access waits for it)."""
        self._wait()
        wanted = sorted({i for i in indices if 0 <= i < self._n and i not in self._parsed})
        if not wanted:
            return
        if background:
            self._pending = threading.Thread(target=self._read, args=(wanted,), name="agent-debug-prefetch",
                                             daemon=True)
            self._pending.start()
        else:
            self._read(wanted)
            self._raise()

    def _read(self, wanted: list[int]) -> None:
        try:
            pos = self._pos
            if len(wanted) > self._n // 4 and pos[0] == 0 and pos[-1] == self._n - 1:  # positions 0..n-1: in order
                lines = record_lines(self._conn, self._spans, self._trace_id)
                if len(lines) != self._n:
                    raise ValueError(f"{len(lines)} records for {self._n} spans")
                self._parsed.update(zip(wanted, map(orjson.loads, map(lines.__getitem__, wanted)), strict=True))
                return
            got = self._fetch([pos[i] for i in wanted])
            for i in wanted:
                self._parsed[i] = orjson.loads(got[pos[i]])
        except Exception as exc:  # raised to the caller on its next access
            self._error = exc if isinstance(exc, StoreError) else _missing(self._trace_id, exc)

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
            k = i // self.BLOCK
            lines = self._lines.pop(k, None)
            if lines is None:
                lines = self._fetch(self._pos[k * self.BLOCK: (k + 1) * self.BLOCK])
                if len(self._lines) >= self.CACHED_BLOCKS:
                    del self._lines[next(iter(self._lines))]
            self._lines[k] = lines
            try:
                rec = self._parsed[i] = orjson.loads(lines[self._pos[i]])
            except (KeyError, ValueError) as exc:
                raise _missing(self._trace_id, exc) from None
        return rec


def _missing(trace_id: str, exc: BaseException) -> StoreError:
    return StoreError(f"trace {trace_id}: a stored record could not be read ({type(exc).__name__}: {exc}); "
                      "other traces are unaffected")
