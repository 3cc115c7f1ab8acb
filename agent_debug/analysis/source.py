"""Where analyses get traces from: the store, or files read directly (`--from PATH`, nothing to set up)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent_debug.columns import TraceSpans, TraceSummary, summarize
from agent_debug.errors import AmbiguousTrace, NothingReadable, TraceNotFound, UsageError
from agent_debug.store import query, verdicts as verdict_store
from agent_debug.store.api import Store, open_store
from agent_debug.store.query import TraceFilter
from agent_debug.store.verdicts import Verdict

if TYPE_CHECKING:
    from agent_debug.formats.reader import ReadReport


class Source(Protocol):
    notices: list[str]

    def list(self, flt: TraceFilter | None = None) -> list[TraceSummary]: ...

    def resolve(self, prefix: str) -> str: ...

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans: ...

    def summary(self, trace_id: str) -> TraceSummary: ...


class StoreSource:
    """Traces from the store `--db` names (SQLite, chdb or a ClickHouse server: `store.api`), with the stored
    verdicts (and those of `extra`) applied to their status. A store that cannot be read is a StoreError."""

    def __init__(self, db_path: str | os.PathLike[str], extra: list[Verdict] | None = None) -> None:
        self.store: Store = open_store(db_path, create=False)
        self.notices: list[str] = self.store.notices()
        self._extra = extra or []
        self._verdicts: dict[str, Verdict] | None = None

    def verdicts(self) -> dict[str, Verdict]:
        if self._verdicts is None:
            found = self.store.verdicts()
            for v in self._extra:
                try:
                    tid = self.store.resolve(v.trace_id)
                except (TraceNotFound, AmbiguousTrace) as exc:
                    self.notices.append(f"verdict from {v.source} ignored: {exc}")
                    continue
                found[tid] = replace(v, trace_id=tid)
            self._verdicts = found
        return self._verdicts

    def list(self, flt: TraceFilter | None = None) -> list[TraceSummary]:
        verdicts = self.verdicts()
        if not verdicts:
            return self.store.list_traces(flt)
        flt = flt or TraceFilter()
        rows = self.store.list_traces(replace(flt, failed=False, slowest=None, limit=None))
        rows = [s for s in (verdict_store.apply(s, verdicts.get(s.trace_id)) for s in rows) if flt.matches(s)]
        if flt.slowest:
            rows = sorted(rows, key=lambda s: -s.duration_ns)[: flt.slowest]
        return rows[: flt.limit] if flt.limit else rows

    def resolve(self, prefix: str) -> str:
        return self.store.resolve(prefix)

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        """`records`: False (columns only), True (every record parsed), or "lazy" (read when asked for)."""
        return self.store.load(trace_id, records=records)

    def summary(self, trace_id: str) -> TraceSummary:
        return verdict_store.apply(self.store.summary(trace_id), self.verdicts().get(trace_id))

    def close(self) -> None:
        self.store.close()

    def __getattr__(self, name: str) -> object:
        """What only some stores offer, offered when the store does (`run_values`: the ClickHouse store)."""
        if name == "run_values" and hasattr(self.store, "run_values"):
            return self.store.run_values
        raise AttributeError(name)


class FileSource:
    """Traces read straight from files and directories, held in memory. A file among `paths` that is a verdict
    file (`store/verdicts.py`) is read as verdicts, not traces; verdicts apply to the runs' status."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], format: str | None = None,
                 verdicts: list[Verdict] | None = None) -> None:
        paths = list(paths)
        from agent_debug.formats.reader import ReadReport, read_paths  # only reading files needs the readers

        report = ReadReport(keep_rejects=False)
        self.traces: dict[str, TraceSpans] = {}
        trace_paths: list[str | os.PathLike[str]] = []
        found = list(verdicts or [])
        for p in paths:
            if Path(p).is_file() and verdict_store.sniff(Path(p)):
                found.extend(verdict_store.read_file(Path(p)))
            else:
                trace_paths.append(p)
        for rec in read_paths(trace_paths, report, format=format) if trace_paths else ():
            ts = self.traces.get(rec["trace_id"])
            if ts is None:
                ts = self.traces[rec["trace_id"]] = TraceSpans(rec["trace_id"], records=[])
            ts.add(rec)
        self.report = report
        self.notices = report.notices
        if report.rejected:
            reasons = ", ".join(f"{k}: {v}" for k, v in report.reject_reasons.most_common())
            n = report.rejected
            self.notices.append(f"{n} record{'s' if n != 1 else ''} rejected ({reasons}); "
                                f"`agent-debug validate {' '.join(map(str, paths))}` shows where")
        if not self.traces:
            raise NothingReadable(_nothing_readable(paths, report, self.notices))
        self._summaries = {tid: summarize(ts) for tid, ts in self.traces.items()}
        for v in found:
            try:
                tid = self.resolve(v.trace_id)
            except (TraceNotFound, AmbiguousTrace) as exc:
                self.notices.append(f"verdict from {v.source} ignored: {exc}")
                continue
            self._summaries[tid] = verdict_store.apply(self._summaries[tid], v)

    def list(self, flt: TraceFilter | None = None) -> list[TraceSummary]:
        flt = flt or TraceFilter()
        out = [s for s in self._summaries.values() if flt.matches(s)]
        if flt.slowest:
            out = sorted(out, key=lambda s: -s.duration_ns)[: flt.slowest]
        else:
            out.sort(key=lambda s: s.start_ns)
        return out[: flt.limit] if flt.limit else out

    def resolve(self, prefix: str) -> str:
        if prefix in self.traces:
            return prefix
        return query.pick(prefix, sorted(t for t in self.traces if t.startswith(prefix))[:6])

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        try:
            return self.traces[trace_id]
        except KeyError:
            raise TraceNotFound(f"no trace {trace_id!r}") from None

    def summary(self, trace_id: str) -> TraceSummary:
        return self._summaries[trace_id]


def _nothing_readable(paths: list[str | os.PathLike[str]], report: ReadReport, notices: list[str]) -> str:
    where = ", ".join(map(str, paths))
    if not report.files:
        return f"no trace files found in {where}"
    return f"nothing could be read from {where}" + (f": {'; '.join(notices)}" if notices else "")


def resolve_traces(source: Source, names: Iterable[str]) -> list[str]:
    """Full trace ids for ids or unique prefixes (each raises TraceNotFound or AmbiguousTrace like anywhere else),
    in the order given without repeats; `all` names every trace of the source."""
    names = [n for n in names if n]
    if "all" in names:
        ids = [s.trace_id for s in source.list()]
        if not ids:
            raise TraceNotFound("the source holds no traces")
        return ids
    return list(dict.fromkeys(source.resolve(n) for n in names))


def only_trace(source: Source) -> str:
    """The source's one trace, for commands whose trace argument may be left out."""
    runs = source.list()
    if not runs:
        raise TraceNotFound("the source holds no traces")
    if len(runs) > 1:
        raise UsageError(f"name a trace: the source holds {len(runs)} traces (see `agent-debug traces`)")
    return str(runs[0].trace_id)


def open_source(db_path: str | os.PathLike[str] | None, from_paths: list[Path] | None,
                format: str | None = None, verdicts: Path | None = None) -> Source:
    """The store, or the files of `--from`; `verdicts` names a verdict file applied on top (not stored)."""
    extra = verdict_store.read_file(verdicts) if verdicts is not None else None
    if from_paths:
        return FileSource(from_paths, format=format, verdicts=extra)
    return StoreSource(db_path if db_path is not None else query_default(), extra)


def query_default() -> str:
    from agent_debug.store.api import default_location

    return default_location()
