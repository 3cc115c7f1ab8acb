"""The ClickHouse schema: tables made for the engine, created through ordered, named migrations, in one node's
form or a cluster's, both generated here (`agent-debug store ddl [--cluster NAME]` prints them).

- `spans`: one row per span, a ReplacingMergeTree ordered by (trace_id, pos), `pos` being the span's position in
  its trace (the order it was first stored, what loading reads back, so trees come out as from SQLite): one
  trace's rows are contiguous and in the order they are read, a trace loads with one primary-key range and no
  sort, and a lazily read record is found by its (trace_id, pos) key. Spans are deduplicated when inserted:
  ingest looks up the keys stored for each flush's traces and inserts only new spans (so re-ingesting inserts
  nothing); a block inserted twice at the same positions (a retried insert) collapses in merges and is read
  once (reads use FINAL). The analysis columns are typed; `record` keeps the record verbatim (one JSON line,
  ZSTD), and `attributes` is a Map of its attributes (values as JSON text, strings unquoted), computed from the
  record by the engine when read (or stored: `Target.stored_attributes`).
- `runs`: a run's summary, maintained at insert by the materialized view `runs_mv` (an AggregatingMergeTree of
  partial states: counts, sums, min/max, the root chosen by argMin, the agents' set), merged when read.
- `verdicts`, `conflicts`, `files`, `ingests`, `rejects`: what SQLite keeps beside its chunks, one table each.
- `_migrations`: the names of the migrations applied.

Cluster form: each table is `X_local` (a Replicated engine on every node, `{shard}` / `{replica}` macros) and
`X`, a Distributed table over it sharded by `cityHash64(trace_id)` (files by path, rejects by source, ingests by
id), so a trace's spans, summary, verdict and conflicts live on one shard, and `runs_mv_local` aggregates each
shard's spans there. The store's queries name `X` in both forms. See docs/clickhouse.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

SCHEMA_NOTE = "agent_debug_store"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INT64_MAX = (1 << 63) - 1
# a span's start second as a DateTime (clamped to what DateTime holds): partitions and retention use it
_START_SECOND = "toDateTime(least(greatest(intDiv(start_ns, 1000000000), 0), 4294967295))"


@dataclass(frozen=True)
class Target:
    """Where and in which form the schema is created."""

    database: str = "agent_debug"
    cluster: str | None = None  # None: one node
    ttl_days: int | None = None  # keep spans (and runs) this many days after they started; None: forever
    replicated: bool = True  # cluster form: Replicated engines and ON CLUSTER (False: a test cluster without Keeper)
    # the attributes Map: computed from the record when read (ALIAS), or also stored (MATERIALIZED: 10% slower
    # ingest, faster queries that filter on attributes over many spans)
    stored_attributes: bool = False

    def __post_init__(self) -> None:
        for value in (self.database, self.cluster):
            if value is not None and not _NAME.match(value):
                raise ValueError(f"{value!r} is not a ClickHouse name (letters, digits and _)")
        if self.ttl_days is not None and self.ttl_days < 1:
            raise ValueError("ttl_days must be at least 1")

    def table(self, name: str) -> str:
        """The name queries use (the Distributed table in the cluster form)."""
        return f"{self.database}.{name}"


@dataclass(frozen=True)
class Table:
    name: str
    columns: str
    engine: str  # a MergeTree family engine, with its arguments
    order_by: str
    shard_by: str  # the Distributed table's sharding key (cluster form)
    partition_by: str | None = None
    ttl: str | None = None
    settings: str | None = None


SPANS_COLUMNS = """
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    pos UInt32,
    parent_id Nullable(String) CODEC(ZSTD(1)),
    agent_name LowCardinality(String),
    event_type LowCardinality(String),
    name String CODEC(ZSTD(1)),
    status LowCardinality(String),
    start_ns Int64,
    duration_ns Int64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cost_usd Float64,
    hash UInt32,
    envelope String,
    record String CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) {attributes} CAST(arrayMap(kv -> (kv.1, if(startsWith(kv.2, '"'),
        JSONExtractString(concat('[', kv.2, ']'), 1), kv.2)), JSONExtractKeysAndValuesRaw(record, 'attributes')),
        'Map(LowCardinality(String), String)'){codec},
    ingest_id UInt64"""

RUNS_COLUMNS = """
    trace_id String,
    spans SimpleAggregateFunction(sum, UInt64),
    start_ns SimpleAggregateFunction(min, Int64),
    end_ns SimpleAggregateFunction(max, Int64),
    roots SimpleAggregateFunction(sum, UInt64),
    root AggregateFunction(argMin, Tuple(String, String, Int64, String), Tuple(UInt8, Int64, UInt32)),
    agents SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    error_spans SimpleAggregateFunction(sum, UInt64),
    prompt_tokens SimpleAggregateFunction(sum, UInt128),
    completion_tokens SimpleAggregateFunction(sum, UInt128),
    cost_usd SimpleAggregateFunction(sum, Float64)"""

# what one insert's spans add to their runs' summaries (`analysis.spans.summarize`, in parts): the root is the
# run's earliest root span with an envelope, else its earliest root, the first stored among equals
RUNS_SELECT = """SELECT
    trace_id,
    count() AS spans,
    min(s) AS start_ns,
    max(s + d) AS end_ns,
    countIf(parent_id IS NULL) AS roots,
    argMinStateIf((span_id, toString(status), d, envelope), (toUInt8(envelope IN ('', '{}')), s, pos),
                  parent_id IS NULL) AS root,
    groupUniqArray(toString(agent_name)) AS agents,
    countIf(status = 'error') AS error_spans,
    sum(toUInt128(p)) AS prompt_tokens,
    sum(toUInt128(c)) AS completion_tokens,
    sum(u) AS cost_usd
