"""Sessions: runs sharing a `session_id` are the turns of one conversation. State corrupted early shows up turns
later, so a session is read as a whole (the production-debugging guide's session-level failure modes):

- *first bad turn*: the earliest turn with an anomaly (a strong suspect, even in a turn that passed) or a failure;
- *multi-turn state corruption*: a *fact* (`key = value`, a quoted string, a number of 3+ characters) that the
  failing step used and that was carried into the failing turn (it is in that turn's input: the history),
  traced back to the earliest turn whose output *introduced* it (it appeared in a span's output there without
  having been given in that turn's input). The bug is usually in the step that wrote the fact, not the step that
  surfaced it: that span is the session's root cause;
- *error propagation across turns*: the chain of turns that carried that fact from where it was introduced to
  where the run failed (introduced -> carried -> failed), each with the span that used it.

`session_origin` is what `bucket` asks for a failed turn: when the failing step's own error or output names a
fact an earlier turn introduced, the bucket and root cause move to that earlier turn.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from agent_debug.analysis.buckets import Rules, blame_earlier_turn, diagnose
from agent_debug.analysis.column_path import column_facts, run_suspects_from
from agent_debug.analysis.findings import RunDiagnosis
from agent_debug.analysis.source import Source
from agent_debug.analysis.span_context import span_io
from agent_debug.analysis.tree import build_tree
from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import TraceNotFound
from agent_debug.store.query import TraceFilter

TEXT_CAP = 20_000
_KV_EQ = re.compile(r"\b([a-z_][a-z0-9_.]{2,40})\"?'?\s*=\s*\"?'?(-?[\w.\-/]{1,60})", re.IGNORECASE)
_KV_COLON = re.compile(r"\b([a-z_][a-z0-9_.]{2,40})\"?'?\s*:\s*\"?'?(-?[\w.\-/]{1,60})(?![\w.\-/]*=)",
                       re.IGNORECASE)
_QUOTED = re.compile(r"[\"“']([^\"”'\n]{4,60})[\"”']")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")
_USES = frozenset({"LLM_CALL", "TOOL_CALL", "RETRIEVAL", "AGENT", "PLAN", "VERIFY", "ROUTING_DECISION"})
_ORIGIN_BUCKET = {"RETRIEVAL": "retrieval_miss", "TOOL_CALL": "tool_execution", "LLM_CALL": "retrieval_miss"}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:TEXT_CAP]
    try:
        return orjson.dumps(value).decode()[:TEXT_CAP]
    except TypeError:
        return str(value)[:TEXT_CAP]


def facts(text: str) -> set[str]:
    """The checkable facts a text states: `key=value` pairs (normalized), quoted strings, numbers of 3+
    characters."""
    pairs = _KV_EQ.findall(text) + _KV_COLON.findall(text)
    out = {f"{k.lower()}={v.lower()}" for k, v in pairs if not v.startswith(("http", "/"))}
    out |= {q.strip().lower() for q in _QUOTED.findall(text) if " " in q.strip()}
    out |= {n.replace(",", "") for n in _NUMBER.findall(text) if len(n.replace(",", "").replace(".", "")) >= 3}
    return out


def _io(ts: TraceSpans, i: int) -> tuple[str, str, str]:
    """A span's input, output and error message, as text."""
    rec = ts.record(i) if ts.records is not None else {}
    inp, out = span_io(rec)
    err = (rec.get("error") or {}).get("message") if isinstance(rec.get("error"), dict) else None
    return _text(inp), _text(out), _text(err)


@dataclass
class Turn:
    n: int
    summary: TraceSummary
    ts: TraceSpans
    given: set[str]  # facts in the turn's own input (the user's message, the history handed to it)
    introduced: dict[str, int]  # fact -> the span whose output first stated it, not given

    @property
    def trace_id(self) -> str:
        return self.summary.trace_id


def read_turn(n: int, summary: TraceSummary, ts: TraceSpans) -> Turn:
    root = ts.span_id.index(summary.root_span_id) if summary.root_span_id in ts.span_id else None
    given = facts(_io(ts, root)[0]) if root is not None else set()
    introduced: dict[str, int] = {}
    for i in sorted(range(len(ts)), key=lambda i: (ts.start_ns[i], i)):
        if i == root:
            continue
        for f in facts(_io(ts, i)[1]) - given:
            introduced.setdefault(f, i)
    return Turn(n, summary, ts, given, introduced)


def _span(t: Turn, i: int) -> dict[str, Any]:
    ts = t.ts
    return {"turn": t.n, "trace_id": t.trace_id, "span_id": ts.span_id[i], "agent_name": ts.agent_name[i],
            "name": ts.name[i], "event_type": ts.event_type[i]}


