"""The library call behind each analysis command: plain arguments in, one typed result out.

The CLI parses a command's options, calls one of these, and renders what it returns (rich tables, or `--json`
from the result's `as_dict()` and its `notices`); a test, a script or another command calls them the same way.
Every result carries the notices of the source it read (records rejected, files cut, verdicts ignored).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_debug.analysis.batch import bucket_runs
from agent_debug.analysis.buckets import BucketReport, load_rules
from agent_debug.analysis.column_path import load_for_diagnosis
from agent_debug.analysis.critical import CriticalPathResult, analyze, critical_times
from agent_debug.analysis.explain import Explanation, explain
from agent_debug.analysis.patterns import DIMENSIONS, PatternReport, failure_patterns
from agent_debug.analysis.sessions import SessionReport, analyze_session
from agent_debug.analysis.source import Source, only_trace, open_source
from agent_debug.analysis.tree import Tree, build_tree
from agent_debug.analysis.treeview import TreeView, build_view, nested_json
from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import UsageError
from agent_debug.store.query import TraceFilter

# the LLM judge's blame of one run (records loaded; whether it failed) as its JSON document: `why --judge`
JudgeFn = Callable[[TraceSpans, bool], dict[str, Any]]


@dataclass
class Inputs:
    """Where a command reads runs from: the store (`db`; default $AGENT_DEBUG_DB, else ./.agent-debug/traces.db)
    or trace files read directly (`from_paths`), with a forced input format and a verdict file applied on top."""

    db: str | os.PathLike[str] | None = None  # a path or a URL (`store.api`): a URL is no Path
    from_paths: list[Path] | None = None
    format: str | None = None
    verdicts: Path | None = None

    def open(self) -> Source:
        return open_source(self.db, self.from_paths, self.format, self.verdicts)


def pick_trace(source: Source, trace: str | None) -> str:
    """The trace named by id or unique prefix; with none named, the source's only trace."""
    return source.resolve(trace) if trace else only_trace(source)


@dataclass
class RunList:
    """`agent-debug traces`: the runs a filter selects."""

    runs: list[TraceSummary]
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"traces": [r.as_dict() for r in self.runs], "count": len(self.runs)}


def list_runs(inputs: Inputs, flt: TraceFilter | None = None) -> RunList:
    src = inputs.open()
    return RunList(src.list(flt), list(src.notices))


@dataclass
class TreeResult:
    """`agent-debug tree`: one run's causal tree, its critical path, and how much of it to show."""

    spans: TraceSpans
    tree: Tree
    critical: dict[str, int]  # span id -> its time on the critical path
    errors_only: bool = False
    max_depth: int | None = None
    min_duration_ns: int = 0
    notices: list[str] = field(default_factory=list)

    def view(self) -> TreeView:
        """The rows to show (filtered, runs of similar siblings folded)."""
        return build_view(self.tree, set(self.critical), errors_only=self.errors_only, max_depth=self.max_depth,
                          min_duration_ns=self.min_duration_ns)

    def as_dict(self) -> dict[str, Any]:
        """The nested `tree --json` document (spans' attributes included: load with records)."""
        return nested_json(self.tree, self.critical, errors_only=self.errors_only, max_depth=self.max_depth,
                           min_duration_ns=self.min_duration_ns)


def tree_of(inputs: Inputs, trace: str | None = None, *, errors_only: bool = False, max_depth: int | None = None,
            min_duration_ns: int = 0, records: bool = False) -> TreeResult:
    """`records`: also read the spans' records (the JSON document shows their attributes; the view does not)."""
    src = inputs.open()
    ts = src.load(pick_trace(src, trace), records="lazy" if records else False)
    tree = build_tree(ts)
    return TreeResult(ts, tree, critical_times(tree), errors_only, max_depth, min_duration_ns, list(src.notices))


@dataclass
class CriticalPathReport:
    """`agent-debug critical-path`: the critical path, bottleneck, hotspots and latency stacking of one run."""

    result: CriticalPathResult
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.result.as_dict()


def critical_path_of(inputs: Inputs, trace: str | None = None) -> CriticalPathReport:
    src = inputs.open()
    ts = src.load(pick_trace(src, trace), records="lazy")
    return CriticalPathReport(analyze(ts), list(src.notices))


def bucket_of(inputs: Inputs, flt: TraceFilter | None = None, rules: Path | None = None, *,
              suspects: bool = False) -> BucketReport:
    """`agent-debug bucket`: every failed run the filter selects bucketed (with `suspects`, also runs not marked
    failed that carry a strong suspect)."""
    src = inputs.open()
    return bucket_runs(src, flt, load_rules(rules), suspects=suspects)


def why_of(inputs: Inputs, trace: str | None = None, rules: Path | None = None, *,
           judge: JudgeFn | None = None) -> Explanation:
    """`agent-debug why`: one run explained. The run is loaded once, for the diagnosis, the suspects and the
    judge alike."""
    src = inputs.open()
    tid = pick_trace(src, trace)
    ts = load_for_diagnosis(src, tid)  # columns and digests; records read only for the spans reported
    exp = explain(src, tid, load_rules(rules), loaded=ts)
    if judge is not None:
        exp.judge = judge(ts, exp.failed)
    return exp


def session_of(inputs: Inputs, session_id: str, rules: Path | None = None) -> SessionReport:
    """`agent-debug session`: the turns of one conversation."""
    return analyze_session(inputs.open(), session_id, load_rules(rules))


def patterns_of(inputs: Inputs, flt: TraceFilter | None = None, dimensions: tuple[str, ...] = DIMENSIONS, *,
                min_runs: int = 3) -> PatternReport:
    """`agent-debug patterns`: what failing runs have in common."""
    unknown = [d for d in dimensions if d not in DIMENSIONS]
    if unknown:
        raise UsageError(f"unknown dimension {unknown[0]!r}; known: {', '.join(DIMENSIONS)}")
    return failure_patterns(inputs.open(), flt, dimensions, min_runs=min_runs)


