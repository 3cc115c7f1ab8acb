"""One run explained: what `agent-debug why` shows and `why --json` prints, for failed and unmarked runs alike.

`explain_run` is the single code path: the CLI calls it, and `scripts/measure_blame.py` calls it to measure blame
against labelled runs (with the model fitted in each cross-validation fold), so what is measured is what ships.
"""

from __future__ import annotations

from typing import Any

from agent_debug.analysis.buckets import Rules, diagnose
from agent_debug.analysis.spans import TraceSpans, TraceSummary
from agent_debug.analysis.suspects import SpanSuspect, SuspectList, run_suspects
from agent_debug.analysis.tree import build_tree


def load_for_diagnosis(source: Any, trace_id: str) -> TraceSpans:
    """A run as diagnosis reads it: its columns and digests with records read lazily (only those of the spans it
    reports), or every record when the store has no digests for it (an older store) or the source is files."""
    ts = source.load(trace_id, records="lazy")
    if ts.records is None or (not isinstance(ts.records, list) and not isinstance(ts.digest, dict)):
        ts = source.load(trace_id, records=True)
    return ts  # type: ignore[no-any-return]


def column_facts(ts: TraceSpans, rules: Rules, tree: Any) -> Any:
    """`column_path.ColumnFacts` of a run, or None when the records path must answer (a transcript, no digests,
    ids repeated, a rule the digests cannot answer)."""
    from agent_debug.analysis.column_path import ColumnFacts
    from agent_debug.analysis.suspects import is_transcript

    if ts.records is None or is_transcript(ts):
        return None
    return ColumnFacts.of(ts, rules, tree)


def _root_cause_first(lst: SuspectList, ts: TraceSpans, diagnosis: Any) -> None:
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


def explain_trace(ts: TraceSpans, summary: TraceSummary, rules: Rules, *, span_model: Any = None,
                  transcript_model: Any = None, path: str = "auto") -> dict[str, Any]:
    """The `why --json` document of one run (records loaded, or lazily read): status, whether it was marked
    failed, the diagnosis of a failed run, and the ranked suspects of every run. `path`: "auto" reads the
    stored columns and digests where they answer (`column_path.py`), "records" every record."""
    from agent_debug.analysis.tree import gc_paused

    with gc_paused():  # a big run's columns are millions of objects that form no cycles: no collector passes
        return _explain_trace(ts, summary, rules, span_model, transcript_model, path)


def _explain_trace(ts: TraceSpans, summary: TraceSummary, rules: Rules, span_model: Any, transcript_model: Any,
                   path: str) -> dict[str, Any]:
    tree = build_tree(ts)
    facts = column_facts(ts, rules, tree) if path != "records" else None
    d = diagnose(ts, summary, rules, tree, facts=facts)
    lst = run_suspects(ts, rules, failed=summary.failed, span_model=span_model, transcript_model=transcript_model,
                       tree=tree, facts=facts)
    if d is not None:
        _root_cause_first(lst, ts, d)
    verdict = getattr(summary, "verdict", None)
    if summary.failed:
        note = "marked failed by a verdict" if verdict else f"run failed (status {summary.status})"
    else:
        note = f"run was not marked failed (status {summary.status}): these are suspects, not a diagnosis"
    return {"trace_id": ts.trace_id, "status": summary.status, "failed": summary.failed, "verdict": verdict,
            "note": note, "diagnosis": d.as_dict() if d else None, **lst.as_dict()}


def explain_run(source: Any, trace_id: str, rules: Rules, *, span_model: Any = None,
                transcript_model: Any = None, loaded: TraceSpans | None = None) -> dict[str, Any]:
    """`explain_trace` for a run of a Source (the store or files); a failed turn of a session whose failing step
    names a fact an earlier turn introduced is blamed on that turn (`sessions.session_origin`). `loaded`: the
    run's spans with their records (or read lazily: `load_for_diagnosis`), when the caller has them already."""
    summary = source.summary(trace_id)
    ts = loaded if loaded is not None else load_for_diagnosis(source, trace_id)
    doc = explain_trace(ts, summary, rules, span_model=span_model, transcript_model=transcript_model)
    d = doc["diagnosis"]
    if d is not None and summary.session_id:
        from agent_debug.analysis.buckets import RunDiagnosis, blame_earlier_turn
        from agent_debug.analysis.sessions import session_origin

        found = session_origin(source, summary, d["root_cause"]["span_id"])
        if found is not None:
            moved = RunDiagnosis(**d)
            blame_earlier_turn(moved, found, rules)
            doc["diagnosis"] = moved.as_dict()
    return doc
