"""Emergent disagreement (the L59 lesson): agents on parallel branches reach contradictory conclusions, and a later
agent merges them without reconciling, so the combined output is internally inconsistent. No agent looks wrong
alone; only the system view shows it.

- *Parallel branches*: two spans of different agents, neither inside the other, each concluding something (an
  output) without having taken in the other's conclusion (neither input states it): independent branches, as
  when they run at the same time, and however a replay orders them.
- *Conclusions* read from each output: yes/no verdicts on a subject (`compatible: yes`, `safe: no`), numbers
  for a key (`rows affected: 1200`, `total = 57`), and named entities for a key (`answer: Paris`, `owner is
  Alice`). Two branches *contradict* when they give the same key different values (numbers differing by more
  than 1%).
- *Merge*: a later span (started after both ended) whose input or output contains both branches' values or
  restates one of them, and that does not say it reconciled them (no "conflict", "disagree", "contradict",
  "inconsistent", "discrepancy", "reconcile", "however"): an unreconciled merge. Without such a span the
  disagreement is still reported, on the later branch, as unmerged.

`find_disagreements(ts)` returns each one with both branch spans and the merge span; the suspects score the
merge (signal `disagreement`), and the bucket rule `unreconciled_disagreement` makes it a root cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import compress, repeat
from operator import and_
from typing import Any

import orjson

from agent_debug.analysis.span_context import span_io
from agent_debug.columns import TraceSpans

TEXT_CAP = 8000
# each pattern finds a separator and a value; the key is read back from the few words before it (one pass over
# the text, no backtracking over every possible key start)
_YESNO = re.compile(r"(?:[:=]|\bis\b|\?)\s*(yes|no|true|false|safe|unsafe|approved|rejected|compatible|incompatible)\b",
                    re.IGNORECASE)
_NUMBER = re.compile(r"(?:[:=]|\b(?:is|was|of)\b)\s*\$?(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)
_KEY_BEFORE = re.compile(r"([a-z][a-z _-]{1,40}?)\s*$", re.IGNORECASE)
_ENTITY = re.compile(r"\b(answer|winner|author|owner|capital|city|country|company|name|cause|culprit|module|file)"
                     r"\s*(?:[:=]|\bis\b|\bwas\b)\s*([A-Z][\w.-]+(?: [A-Z][\w.-]+)*)")
_RECONCILE = re.compile(r"conflict|disagree|contradict|inconsisten|discrepan|reconcil|however|differ", re.IGNORECASE)
_POSITIVE = frozenset({"yes", "true", "safe", "approved", "compatible"})


@dataclass(frozen=True)
class Conclusion:
    kind: str  # yesno | number | entity
    key: str
    value: str
    text: str

    def contradicts(self, other: Conclusion) -> bool:
        if self.kind != other.kind or self.key != other.key:
            return False
        if self.kind == "yesno":
            return (self.value in _POSITIVE) != (other.value in _POSITIVE)
        if self.kind == "number":
            a, b = float(self.value), float(other.value)
            return abs(a - b) > 0.01 * max(abs(a), abs(b), 1e-9)
        return self.value.lower() != other.value.lower()


@dataclass(frozen=True)
class Disagreement:
    a: int  # span index of one branch
    b: int  # and of the other
    merge: int | None  # the span that merged them without reconciling (None: not merged)
    key: str
    value_a: str
    value_b: str
    kind: str

    def as_dict(self, ts: TraceSpans) -> dict[str, Any]:
        def span(i: int | None) -> dict[str, Any] | None:
            if i is None:
                return None
            return {"span_id": ts.span_id[i], "agent_name": ts.agent_name[i], "name": ts.name[i]}

        return {"kind": self.kind, "key": self.key, "values": [self.value_a, self.value_b],
                "branches": [span(self.a), span(self.b)], "merge": span(self.merge)}

    def evidence(self, ts: TraceSpans) -> str:
        return (f"{ts.agent_name[self.a]} ({ts.span_id[self.a]}) concluded {self.key} = {self.value_a}, "
                f"{ts.agent_name[self.b]} ({ts.span_id[self.b]}) concluded {self.key} = {self.value_b}, "
                + ("merged without reconciling" if self.merge is not None else "never reconciled"))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:TEXT_CAP]
    try:
        return orjson.dumps(value).decode()[:TEXT_CAP]
    except TypeError:
        return str(value)[:TEXT_CAP]


def _io(ts: TraceSpans, i: int) -> tuple[str, str]:
    if ts.records is None:
        return "", ""
    inp, out = span_io(ts.record(i))
    return _text(inp), _text(out)


def _key(raw: str) -> str:
    words = re.sub(r"[^a-z0-9]+", " ", raw.lower()).split()
    return " ".join(words[-3:])


def _key_before(text: str, at: int) -> str | None:
    m = _KEY_BEFORE.search(text, max(0, at - 41), at)
    return _key(m.group(1)) if m else None


def conclusions(text: str) -> list[Conclusion]:
    """The yes/no verdicts, numbers and named entities a text states for a key."""
    out: list[Conclusion] = []
    for m in _YESNO.finditer(text):
        key = _key_before(text, m.start())
        if key:
            out.append(Conclusion("yesno", key, m.group(1).lower(), m.group(0)))
    for m in _NUMBER.finditer(text):
        key = _key_before(text, m.start())
        value = m.group(1).replace(",", "")
        try:
            float(value)
        except ValueError:
            continue
        if key:
            out.append(Conclusion("number", key, value, m.group(0)))
    for m in _ENTITY.finditer(text):
        out.append(Conclusion("entity", m.group(1).lower(), m.group(2).rstrip(".,;:"), m.group(0)))
    return out


def _ancestors(ts: TraceSpans, by_id: dict[str, int], i: int) -> set[int]:
    out: set[int] = set()
    p = ts.parent_id[i]
    while p is not None and p in by_id and by_id[p] not in out:
        out.add(by_id[p])
        p = ts.parent_id[by_id[p]]
    return out


_LAST: list[tuple[TraceSpans, list[Disagreement]]] = []  # the last trace's answer: the rule and the suspects ask


def find_disagreements(ts: TraceSpans, max_spans: int = 2000) -> list[Disagreement]:
    """Contradictory conclusions of independent branches and the merge that did not reconcile them."""
    if ts.records is None or len(ts) > max_spans:
        return []
    if _LAST and _LAST[0][0] is ts:
        return _LAST[0][1]
    found = _find(ts, max_spans)
    _LAST[:] = [(ts, found)]
    return found


def _find(ts: TraceSpans, max_spans: int) -> list[Disagreement]:
    n = len(ts)
    if ts.records is None or n > max_spans:
        return []
    may = _may_conclude(ts)
    if may is not None and not may[0]:
        return []  # no output states a conclusion
    by_id = {sid: i for i, sid in enumerate(ts.span_id)}
    concl: dict[int, list[Conclusion]] = {}
    for i in range(n) if may is None else sorted(may[0]):
        if ts.parent_id[i] is None:
            continue
        found = conclusions(_io(ts, i)[1])
        if found:
            concl[i] = found
    anc = {i: _ancestors(ts, by_id, i) for i in concl}
    end = [s + d for s, d in zip(ts.start_ns, ts.duration_ns, strict=True)]
    seen: set[tuple[str, str, str]] = set()
    out: list[Disagreement] = []
    spans = sorted(concl, key=lambda i: (ts.start_ns[i], i))
    for x, a in enumerate(spans):
        for b in spans[x + 1:]:
            if ts.agent_name[a] == ts.agent_name[b] or a in anc[b] or b in anc[a]:
                continue
            for ca in concl[a]:
                cb = next((c for c in concl[b] if ca.contradicts(c)), None)
                if cb is None or (ca.key, ca.value, cb.value) in seen:
                    continue
                if _saw(ts, b, ca, may) or _saw(ts, a, cb, may):
                    continue  # one branch read the other's conclusion: a correction, not a parallel branch
                seen.add((ca.key, ca.value, cb.value))
                out.append(Disagreement(a, b, _merge(ts, a, b, ca, cb, end, may), ca.key, ca.value, cb.value,
                                        ca.kind))
    return out


def _may_conclude(ts: TraceSpans) -> tuple[set[int], set[int]] | None:
    """The spans whose output, and those whose input, may state a conclusion (`analysis.digest`'s CONCL flags),
    when the trace has digests: no other span's text needs reading. None: every span may."""
    d = ts.digest
    if not isinstance(d, dict):
        return None
    from agent_debug.digest import CONCL, CONCL_IN

    df = d["df"]
    n = len(df)
    return (set(compress(range(n), map(and_, df, repeat(CONCL)))),
            set(compress(range(n), map(and_, df, repeat(CONCL_IN)))))


def _saw(ts: TraceSpans, i: int, c: Conclusion, may: tuple[set[int], set[int]] | None = None) -> bool:
    """Did span i take the other branch's conclusion in (its input states that value for that key)?"""
    if may is not None and i not in may[1]:
        return False
    return any(x.kind == c.kind and x.key == c.key and x.value == c.value for x in conclusions(_io(ts, i)[0]))


def _merge(ts: TraceSpans, a: int, b: int, ca: Conclusion, cb: Conclusion, end: list[int],
           may: tuple[set[int], set[int]] | None = None) -> int | None:
    """The earliest later span that restates a conclusion on the key, or takes in both, without reconciling."""
    after = max(end[a], end[b])
    spans = range(len(ts)) if may is None else may[0] | may[1]  # a span stating nothing merges nothing
    later = sorted((i for i in spans if ts.start_ns[i] >= after and ts.parent_id[i] is not None),
                   key=lambda i: (ts.start_ns[i], i))
    for i in later:
        inp, out = _io(ts, i)
        said = [c for c in conclusions(out) if c.kind == ca.kind and c.key == ca.key]
        took = {c.value for c in conclusions(inp) if c.kind == ca.kind and c.key == ca.key}
        if (said or {ca.value, cb.value} <= took) and not _RECONCILE.search(out):
            return i
    return None


def blamed_span(d: Disagreement) -> int:
    """Where the disagreement is blamed: the merge that did not reconcile, else the later branch."""
    return d.merge if d.merge is not None else max(d.a, d.b)
