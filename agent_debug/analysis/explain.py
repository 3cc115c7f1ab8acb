"""One run explained: what `agent-debug why` shows and `why --json` prints, for failed and unmarked runs alike.

`explain_run` is the single code path: the CLI calls it, and `scripts/measure_blame.py` calls it to measure blame
against labelled runs (with the model fitted in each cross-validation fold), so what is measured is what ships.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_debug.analysis.blame import TranscriptModel
from agent_debug.analysis.blame_model import SpanModel
from agent_debug.analysis.buckets import Rules, blame_earlier_turn, diagnose
from agent_debug.analysis.column_path import column_facts, load_for_diagnosis, run_suspects_from
from agent_debug.analysis.findings import RunDiagnosis
from agent_debug.analysis.sessions import session_origin
from agent_debug.analysis.source import Source
from agent_debug.analysis.suspects import SpanSuspect, SuspectList
from agent_debug.analysis.tree import build_tree
from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.gcpause import gc_paused


def _root_cause_first(lst: SuspectList, ts: TraceSpans, diagnosis: RunDiagnosis) -> None:
    """A failed run's diagnosed root cause leads its suspects (the rule engine's answer, explained in
    `diagnosis`), whatever its score."""
    rc = diagnosis.root_cause["span_id"]
    found = next((s for s in lst.suspects + lst.weaker if s.span_id == rc), None)
    if found is not None:
        if found in lst.weaker:
            lst.weaker.remove(found)
        else:
            lst.suspects.remove(found)
    else:
        i = ts.span_id.index(rc)
        found = SpanSuspect(rc, ts.agent_name[i], ts.name[i], ts.event_type[i], "root_cause", diagnosis.bucket,
                            list(diagnosis.evidence[:1]), lst.threshold, index=i)
    found.strong = True
    found.bucket = diagnosis.bucket
    lst.suspects.insert(0, found)


@dataclass
class SpanRef:
    """A span as a story names it."""

    span_id: str
    agent_name: str
    event_type: str
    name: str


@dataclass
class Explanation:
    """One run explained (`agent-debug why`): its status, the diagnosis of a failed run, the ranked suspects of
    every run, and, when asked, the judge's answer. `as_dict` is the `why --json` document."""

    trace_id: str
    status: str
    failed: bool
    verdict: dict[str, Any] | None
    note: str
    diagnosis: RunDiagnosis | None
    suspects: SuspectList
    # the spans of the diagnosis' chain that are in this run, for showing it (a session's root cause may lie in
    # another run); not in the JSON (the chain's ids are)
    chain: list[SpanRef] = field(default_factory=list)
    judge: dict[str, Any] | None = None  # the LLM judge's blame (`why --judge`)
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        doc = {"trace_id": self.trace_id, "status": self.status, "failed": self.failed, "verdict": self.verdict,
               "note": self.note, "diagnosis": self.diagnosis.as_dict() if self.diagnosis else None,
               **self.suspects.as_dict()}
        if self.judge is not None:
            doc["judge"] = self.judge
        return doc


def explain_trace(ts: TraceSpans, summary: TraceSummary, rules: Rules, *, span_model: SpanModel | None = None,
                  transcript_model: TranscriptModel | None = None, path: str = "auto") -> Explanation:
    """One run (records loaded, or read lazily) explained: status, whether it was marked failed, the diagnosis of a
    failed run, and the ranked suspects of every run. `path`: "auto" reads the stored columns and digests where
    they answer (`column_path.py`), "records" every record."""
    with gc_paused():  # a big run's columns are millions of objects that form no cycles: no collector passes
        return _explain_trace(ts, summary, rules, span_model, transcript_model, path)


def _explain_trace(ts: TraceSpans, summary: TraceSummary, rules: Rules, span_model: SpanModel | None,
                   transcript_model: TranscriptModel | None, path: str) -> Explanation:
    tree = build_tree(ts)
    facts = column_facts(ts, rules, tree) if path != "records" else None
    d = diagnose(ts, summary, rules, tree, facts=facts)
    lst = run_suspects_from(ts, rules, facts, failed=summary.failed, span_model=span_model,
                            transcript_model=transcript_model, tree=tree)
    if d is not None:
        _root_cause_first(lst, ts, d)
    verdict = summary.verdict
    if summary.failed:
        note = "marked failed by a verdict" if verdict else f"run failed (status {summary.status})"
    else:
        note = f"run was not marked failed (status {summary.status}): these are suspects, not a diagnosis"
    return Explanation(ts.trace_id, summary.status, summary.failed, verdict, note, d, lst)


def explain(source: Source, trace_id: str, rules: Rules, *, span_model: SpanModel | None = None,
            transcript_model: TranscriptModel | None = None, loaded: TraceSpans | None = None) -> Explanation:
    """`explain_trace` for a run of a Source (the store or files); a failed turn of a session whose failing step
    names a fact an earlier turn introduced is blamed on that turn (`sessions.session_origin`). `loaded`: the
    run's spans with their records (or read lazily: `load_for_diagnosis`), when the caller has them already."""
    summary = source.summary(trace_id)
    ts = loaded if loaded is not None else load_for_diagnosis(source, trace_id)
    exp = explain_trace(ts, summary, rules, span_model=span_model, transcript_model=transcript_model)
    d = exp.diagnosis
    if d is not None and summary.session_id:
        found = session_origin(source, summary, d.root_cause["span_id"])
        if found is not None:
            moved = RunDiagnosis(**d.as_dict())
            blame_earlier_turn(moved, found, rules)
            exp.diagnosis = moved
    if exp.diagnosis is not None:
        by_id = ts.positions_of(exp.diagnosis.chain)
        exp.chain = [SpanRef(sid, ts.agent_name[i], ts.event_type[i], ts.name[i])
                     for sid in exp.diagnosis.chain if (i := by_id.get(sid)) is not None]
    exp.notices = list(source.notices)
    return exp


def explain_run(source: Source, trace_id: str, rules: Rules, *, span_model: SpanModel | None = None,
                transcript_model: TranscriptModel | None = None, loaded: TraceSpans | None = None
                ) -> dict[str, Any]:
    """`explain(...).as_dict()`: the `why --json` document (what the report embeds and measure_blame reads)."""
    return explain(source, trace_id, rules, span_model=span_model, transcript_model=transcript_model,
                   loaded=loaded).as_dict()
