"""Sessions: runs sharing a `session_id` are the turns of one conversation. State corrupted early shows up
turns later, so the earliest turn with an anomaly (even one that passed) is named, not just the failing one."""

from __future__ import annotations

from typing import Any

from agent_debug.analysis.buckets import Rules, diagnose, find_suspects
from agent_debug.analysis.tree import build_tree
from agent_debug.errors import TraceNotFound
from agent_debug.store.query import TraceFilter


def analyze_session(source: Any, session_id: str, rules: Rules) -> dict[str, Any]:
    summaries = sorted(source.list(TraceFilter(session_id=session_id)), key=lambda s: s.start_ns)
    if not summaries:
        raise TraceNotFound(f"no runs with session id {session_id!r}")
    turns = []
    for n, s in enumerate(summaries, 1):
        ts = source.load(s.trace_id, records=True)
        tree = build_tree(ts)
        suspects = [x for x in find_suspects(ts, tree, rules, failed=s.failed) if x.strength == "strong"]
        d = diagnose(ts, s, rules, tree)
        turns.append({
            "turn": n, "trace_id": s.trace_id, "status": s.status, "failed": s.failed,
            "bucket": d.bucket if d else None,
            "root_cause": d.root_cause if d else None,
            "anomalies": [f"{x.reason}: {x.agent_name} {x.name}" for x in suspects],
        })
    first_bad = None
    for t in turns:
        if t["anomalies"] or t["failed"]:
            reason = t["anomalies"][0] if t["anomalies"] else f"run {t['status']}"
            first_bad = {"turn": t["turn"], "trace_id": t["trace_id"], "reason": reason}
            break
    first_failed = next((t["turn"] for t in turns if t["failed"]), None)
    return {"session_id": session_id, "turns": turns, "first_bad_turn": first_bad, "first_failed_turn": first_failed}
