"""Critical path of a 1M-span trace from the store, against networkx `dag_longest_path` over the same spans.

What is measured, each in a fresh subprocess (so peak RSS is that step's own):
  setup     generate one trace of N spans (scripts/synth.py: nested parallel fan-out) and ingest it (not timed)
  ours      `StoreSource(db).load(trace_id)` + `analyze()`: the Jaeger critical path, bottleneck, hotspots,
            stacking, from the store (columns only, no JSON parsed)
  networkx  the L59 lesson's approach on the same spans: a DiGraph with weight=duration on parent->child
            edges, then `nx.dag_longest_path` (which answers a different, wrong question: it sums nested
            durations and ignores concurrency; it is timed for scale)
  render    `agent-debug tree --depth 3` of a 100k-span trace, as a user runs it (subprocess, wall time)
Targets: ours <= 5 s and <= 1.5 GB peak RSS for 1M spans. The last line is always

    tree_s=X tree_rss_mb=Y networkx_s=Z render100k_s=W PASS|FAIL

Run:  .venv/bin/python scripts/bench_tree.py [--spans N] [--render-spans N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _child(code: str, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["PYTHONPATH"] = str(ROOT / "scripts") + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([PY, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench step failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


SETUP = """
import sys, json, time
from pathlib import Path
from synth import write_jsonl_gz
from agent_debug.store.ingest import ingest
path, db, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
write_jsonl_gz(path, traces=1, spans_per_trace=n, seed=7)
t = time.perf_counter(); r = ingest([path], db)
print(json.dumps({"records": r.records, "ingest_s": time.perf_counter() - t}))
"""

OURS = """
import sys, json, time, resource
from agent_debug.analysis.source import StoreSource
from agent_debug.analysis.critical import analyze
src = StoreSource(sys.argv[1])
tid = src.list()[0].trace_id
t = time.perf_counter()
ts = src.load(tid)
t_load = time.perf_counter() - t
res = analyze(ts)
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "load_s": t_load, "rss_mb": rss, "spans": len(ts), "path": len(res.path),
                  "bottleneck": res.bottleneck, "stacking": len(res.stacking)}))
"""

NX = """
import sys, json, time, resource
import networkx as nx
from agent_debug.analysis.source import StoreSource
src = StoreSource(sys.argv[1])
tid = src.list()[0].trace_id
ts = src.load(tid)
t = time.perf_counter()
G = nx.DiGraph()
ids = set(ts.span_id)
for sid, pid, dur in zip(ts.span_id, ts.parent_id, ts.duration_ns):
    G.add_node(sid)
    if pid is not None and pid in ids:
        G.add_edge(pid, sid, weight=dur)
path = nx.dag_longest_path(G, weight="weight")
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "rss_mb": rss, "path": len(path)}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spans", type=int, default=1_000_000)
    p.add_argument("--render-spans", type=int, default=100_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tree-") as tmp:
        t = Path(tmp)
        setup = _child(SETUP, str(t / "big.jsonl.gz"), str(t / "big.db"), str(args.spans))
        print(f"setup: {setup['records']:,} spans in one trace, ingested in {setup['ingest_s']:.1f}s (not timed)")
        ours = _child(OURS, str(t / "big.db"))
        print(f"ours:     {ours['seconds']:.2f}s (load {ours['load_s']:.2f}s), peak RSS {ours['rss_mb']:.0f} MB, "
              f"path {ours['path']} spans, bottleneck {ours['bottleneck']['name']} "
              f"({ours['bottleneck']['critical_ns'] / 1e6:.1f} ms), {ours['stacking']} stacking findings")
        nx = _child(NX, str(t / "big.db"))
        print(f"networkx: {nx['seconds']:.2f}s (graph + dag_longest_path, load not counted), peak RSS "
              f"{nx['rss_mb']:.0f} MB, path {nx['path']} spans (summed nested durations: a different answer)")
        _child(SETUP, str(t / "r.jsonl.gz"), str(t / "r.db"), str(args.render_spans))
        start = time.perf_counter()
        r = subprocess.run([PY, "-m", "agent_debug.cli.main", "tree", "--db", str(t / "r.db"), "--depth", "3"],
                           capture_output=True, text=True, check=False)
        render = time.perf_counter() - start
        print(f"render:   agent-debug tree --depth 3 of {args.render_spans:,} spans: {render:.2f}s wall "
              f"(exit {r.returncode}, {len(r.stdout.splitlines())} lines)")
    ok = ours["seconds"] <= 5.0 and ours["rss_mb"] <= 1536 and r.returncode == 0
    print(f"targets: <= 5 s {'PASS' if ours['seconds'] <= 5 else 'FAIL'}; <= 1.5 GB "
          f"{'PASS' if ours['rss_mb'] <= 1536 else 'FAIL'}; ratio networkx/ours {nx['seconds'] / ours['seconds']:.1f}x")
    print(f"tree_s={ours['seconds']:.2f} tree_rss_mb={ours['rss_mb']:.0f} networkx_s={nx['seconds']:.2f} "
          f"render100k_s={render:.2f} {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
