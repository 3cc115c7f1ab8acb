"""What a debug session runs on a run once it ends, and what `GET /api/runs/{trace_id}` shows: the same results
as `agent-debug tree --json`, `critical-path --json`, `why --json` and `eval --json`, computed by the same
library functions on the store."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from agent_debug.analysis.buckets import Rules, diagnose, load_rules
from agent_debug.analysis.critical import analyze as critical_path, critical_times
from agent_debug.analysis.explain import explain_run
from agent_debug.analysis.source import StoreSource
from agent_debug.analysis.tree import build_tree
from agent_debug.analysis.treeview import nested_json
from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import AgentDebugError, TraceNotFound
from agent_debug.eval.cases import Case, CaseFile
from agent_debug.store.query import TraceFilter


class _OneRun:
    """A `Source` holding one run, so `eval.harness.evaluate` judges exactly this run with the case's checks."""

    def __init__(self, summary: TraceSummary, ts: TraceSpans) -> None:
        self.notices: list[str] = []
        self._summary = summary
        self._ts = ts

    def list(self, flt: TraceFilter | None = None) -> list[TraceSummary]:
        return [self._summary] if flt is None or flt.matches(self._summary) else []

    def resolve(self, prefix: str) -> str:
        if self._summary.trace_id.startswith(prefix):
            return self._summary.trace_id
        raise TraceNotFound(f"no trace matches {prefix!r}")

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        return self._ts

    def summary(self, trace_id: str) -> TraceSummary:
        return self._summary


def matching_cases(files: list[CaseFile], summary: TraceSummary) -> tuple[list[CaseFile], list[str]]:
    """The cases that judge this run (its workflow, or pinned to it), without those that need the judge: a live
    session does not call a paid API on every run (`agent-debug eval --judge` does that on purpose)."""
    out: list[CaseFile] = []
    skipped: list[str] = []
    for f in files:
        picked: list[Case] = []
        for c in f.cases:
            pinned = c.trace_id is not None and summary.trace_id.startswith(c.trace_id)
            if not (pinned or (c.trace_id is None and c.workflow is not None and c.workflow == summary.workflow)):
                continue
            if c.judge:
                skipped.append(c.name)
            else:
                picked.append(c)
        if picked:
            out.append(CaseFile(path=f.path, version=f.version, cases=picked))
    return out, skipped


class RunAnalyzer:
    """Analyses of stored runs. One per thread: it holds a read connection to the store."""

    def __init__(self, db_path: str | os.PathLike[str], cases: list[CaseFile] | None = None,
                 rules: Rules | None = None) -> None:
        self.src = StoreSource(Path(db_path))
        self.cases = cases or []
        self.rules = rules if rules is not None else load_rules()

    def session_results(self, trace_id: str) -> dict[str, Any]:
        """What a session keeps when it is DONE: status, bucket and root cause (`why`), the bottleneck and the
        critical path's length, and the verdict of each matching eval case."""
        summary = self.src.summary(trace_id)
        # every record parsed only where something reads them all (why, on a failed run; eval cases)
        ts = self.src.load(trace_id, records=True if summary.failed or self.cases else "lazy")
        tree = build_tree(ts)
        cp = critical_path(ts, tree)
        d = diagnose(ts, summary, self.rules, tree)
        return {
            "status": summary.status,
            "span_count": summary.span_count,
            "bucket": d.bucket if d else None,
            "root_cause": d.root_cause if d else None,
            "next_action": d.next_action if d else None,
            "bottleneck": cp.bottleneck,
            "critical_path_spans": sum(1 for seg in cp.path if seg.critical_ns > 0),
            "eval": self._eval(summary, ts),
        }

    def details(self, trace_id: str) -> dict[str, Any]:
        """`GET /api/runs/{id}`: the summary, `tree` (as `tree --json`), `critical_path` (as `critical-path
        --json`), `why` (as `why --json`) and `eval` (as `eval --json`'s cases, or null without cases)."""
        tid = self.src.resolve(trace_id)
        summary = self.src.summary(tid)
        ts = self.src.load(tid, records=True)
        tree = build_tree(ts)
        return {
            "trace_id": tid,
            "summary": summary.as_dict(),
            "tree": nested_json(tree, critical_times(tree)),
            "critical_path": critical_path(ts, tree).as_dict(),
            "why": explain_run(self.src, tid, self.rules, loaded=ts),
            "eval": self._eval(summary, ts),
        }

    def _eval(self, summary: TraceSummary, ts: TraceSpans) -> dict[str, Any] | None:
        if not self.cases:
            return None
        from agent_debug.eval.harness import evaluate

        files, skipped = matching_cases(self.cases, summary)
        out: dict[str, Any] = {"cases": [], "skipped_judge_cases": skipped}
        if files:
            try:
                res = evaluate(files, lambda: _OneRun(summary, ts))
                out["cases"] = [c.model_dump(mode="json") for c in res.cases]
            except AgentDebugError as exc:
                out["error"] = str(exc)
        return out

    def close(self) -> None:
        self.src.store.close()


# -- analysis in a worker process ------------------------------------------------------------------------------
# Analyses are pure Python: in the server's process they would take the GIL from the receiver and the ingest.
# A worker process holds its own read connection to the store and analyzes batches of runs.

_worker: RunAnalyzer | None = None


WORKER_NICENESS = 10  # analyses wait for spare CPU: storing what arrives comes first


def init_worker(db_path: str, cases: list[CaseFile], rules: Rules | None) -> None:
    """In the worker process: a lower CPU priority (on a busy machine the receiver, which must not fall behind
    its exporters, gets the CPU; an analysis finishes a little later), and a read connection to the store."""
    global _worker
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICENESS)
        except OSError:
            pass
    _worker = RunAnalyzer(db_path, cases, rules)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="agent-debug-orphan-check",
                     daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A server killed outright (SIGKILL, OOM) cannot shut its pool down: the worker would wait on its queue
    forever, holding the server's stderr open. It leaves once it is orphaned."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def analyze_batch(trace_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Session results for each run (in the worker process); a run that cannot be analyzed gets its reason."""
    assert _worker is not None
    out: dict[str, dict[str, Any]] = {}
    for tid in trace_ids:
        try:
            out[tid] = _worker.session_results(tid)
        except Exception as exc:
            out[tid] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
