"""`agent-debug demo`: run the demo multi-agent system, then show what the tool makes of its traces."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent_debug.cli.common import JsonOption, show
from agent_debug.cli.render import fmt_ns

if TYPE_CHECKING:
    from rich.console import Console

    from agent_debug.demo.runner import DemoReport


def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Where to write traces, packets and labels.")] = Path("demo-out"),
    runs: Annotated[int, typer.Option("--runs", min=1, max=10000, help="How many runs in the batch.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the batch's nondeterminism.")] = 0,
    json: JsonOption = False,
) -> None:
    """Run a batch of the demo agent team (healthy runs, recovered retries, and a failure of every bucket),
    write rotated, compressed trace files, and summarize."""
    from agent_debug.demo.runner import demo_of

    report = demo_of(dir, runs, seed=seed)

    def render(out: Console) -> None:
        render_demo(out, report)
        tour(out, report)

    show(report, json, render)


def render_demo(out: Console, report: DemoReport) -> None:
    """The batch: runs, files, scenarios, what the SDK wrote."""
    from rich.table import Table

    result = report.result
    out.print(f"[bold]demo[/]: {len(result.runs)} runs, {result.failed} failed")
    out.print(f"  traces  {result.trace_dir}  ({len(result.files)} files)")
    out.print(f"  labels  {result.labels_path}")
    table = Table("scenario", "runs", "failed", title="batch")
    counts: dict[str, list[int]] = {}
    for r in result.runs:
        c = counts.setdefault(r.scenario, [0, 0])
        c[0] += 1
        c[1] += not r.passed
    for name, (n, f) in counts.items():
        table.add_row(name, str(n), str(f))
    out.print(table)
    st = result.sdk_stats
    out.print(f"  sdk: {st.get('written', 0)} records written, {st.get('dropped', 0)} dropped, "
              f"{st.get('redacted', 0)} redacted, {st.get('files_compressed', 0)} files rotated+compressed")


def tour(out: Console, report: DemoReport) -> None:
    """What an engineer on call does next: ingest, look at the slowest failure, bucket the batch, replay. Each
    step is the command's own library call and renderer."""
    from agent_debug.analysis.commands import Inputs, bucket_of, critical_path_of, list_runs, tree_of
    from agent_debug.cli.views import render_buckets, render_replay, render_tree
    from agent_debug.replay.commands import replay_of
    from agent_debug.replay.packet import load_packet
    from agent_debug.store.query import TraceFilter

    result, ingested, store = report.result, report.ingested, Path(report.store)
    out.rule("1. ingest")
    out.print(f"agent-debug ingest {result.trace_dir} --db {store}: {ingested.records} records, "
              f"{ingested.traces} traces, {ingested.rejected} rejected, {ingested.seconds:.2f}s", highlight=False)
    src = Inputs(store)
    slowest = list_runs(src, TraceFilter(failed=True, slowest=1)).runs
    if slowest:
        tid = slowest[0].trace_id
        out.rule(f"2. agent-debug tree {tid[:8]} (the slowest failed run)")
        render_tree(out, tree_of(src, tid))
        cp = critical_path_of(src, tid).result
        if cp.bottleneck:
            b = cp.bottleneck
            out.print(f"bottleneck: {b['agent_name']} {b['name']} ({fmt_ns(b['critical_ns'])} of "
                      f"{fmt_ns(cp.duration_ns)} on the critical path)", highlight=False)
    out.rule("3. agent-debug bucket")
    render_buckets(out, bucket_of(src, TraceFilter()), runs_shown=0)
    packets = sorted(Path(result.packet_dir).rglob("*.json"))
    if packets:
        target = next((p for p in packets if (load_packet(p).get("failure") or {}).get("bucket")
                       == "retrieval_miss"), packets[0])
        out.rule(f"4. agent-debug replay {target}")
        render_replay(out, replay_of(target).results[0])
        pk = load_packet(target)
        if (pk.get("failure") or {}).get("bucket") == "retrieval_miss":
            import orjson

            from agent_debug.demo.world import CORPUS

            query = str((pk.get("input") or {}).get("query", ""))
            refs = [d for topic, ds in CORPUS.items() if topic in query for d in ds] or CORPUS["backfill"]
            docs = orjson.dumps({"exit_code": 0, "documents": refs, "output": refs}).decode()
            inject = f"researcher:retrieve#0={docs}"
            out.rule("5. counterfactual: give the empty retrieval real documents")
            out.print(f"agent-debug replay {target} --inject '{inject}' --fallback live", highlight=False,
                      markup=False)
            replayed = replay_of(target, mode="lenient", fallback="live", inject=[inject]).results[0]
            render_replay(out, replayed, counterfactual=True)
    out.rule("next")
    out.print(f"agent-debug traces --db {store}    agent-debug why <trace> --db {store}    "
              f"agent-debug replay {result.packet_dir} --check", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
