"""Read files with the readers and summarize what they hold: the library half of `agent-debug validate`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent_debug.formats.reader import ReadReport, read_paths


@dataclass
class ValidationResult:
    """What a set of trace files holds and what could not be read."""

    files: int
    records: int
    traces: int
    failed_runs: int
    rejected: int
    rejects_by_reason: dict[str, int]
    notices: list[str]
    formats: dict[str, int]
    rejects: list[dict[str, Any]] = field(default_factory=list)
    orphans: int = 0
    damaged: int = 0  # files with something cut or damaged (each named in `notices`)

    @property
    def complete(self) -> bool:
        """Nothing rejected, cut or damaged: every byte of every file was read into records."""
        return not self.rejected and not self.damaged

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def validate_paths(paths: Iterable[str | os.PathLike[str]], *, format: str | None = None,
                   max_rejects_listed: int = 50) -> ValidationResult:
    report = ReadReport()
    traces: dict[str, tuple[set[str], set[str]]] = {}
    failed = 0
    for rec in read_paths(paths, report, format=format):
        spans, parents = traces.setdefault(rec["trace_id"], (set(), set()))
        spans.add(rec["span_id"])
        if rec.get("parent_id") is not None:
            parents.add(rec["parent_id"])
        elif rec.get("status") == "error" or (rec.get("attributes") or {}).get("outcome.passed") is False:
            failed += 1
    orphans = sum(len(parents - spans) for spans, parents in traces.values())
    formats: dict[str, int] = {}
    for f in report.files:
        if f.skipped is None:
            formats[f.format] = formats.get(f.format, 0) + 1
    return ValidationResult(
        files=sum(1 for f in report.files if f.skipped is None),
        records=report.records,
        traces=len(traces),
        failed_runs=failed,
        rejected=report.rejected,
        rejects_by_reason=dict(report.reject_reasons),
        notices=report.notices,
        formats=formats,
        rejects=[
            {"source": r.source, "location": r.location, "reason": r.reason}
            for r in report.rejects[:max_rejects_listed]
        ],
        orphans=orphans,
        damaged=report.damaged,
    )
