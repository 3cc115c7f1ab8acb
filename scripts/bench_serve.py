"""`agent-debug serve` under load, and the latency of a watched SDK directory.

1. Load. `agent-debug serve` runs as its own process; 4 sender processes trace runs (20 spans each, every 9th
   run failing) with the real OpenTelemetry SDK and export them with its OTLP/HTTP exporter (protobuf) through a
   BatchSpanProcessor, as fast as the server takes them, for `--seconds`. (Each sender calls `force_flush`
   every 2,048 spans: that is its back-pressure, so no span is ever dropped by the SDK's queue and "lost" means
   lost by the server.) Measured: spans stored per second over the run (after a 10 s warm-up), spans lost
   (created by the senders and not in the store at the end), and the server's resident memory every 5 s.
2. Baseline. The same kind of spans (same generator, same encoder) written as an OTLP/JSON file (one
   ExportTraceServiceRequest per line, 512 spans each, as an exporter batches them; at most 100k spans) and
   ingested with `agent-debug ingest`: its spans per second. Target: serve >= 0.5x that rate.
3. Watch latency. `serve --watch DIR` while a process with the agent-debug SDK (default settings: 100 ms flush
   interval) emits a span every 20 ms: the time from each span's end (in the agent) to its `span` event on
   `/api/events`. Target: p95 <= 200 ms.

Every figure is printed; the last line is always

    serve_ratio=R serve=X spans/s file=Y spans/s lost=N rss_growth=G% watch_p95=Pms  PASS|FAIL

Run:  .venv/bin/python scripts/bench_serve.py [--seconds 300] [--senders 4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PER_RUN = 20
FLUSH_EVERY = 2048
FILE_SPANS_MAX = 100_000
TARGET_RATIO = 0.5
TARGET_P95_MS = 200.0


# -- the sender (a separate process) ---------------------------------------------------------------------------


def _provider(exporter: Any, service: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=8192, max_export_batch_size=512,
                                                   schedule_delay_millis=200))
    return provider


def _runs(tracer: Any, deadline: float | None, max_spans: int | None, provider: Any) -> int:
    """Trace runs until the deadline (or max_spans); returns the spans created."""
    from opentelemetry.trace import Status, StatusCode

    n = run = 0
    while (deadline is None or time.monotonic() < deadline) and (max_spans is None or n < max_spans):
        bad = run % 9 == 0
        with tracer.start_as_current_span("invoke_agent planner", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner", "run.index": run}) as root:
            for i in range(PER_RUN - 1):
                kind = "execute_tool" if i % 3 == 2 else "chat"
                attrs: dict[str, Any] = {"gen_ai.operation.name": kind}
                if kind == "chat":
                    attrs.update({"gen_ai.request.model": "model-a", "gen_ai.usage.input_tokens": 100 + i,
                                  "gen_ai.usage.output_tokens": 10, "input.value": "question " * 8})
                else:
                    attrs["gen_ai.tool.name"] = "search"
                with tracer.start_as_current_span(f"{kind} {i}", attributes=attrs) as span:
                    if bad and i == 17:
                        span.set_status(Status(StatusCode.ERROR, "TimeoutError: the tool did not answer"))
            if bad:
                root.set_status(Status(StatusCode.ERROR, "the run failed"))
        n += PER_RUN
        run += 1
        if n % FLUSH_EVERY < PER_RUN and not provider.force_flush(120_000):
            raise SystemExit("force_flush timed out")
    return n


def sender_main(endpoint: str, seconds: float, seed: int) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = _provider(OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=60), f"sender-{seed}")
    n = _runs(provider.get_tracer("bench"), time.monotonic() + seconds, None, provider)
    ok = provider.force_flush(120_000)
    provider.shutdown()
    print(json.dumps({"spans": n, "flushed": ok}))


class _FileExporter:
    """Writes each batch as one OTLP/JSON ExportTraceServiceRequest line (hex ids), as a collector's file
    exporter does."""

    def __init__(self, path: str) -> None:
        self.fh = open(path, "w")

    def export(self, spans: Any) -> Any:
        import base64

        from google.protobuf import json_format
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExportResult

        doc = json_format.MessageToDict(encode_spans(spans))
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in sp:
                            sp[key] = base64.b64decode(sp[key]).hex()
        self.fh.write(json.dumps(doc) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.fh.close()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def file_main(path: str, spans: int) -> None:
    provider = _provider(_FileExporter(path), "sender-file")
    n = _runs(provider.get_tracer("bench"), None, spans, provider)
    provider.shutdown()
    print(json.dumps({"spans": n}))


def watch_writer_main(directory: str, spans: int, out: str) -> None:
    import agent_debug as ad

    ad.configure(directory)  # default settings
    ends: dict[str, float] = {}
    with ad.run(workflow="latency", actor="bench"):
        for i in range(spans):
            with ad.span(f"step {i}", agent="worker", event_type="TOOL_CALL") as s:
                pass
            ends[s.span_id] = time.time()
            time.sleep(0.02)
    ad.shutdown()
    Path(out).write_text(json.dumps(ends))


# -- the harness -----------------------------------------------------------------------------------------------


class Serve:
    def __init__(self, db: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "agent_debug.cli.main", "serve", "--db", str(db),
                                      "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        assert self.proc.stdout is not None
        self.url = ""
        while not self.url:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"serve did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]

    def health(self) -> dict[str, Any]:
        for attempt in range(5):  # a loaded machine may answer slowly: try again rather than lose the run
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=60) as r:
                    return json.loads(r.read())  # type: ignore[no-any-return]
            except OSError:
                if attempt == 4:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")

    def rss_mb(self) -> float:
        """Resident memory of the server and its children (the analysis worker process)."""
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        total = 0.0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and its children so far."""
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def load(seconds: float, senders: int, tmp: Path) -> dict[str, Any]:
    db = tmp / "load.db"
    srv = Serve(db, "--idle", "5")
    procs = [subprocess.Popen([sys.executable, __file__, "--sender", srv.url, str(seconds), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(senders)]
    t0 = time.monotonic()
    samples: list[tuple[float, int, float]] = []  # (seconds since start, stored, rss MB)
    while any(p.poll() is None for p in procs):
        time.sleep(5)
        h = srv.health()
        samples.append((time.monotonic() - t0, h["records_stored"], srv.rss_mb()))
        print(f"  t={samples[-1][0]:6.1f}s stored={samples[-1][1]:9d} rss={samples[-1][2]:7.1f} MB "
              f"sessions={h['sessions']}", flush=True)
    created = 0
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a sender failed: {err[-2000:]}")
        got = json.loads(out.strip().splitlines()[-1])
        created += got["spans"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and srv.health()["records_stored"] < created:
        time.sleep(0.5)
    h = srv.health()
    server_cpu = srv.cpu_seconds()
    import resource

    senders_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv.stop()
    import sqlite3

    con = sqlite3.connect(db)
    in_store = con.execute("SELECT COALESCE(SUM(n), 0) FROM chunks").fetchone()[0]
    con.close()
    warm = [s for s in samples if s[0] >= 10] or samples
    first, last = warm[0], samples[-1]
    rate = (last[1] - first[1]) / max(1e-9, last[0] - first[0])
    rss_warm = [s[2] for s in warm]
    return {"created": created, "stored": in_store, "lost": created - in_store, "rate": rate,
            "rss_first_mb": rss_warm[0], "rss_max_mb": max(rss_warm), "rss_last_mb": rss_warm[-1],
            "rss_growth_pct": 100.0 * (rss_warm[-1] - rss_warm[0]) / max(1e-9, rss_warm[0]),
            "duplicates": h["duplicates"], "conflicts": h["conflicts"], "rejected": h["spans_rejected"],
            "sessions": h["sessions"], "server_cpu_us_per_span": 1e6 * server_cpu / max(1, in_store),
            "senders_cpu_us_per_span": 1e6 * (senders_cpu.ru_utime + senders_cpu.ru_stime) / max(1, in_store),
            "wall": samples[-1][0] if samples else 0.0}


def file_baseline(spans: int, tmp: Path) -> dict[str, Any]:
    path = tmp / "spans.otlp.jsonl"
    out = subprocess.run([sys.executable, __file__, "--file", str(path), str(spans)], capture_output=True,
                         text=True, check=True)
    n = json.loads(out.stdout.strip().splitlines()[-1])["spans"]
    best = None
    cpu = None
    for i in range(2):
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run([sys.executable, "-m", "agent_debug.cli.main", "ingest", str(path), "--db",
                              str(tmp / f"file{i}.db"), "--json"], capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        cpu = used if cpu is None else min(cpu, used)
        doc = json.loads(res.stdout)
        if doc["records"] != n:
            raise SystemExit(f"file ingest kept {doc['records']} of {n} spans: {res.stderr[-2000:]}")
        best = doc["seconds"] if best is None else min(best, doc["seconds"])
    assert best is not None
    return {"spans": n, "seconds": best, "rate": n / best, "mb": path.stat().st_size / 1e6,
            "cpu_us_per_span": 1e6 * (cpu or 0.0) / n}


def watch_latency(tmp: Path, spans: int = 200) -> dict[str, Any]:
    logs = tmp / "logs"
    logs.mkdir()
    srv = Serve(tmp / "watch.db", "--watch", str(logs), "--idle", "5")
    arrivals: dict[str, float] = {}
    resp = urllib.request.urlopen(srv.url + "/api/events", timeout=120)

    def read() -> None:
        kind = None
        for raw in resp:
            line = raw.rstrip(b"\n")
            if line.startswith(b"event: "):
                kind = line[7:]
            elif line.startswith(b"data: ") and kind == b"span":
                arrivals.setdefault(json.loads(line[6:])["span_id"], time.time())

    threading.Thread(target=read, daemon=True).start()
    ends_file = tmp / "ends.json"
    subprocess.run([sys.executable, __file__, "--watch-writer", str(logs), str(spans), str(ends_file)], check=True)
    time.sleep(1.0)
    srv.stop()
    ends = json.loads(ends_file.read_text())
    lat = sorted((arrivals[sid] - t) * 1000 for sid, t in ends.items() if sid in arrivals)
    missing = len(ends) - len(lat)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("inf")

    return {"spans": len(ends), "missing": missing, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "max_ms": lat[-1]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        return sender_main(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    if len(sys.argv) > 1 and sys.argv[1] == "--file":
        return file_main(sys.argv[2], int(sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] == "--watch-writer":
        return watch_writer_main(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the senders send (the target: 300)")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--watch-spans", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as d:
        tmp = Path(d)
        print(f"load: {args.senders} OTel SDK processes -> serve, {args.seconds:.0f} s", flush=True)
        ld = load(args.seconds, args.senders, tmp)
        print(f"serve: {ld['stored']} of {ld['created']} spans stored ({ld['lost']} lost), {ld['rate']:.0f} spans/s "
              f"sustained; duplicates {ld['duplicates']}, conflicts {ld['conflicts']}, rejected {ld['rejected']}; "
              f"sessions {ld['sessions']}")
        print(f"cpu per span: server {ld['server_cpu_us_per_span']:.0f} us (with its analysis worker), the 4 "
              f"senders {ld['senders_cpu_us_per_span']:.0f} us; wall {ld['wall']:.0f} s on {os.cpu_count()} cores")
        print(f"serve memory, server + analysis worker (after warm-up): first {ld['rss_first_mb']:.1f} MB, max {ld['rss_max_mb']:.1f} MB, "
              f"last {ld['rss_last_mb']:.1f} MB ({ld['rss_growth_pct']:+.1f}%)")
        fb = file_baseline(min(FILE_SPANS_MAX, max(PER_RUN * 100, ld["stored"])), tmp)
        print(f"file: agent-debug ingest of {fb['spans']} spans of OTLP/JSON ({fb['mb']:.1f} MB): "
              f"{fb['seconds']:.2f} s, {fb['rate']:.0f} spans/s (best of 2); cpu {fb['cpu_us_per_span']:.0f} us per span "
              "(the whole process)")
        wl = watch_latency(tmp, args.watch_spans)
        print(f"watch: {wl['spans']} SDK spans, {wl['missing']} not announced; span end -> `span` event "
              f"p50 {wl['p50_ms']:.0f} ms, p95 {wl['p95_ms']:.0f} ms, max {wl['max_ms']:.0f} ms")
    ratio = ld["rate"] / fb["rate"]
    ok = (ratio >= TARGET_RATIO and ld["lost"] == 0 and wl["missing"] == 0 and wl["p95_ms"] <= TARGET_P95_MS
          and ld["rss_growth_pct"] <= 20.0)
    print(f"serve_ratio={ratio:.2f} serve={ld['rate']:.0f} spans/s file={fb['rate']:.0f} spans/s lost={ld['lost']} "
          f"rss_growth={ld['rss_growth_pct']:+.1f}% watch_p95={wl['p95_ms']:.0f}ms  "
          f"targets: ratio>={TARGET_RATIO} lost=0 rss_growth<=20% watch_p95<={TARGET_P95_MS:.0f}ms  "
          f"{'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
