"""`agent-debug demo`: run the demo multi-agent system, then show what the tool makes of its traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent_debug.cli.common import JsonOption, print_json, stdout_console


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
    if json:
        print_json({"directory": result.directory, "traces": result.trace_dir, "labels": result.labels_path,
                    "runs": len(result.runs), "failed": result.failed, "files": result.files,
                    "sdk": result.sdk_stats})
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


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
