"""The message flow of a run: agents as nodes, their interactions as edges.

An edge A -> B stands for every interaction from agent A to agent B:
- a *message*: a SEND span of A addressed to B (`message.to`, else the agent of a RECEIVE under it);
- a *call*: a span of B whose causal parent is a span of A, other than the RECEIVE of a message already counted
  (work A handed to B without a SEND, e.g. a router's decision under the orchestrator).
Its latency is the mean time from the interaction's start until the work it caused was done: for a message the
SEND's effective end (`tree._effective_ends`: a SEND lasts until the work it caused is done), for a call the
child's. `delivery_ns` is the mean time from a SEND to the start of its RECEIVE.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from agent_debug.analysis.tree import Tree


@dataclass
class _Edge:
    messages: int = 0
    calls: int = 0
    total_ns: int = 0
    max_ns: int = 0
    delivery_total_ns: int = 0
    delivered: int = 0
    errors: int = 0
    first_span: int = -1  # the earliest span carrying the edge (a SEND, or the called span)
    spans: list[int] = field(default_factory=list)

    def add(self, i: int, latency: int, start: int, starts: list[int]) -> None:
        self.total_ns += latency
        self.max_ns = max(self.max_ns, latency)
        if self.first_span < 0 or start < starts[self.first_span]:
            self.first_span = i


def message_flow(tree: Tree, *, bottleneck_agent: str | None, critical_ns: dict[str, int],
                 self_ns: list[int]) -> dict[str, Any]:
    """{"nodes": [...], "edges": [...], "bottleneck_agent"}: edges sorted by (from, to); every key always present."""
    ts = tree.spans
    agent, et, start, end = ts.agent_name, ts.event_type, ts.start_ns, tree.end_ns
    edges: dict[tuple[str, str], _Edge] = defaultdict(_Edge)
    counted_receives: set[int] = set()
    for i in range(len(ts)):
        if et[i] != "SEND":
            continue
        kids = tree.children[i]
        receive = next((c for c in kids if et[c] == "RECEIVE"), None)
        to = _recipient(ts, i)
        if to is None and receive is not None:
            to = agent[receive]
        if to is None or to == agent[i]:
            continue
        e = edges[(agent[i], to)]
        e.messages += 1
        e.errors += ts.status[i] == "error"
        e.add(i, end[i] - start[i], start[i], start)
        if receive is not None and agent[receive] == to:
            counted_receives.add(receive)
            e.delivery_total_ns += max(0, start[receive] - start[i])
            e.delivered += 1
    for p, kids in enumerate(tree.children):
        for c in kids:
            if agent[c] == agent[p] or c in counted_receives:
                continue
            e = edges[(agent[p], agent[c])]
            e.calls += 1
            e.errors += ts.status[c] == "error"
            e.add(c, end[c] - start[c], start[c], start)
    return {
        "nodes": _nodes(tree, bottleneck_agent, critical_ns, self_ns),
        "edges": [_edge_dict(k, e, ts.span_id) for k, e in sorted(edges.items())],
        "bottleneck_agent": bottleneck_agent,
    }


def _recipient(ts: Any, i: int) -> str | None:
    to = ts.attributes(i).get("message.to")
    return str(to) if isinstance(to, (str, int)) and str(to) else None


def _edge_dict(key: tuple[str, str], e: _Edge, span_ids: list[str]) -> dict[str, Any]:
    n = e.messages + e.calls
    return {
        "from": key[0], "to": key[1], "messages": e.messages, "calls": e.calls, "count": n,
        "latency_ns": e.total_ns // max(1, n), "max_latency_ns": e.max_ns,
        "delivery_ns": e.delivery_total_ns // e.delivered if e.delivered else None,
        "errors": e.errors, "first_span_id": span_ids[e.first_span] if e.first_span >= 0 else None,
    }


def _nodes(tree: Tree, bottleneck_agent: str | None, critical_ns: dict[str, int],
           self_ns: list[int]) -> list[dict[str, Any]]:
    ts = tree.spans
    spans: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    crit: dict[str, int] = defaultdict(int)
    first: dict[str, int] = {}
    for i, (a, s) in enumerate(zip(ts.agent_name, ts.status, strict=True)):
        spans[a] += 1
        errors[a] += s == "error"
        own[a] += self_ns[i]
        if a not in first or ts.start_ns[i] < ts.start_ns[first[a]]:
            first[a] = i
    for i, sid in enumerate(ts.span_id):
        if sid in critical_ns:
            crit[ts.agent_name[i]] += critical_ns[sid]
    return [{"agent": a, "spans": spans[a], "errors": errors[a], "self_ns": own[a], "critical_ns": crit[a],
             "first_span_id": ts.span_id[first[a]], "bottleneck": a == bottleneck_agent}
            for a in sorted(spans, key=lambda a: ts.start_ns[first[a]])]