def state_corruption(turns: list[Turn], failed: Turn, failing_span: int | None) -> dict[str, Any] | None:
    """The earliest turn before `failed` that introduced a fact the failing step used (its input, output or
    error), with the chain of turns that carried it; None when no such fact exists."""
    spans = [failing_span] if failing_span is not None else []
    spans += [i for i in range(len(failed.ts)) if i not in spans and failed.ts.status[i] == "error"]
    used: dict[str, bool] = {}  # fact -> named by the failure itself (its error or output)
    for i in spans:
        inp, out, err = _io(failed.ts, i)
        for f in facts(err + "\n" + out):
            used[f] = True
        for f in facts(inp):
            used.setdefault(f, False)
    best = None
    for f, named in used.items():
        if f not in failed.given:
            continue  # produced afresh in this turn, not state carried into it
        origin = next((t for t in turns if t.n < failed.n and f in t.introduced), None)
        if origin is None:
            continue
        key = (not named, origin.n)
        if best is None or key < best[0]:
            best = (key, f, origin, named)
    if best is None:
        return None
    _, fact, origin, named = best
    i = origin.introduced[fact]
    chain = [{"role": "introduced", **_span(origin, i)}]
    for t in turns:
        if origin.n < t.n < failed.n and fact in t.given:
            used_at = next((k for k in sorted(range(len(t.ts)), key=lambda k: (t.ts.start_ns[k], k))
                            if t.ts.parent_id[k] is not None and t.ts.event_type[k] in _USES
                            and fact in facts(" ".join(_io(t.ts, k)[:2]))), None)
            chain.append({"role": "carried", **(_span(t, used_at) if used_at is not None else
                                                {"turn": t.n, "trace_id": t.trace_id, "span_id": None})})
    if failing_span is not None:
        chain.append({"role": "failed", **_span(failed, failing_span)})
    return {"fact": fact, "named_by_failure": named,
            "origin": {**_span(origin, i), "bucket": _ORIGIN_BUCKET.get(origin.ts.event_type[i], "unclassified")},
            "relied_on_by": [c["turn"] for c in chain[1:]], "propagation": chain}


def _turns(source: Source, session_id: str) -> list[Turn]:
    summaries = sorted(source.list(TraceFilter(session_id=session_id)), key=lambda s: (s.start_ns, s.trace_id))
    return [read_turn(n, s, source.load(s.trace_id, records=True)) for n, s in enumerate(summaries, 1)]


def session_origin(source: Source, summary: TraceSummary, failing_span_id: str | None,
                   cache: dict[str, list[Turn]] | None = None) -> dict[str, Any] | None:
    """For a failed turn: the state corruption its failing step names (its error or output states a fact an
    earlier turn introduced), else None."""
    if not summary.session_id:
        return None
    cache = cache if cache is not None else {}
    if summary.session_id not in cache:
        cache[summary.session_id] = _turns(source, summary.session_id)
    turns = cache[summary.session_id]
    failed = next((t for t in turns if t.trace_id == summary.trace_id), None)
    if failed is None or failed.n == 1:
        return None
    i = failed.ts.span_id.index(failing_span_id) if failing_span_id in failed.ts.span_id else None
    found = state_corruption(turns, failed, i)
    return found if found is not None and found["named_by_failure"] else None


@dataclass
class TurnOutcome:
    """One turn of a session: its outcome, bucket and root cause, and its strong anomalies."""

    turn: int
    trace_id: str
    status: str
    failed: bool
    bucket: str | None
    root_cause: dict[str, Any] | None
    anomalies: list[str]


@dataclass
class BadTurn:
    """Where a session first went wrong, and why."""

    turn: int
    trace_id: str
    reason: str


@dataclass
class SessionReport:
    """`agent-debug session`: the turns of one conversation, the first that went wrong, and the state corruption
    that carried a failure across turns (`state_corruption`'s document). `as_dict` is `session --json`."""

    session_id: str
    turns: list[TurnOutcome]
    first_bad_turn: BadTurn | None
    first_failed_turn: int | None
    state_corruption: dict[str, Any] | None
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "turns": [asdict(t) for t in self.turns],
                "first_bad_turn": asdict(self.first_bad_turn) if self.first_bad_turn else None,
                "first_failed_turn": self.first_failed_turn, "state_corruption": self.state_corruption}


def analyze_session(source: Source, session_id: str, rules: Rules) -> SessionReport:
    turns = _turns(source, session_id)
    if not turns:
        raise TraceNotFound(f"no runs with session id {session_id!r}")
    rows = []
    diagnoses = {}
    cache = {session_id: turns}
    for t in turns:
        tree = build_tree(t.ts)
        cf = column_facts(t.ts, rules, tree)
        strong = [x for x in run_suspects_from(t.ts, rules, cf, failed=t.summary.failed, tree=tree).suspects
                  if x.strong]
        d = diagnose(t.ts, t.summary, rules, tree, facts=cf)
        diagnoses[t.n] = d
        if d is not None:  # as `bucket` does: a failure that names a fact an earlier turn introduced moves there
            moved = session_origin(source, t.summary, d.root_cause["span_id"], cache)
            if moved is not None:
                d = RunDiagnosis(**d.as_dict())
                blame_earlier_turn(d, moved, rules)
        rows.append(TurnOutcome(t.n, t.trace_id, t.summary.status, t.summary.failed, d.bucket if d else None,
                                d.root_cause if d else None,
                                [f"{e}: {x.agent_name} {x.name}" for x in strong for e in x.evidence[:1]]))
    first_failed = next((t for t in turns if t.summary.failed), None)
    corruption = None
    if first_failed is not None:
        d = diagnoses[first_failed.n]
        rc = first_failed.ts.span_id.index(d.root_cause["span_id"]) if d is not None else None
        corruption = state_corruption(turns, first_failed, rc)
    first_bad = None
    for row in rows:
        if row.anomalies or row.failed:
            first_bad = BadTurn(row.turn, row.trace_id, row.anomalies[0] if row.anomalies else f"run {row.status}")
            break
    if corruption is not None and (first_bad is None or corruption["origin"]["turn"] < first_bad.turn):
        o = corruption["origin"]
        first_bad = BadTurn(o["turn"], o["trace_id"], f"{o['agent_name']} {o['name']} introduced "
                            f"{corruption['fact']!r}, which turn(s) {corruption['relied_on_by']} relied on")
    return SessionReport(session_id, rows, first_bad, first_failed.n if first_failed else None, corruption,
                         list(source.notices))
