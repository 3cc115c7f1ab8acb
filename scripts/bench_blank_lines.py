"""What a blank line costs the readers and ingest, against a valid record, measured in the same run.

The issue's case: 5 MiB of blank lines (a 5 KiB gzip) took 21 s (3-4 us a line, parsed one by one). The target:
a blank line costs at most a tenth of a valid record. Prints per-line times (best of --repeat) and the ratios.

    .venv/bin/python scripts/bench_blank_lines.py
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agent_debug.formats.reader import ReadReport, read_file_batches  # noqa: E402
from agent_debug.store.ingest import ingest  # noqa: E402


def _records(n: int) -> bytes:
    out = []
    for i in range(n):
        out.append(orjson.dumps({
            "trace_id": f"t{i // 50}", "span_id": f"s{i}", "parent_id": None if i % 50 == 0 else f"s{i - i % 50}",
            "agent_name": "agent", "event_type": "LLM_CALL", "timestamp": 1.7e9 + i, "duration_ns": 1000 + i,
            "name": "llm:model", "token_cost": {"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.001},
            "payload": {"prompt": "hello " * 10}}) + b"\n")
    return b"".join(out)


def _best(fn: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _read(path: Path) -> None:
    report = ReadReport()
    for _ in read_file_batches(path, report):
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blank-mib", type=float, default=5.0, help="MiB of blank lines (default 5, the issue's case)")
    p.add_argument("--records", type=int, default=50_000, help="valid records to compare with (default 50,000)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    n_blank = int(a.blank_mib * (1 << 20))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        blank = d / "blank" / "traces.jsonl.gz"
        blank.parent.mkdir()
        blank.write_bytes(gzip.compress(b"\n" * n_blank))
        gz_size = blank.stat().st_size
        valid = d / "valid" / "traces.jsonl.gz"
        valid.parent.mkdir()
        valid.write_bytes(gzip.compress(_records(a.records)))
        counter = iter(range(1_000_000))
        rows = []
        for what, fn in (
            ("read", _read),
            ("ingest", lambda path: ingest([path.parent], d / f"db{next(counter)}" / "traces.db")),
        ):
            t_blank = _best(lambda fn=fn: fn(blank), a.repeat) / n_blank
            t_valid = _best(lambda fn=fn: fn(valid), a.repeat) / a.records
            rows.append((what, t_blank, t_valid))
    print(f"blank lines: {n_blank:,} ({a.blank_mib:g} MiB, a {gz_size:,}-byte gzip); valid records: {a.records:,}")
    worst = 0.0
    for what, t_blank, t_valid in rows:
        ratio = t_blank / t_valid
        worst = max(worst, ratio)
        print(f"{what:>6}: blank line {t_blank * 1e9:7.1f} ns, valid record {t_valid * 1e9:8.1f} ns, "
              f"ratio {ratio:.3f} (target <= 0.1)")
    return 0 if worst <= 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
