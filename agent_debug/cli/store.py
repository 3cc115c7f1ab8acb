"""`agent-debug ingest` and `agent-debug traces`: fill the store, list the runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent_debug.cli.common import (
    DbOption,
    FormatOption,
    FromOption,
    JsonOption,
    db_path,
    inputs,
    print_result,
    show,
    stderr_console,
    stdout_console,
)
from agent_debug.cli.render import parse_since


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or directories (recursively).")],
    db: DbOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """Ingest trace files into the store (append-only, idempotent, incremental). Exit codes: 0 all kept,
    1 some records rejected (everything readable kept), 2 usage error, 3 nothing could be read."""
    from agent_debug.store.api import open_store

    progress = None
    bar = None
    if not json and sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("ingest"), BarColumn(), TextColumn("{task.fields[records]} records"),
                       TextColumn("{task.fields[rate]}/s"), TimeElapsedColumn(), console=stderr_console(),
                       transient=True)
        task = bar.add_task("ingest", total=None, records=0, rate=0)
        bar.start()

        def progress(seen: int, kept: int) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, records=seen, rate=int(seen / elapsed))

    try:
        result = open_store(db_path(db)).ingest(paths, format=format, progress=progress)
    finally:
        if bar is not None:
            bar.stop()
    from agent_debug.cli.views import render_ingest

    show(result, json, lambda out: render_ingest(out, result))
    if result.nothing_readable:
        sys.stderr.write("Error: nothing could be read from " + ", ".join(map(str, paths)) + "\n")
        raise typer.Exit(3)
    if result.rejected:
        raise typer.Exit(1)


def traces(
    failed: Annotated[bool, typer.Option("--failed", help="Only failed runs.")] = False,
    workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only runs this agent took part in.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only runs started since: 2h, 7d, or ISO time.")] = None,
    slowest: Annotated[int | None, typer.Option("--slowest", min=1, help="The N slowest runs.")] = None,
    db: DbOption = None,
    from_: FromOption = None,
    json: JsonOption = False,
) -> None:
    """List runs with status, duration, span count, agents, tokens and cost."""
    from agent_debug.analysis.commands import list_runs
    from agent_debug.cli.views import render_runs
    from agent_debug.store.query import TraceFilter

    flt = TraceFilter(failed=failed, workflow=workflow, agent=agent,
                      since_ns=parse_since(since) if since else None, slowest=slowest)
    result = list_runs(inputs(db, from_), flt)
    show(result, json, lambda out: render_runs(out, result))


def ddl(
    cluster: Annotated[str | None, typer.Option("--cluster", help="The cluster form: Replicated local tables and "
                                                "Distributed tables sharded by trace id over this cluster.")] = None,
    database: Annotated[str, typer.Option("--database", help="The database the tables go in.")] = "agent_debug",
    ttl_days: Annotated[int | None, typer.Option("--ttl-days", min=1, help="Drop spans and runs this many days "
                                                 "after they started.")] = None,
    json: JsonOption = False,
) -> None:
    """Print the ClickHouse schema's statements (what `ingest --db clickhouse://...` creates), for one node or a
    cluster, to review or apply by hand."""
    from agent_debug.store.clickhouse.schema import Target, ddl as make_ddl

    try:
        target = Target(database=database, cluster=cluster, ttl_days=ttl_days)
    except ValueError as exc:
        from agent_debug.errors import UsageError

        raise UsageError(str(exc)) from None
    statements = make_ddl(target)
    if json:
        print_result({"database": database, "cluster": cluster, "ttl_days": ttl_days, "statements": statements}, [])
        return
    sys.stdout.write("".join(stmt + ";\n\n" for stmt in statements))


def copy(
    source: Annotated[str, typer.Option("--from", help="The store to copy (a SQLite file, chdb:///DIR or "
                                        "clickhouse://...).", show_default=False)],
    target: Annotated[str, typer.Option("--to", help="The store to copy into (must hold no traces).",
                                        show_default=False)],
    json: JsonOption = False,
) -> None:
    """Copy a store into another, on any backend, losing nothing (spans, conflicts, rejects, file offsets,
    verdicts), then compare the two: counts, and a sample of traces span by span."""
    from agent_debug.store.api import open_store
    from agent_debug.store.copy import copy_store

    src = open_store(source, create=False)
    try:
        dst = open_store(target)
        try:
            result = copy_store(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    if json:
        print_result(result.as_dict(), [])
        return
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items())
    stdout_console().print(f"copied {result.source} -> {result.target}: {counts}; {len(result.checked)} traces "
                           f"compared span by span, {result.seconds:.2f}s", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("traces")(traces)
    store_app = typer.Typer(help="The store itself: its ClickHouse schema, copying it between backends.",
                            no_args_is_help=True)
    store_app.command("ddl")(ddl)
    store_app.command("copy")(copy)
    app.add_typer(store_app, name="store")
