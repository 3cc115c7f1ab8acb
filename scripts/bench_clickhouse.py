"""The ClickHouse backend against the SQLite one, on this machine, in one run:

  ingest    1M synthetic spans (`scripts/synth.py`, 1000 traces) in one .jsonl.gz, ingested into a fresh SQLite
            store and a fresh chdb store (`--db chdb:///DIR`), each in its own subprocess, interleaved, best of N.
            Target: chdb's rate >= 0.8x SQLite's.
  traces    `agent-debug traces --json` over 10,000 runs / 10M spans in chdb. The store is filled in SQL, not by
            ingest: `INSERT INTO spans SELECT ... FROM numbers(10000000)` (1000 spans a run, the run summaries
            kept by the materialized view as for any insert). Timed as a user runs it (a subprocess, its wall
            time, interpreter start and imports included) and in process (the listing alone). Target: <= 2 s.
  tree      `agent-debug tree --json` and `critical-path --json` of one 1M-span run (ingested into both stores,
            untimed), each backend's output compared byte for byte, wall time of the command, best of N.
            Target: identical, and chdb <= 1.5x SQLite's time.

Run:  .venv/bin/python scripts/bench_clickhouse.py [--repeat N] [--skip ingest,traces,tree]
The last lines say PASS or FAIL per target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
INGEST_TARGET = 0.8
TRACES_TARGET_S = 2.0
TREE_TARGET = 1.5


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "AGENT_DEBUG_DB")}


def _worker(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                         env=_env(), check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"worker {args[0]} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _cli(*args: str) -> tuple[float, bytes, int]:
    """The real command, as a user runs it: (wall seconds, stdout, exit code)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "agent_debug.cli.main", *args], capture_output=True, env=_env(),
                         check=False)
    return time.perf_counter() - t0, out.stdout, out.returncode


# -- workers (each in a fresh process) ------------------------------------------------------------------------


def worker_ingest(path: str, db: str) -> dict[str, Any]:
    from agent_debug.store.api import open_store

    store = open_store(db)  # chdb: the engine starts here, before the clock
    t0 = time.perf_counter()
    res = store.ingest([path])
    seconds = time.perf_counter() - t0
    store.close()
    return {"seconds": seconds, "records": res.records, "traces": res.traces}


def worker_fill(db: str, spans: int, per_run: int) -> dict[str, Any]:
    """10M spans in 10k runs, inserted by the engine from numbers() (a million rows per INSERT)."""
    from agent_debug.store.api import open_store

    store = open_store(db)
    t = store.names  # type: ignore[attr-defined]
    conn = store.conn  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    step = 1_000_000
    for lo in range(0, spans, step):
        conn.command(f"""
INSERT INTO {t.spans} (trace_id, span_id, pos, parent_id, agent_name, event_type, name, status, start_ns, duration_ns,
                       prompt_tokens, completion_tokens, cost_usd, hash, envelope, record, ingest_id)
SELECT
    concat('bench-', leftPad(toString(intDiv(number, {per_run})), 6, '0')) AS tid,
    concat(tid, '-', toString(number % {per_run})) AS sid,
    toUInt32(number % {per_run}),
    if(number % {per_run} = 0, NULL, concat(tid, '-', toString(intDiv(number % {per_run} - 1, 4)))),
    ['planner', 'coder', 'verifier', 'writer', 'researcher'][number % 5 + 1],
    ['AGENT', 'LLM_CALL', 'TOOL_CALL', 'MESSAGE'][number % 4 + 1],
    if(number % {per_run} = 0, 'synthetic-run', concat('step-', toString(number % 37))),
    if(number % 97 = 0, 'error', 'ok'),
    toInt64(1700000000000000000 + intDiv(number, {per_run}) * 60000000000 + (number % {per_run}) * 1000000),
    toInt64(if(number % {per_run} = 0, {per_run} * 1000000 + 5000000, 3000000 + (number % 13) * 100000)),
    if(number % 4 = 1, 100 + number % 50, 0), if(number % 4 = 1, 20 + number % 7, 0),
    if(number % 4 = 1, 0.0001 * (number % 11), 0.),
    toUInt32(0),
    if(number % {per_run} = 0, concat('{{"workflow":"', if(intDiv(number, {per_run}) % 3 = 0, 'research-digest',
       'repo-fix-agent'), '","run_id":"', tid, '","passed":', if(intDiv(number, {per_run}) % 7 = 0, 'false',
       'true'), '}}'), ''),
    concat('{{"trace_id":"', tid, '","span_id":"', sid, '","attributes":{{"n":', toString(number % 1000), '}}}}'),
    toUInt64(1)
FROM numbers({lo}, {min(step, spans - lo)})""")
    filled = time.perf_counter() - t0
    counts = store.counts()
    store.close()
    return {"seconds": filled, "traces": counts.traces, "spans": counts.spans}


