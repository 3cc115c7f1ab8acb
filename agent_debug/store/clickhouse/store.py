"""The ClickHouse store behind the `Store` interface: chdb (embedded) or a server over HTTP, one code path.

Listing runs is one aggregation in the engine over `runs` (the summaries the materialized view keeps at
insert), filters and order included; loading a trace is one query over its primary-key range of `spans`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from agent_debug.columns import TraceSpans, TraceSummary
from agent_debug.errors import StoreError, TraceNotFound, UsageError
from agent_debug.store.clickhouse import schema
from agent_debug.store.clickhouse.conn import Conn, connect
from agent_debug.store.clickhouse.load import load_trace, record_lines
from agent_debug.store.query import TraceFilter, pick
from agent_debug.store.types import Conflict, FileOffset, Location, StoreCounts
from agent_debug.store.verdicts import Verdict

INT64_MAX = schema.INT64_MAX


@dataclass(frozen=True)
class Names:
    """The tables the queries name (`database.table`; the Distributed ones in the cluster form)."""

    spans: str
    runs: str
    verdicts: str
    conflicts: str
    files: str
    ingests: str
    rejects: str
    migrations: str

    @classmethod
    def of(cls, t: schema.Target) -> Names:
        return cls(*(t.table(n) for n in ("spans", "runs", "verdicts", "conflicts", "files", "ingests", "rejects",
                                          "_migrations")))


def target_of(loc: Location) -> schema.Target:
    """The schema's form from the location: `?cluster=NAME` (and `replicated=0` for a test cluster without Keeper),
    `?ttl_days=N` (applied when the store is created), `?database=NAME` for chdb."""
    opts = loc.options
    database = opts.get("database", "agent_debug") if loc.kind == "chdb" else loc.database
    try:
        ttl = int(opts["ttl_days"]) if opts.get("ttl_days") else None
        return schema.Target(database=database, cluster=opts.get("cluster") or None, ttl_days=ttl,
                             replicated=opts.get("replicated", "1") not in ("0", "false", "no"),
                             stored_attributes=opts.get("attributes") == "stored")
    except ValueError as exc:
        raise UsageError(f"--db {loc.shown}: {exc}") from None


# a run's summary from its partial states (schema.RUNS_SELECT), then as `analysis.spans.summarize` gives it
_RUNS = f"""
SELECT trace_id, if(roots > 0, r.1, NULL) AS root_span_id,
    tupleElement(env, 'run_id'), tupleElement(env, 'session_id') AS session_id,
    tupleElement(env, 'workflow') AS workflow, tupleElement(env, 'actor'),
    multiIf(roots = 0, 'unknown', r.2 = 'error', 'error', passed = 'false', 'failed', passed = 'true', 'passed',
            'ok') AS status,
    start_ns, end_ns,
    if(roots > 0, r.3, toInt64(least(toInt128(end_ns) - start_ns, {INT64_MAX}))) AS duration_ns,
    spans, roots, agents, error_spans, prompt_tokens, completion_tokens, cost_usd,
    tupleElement(env, 'source.file'), tupleElement(env, 'source.format')
FROM (
    SELECT *,
        -- the root's envelope, parsed once (its values are strings; `passed` a JSON bool when it says anything)
        JSONExtract(r.4, 'Tuple(run_id Nullable(String), session_id Nullable(String), workflow Nullable(String),
            actor Nullable(String), `source.file` Nullable(String), `source.format` Nullable(String))') AS env,
        JSONExtractRaw(r.4, 'passed') AS passed
    FROM (
        SELECT trace_id, argMinMerge(root) AS r, sum(spans) AS spans, min(start_ns) AS start_ns,
            max(end_ns) AS end_ns, sum(roots) AS roots, arraySort(groupUniqArrayArray(agents)) AS agents,
            sum(error_spans) AS error_spans, toInt64(least(sum(prompt_tokens), {INT64_MAX})) AS prompt_tokens,
            toInt64(least(sum(completion_tokens), {INT64_MAX})) AS completion_tokens, sum(cost_usd) AS cost_usd
        FROM {{runs}} {{where}}
        GROUP BY trace_id
    )
)"""


def _attr_str(key: str) -> str:
    """The attribute `key` of a span's record when it is a string, else NULL."""
    return (f"if(JSONType(record, 'attributes', '{key}') = 'String', JSONExtractString(record, 'attributes', "
            f"'{key}'), NULL)")


