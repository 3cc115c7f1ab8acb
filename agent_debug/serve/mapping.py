"""OTLP spans arriving over time, mapped to records by the OTLP importer (`formats.otlp`, with the OpenInference
and GenAI semantic-convention mapping of `formats.semconv`) and redacted with the SDK's redactor.

One mapping, not a copy: each span becomes a `Draft` through the importer's own code, and the whole-trace steps
run through `semconv.finalize`. What streaming adds is context. A file holds a whole trace; an exporter sends a
trace in pieces, children before their parents (a span is exported when it ends). So the mapper keeps the spans
of each live trace, and a span whose agent is named by an ancestor that has not arrived yet is held until it
does (or for `hold` seconds, then stored with what is known, as a file cut at that point would be). Usage on an
agent span is dropped when a descendant reported usage, as `finalize` does for a file, if the descendant came
first; if the agent span was stored first (a child that ended after its parent, or that another process exported
later), the sum is already counted there, so the descendant's usage is dropped instead (its attributes keep the
numbers, and `token_cost.counted_in` names the span that counts them): a run's tokens are never counted twice.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent_debug.formats import otlp
from agent_debug.formats.semconv import Draft, finalize
from agent_debug.sdk.redact import Redactor
from agent_debug.store.chunks import json_default as _json_default
from agent_debug.store.records import LINE_OPTIONS

SOURCE = "otlp-http"


class Mapped(list[dict[str, Any]]):
    """Records ready to store, and `lines`: each as the store keeps it (`store.records.record_line`)."""

    lines: list[bytes]

    def __init__(self, recs: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(recs)
        self.lines = []

    def extend_mapped(self, other: Mapped) -> None:
        self.extend(other)
        self.lines.extend(other.lines)

HOLD_SECONDS = 1.0
FORGET_DONE_SECONDS = 5.0  # a trace whose root arrived is forgotten this long after its last span
MAX_DEPTH = 10_000


@dataclass
class _Trace:
    drafts: dict[str, Draft] = field(default_factory=dict)  # span id -> draft (compacted once released)
    hashes: dict[str, int] = field(default_factory=dict)  # span id -> hash of the mapped span as it came
    held: dict[str, float] = field(default_factory=dict)  # span id -> when it arrived
    usage_below: set[str] = field(default_factory=set)  # span ids with a descendant that reports usage
    usage_stored: set[str] = field(default_factory=set)  # span ids released with their token_cost kept
    root_seen: bool = False
    last: float = 0.0


class LiveMapper:
    """OTLP requests in, records out (redacted), with context kept per live trace. Not thread-safe: one owner."""

    def __init__(self, redactor: Redactor | None = None, *, hold: float = HOLD_SECONDS,
                 forget_after: float = 30.0) -> None:
        self.redactor = redactor if redactor is not None else Redactor()
        self.hold = hold
        self.forget_after = forget_after
        self.traces: dict[str, _Trace] = {}
        self.repeats = 0  # spans sent again while their trace was live (not stored twice)
        self.last_mapped = 0  # spans the last request held that the importer could map

    def add(self, request: dict[str, Any], now: float | None = None) -> Mapped:
        """Map one ExportTraceServiceRequest (OTLP/JSON shape); return the records ready to store (redacted, with
        their lines)."""
        now = time.monotonic() if now is None else now
        by_trace: dict[str, list[Draft]] = {}
        self.last_mapped = 0
        for d in otlp._drafts(request, SOURCE):  # the importer's own per-span mapping
            by_trace.setdefault(d.rec["trace_id"], []).append(d)
            self.last_mapped += 1
        out: list[dict[str, Any]] = []
        for tid, drafts in by_trace.items():
            st = self.traces.get(tid)
            if st is None:
                st = self.traces[tid] = _Trace()
            st.last = now
            out.extend(self._add_trace(st, drafts, now))
        return self._redacted(out)

    def due(self, now: float | None = None) -> Mapped:
        """Records held past `hold` seconds, released now; traces quiet long enough are forgotten."""
        now = time.monotonic() if now is None else now
        out: list[dict[str, Any]] = []
        for tid, st in list(self.traces.items()):
            if st.held:
                late = [sid for sid, t in st.held.items() if now - t >= self.hold]
                if late:
                    out.extend(self._release(st, late))
            quiet = now - st.last
            if not st.held and (quiet >= self.forget_after or (st.root_seen and quiet >= FORGET_DONE_SECONDS)):
                del self.traces[tid]
        return self._redacted(out)

    def held(self) -> int:
        """Spans waiting for their parents (read from other threads: works on a copy)."""
        return sum(len(st.held) for st in list(self.traces.values()))

    def _add_trace(self, st: _Trace, drafts: list[Draft], now: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        fresh: list[str] = []
        for d in drafts:
            sid = d.rec["span_id"]
            h = zlib.crc32(orjson.dumps(d.rec, default=str))  # the importer builds keys in a fixed order
            if st.hashes.get(sid) == h:  # the same span again (an exporter retry): stored or held already
                self.repeats += 1
                continue
            st.hashes[sid] = h
            st.drafts[sid] = d
            st.held[sid] = now
            fresh.append(sid)
            if d.rec["parent_id"] is None:
                st.root_seen = True
            if d.rec.get("token_cost") and not d.own_record:
                counted = self._counted_above(st, d.rec["parent_id"])
                if counted is not None:  # an ancestor stored already reports the sum, this span's usage too
                    del d.rec["token_cost"]
                    d.rec["attributes"]["token_cost.counted_in"] = counted
            if d.rec.get("token_cost") or sid in st.usage_below:
                self._mark_usage(st, d.rec["parent_id"])
        ready = [sid for sid in st.held if self._settled(st, sid)]
        if ready:
            out.extend(self._release(st, ready))
        return out

    def _mark_usage(self, st: _Trace, parent: str | None) -> None:
        """Every ancestor of a span that reports usage reports an aggregate (known or not yet arrived)."""
        for _ in range(MAX_DEPTH):
            if parent is None or parent in st.usage_below:
                return
            st.usage_below.add(parent)
            d = st.drafts.get(parent)
            parent = d.rec["parent_id"] if d is not None else None

    def _counted_above(self, st: _Trace, parent: str | None) -> str | None:
        """The nearest ancestor stored with its usage kept (an aggregate that arrived before this descendant:
        a span that ended after its parent, or one another process exported later), or None."""
        for _ in range(MAX_DEPTH):
            if parent is None:
                return None
            if parent in st.usage_stored:
                return parent
            d = st.drafts.get(parent)
            parent = d.rec["parent_id"] if d is not None else None
        return None

    def _settled(self, st: _Trace, sid: str) -> bool:
        """Whether the span's agent is known: it or an ancestor names one, or its whole chain to the root is here."""
        d = st.drafts[sid]
        for _ in range(MAX_DEPTH):
            if d.explicit_agent or d.agent_label:
                return True
            parent = d.rec["parent_id"]
            if parent is None:
                return True
            nxt = st.drafts.get(parent)
            if nxt is None:
                return False
            d = nxt
        return True  # a cycle or absurd depth: nothing to wait for

    def _release(self, st: _Trace, sids: list[str]) -> list[dict[str, Any]]:
        """`finalize` the released spans with their known ancestors (for agent names), then redact them."""
        subset: dict[str, Draft] = {}
        for sid in sids:
            st.held.pop(sid, None)
            d: Draft | None = st.drafts[sid]
            for _ in range(MAX_DEPTH):
                if d is None or d.rec["span_id"] in subset:
                    break
                subset[d.rec["span_id"]] = d
                parent = d.rec["parent_id"]
                d = st.drafts.get(parent) if parent is not None else None
        finalize(subset.values(), source_file=SOURCE, source_format=otlp.NAME)
        out = []
        for sid in sids:
            d = st.drafts[sid]
            rec = d.rec
            if sid in st.usage_below and not d.own_record:
                rec.pop("token_cost", None)
            elif rec.get("token_cost") and not d.own_record:
                st.usage_stored.add(sid)
            out.append(rec)
            st.drafts[sid] = _compact(d)
        return out

    def _redacted(self, recs: list[dict[str, Any]]) -> Mapped:
        """The records serialized as the store keeps them (`store.records.record_line`) and redacted with the SDK's
        batch redactor, as its writer does: one C-level trigger scan over all of them joined; only the records
        where a trigger hits (or that are too large) are walked, redacted and serialized again."""
        dumps, opt = orjson.dumps, LINE_OPTIONS
        lines = [dumps(rec, option=opt, default=_json_default) for rec in recs]
        out, _, changed = self.redactor.redact_batch(lines)
        if changed:
            for i, (old, new) in enumerate(zip(lines, out, strict=True)):
                if new is not old:
                    recs[i] = orjson.loads(new)
                    lines[i] = dumps(recs[i], option=opt, default=_json_default)
        mapped = Mapped(recs)
        mapped.lines = [line + b"\n" for line in lines]
        return mapped

    def unsee(self, records: Iterable[dict[str, Any]]) -> None:
        """These records were not stored (the store failed): a retry of their request is mapped again, not
        taken for a repeat."""
        for rec in records:
            st = self.traces.get(rec["trace_id"])
            if st is not None:
                st.hashes.pop(rec["span_id"].split("#", 1)[0], None)

    def forget(self, trace_ids: Iterable[str]) -> None:
        for tid in trace_ids:
            st = self.traces.get(tid)
            if st is not None and not st.held:
                del self.traces[tid]


def _compact(d: Draft) -> Draft:
    """The draft of a released span, keeping of its record only what its descendants still need (`finalize`
    reads these keys): a fraction of a record. (The record itself has been handed over.)"""
    rec = d.rec
    d.rec = {"trace_id": rec["trace_id"], "span_id": rec["span_id"], "parent_id": rec["parent_id"],
             "timestamp": rec["timestamp"], "attributes": {}}
    return d
