"""A trace's spans as columns (one list per field), and the one-pass summary of a run.

Columns keep a 1M-span trace in a few hundred MB and load from the store without parsing JSON; the full
records are attached only when an analysis needs attributes or payloads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress
from operator import methodcaller
from typing import Any

COLUMNS: tuple[str, ...] = (
    "span_id",
    "parent_id",
    "agent_name",
    "event_type",
    "name",
    "status",
    "start_ns",
    "duration_ns",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
)

ENVELOPE_KEYS = ("workflow", "actor", "session_id", "run_id")

_GET_PROMPT = methodcaller("get", "prompt_tokens", 0)
_GET_COMPLETION = methodcaller("get", "completion_tokens", 0)
_GET_COST = methodcaller("get", "cost_usd", 0.0)


def _as_int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _as_float(v: Any) -> float:
    try:
        return float(v or 0.0)
    except (TypeError, ValueError):
        return 0.0


def start_ns_of(rec: dict[str, Any]) -> int:
    return round(float(rec["timestamp"]) * 1_000_000) * 1000


def columns_of(rec: dict[str, Any]) -> tuple[Any, ...]:
    """One record's values in COLUMNS order."""
    tc = rec.get("token_cost") or {}
    return (
        rec["span_id"],
        rec.get("parent_id"),
        rec["agent_name"],
        rec["event_type"],
        rec.get("name") or rec["event_type"],
        rec.get("status") or "ok",
        start_ns_of(rec),
        int(rec["duration_ns"]),
        int(tc.get("prompt_tokens") or 0),
        int(tc.get("completion_tokens") or 0),
        float(tc.get("cost_usd") or 0.0),
    )


def envelope_of(rec: dict[str, Any]) -> dict[str, Any]:
    """What a root record says about its run (kept beside the columns so listing needs no JSON)."""
    attrs = rec.get("attributes") or {}
    env = {k: rec.get(k) for k in ENVELOPE_KEYS if rec.get(k) is not None}
    if "outcome.passed" in attrs:
        env["passed"] = attrs["outcome.passed"]
    for key in ("source.file", "source.format"):
        if key in attrs:
            env[key] = attrs[key]
    return env


def _shared_values(share: Any, col: list[Any] | dict[str, list[Any]]) -> list[Any]:
    """A column's values with one shared object per distinct value; `col` may be dictionary-encoded
    (`store.ingest.dictionary_encode`)."""
    if isinstance(col, dict):
        values = [share(v, v) for v in col["values"]]
        return list(map(values.__getitem__, col["codes"]))
    return list(map(share, col, col))


