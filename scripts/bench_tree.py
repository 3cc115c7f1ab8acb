"""Critical path of a 1M-span trace from the store, against networkx `dag_longest_path` over the same spans.

What is measured (each timed step in a fresh subprocess, so its peak RSS is its own and ingest does not count):
  setup     one synthetic trace of N spans (`scripts/synth.py`: demo-like agents, nested parallel fan-out),
            gzipped JSONL, ingested into a fresh store. Not timed.
  ours      `StoreSource(db).load(trace_id)` + `analyze()`: the Jaeger critical path, per-span critical time,
            bottleneck, per-agent hotspots and latency stacking, from the store's columns (no JSON parsed).
  networkx  the L59 lesson's way, over the same spans (loaded from the store, not timed): a DiGraph with one
            node per span (its fields as attributes) and a parent->child edge weighted by the child's
            duration, then `nx.dag_longest_path(G, weight="weight")`. It answers a different, wrong question:
            the chain with the largest sum of nested durations, which counts a parent and its children's time
            over and over and ignores what ran in parallel; the output shows how far it is from the run's real
            length and where its path ends compared with the real bottleneck.
  cli       `agent-debug critical-path --json` on the big store, as a user runs it (wall time of the whole
            command; it also reads the records its stacking evidence needs, lazily). Reported, not a target.
  render    `agent-debug tree TRACE --depth 3` of a 100k-span trace from a store, as a user runs it (wall time
            of the whole command, interpreter start included).
ours and networkx run interleaved (A B, B A, ...), best of N each. Targets: ours <= 5 s and <= 1.5 GB peak RSS.

The last line is always

    tree_s=X networkx_s=Y speedup=Y/X peak_rss_mb=R render_s=Z cli_s=C target<=5s,<=1.5GB PASS|FAIL

Run:  .venv/bin/python scripts/bench_tree.py [--spans N] [--render-spans N] [--repeat N] [--no-networkx]
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
TARGET_S = 5.0
TARGET_MB = 1536


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker_setup(path: Path, db: Path, spans: int, seed: int) -> dict[str, Any]:
    import synth
    from agent_debug.store.ingest import ingest

    info = synth.write_jsonl_gz(path, traces=1, spans_per_trace=spans, seed=seed)
    t0 = time.perf_counter()
    res = ingest([path], db)
    return {"records": res.records, "traces": res.traces, "ingest_s": time.perf_counter() - t0,
            "raw_mb": info["raw_bytes"] / 1e6}


def worker_ours(db: Path) -> dict[str, Any]:
    from agent_debug.analysis.critical import analyze
    from agent_debug.analysis.source import StoreSource

    src = StoreSource(db)
    (summary,) = src.list()
    t0 = time.perf_counter()
    ts = src.load(summary.trace_id)
    loaded = time.perf_counter() - t0
    res = analyze(ts)
    seconds = time.perf_counter() - t0
    assert res.bottleneck is not None
    return {"seconds": seconds, "load_s": loaded, "peak_rss_mb": _rss_mb(), "spans": len(ts),
            "duration_ns": res.duration_ns, "path_spans": len(res.path), "bottleneck": res.bottleneck,
            "stacking": len(res.stacking), "critical_sum_ns": sum(res.critical_ns.values())}


def worker_networkx(db: Path) -> dict[str, Any]:
    import networkx as nx

    from agent_debug.analysis.source import StoreSource

    src = StoreSource(db)
    (summary,) = src.list()
    ts = src.load(summary.trace_id)
    fields = ("agent_name", "event_type", "name", "status", "start_ns", "duration_ns")
    t0 = time.perf_counter()
    g = nx.DiGraph()
    ids = set(ts.span_id)
    for i, sid in enumerate(ts.span_id):  # as the lesson does: every span a node with its fields
        g.add_node(sid, **{f: getattr(ts, f)[i] for f in fields})
    for sid, parent, dur in zip(ts.span_id, ts.parent_id, ts.duration_ns, strict=True):
        if parent is not None and parent in ids:
            g.add_edge(parent, sid, weight=dur)
    path = nx.dag_longest_path(g, weight="weight")
    seconds = time.perf_counter() - t0
    summed = sum(g.edges[a, b]["weight"] for a, b in zip(path, path[1:], strict=False))
    last = path[-1]
    return {"seconds": seconds, "peak_rss_mb": _rss_mb(), "path_spans": len(path), "summed_ns": summed,
            "ends_at": {"span_id": last, "name": g.nodes[last]["name"], "agent_name": g.nodes[last]["agent_name"],
                        "duration_ns": g.nodes[last]["duration_ns"]}}


def _run(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"bench step {args[0]} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _cli_critical_path(db: Path) -> tuple[float, float, int]:
    """`agent-debug critical-path --db DB --json` as a user runs it: (wall seconds including interpreter start,
    peak RSS in MB of that process alone, exit code). It also reads, lazily, the records stacking needs."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "agent_debug.cli.main", "critical-path", "--db", str(db), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, proc.returncode


