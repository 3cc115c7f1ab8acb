"""`agent-debug demo`: run the demo multi-agent system, then show what the tool makes of its traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from typing import Any

from agent_debug.cli.common import JsonOption, print_result, stdout_console, warn
from agent_debug.cli.render import fmt_ns


def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Where to write traces, packets and labels.")] = Path("demo-out"),
    runs: Annotated[int, typer.Option("--runs", min=1, max=10000, help="How many runs in the batch.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the batch's nondeterminism.")] = 0,
    json: JsonOption = False,
) -> None:
    """Run a batch of the demo agent team (healthy runs, recovered retries, and a failure of every bucket),
    write rotated, compressed trace files, and summarize."""
    from agent_debug.demo.runner import run_demo

    result = run_demo(dir, runs, seed=seed)
    store = Path(result.directory) / "store.db"
    from agent_debug.store.ingest import ingest

    ingested = ingest([result.trace_dir], store)
    warn(ingested.notices)
    if json:
        print_result({"directory": result.directory, "traces": result.trace_dir, "labels": result.labels_path,
                    "runs": len(result.runs), "failed": result.failed, "files": result.files,
                    "sdk": result.sdk_stats, "store": str(store), "ingest": ingested.as_dict(),
                    "packets": sorted(str(p) for p in Path(result.packet_dir).rglob("*.json"))}, ingested.notices)
        return
    from rich.table import Table

    out = stdout_console()
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
    _tour(out, result, store, ingested)


def _tour(out: Any, result: Any, store: Path, ingested: Any) -> None:
    """What an engineer on call does next: ingest, look at the slowest failure, bucket the batch, replay."""
    from agent_debug.analysis.batch import bucket_runs
    from agent_debug.analysis.buckets import load_rules
    from agent_debug.analysis.critical import analyze
    from agent_debug.analysis.source import StoreSource
    from agent_debug.analysis.tree import build_tree
    from agent_debug.analysis.treeview import build_view
    from agent_debug.cli.analysis import _render_tree
    from agent_debug.cli.diagnose import render_buckets
    from agent_debug.store.query import TraceFilter

    out.rule("1. ingest")
    out.print(f"agent-debug ingest {result.trace_dir} --db {store}: {ingested.records} records, "
              f"{ingested.traces} traces, {ingested.rejected} rejected, {ingested.seconds:.2f}s", highlight=False)
    src = StoreSource(store)
    slowest = src.list(TraceFilter(failed=True, slowest=1))
    if slowest:
        tid = slowest[0].trace_id
        out.rule(f"2. agent-debug tree {tid[:8]} (the slowest failed run)")
        ts = src.load(tid, records=True)
        tree = build_tree(ts)
        cp = analyze(ts, tree)
        _render_tree(build_view(tree, set(cp.critical_ns)), ts)
        if cp.bottleneck:
            b = cp.bottleneck
            out.print(f"bottleneck: {b['agent_name']} {b['name']} ({fmt_ns(b['critical_ns'])} of "
                      f"{fmt_ns(cp.duration_ns)} on the critical path)", highlight=False)
    out.rule("3. agent-debug bucket")
    render_buckets(bucket_runs(src, TraceFilter(), load_rules()), runs_shown=0)
    packets = sorted(Path(result.packet_dir).rglob("*.json"))
    if packets:
        from agent_debug.cli.replay import _render
        from agent_debug.replay.engine import replay_packet
        from agent_debug.replay.packet import load_packet

        target = next((p for p in packets if (load_packet(p).get("failure") or {}).get("bucket")
                       == "retrieval_miss"), packets[0])
        out.rule(f"4. agent-debug replay {target}")
        _render(replay_packet(target), counterfactual=False, brief=False)
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
            _render(replay_packet(target, mode="lenient", fallback="live", inject=[inject]), counterfactual=True,
                    brief=False)
    out.rule("next")
    out.print(f"agent-debug traces --db {store}    agent-debug why <trace> --db {store}    "
              f"agent-debug replay {result.packet_dir} --check", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