@dataclass
class TraceSpans:
    """One trace, column-wise. Index i of every list is the same span."""

    trace_id: str
    span_id: list[str] = field(default_factory=list)
    parent_id: list[str | None] = field(default_factory=list)
    agent_name: list[str] = field(default_factory=list)
    event_type: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    start_ns: list[int] = field(default_factory=list)
    duration_ns: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    envelopes: dict[str, dict[str, Any]] = field(default_factory=dict)  # root span id -> envelope
    records: list[dict[str, Any]] | None = None  # full records, same order, when loaded
    # each span's parent as an index (None: a root, or a parent not in the trace), when the source knows it and
    # the span ids are unique (the store: ingest keeps one span per id); the tree is built from it without an id map
    parent_index: list[int | None] | None = field(default=None, repr=False, compare=False)
    _shared: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)  # see extend_columns

    def __len__(self) -> int:
        return len(self.span_id)

    def extend_columns(self, cols: dict[str, Any]) -> None:
        """Append a batch of stored columns (`store.ingest.STORED_COLUMNS`: values as the records had them,
        `start_ns` already converted, `status` None when all are ok) with the defaults the spec gives.
        Column-wise: a 1M-span trace loads with a few C-level passes per batch."""
        # agents, event types, names and statuses repeat: one shared string per distinct value (a 1M-span trace
        # keeps a few hundred instead of 4M, and equality tests on them succeed on identity)
        share = self._shared.setdefault
        et = _shared_values(share, cols["event_type"])
        try:
            names = _shared_values(share, cols["name"])
        except TypeError:  # a name the spec does not constrain may be any JSON value, a list say
            names = list(cols["name"])
        status = cols["status"]
        tc = cols["token_cost"]
        n = len(et)
        self.span_id.extend(cols["span_id"])
        self.parent_id.extend(cols["parent_id"])
        self.agent_name.extend(_shared_values(share, cols["agent_name"]))
        self.event_type.extend(et)
        if None in names or "" in names:
            self.name.extend([nm or e for nm, e in zip(names, et, strict=True)])
        else:
            self.name.extend(names)
        if status is None:  # every one ok
            self.status.extend(["ok"] * n)
        elif None in status or "" in status:
            self.status.extend([share(s, s) if s else "ok" for s in status])
        else:
            self.status.extend(map(share, status, status))
        self.start_ns.extend(cols["start_ns"])
        self.duration_ns.extend(cols["duration_ns"])
        if tc.count(None) == n:
            zeros = [0] * n
            self.prompt_tokens.extend(zeros)
            self.completion_tokens.extend(zeros)
            self.cost_usd.extend([0.0] * n)
            return
        # the spans with token costs (often a fifth of them): their values read in C and put in place with
        # map(list.__setitem__); anything unusual (null counts, strings) takes the per-span loop
        prompt, completion, cost = [0] * n, [0] * n, [0.0] * n
        at = list(compress(range(n), tc))
        got = list(compress(tc, tc))
        try:
            p_vals = list(map(int, map(_GET_PROMPT, got)))
            c_vals = list(map(int, map(_GET_COMPLETION, got)))
            u_vals = list(map(float, map(_GET_COST, got)))
        except (TypeError, ValueError, AttributeError):
            p_vals, c_vals, u_vals = [], [], []
            for t in got:
                p_vals.append(_as_int(t.get("prompt_tokens") if isinstance(t, dict) else None))
                c_vals.append(_as_int(t.get("completion_tokens") if isinstance(t, dict) else None))
                u_vals.append(_as_float(t.get("cost_usd") if isinstance(t, dict) else None))
        deque(map(prompt.__setitem__, at, p_vals), maxlen=0)
        deque(map(completion.__setitem__, at, c_vals), maxlen=0)
        deque(map(cost.__setitem__, at, u_vals), maxlen=0)
        self.prompt_tokens.extend(prompt)
        self.completion_tokens.extend(completion)
        self.cost_usd.extend(cost)

    def add(self, rec: dict[str, Any]) -> None:
        for name, value in zip(COLUMNS, columns_of(rec), strict=True):
            getattr(self, name).append(value)
        if rec.get("parent_id") is None:
            self.envelopes[rec["span_id"]] = envelope_of(rec)
        if self.records is not None:
            self.records.append(rec)

    @classmethod
    def from_records(cls, trace_id: str, records: Iterable[dict[str, Any]], keep_records: bool = True) -> TraceSpans:
        ts = cls(trace_id, records=[] if keep_records else None)
        for rec in records:
            ts.add(rec)
        return ts

    def record(self, i: int) -> dict[str, Any]:
        """The full record of span i (or one rebuilt from the columns when records were not loaded)."""
        if self.records is not None:
            return self.records[i]
        return {name: getattr(self, name)[i] for name in COLUMNS}

    def attributes(self, i: int) -> dict[str, Any]:
        if self.records is None:
            return {}
        return self.records[i].get("attributes") or {}


@dataclass
class TraceSummary:
    """One run, as `agent-debug traces` lists it."""

    trace_id: str
    root_span_id: str | None
    run_id: str | None
    session_id: str | None
    workflow: str | None
    actor: str | None
    status: str  # passed | failed | error | ok | unknown
    start_ns: int
    end_ns: int
    duration_ns: int
    span_count: int
    roots: int
    agents: list[str]
    error_spans: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    source_file: str | None = None
    source_format: str | None = None
    verdict: dict[str, Any] | None = None  # a human verdict (`agent-debug mark`) that set `status`

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "error")

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failed"] = self.failed
        return d


def summarize(ts: TraceSpans) -> TraceSummary:
    """One pass over the columns: root, outcome, time span, agents, tokens."""
    n = len(ts)
    roots = [i for i in range(n) if ts.parent_id[i] is None]
    root = None
    if roots:
        root = min(roots, key=lambda i: (0 if ts.envelopes.get(ts.span_id[i]) else 1, ts.start_ns[i]))
    env = ts.envelopes.get(ts.span_id[root], {}) if root is not None else {}
    if root is None:
        status = "unknown"
    elif ts.status[root] == "error":
        status = "error"
    elif env.get("passed") is False:
        status = "failed"
    elif env.get("passed") is True:
        status = "passed"
    else:
        status = "ok"
    start = min(ts.start_ns) if n else 0
    end = max(s + d for s, d in zip(ts.start_ns, ts.duration_ns, strict=True)) if n else 0
    return TraceSummary(
        trace_id=ts.trace_id,
        root_span_id=ts.span_id[root] if root is not None else None,
        run_id=env.get("run_id"),
        session_id=env.get("session_id"),
        workflow=env.get("workflow"),
        actor=env.get("actor"),
        status=status,
        start_ns=start,
        end_ns=end,
        duration_ns=(ts.duration_ns[root] if root is not None else end - start),
        span_count=n,
        roots=len(roots),
        agents=sorted(set(ts.agent_name)),
        error_spans=sum(1 for s in ts.status if s == "error"),
        prompt_tokens=sum(ts.prompt_tokens),
        completion_tokens=sum(ts.completion_tokens),
        cost_usd=round(sum(ts.cost_usd), 6),
        source_file=env.get("source.file"),
        source_format=env.get("source.format"),
    )
