"""Big runs: `why`, `bucket` and `packet` on a 1M-span failed run, bucket over 1000 runs, and ingest speed.

What is built (not timed): one failed run of N spans (`scripts/synth.py`'s shape as `bench_tree.py` uses it,
with payloads; `outcome.passed = false`, and its tool failures deep in the tree are unrecovered, so the rules
bucket it as tool_execution), gzipped JSONL, ingested into a store; and a store of R runs x S spans (synth's
mix: a fifth of them failed).

What is measured, each command as a user runs it (a CLI subprocess: wall time including interpreter start,
peak RSS of that process alone via os.wait4), interleaved and repeated (best time, worst RSS):
  big store    `critical-path --json` (the reference), `why --json`, text `why`, `bucket --json`,
               `packet` (and its file size), then `replay --json` of that packet (it must reproduce)
  many store   `bucket --json` over all failed runs, against `traces --json`
  ingest       `ingest()` of a 1M-span .jsonl.gz in a fresh subprocess (timed around the call), against a bare
               loop of isal igzip + orjson over the same file, on both shapes (R x S and 1 x N), and against
               DuckDB `read_json_auto` into a table (the R x S file)
Targets (issue 13), as ratios against references measured in the same run:
  why --json, bucket --json      <= 1.5x critical-path --json, <= 1.2 GB
  packet                         <= 2x critical-path --json, <= 1.2 GB, file <= 20 MB, replays (reproduced)
  bucket --json over R runs      <= 2x traces --json + 1 s
  ingest                         >= 0.55x the isal+orjson loop on both shapes, >= 1.0x DuckDB

Run:  .venv/bin/python scripts/bench_big.py [--spans N] [--runs R --run-spans S] [--repeat K]
          [--skip-ingest] [--skip-commands] [--keep DIR]
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
GB = 1024.0  # MB per GB (RSS is reported in MiB)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- building (not timed) ----------------------------------------------------------------------------------------


CALL_EVERY = 250  # one span in this many, if a model or tool call, is a recorded call (as the SDK records them)


def _recorded_call(rec: dict[str, Any], hop: int) -> int:
    """Make a synthetic call span look like one the SDK intercepted: `call.hop`, a request and its response."""
    payload = rec.get("payload") or {}
    request = payload.get("prompt") or payload.get("args")
    response = payload.get("response") or payload.get("output")
    rec["attributes"]["call.hop"] = hop
    rec["attributes"]["call.request_hash"] = f"{hop:016x}"
    rec["payload"] = {"request": request, "response": response}
    return hop + 1


def write_failed_run(path: Path, spans: int, seed: int) -> dict[str, Any]:
    """One failed run of `spans` spans: synth's records with `outcome.passed = false`; one span in CALL_EVERY, if
    a model or tool call, is a recorded call (replay needs some)."""
    import orjson

    import synth

    try:
        from isal import igzip as gz  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        import gzip as gz  # type: ignore[no-redef]
    tmp = path.with_name(path.name + ".part")
    n = raw = errors = 0
    with gz.open(tmp, "wb", compresslevel=1) as fh:
        buf: list[bytes] = []
        hop = 0
        for k, rec in enumerate(synth.trace_records(spans, seed, trace_no=0, fail=True)):
            if rec.get("status") == "error":
                errors += 1
            if rec["event_type"] in ("LLM_CALL", "TOOL_CALL") and k % CALL_EVERY == 0:
                hop = _recorded_call(rec, hop)
            buf.append(orjson.dumps(rec))
            if len(buf) >= 10_000:
                data = b"\n".join(buf) + b"\n"
                raw += len(data)
                fh.write(data)
                n += len(buf)
                buf = []
        if buf:
            data = b"\n".join(buf) + b"\n"
            raw += len(data)
            fh.write(data)
            n += len(buf)
    tmp.replace(path)
    return {"records": n, "raw_bytes": raw, "error_spans": errors}


def build(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    import synth
    from agent_debug.store.ingest import ingest

    out: dict[str, Any] = {}
    big_file, many_file = tmp / "big.jsonl.gz", tmp / "many.jsonl.gz"
    out["big"] = write_failed_run(big_file, args.spans, args.seed)
    out["many"] = synth.write_jsonl_gz(many_file, traces=args.runs, spans_per_trace=args.run_spans, seed=args.seed)
    if not args.skip_commands:
        for name, f in (("big", big_file), ("many", many_file)):
            t0 = time.perf_counter()
            res = ingest([f], tmp / name / "traces.db")
            out[name]["ingest_s"] = time.perf_counter() - t0
            out[name]["stored"] = res.records
    return out


# -- workers (each in its own process) ---------------------------------------------------------------------------


def worker_loop(path: Path) -> dict[str, Any]:
    import orjson
    from isal import igzip  # type: ignore[import-not-found]

    loads = orjson.loads
    t0 = time.perf_counter()
    n = 0
    with igzip.open(path, "rb") as f:
        for line in f:
            loads(line)
            n += 1
    return {"seconds": time.perf_counter() - t0, "records": n, "peak_rss_mb": _rss_mb()}


def worker_ingest(path: Path, db: Path) -> dict[str, Any]:
    from agent_debug.store.ingest import ingest

    t0 = time.perf_counter()
    res = ingest([path], db)
    return {"seconds": time.perf_counter() - t0, "records": res.records, "peak_rss_mb": _rss_mb()}


def worker_duckdb(path: Path, db: Path) -> dict[str, Any]:
    import duckdb  # type: ignore[import-not-found]

    con = duckdb.connect(str(db))
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE spans AS SELECT * FROM read_json_auto('{path}')")
    n = con.execute("SELECT count(*) FROM spans").fetchone()[0]  # type: ignore[index]
    seconds = time.perf_counter() - t0
    con.close()
    return {"seconds": seconds, "records": n, "peak_rss_mb": _rss_mb()}


def _worker(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"worker {args[0]} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- commands as a user runs them --------------------------------------------------------------------------------


def cli(db: Path | None, *argv: str, out: Path | None = None) -> dict[str, Any]:
    """One `agent-debug` command: wall seconds, peak RSS (MB) of its process, exit code, stdout size."""
    sink = open(out, "wb") if out is not None else subprocess.DEVNULL  # noqa: SIM115
    env = dict(os.environ, COLUMNS="160")
    env.pop("PYTEST_CURRENT_TEST", None)
    t0 = time.perf_counter()
    try:
        extra = ["--db", str(db)] if db is not None else []
        proc = subprocess.Popen([sys.executable, "-m", "agent_debug.cli.main", *argv, *extra],
                                stdout=sink, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    finally:
        if out is not None:
            sink.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(f"agent-debug {' '.join(argv)} exited {code}: {err[-2000:]}\n")
    return {"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "exit": code,
            "bytes": out.stat().st_size if out is not None and out.exists() else 0}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best time, worst peak RSS, any failing exit code."""
    return {"seconds": min(r["seconds"] for r in runs), "rss_mb": max(r["rss_mb"] for r in runs),
            "exit": max((r["exit"] for r in runs), key=abs), "bytes": runs[-1].get("bytes", 0)}