# `analysis.patterns.run_values` in SQL: a span's modality is the record's `modality` when that is truthy (as
# Python's `or` sees JSON: not null, false, 0, "", [] or {}), else its attribute's; counted when a string other
# than "" and "text"
_MODALITY = """if(JSONExtractRaw(record, 'modality') NOT IN ('', 'null', 'false', '""', '[]', '{}')
                  AND NOT (JSONType(record, 'modality') IN ('Int64', 'UInt64', 'Double')
                           AND JSONExtractFloat(record, 'modality') = 0),
                  if(JSONType(record, 'modality') = 'String', JSONExtractString(record, 'modality'), NULL),
                  """ + _attr_str("modality") + ")"
_RUN_VALUES = f"""
SELECT trace_id,
    arraySort(groupUniqArrayIf(modality, modality IS NOT NULL AND modality NOT IN ('', 'text'))),
    groupUniqArrayIf(toString(agent_name), agent_name != 'transcript' OR parent_id IS NOT NULL),
    groupUniqArrayIf(model, event_type = 'LLM_CALL' AND model IS NOT NULL),
    groupUniqArrayIf(tool, event_type IN ('TOOL_CALL', 'RETRIEVAL')),
    groupUniqArrayIf(lane, lane IS NOT NULL)
FROM (
    SELECT trace_id, agent_name, parent_id, event_type,
        {_MODALITY} AS modality,
        coalesce({_attr_str('route.model')}, {_attr_str('gen_ai.request.model')},
                 {_attr_str('llm.model_name')}) AS model,
        ifNull({_attr_str('tool.name')}, name) AS tool,
        {_attr_str('route.lane')} AS lane
    FROM {{spans}} FINAL WHERE trace_id IN {{ids:Array(String)}}
)
GROUP BY trace_id"""


