"""Regenerate the trace fixtures under `fixtures/` by running the demo system through the public SDK.

Each fixture has its own function (`make_<name>(out_dir) -> Path`); `main()` writes them all. Fixtures are made
the way a user's agent makes traces: `agent_debug.configure(...)` into a temporary directory, run the demo
workflow, `agent_debug.shutdown()`, then copy the records out as plain JSONL. The world's seed is fixed, so the
structure, names, outcomes and relative timings are the same on every run; ids and wall-clock times are not
(they come from the SDK, as in production).

Run:  .venv/bin/python scripts/make_fixtures.py [--out fixtures] [--only benchmark_trace]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

try:  # run from a checkout without an installed package
    import agent_debug as ad
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import agent_debug as ad

import orjson

from agent_debug.demo.scenarios import EXTRA, make_input
from agent_debug.demo.system import run_workflow

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK_SEED = 59


def _record_demo_run(scenario: str, index: int, seed: int) -> list[bytes]:
    """Run one demo workflow with the SDK writing plain JSONL (no rotation, no compression) into a temporary
    directory; return its lines, sorted by start time so the fixture reads top-down like the run."""
    with tempfile.TemporaryDirectory(prefix="agent-debug-fixture-") as tmp:
        ad.configure(tmp, format="jsonl", rotation="1 GB", compression=None, retention=None, sample_rate=1.0)
        try:
            asyncio.run(run_workflow(make_input(EXTRA[scenario], index, seed)))
        finally:
            stats = ad.shutdown()
        if stats.get("dropped") or stats.get("internal_errors"):
            raise RuntimeError(f"the SDK lost records while making the fixture: {stats}")
        files = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
        if len(files) != 1 or not files[0].name.endswith(".jsonl"):
            raise RuntimeError(f"expected one plain .jsonl file, got {[f.name for f in files]}")
        lines = [line for line in files[0].read_bytes().split(b"\n") if line.strip()]
    return sorted(lines, key=lambda line: orjson.loads(line)["timestamp"])


def make_benchmark_trace(out_dir: Path) -> Path:
    """One run in the `serialized` scenario: the orchestrator waits for research before the patch starts (a
    dependency that need not exist: latency stacking), and the slow test suite makes the coder's `test`
    tool call the bottleneck of the critical path."""
    lines = _record_demo_run("serialized", 0, BENCHMARK_SEED)
    trace_ids = {orjson.loads(line)["trace_id"] for line in lines}
    if len(trace_ids) != 1:
        raise RuntimeError(f"expected one trace, got {len(trace_ids)}")
    path = out_dir / "benchmark_trace.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    shutil.move(tmp, path)
    return path


FIXTURES: dict[str, Callable[[Path], Path]] = {
    "benchmark_trace": make_benchmark_trace,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "fixtures", help="directory to write into")
    parser.add_argument("--only", choices=sorted(FIXTURES), action="append", help="make only these fixtures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or FIXTURES:
        path = FIXTURES[name](args.out)
        n = sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
        print(f"{name}: {path} ({n} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
