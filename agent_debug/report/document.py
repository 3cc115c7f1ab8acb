"""The JSON document the report page renders: the run list and, per run, everything the page shows.

Computed by the same library functions as the commands (`tree`, `critical-path`, `why`), embedded with the
same shapes as their `--json` where one exists, so the page and the terminal never disagree. The full shape is
in docs/report.md; `FORMAT` and `VERSION` name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent_debug.analysis.buckets import Rules
from agent_debug.analysis.critical import _self_times, analyze
from agent_debug.analysis.explain import explain_run, explain_trace
from agent_debug.analysis.source import Source
from agent_debug.analysis.tree import Tree, build_tree
from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.report.details import BLOCK_SIZE, detail_blocks
from agent_debug.report.flow import message_flow

FORMAT = "agent-debug-report"
VERSION = 1
# the state a report's runs are in: analysis done (the live view's sessions go IDLE, ATTACHED, RECORDING,
# ANALYZING, DONE; a report only holds finished analyses). The run's outcome is its `status`.
DONE = "DONE"


@dataclass
class ReportDocument:
    """The document, and what `report --json` prints about it."""

    doc: dict[str, Any]
    notices: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        runs = []
        for r in self.doc["runs"]:
            data = self.doc["data"][r["trace_id"]]
            runs.append({
                "trace_id": r["trace_id"], "workflow": r["workflow"], "status": r["status"], "state": r["state"],
                "duration_ns": r["duration_ns"], "span_count": r["span_count"], "error_spans": r["error_spans"],
                "bucket": r["bucket"], "root_cause_span_id": r["root_cause_span_id"],
                "critical_path_spans": len(data["critical"]["path"]),
                "bottleneck_agent": data["flow"]["bottleneck_agent"],
                "flow_edges": [f"{e['from']}->{e['to']}" for e in data["flow"]["edges"]],
                "stacking": len(data["critical"]["stacking"]),
                "detail_blocks": len(data["details"]["blocks"]),
            })
        return {"format": FORMAT, "version": VERSION, "runs": runs, "notices": list(self.notices)}


def preorder(tree: Tree) -> list[int]:
    """Every span the tree holds, parents before children, siblings by start: roots, then the spans under each
    missing parent, then each broken cycle from its cut. Iterative."""
    out: list[int] = []
    children = tree.children
    for top in tree.tops:
        stack = [top]
        while stack:
            i = stack.pop()
            out.append(i)
            kids = children[i]
            if kids:
                stack.extend(reversed(kids))
    return out


def _codes(values: Sequence[Any], order: list[int]) -> tuple[list[int], list[str]]:
    """Dictionary-encoded column: (codes in `order`, distinct values)."""
    table: dict[str, int] = {}
    codes = [table.setdefault(v if isinstance(v, str) else str(v), len(table)) for v in map(values.__getitem__, order)]
    return codes, list(table)


def build_run(ts: TraceSpans, summary: TraceSummary, rules: Rules, *, block_size: int = BLOCK_SIZE,
              why: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run's data: spans as columns in tree pre-order, critical path, flow, diagnosis, detail blocks. `why`:
    the run's `why --json` document (`analysis.explain`), computed here from the run alone when not given."""
    tree = build_tree(ts)
    crit = analyze(ts, tree)
    if why is None:
        why = explain_trace(ts, summary, rules).as_dict()
    self_ns = _self_times(tree)
    order = preorder(tree)
    pos = {i: k for k, i in enumerate(order)}
    base = min(ts.start_ns) if len(ts) else 0
    agent, agents = _codes(ts.agent_name, order)
    etype, etypes = _codes(ts.event_type, order)
    name, names = _codes(ts.name, order)
    status, statuses = _codes(ts.status, order)
    parent_of = [-1] * len(ts)
    for p, kids in enumerate(tree.children):
        for c in kids:
            parent_of[c] = p
    start, dur, end = ts.start_ns, ts.duration_ns, tree.end_ns
    spans = {
        "id": [ts.span_id[i] for i in order],
        "parent": [pos.get(parent_of[i], -1) for i in order],
        "agent": agent, "type": etype, "name": name, "status": status,
        "start": [start[i] - base for i in order],
        "dur": [dur[i] for i in order],
        # effective end where it is not start + duration (a SEND lasts until the work it caused is done)
        "ext_end": [[k, end[i] - base] for k, i in enumerate(order) if end[i] != start[i] + dur[i]],
        "tokens": [[k, ts.prompt_tokens[i], ts.completion_tokens[i], ts.cost_usd[i]] for k, i in enumerate(order)
                   if ts.prompt_tokens[i] or ts.completion_tokens[i] or ts.cost_usd[i]],
    }
    bottleneck_agent = crit.bottleneck["agent_name"] if crit.bottleneck else None
    records = ts.records
    if records is not None and hasattr(records, "prefetch"):
        records.prefetch(order)
    return {
        "trace_id": ts.trace_id,
        "state": DONE,
        "status": summary.status,
        "summary": summary.as_dict(),
        "start_ns": base,
        "end_ns": max(end) if len(ts) else base,
        "dict": {"agent": agents, "type": etypes, "name": names, "status": statuses},
        "spans": spans,
        "tops": {
            "roots": [pos[i] for i in tree.roots],
            "missing": [{"parent_id": pid, "spans": [pos[i] for i in group]} for pid, group in tree.orphans.items()],
            "cycles": [{"span_ids": [ts.span_id[i] for i in cyc], "cut": pos[cyc[0]]} for cyc in tree.cycles],
        },
        "critical": crit.as_dict(),
        "flow": message_flow(tree, bottleneck_agent=bottleneck_agent, critical_ns=crit.critical_ns, self_ns=self_ns),
        "why": why,
        "notes": _notes(tree),
        "details": detail_blocks(order, (lambda i: records[i]) if records is not None else (lambda i: None),
                                 self_ns, block_size),
    }


