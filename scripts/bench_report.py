"""Size and build time of `agent-debug report` for a 100k-span run, and how the page copes with it in Chromium.

What is measured:
  setup     one synthetic failed trace of N spans (`scripts/synth.py`: demo-like agents, nested parallel fan-out,
            ~450-byte records), gzipped JSONL, ingested into a fresh store. Not timed.
  report    `agent-debug report TRACE --db STORE -o FILE` as a user runs it (wall time, interpreter start
            included), best of --repeat; and the same from the file (`--from`, which parses every record).
  baseline  `agent-debug critical-path TRACE --db STORE --json` + `agent-debug why TRACE --db STORE --json`, run
            interleaved with the report: the analyses the report embeds, without the page. The ratio says what
            the page costs on top of them.
  parts     in-process: load with records, then the document's parts (tree + critical path + why, detail
            blocks), the HTML; the file's bytes split into detail blocks and the rest.
  browser   with Chromium and playwright installed: time until the first waterfall row is in the DOM, expanding
            every subtree, scrolling to the last row and opening its details (inflated from a block).
The file target: under 30 MB at 100k spans.

The last line is always

    report_mb=X build_s=Y from_file_s=Z baseline_s=B ratio=Y/B open_s=O target<30MB PASS|FAIL

Run:  .venv/bin/python scripts/bench_report.py [--spans N] [--repeat N] [--no-browser]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TARGET_MB = 30.0
CLI = [sys.executable, "-m", "agent_debug.cli.main"]


def setup(d: Path, spans: int) -> tuple[Path, Path, str]:
    import synth
    from agent_debug.store.ingest import ingest

    src = d / "big.jsonl.gz"
    records = list(synth.trace_records(spans, 11, fail=True))
    with gzip.open(src, "wb", compresslevel=1) as fh:
        fh.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
    db = d / "store.db"
    ingest([src], db)
    return src, db, records[0]["trace_id"]


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(CLI + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {r.stderr.strip()}")
    return time.perf_counter() - t0


def parts(db: Path, tid: str, out: Path) -> dict[str, Any]:
    from agent_debug.analysis.buckets import load_rules
    from agent_debug.analysis.source import StoreSource
    from agent_debug.report.document import build_run
    from agent_debug.report.page import page_html

    src = StoreSource(db)
    t0 = time.perf_counter()
    ts = src.load(tid, records=True)
    summary = src.summary(tid)
    t1 = time.perf_counter()
    run = build_run(ts, summary, load_rules())
    t2 = time.perf_counter()
    html = page_html({"runs": [], "data": {tid: run}, "selected": tid})
    t3 = time.perf_counter()
    blocks = sum(len(b) for b in run["details"]["blocks"])
    return {"load_s": t1 - t0, "document_s": t2 - t1, "html_s": t3 - t2, "html_mb": len(html) / 1e6,
            "blocks_mb": blocks / 1e6, "rest_mb": (len(html) - blocks) / 1e6, "blocks": len(run["details"]["blocks"])}


def browser(path: Path) -> dict[str, float] | None:
    chromium = os.environ.get("AGENT_DEBUG_CHROMIUM") or shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not chromium:
        return None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                              "--disable-background-networking", "--no-first-run"])
        page = b.new_page(viewport={"width": 1600, "height": 1000})
        t0 = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_selector(".wf-row[data-span-id]")
        opened = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.click("#ad-expand")
        page.wait_for_function("() => AgentDebugReport.state().rows > 1000")
        expand = time.perf_counter() - t0
        rows = page.evaluate("AgentDebugReport.state().rows")
        t0 = time.perf_counter()
        page.evaluate("document.getElementById('ad-wf-scroll').scrollTop = 1e9")
        page.wait_for_selector(f".wf-row[data-row='{rows - 1}']")
        scroll = time.perf_counter() - t0
        last = page.get_attribute(f".wf-row[data-row='{rows - 1}']", "data-span-id")
        t0 = time.perf_counter()
        if last:
            page.click(f".wf-row[data-span-id='{last}'] .wf-name")
            page.wait_for_selector(f"#ad-details[data-span-id='{last}'][data-loaded='true']")
        detail = time.perf_counter() - t0
        b.close()
    return {"open_s": opened, "expand_s": expand, "rows": rows, "scroll_s": scroll, "detail_s": detail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spans", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        d = Path(tmp)
        src, db, tid = setup(d, args.spans)
        out = d / "report.html"
        print(f"setup: {args.spans} spans, {src.stat().st_size / 1e6:.1f} MB gzipped JSONL, trace {tid[:12]}")
        build, baseline = [], []
        for k in range(args.repeat):  # interleaved: A B, B A, ...
            pair = [lambda: build.append(timed(["report", tid, "--db", str(db), "-o", str(out)])),
                    lambda: baseline.append(timed(["critical-path", tid, "--db", str(db), "--json"])
                                            + timed(["why", tid, "--db", str(db), "--json"]))]
            for f in pair if k % 2 == 0 else reversed(pair):
                f()
        from_file = timed(["report", "--from", str(src), "-o", str(d / "from-file.html")])
        size_mb = out.stat().st_size / 1e6
        print(f"report --db: {' '.join(f'{s:.2f}' for s in build)} s; critical-path + why --json: "
              f"{' '.join(f'{s:.2f}' for s in baseline)} s; report --from the file: {from_file:.2f} s")
        p = parts(db, tid, out)
        print(f"in process: load with records {p['load_s']:.2f} s, document {p['document_s']:.2f} s, html "
              f"{p['html_s']:.2f} s; file {size_mb:.1f} MB = detail blocks {p['blocks_mb']:.1f} MB "
              f"({p['blocks']} blocks, gzip+base64) + columns and analyses {p['rest_mb']:.1f} MB")
        b = None if args.no_browser else browser(out)
        if b is None:
            print("browser: skipped (no chromium or playwright, or --no-browser)")
        else:
            print(f"browser: first row {b['open_s']:.2f} s after navigation, expand all ({b['rows']} rows) "
                  f"{b['expand_s']:.2f} s, scroll to the last row {b['scroll_s']:.2f} s, its details "
                  f"{b['detail_s']:.2f} s")
        best, base = min(build), min(baseline)
        ok = size_mb < TARGET_MB
        print(f"report_mb={size_mb:.1f} build_s={best:.2f} from_file_s={from_file:.2f} baseline_s={base:.2f} "
              f"ratio={best / base:.2f} open_s={b['open_s'] if b else float('nan'):.2f} "
              f"target<{TARGET_MB:.0f}MB {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
