"""Where analyses get traces from: the store, or files read directly (`--from PATH`, nothing to set up)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from agent_debug.analysis.spans import TraceSpans, TraceSummary, summarize
from agent_debug.errors import NothingReadable, StoreError, TraceNotFound, UsageError
from agent_debug.formats.reader import ReadReport, read_paths
from agent_debug.store import query
from agent_debug.store.db import connect
from agent_debug.store.query import TraceFilter


class Source(Protocol):
    notices: list[str]

    def list(self, flt: TraceFilter | None = None) -> list[TraceSummary]: ...

    def resolve(self, prefix: str) -> str: ...

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans: ...

    def summary(self, trace_id: str) -> TraceSummary: ...


class StoreSource:
    """Traces from the SQLite store. A store SQLite cannot read (damaged pages) is a StoreError naming it."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.path = Path(db_path)
        self.db: sqlite3.Connection = connect(db_path, create=False)
        with self._reading():
            self.notices: list[str] = query.store_notices(self.db, self.path)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path} could not be read: {exc}") from None

    def list(self, flt: TraceFilter | None = None) -> list[TraceSummary]:
        with self._reading():
            return query.list_traces(self.db, flt)

    def resolve(self, prefix: str) -> str:
        with self._reading():
            return query.resolve_trace(self.db, prefix)

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        """`records`: False (columns only), True (every record parsed), or "lazy" (read when asked for)."""
        with self._reading():
            return query.load_trace(self.db, trace_id, records=records)

    def summary(self, trace_id: str) -> TraceSummary:
        with self._reading():
            return query.summary(self.db, trace_id)


class FileSource:
    """Traces read straight from files and directories, held in memory."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], format: str | None = None) -> None:
        paths = list(paths)
        report = ReadReport(keep_rejects=False)
        self.traces: dict[str, TraceSpans] = {}
        for rec in read_paths(paths, report, format=format):
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
                format: str | None = None) -> Source:
    if from_paths:
        return FileSource(from_paths, format=format)
    return StoreSource(db_path if db_path is not None else query_default())


def query_default() -> Path:
    from agent_debug.store.db import default_path

    return default_path()
