"""Packets of big runs: sized by what replay needs, not by the trace.

A run of at most SKELETON_SPANS spans keeps every span in its packet's skeleton, as it always has. A bigger run
keeps a bounded skeleton, read from the stored columns and digests (`analysis/column_path.py`) with only the kept
spans' records parsed:

- the recorded calls (spans with `call.hop`) and the path from the root to each of them;
- the critical path, every error span, the diagnosis' causal chain, root cause and visible failure, and the first
  SUSPECTS_KEPT rule suspects; the spans the rules read around them (retries and what they retried, verifier,
  routing and plan spans, the spans a plan names); each with the path from the root;
- the rest summarized with counts (`skeleton`: spans in the run, kept, omitted by event type).

The packet is checked before it is written: its skeleton must give replay the run's status and failure bucket,
else the skeleton grows (every rule suspect, then every span). `tool_events` lists every tool call with an exit
code up to TOOL_EVENTS_KEPT; beyond that, the failing ones first, and `skeleton.tool_events` counts the rest.
Full records (payloads included) of the chain and the first suspects are in `evidence_records`.
"""

from __future__ import annotations

from collections import Counter
from itertools import compress, repeat
from operator import eq, not_
from typing import Any

from agent_debug import digest as dg
from agent_debug.analysis.buckets import diagnose, load_rules
from agent_debug.analysis.column_path import column_facts, load_for_diagnosis
from agent_debug.analysis.critical import critical_times
from agent_debug.analysis.source import Source
from agent_debug.analysis.tree import build_tree
from agent_debug.columns import TraceSpans, summarize
from agent_debug.gcpause import gc_paused
from agent_debug.replay.packet import (
    PACKET_VERSION,
    _calls_from_records,
    _skeleton,
    _summary_of,
    build_packet_from_records,
    sanitize,
)

SKELETON_SPANS = 2000  # a run with at most this many spans keeps them all
SUSPECTS_KEPT = 50
EVIDENCE_RECORDS = 20
TOOL_EVENTS_KEPT = 1000


def _ancestors(parent: list[int | None], spans: set[int]) -> set[int]:
    out = set(spans)
    for i in spans:
        p = parent[i]
        while p is not None and p not in out:
            out.add(p)
            p = parent[p]
    return out


def _by_time(ts: TraceSpans, idx: set[int] | list[int]) -> list[dict[str, Any]]:
    """The records of these spans in timestamp order (ties: store order), as the full builder sorts them."""
    recs = [ts.records[i] for i in sorted(idx)]  # type: ignore[index]  # loaded (lazily): never None
    return sorted(recs, key=lambda r: r["timestamp"])