def _notes(tree: Tree) -> list[str]:
    out = []
    if tree.orphans:
        out.append(f"{sum(map(len, tree.orphans.values()))} spans hang under {len(tree.orphans)} missing parent(s)")
    if tree.cycles:
        out.append(f"{len(tree.cycles)} parent cycle(s) broken and shown from their earliest span")
    if tree.duplicates:
        out.append(f"{len(tree.duplicates)} spans reuse an earlier span id and are not shown")
    return out


def run_entry(summary: TraceSummary, run: dict[str, Any]) -> dict[str, Any]:
    """A run-list row: status, duration, bucket, state."""
    diag = run["why"]["diagnosis"]
    return {
        "trace_id": summary.trace_id, "workflow": summary.workflow, "status": summary.status, "state": run["state"],
        "start_ns": summary.start_ns, "duration_ns": summary.duration_ns, "span_count": summary.span_count,
        "error_spans": summary.error_spans, "agents": summary.agents,
        "bucket": diag["bucket"] if diag else None,
        "root_cause_span_id": diag["root_cause"]["span_id"] if diag else None,
    }


def build_document(source: Source, trace_ids: Sequence[str], rules: Rules, *, title: str | None = None,
                   block_size: int = BLOCK_SIZE) -> ReportDocument:
    """The whole report: each named run (full ids, in the order given) analysed once."""
    runs, data = [], {}
    for tid in trace_ids:
        summary = source.summary(tid)
        ts = source.load(tid, records=True)
        run = build_run(ts, summary, rules, block_size=block_size, why=explain_run(source, tid, rules, loaded=ts))
        data[tid] = run
        runs.append(run_entry(summary, run))
    notices = list(getattr(source, "notices", []))
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "title": title or _title(runs),
        "mode": "report",
        "state": DONE,
        "notices": notices,
        "runs": runs,
        "selected": runs[0]["trace_id"] if runs else None,
        "data": data,
    }
    return ReportDocument(doc, notices)


def _title(runs: list[dict[str, Any]]) -> str:
    if len(runs) == 1:
        r = runs[0]
        return f"{r['workflow'] or 'run'} {r['trace_id'][:12]} ({r['status']})"
    return f"{len(runs)} runs"