def _render(db: Path) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "agent_debug.cli.main", "tree", "--db", str(db), "--depth", "3"],
                         capture_output=True, text=True, check=False, env=dict(os.environ, COLUMNS="160"))
    return time.perf_counter() - t0, out.returncode, len(out.stdout.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in the big trace (default 1M)")
    parser.add_argument("--render-spans", type=int, default=100_000, help="spans in the rendered trace")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each contender (best is kept)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-networkx", action="store_true", help="skip the networkx comparison")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, *rest = args.worker
        if kind == "setup":
            res = worker_setup(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]))
        elif kind == "ours":
            res = worker_ours(Path(rest[0]))
        else:
            res = worker_networkx(Path(rest[0]))
        print(json.dumps(res))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="agent-debug-bench-tree-"))
    try:
        big, small = tmp / "big" / "traces.db", tmp / "small" / "traces.db"
        setup = _run("setup", str(tmp / "big.jsonl.gz"), str(big), str(args.spans), str(args.seed))
        print(f"setup: one trace of {setup['records']:,} spans ({setup['raw_mb']:.0f} MB of JSON), ingested in "
              f"{setup['ingest_s']:.1f}s (not timed)")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "networkx": []}
        kinds = ["ours"] if args.no_networkx else ["ours", "networkx"]
        for i in range(args.repeat):
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                r = _run(kind, str(big))
                runs[kind].append(r)
                print(f"  {kind:8s} {r['seconds']:6.2f}s  peak RSS {r['peak_rss_mb']:5.0f} MB", flush=True)
        ours = min(runs["ours"], key=lambda r: r["seconds"])
        peak = max(r["peak_rss_mb"] for r in runs["ours"])
        b = ours["bottleneck"]
        print(f"ours:     {ours['seconds']:.2f}s (load {ours['load_s']:.2f}s, analyze "
              f"{ours['seconds'] - ours['load_s']:.2f}s), peak RSS {peak:.0f} MB; run {ours['duration_ns'] / 1e9:.1f}s "
              f"long = the sum of the critical times ({ours['critical_sum_ns'] / 1e9:.1f}s) over "
              f"{ours['path_spans']:,} path segments; bottleneck {b['agent_name']} {b['name']} "
              f"({b['critical_ns'] / 1e6:.0f} ms); {ours['stacking']} stacking findings")
        nx_s = float("nan")
        if runs["networkx"]:
            nxr = min(runs["networkx"], key=lambda r: r["seconds"])
            nx_s = nxr["seconds"]
            e = nxr["ends_at"]
            print(f"networkx: {nx_s:.2f}s (graph + dag_longest_path; load not counted), peak RSS "
                  f"{max(r['peak_rss_mb'] for r in runs['networkx']):.0f} MB; its 'critical path' of "
                  f"{nxr['path_spans']} spans sums {nxr['summed_ns'] / 1e9:.1f}s of nested durations for a run "
                  f"{ours['duration_ns'] / 1e9:.1f}s long, and ends at {e['agent_name']} {e['name']} "
                  f"({e['duration_ns'] / 1e6:.0f} ms)"
                  f"{'' if e['span_id'] == b['span_id'] else ', not the bottleneck'}: a different, wrong answer")
        clis = [_cli_critical_path(big) for _ in range(args.repeat)]
        cli_s = min(c[0] for c in clis)
        print(f"cli:      agent-debug critical-path --json on the same store: {cli_s:.2f}s wall (best of "
              f"{args.repeat}, interpreter start and output included; stacking evidence from the records it reads "
              f"lazily), peak RSS {max(c[1] for c in clis):.0f} MB, exit {clis[0][2]}")
        small_setup = _run("setup", str(tmp / "small.jsonl.gz"), str(small), str(args.render_spans),
                           str(args.seed + 1))
        renders = [_render(small) for _ in range(args.repeat)]
        render_s = min(r[0] for r in renders)
        ok_render = all(r[1] == 0 for r in renders)
        print(f"render:   agent-debug tree --depth 3 of {small_setup['records']:,} spans: {render_s:.2f}s wall "
              f"(best of {args.repeat}, exit {renders[0][1]}, {renders[0][2]} lines)")
        ok = ours["seconds"] <= TARGET_S and peak <= TARGET_MB and ok_render
        speedup = nx_s / ours["seconds"]
        print(f"tree_s={ours['seconds']:.2f} networkx_s={nx_s:.2f} speedup={speedup:.1f}x peak_rss_mb={peak:.0f} "
              f"render_s={render_s:.2f} cli_s={cli_s:.2f} target<={TARGET_S:.0f}s,<=1.5GB {'PASS' if ok else 'FAIL'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
