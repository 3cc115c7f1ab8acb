"""The live view of `serve` (`GET /`): the report's page (`agent_debug.report`), handed documents and updates by
a small bootstrap script instead of an embedded document.

The page is the report's own (`report.page.page_html(None, ...)`), so the run page, its DOM hooks and its entry
points (`AgentDebugReport.render` / `applyUpdate`, docs/report.md) are the same in both. What the server adds:
- `live_document`: the page's first document: the run list (newest first, each with its session state) and
  the data of the run shown first (`report.document.build_run`, as the report computes it);
- `run_report`: one run's data when the page needs it (a run clicked, a run whose analysis is done);
- `span_detail`: one span's details (the report embeds them; a live span's are fetched when it is clicked);
- the bootstrap script (`static/live.js`): it opens the event stream, turns `span`, `run` and `state` events into
  `applyUpdate` calls, follows the newest run unless one was picked, and fetches a run's data once it is DONE.

Session states are shown upper-case (IDLE, ATTACHED, RECORDING, ANALYZING, DONE), as the page's `data-state`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from agent_debug.analysis.critical import _self_times
from agent_debug.analysis.explain import explain_run
from agent_debug.analysis.tree import build_tree
from agent_debug.columns import TraceSummary
from agent_debug.errors import TraceNotFound
from agent_debug.report.details import detail_of
from agent_debug.report.document import FORMAT, VERSION, build_run
from agent_debug.report.page import page_html
from agent_debug.serve.analyze import RunAnalyzer
from agent_debug.serve.sessions import SessionManager, State

# the page fetches from its own server and nothing else: the browser itself refuses any other request
LIVE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'")
LIVE_CSP_HEADER = LIVE_CSP + "; frame-ancestors 'none'"  # not framed by other sites (a <meta> cannot say this)
MAX_RUNS = 200  # runs listed at first (newer ones are added as they arrive)


def live_page() -> bytes:
    """The live view: the report's page without a document, with the bootstrap script."""
    script = resources.files("agent_debug.serve").joinpath("static", "live.js").read_text(encoding="utf-8")
    return page_html(None, extra_head="<script>\n" + script.replace("</script", "<\\/script") + "</script>",
                     csp=LIVE_CSP)


def page_state(state: State) -> str:
    return state.value.upper()


def run_entry(summary: TraceSummary, state: State, results: dict[str, Any] | None) -> dict[str, Any]:
    """A run-list row as the report's document has them (`report.document.run_entry`), from the store's summary
    and the session: its bucket and root cause once the session has analyzed it."""
    res = results or {}
    root_cause = res.get("root_cause")
    return {
        "trace_id": summary.trace_id, "workflow": summary.workflow, "status": summary.status,
        "state": page_state(state), "start_ns": summary.start_ns, "duration_ns": summary.duration_ns,
        "span_count": summary.span_count, "error_spans": summary.error_spans, "agents": summary.agents,
        "bucket": res.get("bucket"),
        "root_cause_span_id": root_cause.get("span_id") if isinstance(root_cause, dict) else None,
    }


def run_report(analyzer: RunAnalyzer, sessions: SessionManager, trace_id: str) -> dict[str, Any]:
    """{"trace_id", "run": the report's data of the run as stored now, "entry": its run-list row}."""
    src = analyzer.src
    tid = src.resolve(trace_id)
    summary = src.summary(tid)
    ts = src.load(tid, records=True)
    run = build_run(ts, summary, analyzer.rules, why=explain_run(src, tid, analyzer.rules, loaded=ts))
    session = sessions.get(tid)
    state = sessions.state_of(tid)
    run["state"] = page_state(state)
    entry = run_entry(summary, state, session["results"] if session else None)
    diag = run["why"]["diagnosis"]
    if diag:  # computed here anyway: the row shows it even before (or without) a session's analysis
        entry["bucket"] = diag["bucket"]
        entry["root_cause_span_id"] = diag["root_cause"]["span_id"]
    return {"trace_id": tid, "run": run, "entry": entry}


def live_document(analyzer: RunAnalyzer, sessions: SessionManager, *, selected: str | None = None,
                  limit: int = MAX_RUNS) -> dict[str, Any]:
    """The page's first document (the report's format, `mode` "live"): the newest runs with their states, and
    the data of `selected` (default: the newest run)."""
    rows = analyzer.src.store.list_traces()
    rows.sort(key=lambda s: s.start_ns, reverse=True)
    runs = []
    for s in rows[:limit]:
        session = sessions.get(s.trace_id)
        runs.append(run_entry(s, sessions.state_of(s.trace_id), session["results"] if session else None))
    data: dict[str, Any] = {}
    tid = selected or (runs[0]["trace_id"] if runs else None)
    if tid is not None:
        try:
            rep = run_report(analyzer, sessions, tid)
        except TraceNotFound:
            tid = None
        else:
            tid = rep["trace_id"]
            data[tid] = rep["run"]
            runs = [rep["entry"] if r["trace_id"] == tid else r for r in runs]
            if not any(r["trace_id"] == tid for r in runs):
                runs.insert(0, rep["entry"])
    return {"format": FORMAT, "version": VERSION, "title": "agent-debug serve", "mode": "live",
            "state": runs[0]["state"] if runs else "IDLE", "runs": runs, "selected": tid, "data": data}


def span_detail(analyzer: RunAnalyzer, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """What the details panel shows of one span (as the report's detail blocks hold it), or None."""
    src = analyzer.src
    tid = src.resolve(trace_id)
    ts = src.load(tid, records="lazy")
    try:
        i = ts.span_id.index(span_id)
    except ValueError:
        return None
    assert ts.records is not None
    return detail_of(ts.records[i], _self_times(build_tree(ts))[i])