def build_bounded_packet(ts: TraceSpans, redactor: Any = None) -> dict[str, Any] | None:
    """The packet of a big run (records read lazily, digests loaded); None when the digests are missing (the
    caller then builds it from every record)."""

    rules = load_rules()
    with gc_paused():
        tree = build_tree(ts)
        facts = column_facts(ts, rules, tree)
        if facts is None:
            return None
        summary = summarize(ts)
        diag = diagnose(ts, summary, rules, tree, facts=facts)
        # (the `type: ignore`s on ts.records below: a run read lazily holds a store's LazyRecords, never None)
        n = len(ts)
        parent = tree.parent
        assert parent is not None  # ColumnFacts.of: no cycle and no repeated id
        sp = facts.sparse
        et = ts.event_type
        # the positions of the span ids this packet names (critical path, retried spans, chain, suspects)
        crit = critical_times(tree)
        named_ids: set[str | None] = {*crit, *(t for t in sp.get("retry.of", {}).values() if isinstance(t, str))}
        if diag is not None:
            named_ids |= set(diag.chain) | {d["span_id"] for d in diag.suspects} | {
                diag.__dict__[key].get("span_id") for key in ("root_cause", "visible_failure")}
        named_ids.add(summary.root_span_id)
        sid_index = ts.positions_of(named_ids)
        calls_at = sorted(sp.get("call.hop", {}))
        around = set(calls_at) | set(facts.errors) | set(tree.roots)
        around |= {sid_index[s] for s in crit if s in sid_index}
        around |= set(compress(range(n), map(eq, et, repeat("ROUTING_DECISION"))))
        for key in ("retry.of", "verifier.passed", "route.lane", "plan.steps", "token.budget"):
            around |= set(sp.get(key, {}))
        around |= {sid_index[t] for t in sp.get("retry.of", {}).values() if isinstance(t, str) and t in sid_index}
        planned = {str(s) for steps in sp.get("plan.steps", {}).values() if isinstance(steps, list) for s in steps}
        if planned:
            named = {i for i, nm in enumerate(ts.name) if nm in planned}
            around |= named | {k for i in named if (p := parent[i]) is not None for k in tree.children[p]}
        evidence: list[int] = []
        if diag is not None:
            picked = [sid_index[s] for s in diag.chain if s in sid_index]
            picked += [sid_index[d["span_id"]] for d in diag.suspects[:SUSPECTS_KEPT] if d["span_id"] in sid_index]
            for key in ("root_cause", "visible_failure"):
                if diag.__dict__[key].get("span_id") in sid_index:
                    picked.append(sid_index[diag.__dict__[key]["span_id"]])
            around |= set(picked)
            evidence = list(dict.fromkeys(picked))[:EVIDENCE_RECORDS]
        tooled = [i for i in facts.flagged(dg.EXIT) if et[i] != "RETRIEVAL"]
        failing_tools = [i for i in tooled if not facts.df[i] & dg.EXIT_ZERO]
        listed_tools = tooled if len(tooled) <= TOOL_EVENTS_KEPT else \
            (failing_tools + [i for i in tooled if facts.df[i] & dg.EXIT_ZERO])[:TOOL_EVENTS_KEPT]
        refs_at = set(sp.get("retrieval.refs", {}))
        keep = _ancestors(parent, around)
        for attempt in ("bounded", "suspects", "all"):
            if attempt == "suspects" and diag is not None:
                keep |= _ancestors(parent, {sid_index[d["span_id"]] for d in diag.suspects
                                            if d["span_id"] in sid_index})
            elif attempt == "all":
                keep = set(range(n))
            ts.records.prefetch(sorted(keep | set(listed_tools) | refs_at | set(evidence)))  # type: ignore[union-attr]
            spans = [_skeleton(ts.records[i]) for i in sorted(keep)]  # type: ignore[index]
            if _replays_as(spans, summary.status, diag.bucket if diag else None):
                break
        records_of = ts.records
        root_i = ts.span_id.index(summary.root_span_id) if summary.root_span_id in sid_index else 0
        root = records_of[root_i]  # type: ignore[index]
        root_attrs = root.get("attributes") or {}
        payload = root.get("payload") or {}
        routing: dict[str, Any] = {}
        retrieval_refs: list[str] = []
        verifier: dict[str, Any] = {"passed": None, "reason": None}
        looked = {i for i in keep if et[i] == "ROUTING_DECISION"} | set(sp.get("route.lane", {})) | refs_at \
            | set(sp.get("verifier.passed", {}))
        for rec in _by_time(ts, looked):
            a = rec.get("attributes") or {}
            if rec["event_type"] == "ROUTING_DECISION" or "route.lane" in a:
                routing = {k.split(".", 1)[1]: v for k, v in a.items() if k.startswith("route.")}
                if "token.budget" in a:
                    routing["budget"] = a["token.budget"]
            if isinstance(a.get("retrieval.refs"), list):
                retrieval_refs.extend(str(x) for x in a["retrieval.refs"])
            if "verifier.passed" in a:
                verifier = {"passed": a["verifier.passed"], "reason": a.get("verifier.reason")}
        tool_events = [{"tool": (r.get("attributes") or {}).get("tool.name", r.get("name")),
                        "exit_code": (r.get("attributes") or {})["tool.exit_code"]} for r in _by_time(ts, listed_tools)]
        calls = _calls_from_records([records_of[i] for i in calls_at])  # type: ignore[index]
        omitted = Counter(compress(et, map(not_, map(keep.__contains__, range(n)))))  # in C
        packet: dict[str, Any] = {
            "packet_version": PACKET_VERSION,
            "trace_id": summary.trace_id,
            "workflow": summary.workflow,
            "selected_model": routing.get("lane") or routing.get("model") or root_attrs.get("route.model"),
            "task_summary": root_attrs.get("task.summary") or _summary_of(payload.get("input")),
            "retrieval_refs": retrieval_refs,
            "tool_events": tool_events,
            "verifier": verifier,
            "run": {
                "run_id": root.get("run_id"),
                "actor": root.get("actor"),
                "session_id": root.get("session_id"),
                "started_at": root_attrs.get("run.started_at"),
                "status": summary.status,
                "outcome": {"passed": root_attrs.get("outcome.passed"), "reason": root_attrs.get("outcome.reason")},
                "output": payload.get("output"),
                "error": root.get("error"),
            },
            "entrypoint": root_attrs.get("run.entrypoint"),
            "input": payload.get("input"),
            "routing": routing,
            "failure": None if diag is None else {
                "bucket": diag.bucket, "root_cause": {k: v for k, v in diag.root_cause.items() if k != "attributes"},
                "next_action": diag.next_action, "evidence": diag.evidence[:5],
            },
            "calls": calls,
            "spans": spans,
            "skeleton": {
                "spans": n, "kept": len(spans), "omitted": n - len(spans), "cap": SKELETON_SPANS,
                "omitted_by_event_type": dict(omitted.most_common()),
                "tool_events": {"total": len(tooled), "listed": len(tool_events),
                                "failing": len(failing_tools)},
                "note": f"a run of more than {SKELETON_SPANS} spans keeps the path to every recorded call, the "
                        "critical path, error spans, the causal chain and suspects; the rest is counted here",
            },
            "evidence_records": [records_of[i] for i in evidence],  # type: ignore[index]
        }
        from datetime import UTC, datetime

        packet["created_at"] = datetime.now(UTC).isoformat()
    return sanitize(packet, redactor)


def _replays_as(spans: list[dict[str, Any]], status: str, bucket: str | None) -> bool:
    """Does replay re-derive this status and bucket from these skeleton spans (`engine._diagnosis`)?"""
    if not spans:
        return False
    ts = TraceSpans.from_records(spans[0]["trace_id"], spans)
    s = summarize(ts)
    d = diagnose(ts, s, load_rules())
    return s.status == status and (d.bucket if d else None) == bucket


def build_packet(source: Source, trace_id: str) -> dict[str, Any]:
    """A packet for one trace of a Source (store or files). A run of more than `skeleton.SKELETON_SPANS` spans
    gets a bounded skeleton (`replay/skeleton.py`), read from the store's columns and digests."""
    tid = source.resolve(trace_id)
    if source.summary(tid).span_count > SKELETON_SPANS:
        ts = load_for_diagnosis(source, tid)
        packet = build_bounded_packet(ts) if ts.records is not None else None
        if packet is not None:
            return packet
        if not isinstance(ts.records, list):
            ts = source.load(tid, records=True)
    else:
        ts = source.load(tid, records=True)
    return build_packet_from_records(list(ts.records or []))