class ClickHouseStore:
    """A ClickHouse store (`--db chdb:///DIR` or `--db clickhouse://...`)."""

    def __init__(self, location: Location, *, create: bool = True) -> None:
        self.location = location
        self.target = target_of(location)
        self.names = Names.of(self.target)
        self.conn: Conn = connect(location, create=create)
        try:
            self._migrate(create)
        except BaseException:
            self.conn.close()
            raise

    def sibling(self) -> Conn:
        """A second connection to the same store (ingest's writer thread)."""
        if self.location.kind == "chdb":
            from agent_debug.store.clickhouse.conn import ChdbConn

            return ChdbConn.sibling_of(self.conn)  # type: ignore[arg-type]  # a chdb store's conn is one
        return connect(self.location, create=False)

    def close(self) -> None:
        self.conn.close()

    # -- schema -----------------------------------------------------------------------------------------------

    def _migrate(self, create: bool) -> None:
        t = self.target
        if create:
            for stmt in schema.bootstrap(t, embedded=self.location.kind == "chdb"):
                self.conn.command(stmt)
        else:
            found = self._cols("SELECT count() FROM system.tables WHERE database = {d:String} AND name = '_migrations'",
                               {"d": t.database})
            if not found[0][0]:
                raise StoreError(f"no store at {self.location.shown} (run `agent-debug ingest PATH --db "
                                 f"{self.location.shown}` first, or use --from PATH)")
        done = set(self._cols(f"SELECT name FROM {self.names.migrations} FINAL")[0] or [])
        newer = done - {name for name, _ in schema.MIGRATIONS}
        if newer:
            raise StoreError(f"store was written by a newer agent-debug (migrations {sorted(newer)}); "
                             "upgrade to read it")
        for name, fn in schema.MIGRATIONS:
            if name in done:
                continue
            for stmt in fn(t):
                self.conn.command(stmt)
            self._insert(self.names.migrations, {"name": [name], "applied_at": [time.time()]})

    def migrations(self) -> list[str]:
        return sorted(self._cols(f"SELECT name FROM {self.names.migrations} FINAL")[0] or [])

    # -- helpers ----------------------------------------------------------------------------------------------

    def _cols(self, sql: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        out = orjson.loads(self.conn.query(sql, params))
        return out if out else [[]]

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        cols = orjson.loads(self.conn.query(sql, params))
        return list(zip(*cols, strict=True)) if cols and cols[0] else []

    def _insert(self, table: str, cols: dict[str, list[Any]]) -> None:
        self.conn.insert(table, list(cols), orjson.dumps(cols))

    # -- reading ----------------------------------------------------------------------------------------------

    def notices(self) -> list[str]:
        out = []
        rejected = self._cols(f"SELECT count() FROM {self.names.rejects} FINAL")[0][0]
        if rejected:
            out.append(f"{rejected} record{'s were' if rejected != 1 else ' was'} rejected at ingest (kept verbatim "
                       f"in {self.names.rejects} of {self.location.shown})")
        conflicts = self._cols(f"SELECT count() FROM {self.names.conflicts} FINAL")[0][0]
        if conflicts:
            out.append(f"{conflicts} span{'s were' if conflicts != 1 else ' was'} ingested again with other "
                       "content; the first version is shown")
        return out

    def list_traces(self, flt: TraceFilter | None = None) -> list[TraceSummary]:
        flt = flt or TraceFilter()
        where: list[str] = []
        params: dict[str, Any] = {}
        if flt.failed:
            where.append("status IN ('failed', 'error')")
        if flt.workflow:
            where.append("workflow = {workflow:String}")
            params["workflow"] = flt.workflow
        if flt.agent:
            where.append("has(agents, {agent:String})")
            params["agent"] = flt.agent
        if flt.since_ns is not None:
            where.append("start_ns >= {since:Int64}")
            params["since"] = flt.since_ns
        if flt.session_id:
            where.append("session_id = {session:String}")
            params["session"] = flt.session_id
        sql = _RUNS.format(runs=self.names.runs, where="")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY duration_ns DESC, trace_id" if flt.slowest else " ORDER BY start_ns, trace_id"
        limits = [n for n in (flt.slowest, flt.limit) if n]
        if limits:
            sql += f" LIMIT {int(min(limits))}"
        return [s for s in map(_summary, self._rows(sql, params)) if flt.matches(s)]

    def resolve(self, prefix: str) -> str:
        runs = self.names.runs
        if self._cols(f"SELECT count() FROM {runs} WHERE trace_id = {{p:String}}", {"p": prefix})[0][0]:
            return prefix
        found = self._cols(f"SELECT DISTINCT trace_id FROM {runs} WHERE startsWith(trace_id, {{p:String}}) "
                           "ORDER BY trace_id LIMIT 6", {"p": prefix})[0]
        return pick(prefix, list(found))

    def summary(self, trace_id: str) -> TraceSummary:
        rows = self._rows(_RUNS.format(runs=self.names.runs, where="WHERE trace_id = {t:String}"), {"t": trace_id})
        if not rows:
            raise TraceNotFound(f"no trace {trace_id!r}")
        return _summary(rows[0])

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        return load_trace(self.conn, self.names.spans, trace_id, records)

    def run_values(self, trace_ids: list[str]) -> dict[str, dict[str, set[str]]]:
        """What each run has of every `patterns` dimension, in one aggregation in the engine (as
        `analysis.patterns.run_values` finds it in the loaded records: the same rules, type checks included)."""
        rows = self._rows(_RUN_VALUES.replace("{spans}", self.names.spans), {"ids": trace_ids})
        out: dict[str, dict[str, set[str]]] = {
            tid: {"modality": set(), "agent": set(), "model": set(), "tool": set(), "route": set()}
            for tid in trace_ids}
        for tid, media, agents, models, tools, routes in rows:
            out[tid] = {"modality": {"multimodal" if len(media) > 1 else media[0]} if media else {"text"},
                        "agent": set(agents), "model": set(models), "tool": set(tools), "route": set(routes)}
        return out

    def record_lines(self, trace_id: str) -> list[bytes]:
        return record_lines(self.conn, self.names.spans, trace_id)

    def counts(self) -> StoreCounts:
        n = self.names
        return StoreCounts(
            traces=int(self._cols(f"SELECT uniqExact(trace_id) FROM {n.runs}")[0][0]),
            spans=int(self._cols(f"SELECT count() FROM {n.spans} FINAL")[0][0]),
            conflicts=int(self._cols(f"SELECT count() FROM {n.conflicts} FINAL")[0][0]),
            rejects=int(self._cols(f"SELECT count() FROM {n.rejects} FINAL")[0][0]),
            verdicts=len(self.verdicts()),
            files=int(self._cols(f"SELECT count() FROM {n.files} FINAL WHERE is_deleted = 0")[0][0]))

    # -- verdicts ---------------------------------------------------------------------------------------------

    def verdicts(self) -> dict[str, Verdict]:
        rows = self._rows(f"SELECT trace_id, passed, reason, source FROM {self.names.verdicts} FINAL "
                          "WHERE is_deleted = 0")
        return {r[0]: Verdict(r[0], bool(r[1]), r[2], r[3] or "mark") for r in rows}

    def put_verdicts(self, verdicts: list[Verdict]) -> int:
        if verdicts:
            now, version = time.time(), time.time_ns()
            self._insert(self.names.verdicts, {
                "trace_id": [v.trace_id for v in verdicts], "passed": [int(v.passed) for v in verdicts],
                "reason": [v.reason for v in verdicts], "source": [v.source for v in verdicts],
                "marked_at": [now] * len(verdicts), "version": [version] * len(verdicts),
                "is_deleted": [0] * len(verdicts)})
        return len(verdicts)

    def clear_verdicts(self, trace_ids: list[str]) -> int:
        held = [t for t in dict.fromkeys(trace_ids) if t in self.verdicts()]
        if held:
            n = len(held)
            self._insert(self.names.verdicts, {
                "trace_id": held, "passed": [0] * n, "reason": [None] * n, "source": [""] * n,
                "marked_at": [time.time()] * n, "version": [time.time_ns()] * n, "is_deleted": [1] * n})
        return len(held)

    # -- bookkeeping ------------------------------------------------------------------------------------------

    def conflicts(self) -> list[Conflict]:
        rows = self._rows(f"SELECT trace_id, span_id, hash, base64Encode(record), seen_at FROM {self.names.conflicts} "
                          "FINAL ORDER BY seen_at, trace_id, span_id, hash")
        return [Conflict(t, s, int(h), base64.b64decode(r), float(at)) for t, s, h, r, at in rows]

    def rejects(self) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT source, location, reason, base64Encode(raw), ingest_id FROM {self.names.rejects} "
                          "FINAL ORDER BY ingest_id, at, source, location")
        out = []
        for source, location, reason, raw64, ingest_id in rows:
            entry: dict[str, Any] = {"source": source, "location": location, "reason": reason, "ingest": ingest_id}
            raw = base64.b64decode(raw64)
            try:
                entry["raw"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                entry["raw_base64"] = raw64
            out.append(entry)
        return out

    def files(self) -> list[FileOffset]:
        rows = self._rows(f"SELECT path, size, mtime, offset, line, head_len, head_hash, compressed, complete, "
                          f"records, updated_at FROM {self.names.files} FINAL WHERE is_deleted = 0 ORDER BY path")
        return [FileOffset(r[0], r[1], float(r[2]), r[3], r[4], r[5], r[6], bool(r[7]), bool(r[8]), r[9], float(r[10]))
                for r in rows]

    # -- writing ----------------------------------------------------------------------------------------------

    def ingest(self, paths: Iterable[str | os.PathLike[str]], *, format: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Any:
        from agent_debug.store.clickhouse.ingest import ingest

        return ingest(self, paths, format=format, progress=progress)

    def put_bookkeeping(self, files: list[FileOffset], conflicts: list[Conflict],
                        rejects: list[dict[str, Any]]) -> None:
        n = self.names
        version = time.time_ns()
        if files:
            self._insert(n.files, {
                "path": [f.path for f in files], "size": [f.size for f in files], "mtime": [f.mtime for f in files],
                "offset": [f.offset for f in files], "line": [f.line for f in files],
                "head_len": [f.head_len for f in files], "head_hash": [f.head_hash for f in files],
                "compressed": [int(f.compressed) for f in files], "complete": [int(f.complete) for f in files],
                "records": [f.records for f in files], "updated_at": [f.updated_at for f in files],
                "version": [version] * len(files), "is_deleted": [0] * len(files)})
        if conflicts:
            self._insert(n.conflicts, {
                "trace_id": [c.trace_id for c in conflicts], "span_id": [c.span_id for c in conflicts],
                "hash": [c.hash for c in conflicts], "record_hex": [c.record.hex() for c in conflicts],
                "seen_at": [c.seen_at for c in conflicts]})
        if rejects:
            self._insert(n.rejects, {
                "source": [str(r.get("source")) for r in rejects],
                "location": [str(r.get("location")) for r in rejects],
                "reason": [str(r.get("reason")) for r in rejects], "raw_hex": [_raw(r).hex() for r in rejects],
                "ingest_id": [int(r.get("ingest") or 0) for r in rejects], "at": [time.time()] * len(rejects)})

    def forget_files(self, paths: list[str]) -> None:
        if paths:
            n = len(paths)
            self._insert(self.names.files, {
                "path": paths, "size": [0] * n, "mtime": [0.0] * n, "offset": [0] * n, "line": [0] * n,
                "head_len": [0] * n, "head_hash": [""] * n, "compressed": [0] * n, "complete": [0] * n,
                "records": [0] * n, "updated_at": [time.time()] * n, "version": [time.time_ns()] * n,
                "is_deleted": [1] * n})


def _raw(entry: dict[str, Any]) -> bytes:
    if entry.get("raw_base64") is not None:
        return base64.b64decode(entry["raw_base64"])
    raw = entry.get("raw")
    return raw if isinstance(raw, bytes) else str(raw or "").encode()


def _summary(row: tuple[Any, ...]) -> TraceSummary:
    (tid, root, run_id, session_id, workflow, actor, status, start, end, duration, spans, roots, agents, errors,
     ptok, ctok, cost, source_file, source_format) = row
    return TraceSummary(tid, root, run_id, session_id, workflow, actor, status, start, end, duration, spans, roots,
                        list(agents), errors, ptok, ctok, round(float(cost), 6), source_file, source_format)
