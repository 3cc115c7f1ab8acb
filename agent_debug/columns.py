"""The column model: a trace's spans as columns (one list per field), and the one-pass summary of a run.

The ground floor beside `model`: readers, the store and every analysis share it, so it imports nothing of the
package. Columns keep a 1M-span trace in a few hundred MB and load from the store without parsing JSON
(`store.chunks` decodes a chunk into them); the full records are attached only when an analysis needs
attributes or payloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import methodcaller
from typing import Any, Literal

import orjson

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

# What a token_cost value counts for (the record keeps it as written, whatever it is): a token count is a number
# (or the text of one) from 0 to MAX_TOKENS, its fraction dropped; a cost a number (or its text) from 0 to
# MAX_COST; anything else (other text, an object, a bool, a negative or absurd number, NaN) counts as absent.
# Sums are kept within SQLite's 64 bits.
MAX_TOKENS = 1 << 53
MAX_COST = 1e12
INT64_MAX = (1 << 63) - 1
_INT = {int}
_NUMBER = {int, float}


def _number(s: str) -> int | float | None:
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return None


def token_count(v: Any) -> int:
    """A token count as the store and every summary count it (see MAX_TOKENS)."""
    if type(v) is str:
        v = _number(v)
    if type(v) is int or type(v) is float:
        return int(v) if 0 <= v <= MAX_TOKENS else 0  # NaN compares false
    return 0


def cost_value(v: Any) -> float:
    """A cost in US dollars as the store and every summary count it (see MAX_COST)."""
    if type(v) is str:
        v = _number(v)
    if type(v) is int or type(v) is float:
        return float(v) if 0 <= v <= MAX_COST else 0.0
    return 0.0


def token_counts(values: list[Any]) -> list[int]:
    """`token_count` of each: a C-level check for the usual column (all ints in range), else one by one."""
    if set(map(type, values)) <= _INT and (not values or min(values) >= 0 and max(values) <= MAX_TOKENS):
        return values
    return list(map(token_count, values))


def cost_values(values: list[Any]) -> list[float]:
    """`cost_value` of each, like `token_counts`."""
    if set(map(type, values)) <= _NUMBER and (not values or min(values) >= 0 and max(values) <= MAX_COST
                                              and sum(values) == sum(values)):  # no NaN (min and max skip it)
        return list(map(float, values))
    return list(map(cost_value, values))


def token_columns(costs: list[Any]) -> tuple[list[int], list[int], list[float]]:
    """Prompt tokens, completion tokens and cost of each `token_cost` object (absent keys count 0), in C for the
    usual columns. Shared by loading (`store.chunks.append_batch`) and ingest's running summary."""
    try:
        return (token_counts(list(map(_GET_PROMPT, costs))), token_counts(list(map(_GET_COMPLETION, costs))),
                cost_values(list(map(_GET_COST, costs))))
    except AttributeError:  # not every one is an object (an older store's columns)
        costs = [tc if isinstance(tc, dict) else {} for tc in costs]
        return token_columns(costs)


def saturated(total: int) -> int:
    """An integer sum as SQLite can hold it."""
    return min(total, INT64_MAX)


def text_of(v: Any, limit: int = 256) -> str:
    """A value the spec says is a string, as one: itself, or its compact JSON (cut to `limit` characters)."""
    if type(v) is str:
        return v
    try:
        out = orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    except TypeError:  # too deep or too big an integer: a reader's records never are, other callers' may be
        out = repr(type(v).__name__)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def start_ns_of(rec: dict[str, Any]) -> int:
    return round(float(rec["timestamp"]) * 1_000_000) * 1000


def columns_of(rec: dict[str, Any]) -> tuple[Any, ...]:
    """One record's values in COLUMNS order (a checked record: see `formats.accept`)."""
    tc = rec.get("token_cost") or {}
    name = rec.get("name") or rec["event_type"]
    return (
        rec["span_id"],
        rec.get("parent_id"),
        rec["agent_name"],
        rec["event_type"],
        name if type(name) is str else text_of(name),
        rec.get("status") or "ok",
        start_ns_of(rec),
        int(rec["duration_ns"]),
        token_count(tc.get("prompt_tokens")),
        token_count(tc.get("completion_tokens")),
        cost_value(tc.get("cost_usd")),
    )


def envelope_of(rec: dict[str, Any]) -> dict[str, Any]:
    """What a root record says about its run (kept beside the columns so listing needs no JSON). The run
    envelope's values are strings (spec); any other value is kept as its JSON text (`text_of`)."""
    attrs = rec.get("attributes") or {}
    env: dict[str, Any] = {k: text_of(rec[k]) for k in ENVELOPE_KEYS if rec.get(k) is not None}  # passed: a bool
    if "outcome.passed" in attrs:
        passed = attrs["outcome.passed"]
        env["passed"] = passed if passed is None or type(passed) is bool else text_of(passed)
    for key in ("source.file", "source.format"):
        if attrs.get(key) is not None:
            env[key] = text_of(attrs[key])
    return env


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
    # full records, same order, when loaded: a list, or `store.load.LazyRecords` (each read when asked for)
    records: Sequence[dict[str, Any]] | None = None
    # each span's parent as an index (None: a root, or a parent not in the trace), when the source knows it and
    # the span ids are unique (the store: ingest keeps one span per id); the tree is built from it without an id map
    parent_index: list[int | None] | None = field(default=None, repr=False, compare=False)
    # the spans' digests (`analysis.digest`: df, ol, ih lists and da {key: [[position, value]]}), when every stored
    # batch had one; False once one did not (an older store), None before any batch
    digest: dict[str, Any] | Literal[False] | None = field(default=None, repr=False, compare=False)
    # one shared object per distinct agent, event type, name and status (see `store.chunks.append_batch`)
    shared: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.span_id)

    def add(self, rec: dict[str, Any]) -> None:
        for name, value in zip(COLUMNS, columns_of(rec), strict=True):
            getattr(self, name).append(value)
        if rec.get("parent_id") is None:
            self.envelopes[rec["span_id"]] = envelope_of(rec)
        if self.records is not None:
            assert isinstance(self.records, list), "records read lazily are never added to"
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

    def positions_of(self, ids: Iterable[str | None]) -> dict[str, int]:
        """Span id -> index for these few ids, found in one C-level pass (a map of every id costs 0.5 s at 1M
        spans); of a repeated id, the last span wins, as it would in such a map."""
        wanted = set(ids)
        sids = self.span_id
        return {sids[i]: i for i in compress(range(len(sids)), map(wanted.__contains__, sids))}

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
        duration_ns=(ts.duration_ns[root] if root is not None else saturated(end - start)),
        span_count=n,
        roots=len(roots),
        agents=sorted(set(ts.agent_name)),
        error_spans=sum(1 for s in ts.status if s == "error"),
        prompt_tokens=saturated(sum(ts.prompt_tokens)),
        completion_tokens=saturated(sum(ts.completion_tokens)),
        cost_usd=round(sum(ts.cost_usd), 6),
        source_file=env.get("source.file"),
        source_format=env.get("source.format"),
    )