FROM (SELECT trace_id, span_id, pos, parent_id, agent_name, status, start_ns AS s, duration_ns AS d, envelope,
             prompt_tokens AS p, completion_tokens AS c, cost_usd AS u FROM {source})
GROUP BY trace_id"""


def _tables(t: Target) -> list[Table]:
    span_ttl = f"{_START_SECOND} + INTERVAL {t.ttl_days} DAY" if t.ttl_days else None
    return [
        Table("spans", SPANS_COLUMNS.format(attributes="MATERIALIZED" if t.stored_attributes else "ALIAS",
                                            codec=" CODEC(ZSTD(1))" if t.stored_attributes else ""),
              "ReplacingMergeTree", "(trace_id, pos)", "cityHash64(trace_id)",
              partition_by=f"toYYYYMM({_START_SECOND})", ttl=span_ttl,
              settings="non_replicated_deduplication_window = 1000"),
        Table("runs", RUNS_COLUMNS, "AggregatingMergeTree", "trace_id", "cityHash64(trace_id)", ttl=span_ttl),
        Table("verdicts", """
    trace_id String,
    passed UInt8,
    reason Nullable(String),
    source String,
    marked_at Float64,
    version UInt64,
    is_deleted UInt8""", "ReplacingMergeTree(version, is_deleted)", "trace_id", "cityHash64(trace_id)"),
        Table("conflicts", """
    trace_id String,
    span_id String,
    hash UInt32,
    record_hex String EPHEMERAL '',
    record String DEFAULT unhex(record_hex) CODEC(ZSTD(1)),
    seen_at Float64""", "ReplacingMergeTree", "(trace_id, span_id, hash)", "cityHash64(trace_id)"),
        Table("files", """
    path String,
    size UInt64,
    mtime Float64,
    offset UInt64,
    line UInt64,
    head_len UInt32,
    head_hash String,
    compressed UInt8,
    complete UInt8,
    records UInt64,
    updated_at Float64,
    version UInt64,
    is_deleted UInt8""", "ReplacingMergeTree(version, is_deleted)", "path", "cityHash64(path)"),
        Table("ingests", """
    id UInt64,
    started_at Float64,
    seconds Float64,
    files UInt64,
    records UInt64,
    duplicates UInt64,
    rejected UInt64,
    conflicts UInt64,
    traces UInt64""", "ReplacingMergeTree", "id", "id"),
        Table("rejects", """
    source String,
    location String,
    reason String,
    raw_hex String EPHEMERAL '',
    raw String DEFAULT unhex(raw_hex) CODEC(ZSTD(1)),
    ingest_id UInt64,
    at Float64""", "ReplacingMergeTree", "(source, location)", "cityHash64(source)"),
    ]


MIGRATIONS_TABLE = Table("_migrations", """
    name String,
    applied_at Float64""", "ReplacingMergeTree", "name", "cityHash64(name)")


def _on(t: Target) -> str:
    return f" ON CLUSTER {t.cluster}" if t.cluster and t.replicated else ""


def _engine(t: Target, table: Table, local: str) -> str:
    if not (t.cluster and t.replicated):
        return table.engine
    name, _, args = table.engine.partition("(")
    path = f"'/clickhouse/tables/{{shard}}/{t.database}/{local}', '{{replica}}'"
    return f"Replicated{name}({path}{', ' + args.rstrip(')') if args else ''})"


def create_table(t: Target, table: Table) -> list[str]:
    """CREATE statements for one table: itself (one node), or its local table and the Distributed one."""
    local = f"{table.name}_local" if t.cluster else table.name
    body = (f"CREATE TABLE IF NOT EXISTS {t.database}.{local}{_on(t)}\n({table.columns}\n)\n"
            f"ENGINE = {_engine(t, table, local)}\n")
    if table.partition_by:
        body += f"PARTITION BY {table.partition_by}\n"
    body += f"ORDER BY {table.order_by}"
    if table.ttl:
        body += f"\nTTL {table.ttl}"
    settings = [s for s in (table.settings, "ttl_only_drop_parts = 1" if table.ttl and table.partition_by else None)
                if s]
    if settings:
        body += "\nSETTINGS " + ", ".join(settings)
    out = [body]
    if t.cluster:
        out.append(f"CREATE TABLE IF NOT EXISTS {t.database}.{table.name}{_on(t)} AS {t.database}.{local}\n"
                   f"ENGINE = Distributed({t.cluster}, {t.database}, {local}, {table.shard_by})")
    return out


def create_database(t: Target, *, embedded: bool = False) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {t.database}{_on(t)}" + (" ENGINE = Atomic" if embedded else "")


def _m001_initial(t: Target) -> list[str]:
    out: list[str] = []
    for table in _tables(t):
        out += create_table(t, table)
    local = "_local" if t.cluster else ""
    out.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {t.database}.runs_mv{local}{_on(t)} "
               f"TO {t.database}.runs{local} AS\n"
               + RUNS_SELECT.replace("{source}", f"{t.database}.spans{local}"))
    return out


MIGRATIONS: list[tuple[str, Callable[[Target], list[str]]]] = [
    ("001_initial", _m001_initial),
]


def bootstrap(t: Target, *, embedded: bool = False) -> list[str]:
    """What exists before migrations can be recorded: the database and the `_migrations` table."""
    return [create_database(t, embedded=embedded), *create_table(t, MIGRATIONS_TABLE)]


def ddl(t: Target) -> list[str]:
    """Every statement that creates the store, in order: what `agent-debug store ddl` prints."""
    out = bootstrap(t)
    for _, fn in MIGRATIONS:
        out += fn(t)
    return out
