"""Ingest throughput: `agent_debug.store.ingest.ingest` against a bare read-and-parse loop over the same file.

What is measured: 1M synthetic, demo-like spans (`scripts/synth.py`: ~450-byte records, 1000 traces with nested
parallel fan-out) in one gzipped JSONL file, read by

  baseline  `gzip.open(path) ; for line in f: orjson.loads(line)`: the least any reader must do;
  ingest    `ingest([path], db)` into a fresh store: read, validate, dedupe, pack, compress, write SQLite
            (WAL), summarize every trace.

Each timed run is a fresh subprocess (so one run's heap does not help or hurt the next, and peak RSS is that
run's own), timed inside the process around the call only (imports excluded). Runs are interleaved
(A B, B A, A B, ...) and the best of N of each is kept, so load from other processes on the machine hurts both
alike. Target: ingest rate >= 0.5x the baseline loop's rate.

The last line is always

    ingest_ratio=R ingest=X rec/s baseline=Y rec/s target>=0.5 PASS|FAIL

Run:  .venv/bin/python scripts/bench_ingest.py [--spans N] [--traces T] [--repeat N] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TARGET = 0.5


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker_baseline(path: Path) -> dict[str, Any]:
    import gzip

    import orjson

    t0 = time.perf_counter()
    n = 0
    with gzip.open(path) as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return {"seconds": time.perf_counter() - t0, "records": n, "peak_rss_mb": _rss_mb()}


def worker_ingest(path: Path, db: Path, profile: bool) -> dict[str, Any]:
    from agent_debug.store.ingest import ingest

    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        res = ingest([path], db)
        prof.disable()
        seconds = time.perf_counter() - t0
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(18)
    else:
        t0 = time.perf_counter()
        res = ingest([path], db)
        seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {"seconds": seconds, "records": res.records, "rejected": res.rejected, "traces": res.traces,
            "peak_rss_mb": _rss_mb(), "db_mb": size / 1e6}


def _run_worker(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"worker {args[0]} failed with exit code {out.returncode}")
    if out.stderr:
        sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="total spans in the file (default 1M)")
    parser.add_argument("--traces", type=int, default=1000, help="traces they are spread over (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each contender (best is kept)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one ingest run")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, *rest = args.worker
        if kind == "baseline":
            res = worker_baseline(Path(rest[0]))
        else:
            res = worker_ingest(Path(rest[0]), Path(rest[1]), rest[2:] == ["profile"])
        print(json.dumps(res))
        return 0

    import synth

    tmp = Path(tempfile.mkdtemp(prefix="agent-debug-bench-ingest-"))
    try:
        path = tmp / "traces.jsonl.gz"
        per = max(1, args.spans // args.traces)
        t0 = time.perf_counter()
        info = synth.write_jsonl_gz(path, traces=args.traces, spans_per_trace=per, seed=args.seed)
        print(f"generated {info['records']:,} records in {args.traces} traces ({info['raw_bytes'] / 1e6:.0f} MB JSON, "
              f"{info['raw_bytes'] / info['records']:.0f} B/record, {info['file_bytes'] / 1e6:.0f} MB gzipped) "
              f"in {time.perf_counter() - t0:.1f}s")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
        db = tmp / "store" / "traces.db"
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "ingest": []}

        def one(kind: str) -> None:
            if kind == "baseline":
                r = _run_worker("baseline", str(path))
            else:
                shutil.rmtree(db.parent, ignore_errors=True)
                db.parent.mkdir()
                r = _run_worker("ingest", str(path), str(db))
                if r["records"] != info["records"]:
                    raise SystemExit(f"ingest kept {r['records']} records of {info['records']}")
            runs[kind].append(r)
            print(f"  {kind:8s} {r['seconds']:6.2f}s  {info['records'] / r['seconds']:>10,.0f} rec/s  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)

        for i in range(args.repeat):
            for kind in (("baseline", "ingest") if i % 2 == 0 else ("ingest", "baseline")):
                one(kind)
        if args.profile:
            shutil.rmtree(db.parent, ignore_errors=True)
            db.parent.mkdir()
            _run_worker("ingest", str(path), str(db), "profile")

        best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        rate = {k: info["records"] / b["seconds"] for k, b in best.items()}
        ratio = rate["ingest"] / rate["baseline"]
        mb = info["raw_bytes"] / 1e6
        ing = best["ingest"]
        print(f"best of {args.repeat}: baseline {best['baseline']['seconds']:.2f}s "
              f"({mb / best['baseline']['seconds']:.0f} MB/s of JSON), ingest {ing['seconds']:.2f}s "
              f"({mb / ing['seconds']:.0f} MB/s)")
        print(f"ingest peak RSS {max(r['peak_rss_mb'] for r in runs['ingest']):.0f} MB, "
              f"store {ing['db_mb']:.0f} MB on disk ({ing['db_mb'] / mb:.0%} of the JSON), {ing['traces']} traces")
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(f"ingest_ratio={ratio:.2f} ingest={rate['ingest']:,.0f} rec/s baseline={rate['baseline']:,.0f} rec/s "
              f"target>={TARGET} {verdict}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