def measure_commands(tmp: Path, args: argparse.Namespace, verdicts: list[tuple[str, bool, str]]) -> None:
    big, many = tmp / "big" / "traces.db", tmp / "many" / "traces.db"
    packet = tmp / "packet.json"
    kinds: dict[str, tuple[Path, tuple[str, ...], Path | None]] = {
        "critical-path --json": (big, ("critical-path", "--json"), tmp / "cp.json"),
        "why --json": (big, ("why", "--json"), tmp / "why.json"),
        "why (text)": (big, ("why",), tmp / "why.txt"),
        "bucket --json": (big, ("bucket", "--json"), tmp / "bucket.json"),
        "packet": (big, ("packet", _only_trace(big), "--json", "-o", str(packet)), tmp / "packet-info.json"),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for rep in range(args.repeat):
        order = list(kinds) if rep % 2 == 0 else list(kinds)[::-1]
        for k in order:
            if k == "packet" and args.skip_packet:
                continue
            db, argv, out = kinds[k]
            r = cli(db, *argv, out=out)
            runs[k].append(r)
            print(f"  {k:22s} {r['seconds']:7.2f}s  peak RSS {r['rss_mb']:6.0f} MB  exit {r['exit']}", flush=True)
    res = {k: best(v) for k, v in runs.items() if v}
    cp = res["critical-path --json"]["seconds"]
    print(f"big store ({args.spans:,} spans, one failed run), best of {args.repeat}:")
    for k, r in res.items():
        print(f"  {k:22s} {r['seconds']:7.2f}s  {r['seconds'] / cp:5.2f}x critical-path  peak RSS "
              f"{r['rss_mb']:6.0f} MB  exit {r['exit']}")
    why_doc = _json_of(tmp / "why.json")
    if why_doc:
        diag = why_doc.get("diagnosis") or {}
        print(f"  why: bucket {diag.get('bucket')}, root cause {(diag.get('root_cause') or {}).get('name')}, "
              f"{len(why_doc.get('suspects') or [])} suspects, top "
              f"{[(s['name'], s['signal'], s['score']) for s in (why_doc.get('suspects') or [])[:3]]}")
    for k in ("why --json", "bucket --json"):
        r = res[k]
        ok = r["exit"] == 0 and r["seconds"] <= 1.5 * cp and r["rss_mb"] <= 1.2 * GB
        verdicts.append((f"{k} <= 1.5x critical-path ({r['seconds'] / cp:.2f}x), <= 1.2 GB ({r['rss_mb']:.0f} MB)",
                         ok, ""))
    verdicts.append((f"text why ({res['why (text)']['seconds']:.2f}s) within 1.15x why --json "
                     f"({res['why --json']['seconds']:.2f}s): one load", res["why (text)"]["exit"] == 0
                     and res["why (text)"]["seconds"] <= 1.15 * res["why --json"]["seconds"] + 0.3, ""))
    if "packet" in res:
        r = res["packet"]
        size = packet.stat().st_size if packet.exists() else -1
        rep_run = cli(None, "replay", str(packet), "--json", out=tmp / "replay.json") if size > 0 else None
        replay = _json_of(tmp / "replay.json") if rep_run else None
        reproduced = bool(replay and replay.get("reproduced"))
        print(f"  packet file {size / 1e6:.1f} MB; replay {rep_run['seconds'] if rep_run else float('nan'):.2f}s, "
              f"reproduced {reproduced}" + (f", diff {replay.get('diff')}" if replay and not reproduced else ""))
        ok = r["exit"] == 0 and r["seconds"] <= 2 * cp and r["rss_mb"] <= 1.2 * GB and 0 < size <= 20e6 and reproduced
        verdicts.append((f"packet <= 2x critical-path ({r['seconds'] / cp:.2f}x), <= 1.2 GB ({r['rss_mb']:.0f} MB), "
                         f"file <= 20 MB ({size / 1e6:.1f} MB), replays ({reproduced})", ok, ""))
    mruns: dict[str, list[dict[str, Any]]] = {"traces --json": [], "bucket --json": []}
    for rep in range(args.repeat):
        for k in (("traces --json", "bucket --json") if rep % 2 == 0 else ("bucket --json", "traces --json")):
            argv = ("traces", "--json") if k == "traces --json" else ("bucket", "--json")
            r = cli(many, *argv, out=tmp / f"many-{k.split()[0]}.json")
            mruns[k].append(r)
            print(f"  many: {k:16s} {r['seconds']:7.2f}s  peak RSS {r['rss_mb']:6.0f} MB  exit {r['exit']}",
                  flush=True)
    mres = {k: best(v) for k, v in mruns.items()}
    tr, bu = mres["traces --json"], mres["bucket --json"]
    bdoc = _json_of(tmp / "many-bucket.json")
    nfailed = len(bdoc.get("runs", [])) if bdoc else -1
    print(f"many store ({args.runs} runs x {args.run_spans} spans): traces --json {tr['seconds']:.2f}s, bucket --json "
          f"{bu['seconds']:.2f}s over {nfailed} failed runs ({bu['rss_mb']:.0f} MB)")
    verdicts.append((f"bucket --json over {nfailed} failed runs ({bu['seconds']:.2f}s) <= 2x traces --json + 1 s "
                     f"({2 * tr['seconds'] + 1:.2f}s)", bu["exit"] == 0 and bu["seconds"] <= 2 * tr["seconds"] + 1,
                     ""))


def _only_trace(db: Path) -> str:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        (tid,) = con.execute("SELECT trace_id FROM traces").fetchone()
    finally:
        con.close()
    return str(tid)


def _json_of(p: Path) -> dict[str, Any] | None:
    try:
        return json.loads(p.read_bytes())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def measure_ingest(tmp: Path, args: argparse.Namespace, info: dict[str, Any],
                   verdicts: list[tuple[str, bool, str]]) -> None:
    shapes = {f"{args.runs}x{args.run_spans}": tmp / "many.jsonl.gz", f"1x{args.spans}": tmp / "big.jsonl.gz"}
    for shape, path in shapes.items():
        kinds = ["loop", "ingest"] + (["duckdb"] if shape.startswith(f"{args.runs}x") and not args.skip_duckdb
                                      else [])
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for rep in range(args.repeat):
            for k in kinds if rep % 2 == 0 else kinds[::-1]:
                work = tmp / f"ingest-{k}"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                if k == "loop":
                    r = _worker("loop", str(path))
                elif k == "ingest":
                    r = _worker("ingest", str(path), str(work / "traces.db"))
                else:
                    r = _worker("duckdb", str(path), str(work / "t.duckdb"))
                shutil.rmtree(work, ignore_errors=True)
                runs[k].append(r)
                print(f"  ingest {shape:12s} {k:7s} {r['seconds']:6.2f}s  {r['records'] / r['seconds']:>10,.0f} rec/s "
                      f" peak RSS {r['peak_rss_mb']:5.0f} MB", flush=True)
        b = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        ratio = b["loop"]["seconds"] / b["ingest"]["seconds"]
        print(f"ingest {shape}: ingest {b['ingest']['seconds']:.2f}s, isal+orjson loop {b['loop']['seconds']:.2f}s: "
              f"{ratio:.2f}x the loop's rate")
        verdicts.append((f"ingest {shape} >= 0.55x isal+orjson loop ({ratio:.2f}x)", ratio >= 0.55, ""))
        if "duckdb" in b:
            d = b["duckdb"]["seconds"] / b["ingest"]["seconds"]
            print(f"ingest {shape}: DuckDB read_json_auto {b['duckdb']['seconds']:.2f}s: ingest is {d:.2f}x its rate")
            verdicts.append((f"ingest {shape} >= 1.0x DuckDB read_json_auto ({d:.2f}x)", d >= 1.0, ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in the big failed run")
    parser.add_argument("--runs", type=int, default=1000, help="runs in the many-runs store")
    parser.add_argument("--run-spans", type=int, default=1000, help="spans per run in the many-runs store")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (best time kept)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-commands", action="store_true")
    parser.add_argument("--skip-packet", action="store_true")
    parser.add_argument("--skip-duckdb", action="store_true")
    parser.add_argument("--keep", type=Path, help="build into (and reuse) this folder instead of a temporary one")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind == "build":
            res = build(Path(rest[0]), argparse.Namespace(**json.loads(rest[1])))
        elif kind == "loop":
            res = worker_loop(Path(rest[0]))
        elif kind == "ingest":
            res = worker_ingest(Path(rest[0]), Path(rest[1]))
        else:
            res = worker_duckdb(Path(rest[0]), Path(rest[1]))
        print(json.dumps(res))
        return 0

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="agent-debug-bench-big-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        marker = tmp / "built.json"
        if args.keep and marker.exists():
            info = json.loads(marker.read_text())
        else:
            for name in ("big", "many"):
                shutil.rmtree(tmp / name, ignore_errors=True)
            # built in a worker: a child process reports the peak RSS of its parent at fork (Linux keeps the
            # high-water mark across exec), so the parent stays small
            info = _worker("build", str(tmp), json.dumps(vars(args), default=str))
            marker.write_text(json.dumps(info))
        print(f"built in {time.perf_counter() - t0:.0f}s (not timed): big run {info['big']['records']:,} spans "
              f"({info['big']['raw_bytes'] / 1e6:.0f} MB JSON, {info['big']['error_spans']} tool errors), "
              f"{args.runs} runs x {args.run_spans} spans ({info['many']['raw_bytes'] / 1e6:.0f} MB JSON)")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
        verdicts: list[tuple[str, bool, str]] = []
        if not args.skip_commands:
            measure_commands(tmp, args, verdicts)
        if not args.skip_ingest:
            measure_ingest(tmp, args, info, verdicts)
        print("targets:")
        for text, ok, _ in verdicts:
            print(f"  {'PASS' if ok else 'FAIL'}  {text}")
        met = sum(ok for _, ok, _ in verdicts)
        print(f"bench_big: {met} of {len(verdicts)} targets met {'PASS' if met == len(verdicts) else 'FAIL'}")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