def worker_list(db: str) -> dict[str, Any]:
    from agent_debug.analysis.source import StoreSource

    src = StoreSource(db)
    t0 = time.perf_counter()
    rows = src.list()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "runs": len(rows), "spans": sum(r.span_count for r in rows)}


def worker_tree_setup(path: str, sqlite: str, chdb: str, spans: int) -> dict[str, Any]:
    import synth
    from agent_debug.store.api import open_store

    info = synth.write_jsonl_gz(Path(path), traces=1, spans_per_trace=spans, seed=7)
    out = {"raw_mb": info["raw_bytes"] / 1e6}
    for name, db in (("sqlite", sqlite), ("chdb", chdb)):
        store = open_store(db)
        t0 = time.perf_counter()
        res = store.ingest([path])
        out[f"{name}_ingest_s"] = time.perf_counter() - t0
        out["records"] = res.records
        store.close()
    return out


# -- the benchmark --------------------------------------------------------------------------------------------


def bench_ingest(tmp: Path, repeat: int, spans: int) -> bool:
    import synth

    path = tmp / "traces.jsonl.gz"
    info = synth.write_jsonl_gz(path, traces=1000, spans_per_trace=spans // 1000, seed=1)
    print(f"ingest: {info['records']:,} records in 1000 traces ({info['raw_bytes'] / 1e6:.0f} MB of JSON, "
          f"{info['file_bytes'] / 1e6:.0f} MB gzipped)")
    best: dict[str, float] = {}
    for i in range(repeat):
        for kind in ("sqlite", "chdb") if i % 2 == 0 else ("chdb", "sqlite"):
            where = tmp / f"ingest-{kind}"
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir()
            db = str(where / "traces.db") if kind == "sqlite" else f"chdb://{where / 'ch'}"
            r = _worker("ingest", str(path), db)
            if r["records"] != info["records"]:
                raise SystemExit(f"{kind} kept {r['records']} records of {info['records']}")
            best[kind] = min(best.get(kind, float("inf")), r["seconds"])
            print(f"  {kind:6s} {r['seconds']:6.2f}s  {info['records'] / r['seconds']:>9,.0f} rec/s", flush=True)
    ratio = best["sqlite"] / best["chdb"]
    ok = ratio >= INGEST_TARGET
    print(f"ingest_ratio={ratio:.2f} chdb={info['records'] / best['chdb']:,.0f} rec/s "
          f"sqlite={info['records'] / best['sqlite']:,.0f} rec/s target>={INGEST_TARGET} {'PASS' if ok else 'FAIL'}")
    return ok


def bench_traces(tmp: Path, repeat: int, spans: int, runs: int) -> bool:
    db = f"chdb://{tmp / 'traces-ch'}"
    fill = _worker("fill", db, str(spans), str(spans // runs))
    print(f"traces: {fill['spans']:,} spans in {fill['traces']:,} runs inserted in SQL (INSERT ... SELECT FROM "
          f"numbers()) in {fill['seconds']:.1f}s")
    best_cli, best_list = float("inf"), float("inf")
    for _ in range(repeat):
        seconds, out, code = _cli("traces", "--db", db, "--json")
        doc = json.loads(out)
        if code != 0 or doc["count"] != fill["traces"]:
            raise SystemExit(f"traces --json failed (exit {code}, {doc.get('count')} runs)")
        best_cli = min(best_cli, seconds)
        r = _worker("list", db)
        best_list = min(best_list, r["seconds"])
        print(f"  traces --json {seconds:5.2f}s wall ({len(out) / 1e6:.1f} MB of JSON); the listing in process "
              f"{r['seconds']:.2f}s for {r['runs']:,} runs / {r['spans']:,} spans", flush=True)
    ok = best_cli <= TRACES_TARGET_S
    print(f"traces_seconds={best_cli:.2f} (in process {best_list:.2f}) target<={TRACES_TARGET_S} "
          f"{'PASS' if ok else 'FAIL'}")
    return ok


def bench_tree(tmp: Path, repeat: int, spans: int) -> bool:
    sqlite, chdb = str(tmp / "tree.db"), f"chdb://{tmp / 'tree-ch'}"
    setup = _worker("tree_setup", str(tmp / "big.jsonl.gz"), sqlite, chdb, str(spans))
    print(f"tree: one run of {setup['records']:,} spans ({setup['raw_mb']:.0f} MB of JSON), ingested untimed "
          f"(sqlite {setup['sqlite_ingest_s']:.1f}s, chdb {setup['chdb_ingest_s']:.1f}s)")
    ok = True
    for cmd in ("tree", "critical-path"):
        best: dict[str, float] = {}
        outs: dict[str, bytes] = {}
        for i in range(repeat):
            for kind in ("sqlite", "chdb") if i % 2 == 0 else ("chdb", "sqlite"):
                seconds, out, code = _cli(cmd, "--db", sqlite if kind == "sqlite" else chdb, "--json")
                if code != 0:
                    raise SystemExit(f"{cmd} on {kind} failed with exit code {code}")
                outs[kind] = out
                best[kind] = min(best.get(kind, float("inf")), seconds)
                print(f"  {cmd:13s} {kind:6s} {seconds:6.2f}s", flush=True)
        same = outs["sqlite"] == outs["chdb"]
        ratio = best["chdb"] / best["sqlite"]
        good = same and ratio <= TREE_TARGET
        ok = ok and good
        print(f"{cmd.replace('-', '_')}_ratio={ratio:.2f} chdb={best['chdb']:.2f}s sqlite={best['sqlite']:.2f}s "
              f"identical={same} ({len(outs['chdb']) / 1e6:.1f} MB) target<={TREE_TARGET} "
              f"{'PASS' if good else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (best is kept)")
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans of the ingest file and the big run")
    parser.add_argument("--store-spans", type=int, default=10_000_000, help="spans of the traces store")
    parser.add_argument("--store-runs", type=int, default=10_000, help="runs of the traces store")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: ingest, traces, tree")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        fn = {"ingest": worker_ingest, "fill": worker_fill, "list": worker_list, "tree_setup": worker_tree_setup}[kind]
        conv = [int(x) if x.isdigit() else x for x in rest]
        print(json.dumps(fn(*conv)))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="agent-debug-bench-ch-"))
    verdicts = {}
    try:
        if "ingest" not in skip:
            verdicts["ingest"] = bench_ingest(tmp, args.repeat, args.spans)
        if "traces" not in skip:
            verdicts["traces"] = bench_traces(tmp, args.repeat, args.store_spans, args.store_runs)
        if "tree" not in skip:
            verdicts["tree"] = bench_tree(tmp, args.repeat, args.spans)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("summary: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in verdicts.items())
          + f" (load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
