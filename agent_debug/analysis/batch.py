"""Bucketing many runs (`agent-debug bucket`): every failed run diagnosed (`buckets.diagnose`), a failed turn
moved to the earlier turn that corrupted its session (`sessions.session_origin`), and, when asked, runs not
marked failed bucketed by their strong suspects (`suspects.run_suspects`). Above buckets, sessions and suspects,
so none of them imports another in a circle."""

from __future__ import annotations

from agent_debug.analysis.blame_model import SpanModel
from agent_debug.analysis.buckets import (
    BucketReport,
    Rules,
    blame_earlier_turn,
    causal_chain,
    cluster,
    diagnose,
    summarize_buckets,
)
from agent_debug.analysis.column_path import column_facts, load_for_diagnosis, run_suspects_from
from agent_debug.analysis.findings import RunDiagnosis
from agent_debug.analysis.sessions import Turn, session_origin
from agent_debug.analysis.source import Source
from agent_debug.analysis.tree import build_tree
from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import StoreError
from agent_debug.gcpause import gc_paused
from agent_debug.store.query import TraceFilter


def bucket_runs(source: Source, flt: TraceFilter | None, rules: Rules, *, suspects: bool = False,
                span_model: SpanModel | None = None) -> BucketReport:
    """Diagnose every failed run the filter selects from a Source; with `suspects`, also every run not marked
    failed that carries a strong suspect (flagged as such). Each run is diagnosed from its stored columns and
    digests (`explain.column_facts`), reading only the records of the spans it reports."""
    with gc_paused():  # each run's columns are thousands of objects that form no cycles: no collector passes
        return _bucket_runs(source, flt, rules, suspects, span_model)


def _bucket_runs(source: Source, flt: TraceFilter | None, rules: Rules, suspects: bool,
                 span_model: SpanModel | None) -> BucketReport:
    summaries = source.list(flt)
    diagnoses = []
    passing = 0
    sessions: dict[str, list[Turn]] = {}
    unreadable: list[dict[str, str]] = []
    for s in summaries:
        try:  # a run the store cannot read (a damaged chunk) is named, and the others are still bucketed
            if not s.failed:
                passing += 1
                if suspects:
                    d = diagnose_suspected(load_for_diagnosis(source, s.trace_id), s, rules, span_model)
                    if d is not None:
                        diagnoses.append(d)
                continue
            ts = load_for_diagnosis(source, s.trace_id)
            tree = build_tree(ts)
            d = diagnose(ts, s, rules, tree, facts=column_facts(ts, rules, tree))
            if d is not None:
                if s.session_id:
                    origin = session_origin(source, s, d.root_cause["span_id"], sessions)
                    if origin is not None:
                        blame_earlier_turn(d, origin, rules)
                diagnoses.append(d)
        except StoreError as exc:
            unreadable.append({"trace_id": s.trace_id, "error": str(exc)})
    return BucketReport(diagnoses, summarize_buckets(diagnoses, rules), cluster(diagnoses), passing,
                        list(source.notices), unreadable)


def diagnose_suspected(ts: TraceSpans, summary: TraceSummary, rules: Rules, span_model: SpanModel | None = None
                       ) -> RunDiagnosis | None:
    """A run not marked failed, bucketed by its top strong suspect (`suspects.run_suspects`); None when it has no
    strong suspect. The diagnosis says it is a suspicion (`flag`), not a recorded failure."""
    tree = build_tree(ts)
    facts = column_facts(ts, rules, tree)
    strong = [x for x in run_suspects_from(ts, rules, facts, span_model=span_model, tree=tree).suspects
              if x.strong]
    if not strong or summary.root_span_id is None:
        return None
    top = strong[0]
    i = top.index
    root = ts.span_id.index(summary.root_span_id)
    chain = [ts.span_id[k] for k in causal_chain(tree, i, root)]
    attrs = ts.attributes(i)
    return RunDiagnosis(
        trace_id=ts.trace_id, workflow=summary.workflow, session_id=summary.session_id, start_ns=summary.start_ns,
        bucket=top.bucket,
        root_cause={"span_id": top.span_id, "agent_name": top.agent_name, "name": top.name,
                    "event_type": top.event_type, "attributes": attrs},
        chain=chain,
        visible_failure={"span_id": ts.span_id[root], "agent_name": ts.agent_name[root], "name": ts.name[root],
                         "event_type": ts.event_type[root]},
        evidence=[f"{e}: {top.agent_name} {top.name} ({top.span_id})" for e in top.evidence[:3]],
        suspects=[x.as_dict() for x in strong],
        next_action=rules.next_action(top.bucket),
        source={"file": summary.source_file, "format": summary.source_format}
        if summary.source_file or summary.source_format else None,
        fingerprint="|".join([top.bucket, top.agent_name, top.event_type, top.name, top.signal,
                              summary.workflow or "", "", ""]),
        flag=f"suspected: not marked failed (status {summary.status}); top suspect score {top.score:.2f}",
    )
