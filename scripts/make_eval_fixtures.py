"""Regenerate the evaluation fixtures: one faulty and one healthy run of the demo system, through the public SDK.

- `fixtures/faulty_trace.jsonl`: the `skip_validation` scenario. The orchestrator skips the verifier, so the run's
  interaction graph has no `orchestrator->verifier` edge: the injected topology fault. Its output still looks
  fine, which is the point: only the topology check catches it.
- `fixtures/healthy_trace.jsonl`: the `healthy` scenario, same task and seed.

`fixtures/eval_cases.toml` (hand-written) describes what a good `repo-fix-agent` run looks like;
`agent-debug eval fixtures/eval_cases.toml --from fixtures/faulty_trace.jsonl` exits 1 naming the missing edge,
and with `--from fixtures/healthy_trace.jsonl` exits 0.

The seed is fixed, so structure, names, outputs and relative timings are the same on every run; ids and
wall-clock times come from the SDK, as in production.

Run:  .venv/bin/python scripts/make_eval_fixtures.py [--out fixtures]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
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
SEED = 7
FIXTURES = {"faulty_trace": "skip_validation", "healthy_trace": "healthy"}


def record_run(scenario: str, seed: int = SEED) -> list[bytes]:
    """One demo run written by the SDK as plain JSONL into a temporary directory; its lines by start time."""
    with tempfile.TemporaryDirectory(prefix="agent-debug-eval-fixture-") as tmp:
        ad.configure(tmp, format="jsonl", rotation="1 GB", compression=None, retention=None, sample_rate=1.0)
        try:
            asyncio.run(run_workflow(make_input(EXTRA[scenario], 0, seed)))
        finally:
            stats = ad.shutdown()
        if stats.get("dropped") or stats.get("internal_errors"):
            raise RuntimeError(f"the SDK lost records while making the fixture: {stats}")
        files = [p for p in Path(tmp).rglob("*") if p.is_file()]
        if len(files) != 1 or not files[0].name.endswith(".jsonl"):
            raise RuntimeError(f"expected one plain .jsonl file, got {[f.name for f in files]}")
        lines = [line for line in files[0].read_bytes().split(b"\n") if line.strip()]
    if len({orjson.loads(line)["trace_id"] for line in lines}) != 1:
        raise RuntimeError("expected exactly one trace")
    return sorted(lines, key=lambda line: orjson.loads(line)["timestamp"])


def write_fixture(name: str, out_dir: Path) -> Path:
    path = out_dir / f"{name}.jsonl"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in record_run(FIXTURES[name])))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "fixtures", help="directory to write into")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in FIXTURES:
        path = write_fixture(name, args.out)
        n = sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
        print(f"{name}: {path} ({n} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
