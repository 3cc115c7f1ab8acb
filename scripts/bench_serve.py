"""`agent-debug serve` under load against ingesting the same spans from an OTLP/JSON file, on this machine, in one run.

The same spans for both paths. First (not timed), 4 processes each trace runs (20 spans each, every 9th run
failing) with the real OpenTelemetry SDK and a BatchSpanProcessor (max_export_batch_size 512), exported by an
exporter that keeps what the OTLP/HTTP exporter would send: its own encoder's protobuf bodies
(`encode_spans(...).SerializePartialToString()`). Then:

1. file: those requests as OTLP/JSON lines (one ExportTraceServiceRequest per line, hex ids, as a collector's
   file exporter writes them), ingested by `agent-debug ingest`: spans per second (best of 2), CPU per span.
2. serve: `agent-debug serve` as its own process; the 4 processes send their bodies at once through the OTLP/HTTP
   exporter's own HTTP client (its retries; one request in flight per process, as a BatchSpanProcessor's single
   export thread has): spans per second from the first request to the last span stored, and CPU per span of the
   server (with its analysis worker). The ratio serve/file is the target (>= 0.5).
3. sustained: the same, looping over the bodies for `--seconds` (each pass under new trace ids, so nothing is a
   repeat): spans stored per second (after a 10 s warm-up), spans lost (sent and acknowledged, not in the store),
   and the server's resident memory every 5 s (flat: growth <= 20% after the warm-up). The target run is 300 s.
4. live, for what end to end looks like on this machine: 4 processes that create their spans with the OTel SDK
   while exporting them (BatchSpanProcessor, schedule delay 200 ms, `force_flush` every 2,048 spans as back-
   pressure) for `--live-seconds`: spans per second, and the CPU per span of the senders and of the server. With
   2 cores shared by senders and server this is bounded by the senders' own cost, which is why 2 and 3 replay
   recorded requests: they measure the server, as the file path measures ingest without the writer.
5. watch: `serve --watch DIR` while the agent-debug SDK (default settings) emits a span every 20 ms: the time from
   each span's end to its `span` event on `/api/events`; target p95 <= 200 ms.

Every figure is printed; the last line is always

    serve_ratio=R serve=X spans/s file=Y spans/s sustained=S spans/s lost=N rss_growth=G% live=L spans/s
    watch_p95=Pms  PASS|FAIL

Run:  .venv/bin/python scripts/bench_serve.py [--spans 100000] [--seconds 60] [--live-seconds 30]
(the machine is shared and noisy: both paths run in the same run, and the ratio is what to compare)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import struct
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
SENDERS = 4
TARGET_RATIO = 0.5
TARGET_P95_MS = 200.0
TARGET_RSS_GROWTH = 20.0
WARMUP = 10.0


# -- traced runs (in sender processes) ---------------------------------------------------------------------------


def _provider(exporter: Any, service: str, *, schedule_ms: int = 200) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=8192, max_export_batch_size=512,
                                                   schedule_delay_millis=schedule_ms))
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


class _Recorder:
    """An exporter that keeps what the OTLP/HTTP exporter would send: its encoder's protobuf bodies."""

    def __init__(self, path: str) -> None:
        self.fh = open(path, "wb")
        self.spans = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExportResult

        body = encode_spans(spans).SerializePartialToString()
        self.fh.write(struct.pack("<II", len(body), len(spans)) + body)
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.fh.close()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def record_main(path: str, spans: int, seed: int) -> None:
    t0 = time.perf_counter()
    rec = _Recorder(path)
    provider = _provider(rec, f"sender-{seed}")
    n = _runs(provider.get_tracer("bench"), None, spans, provider)
    provider.shutdown()
    print(json.dumps({"spans": n, "exported": rec.spans, "seconds": time.perf_counter() - t0}))


def _bodies(path: str) -> list[tuple[bytes, int]]:
    out = []
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        size, n = struct.unpack_from("<II", data, pos)
        out.append((data[pos + 8 : pos + 8 + size], n))
        pos += 8 + size
    return out


def _relabeled(body: bytes, loop: int) -> bytes:
    """The same request under other trace ids (the last 4 bytes xor the pass number): a new run each pass."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    msg = ExportTraceServiceRequest.FromString(body)
    tag = struct.pack(">I", loop)
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                tid = s.trace_id
                s.trace_id = tid[:12] + bytes(a ^ b for a, b in zip(tid[12:], tag, strict=True))
    return msg.SerializeToString()


def replay_main(endpoint: str, path: str, seconds: float, start_at: float) -> None:
    """Send the recorded bodies through the OTLP/HTTP exporter's own client (its retries), one request at a time;
    once, or in passes under new trace ids until `seconds` have passed. Prints what was acknowledged."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=120)
    client = exporter._client  # the exporter's HTTP client: what `export` calls with the encoded body
    bodies = _bodies(path)
    time.sleep(max(0.0, start_at - time.time()))  # the 4 senders start together
    t0 = time.monotonic()
    sent = failed = loop = 0
    while True:
        batch = bodies if loop == 0 else [(_relabeled(b, loop), n) for b, n in bodies]
        for body, n in batch:
            if client.export(body).success:
                sent += n
            else:
                failed += n
            if seconds and time.monotonic() - t0 >= seconds:
                break
        loop += 1
        if not seconds or time.monotonic() - t0 >= seconds:
            break
    exporter.shutdown()
    print(json.dumps({"sent": sent, "failed": failed, "passes": loop, "seconds": time.monotonic() - t0}))


def live_main(endpoint: str, seconds: float, seed: int) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = _provider(OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=60), f"live-{seed}")
    n = _runs(provider.get_tracer("bench"), time.monotonic() + seconds, None, provider)
    ok = provider.force_flush(120_000)
    provider.shutdown()
    print(json.dumps({"spans": n, "flushed": ok}))


def watch_writer_main(directory: str, spans: int, out: str) -> None:
    import agent_debug as ad

    ad.configure(directory)  # default settings
    ends: dict[str, float] = {}
    with ad.run(workflow="latency", actor="bench"):
        for i in range(spans):
            with ad.span(f"step {i}", agent="worker", event_type="TOOL_CALL") as s:
                pass
            ends[s.span_id] = s.timestamp + s.duration_ns / 1e9  # its end, as its record says
            time.sleep(0.02)
    ad.shutdown()
    Path(out).write_text(json.dumps(ends))


# -- the harness -------------------------------------------------------------------------------------------------


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
        self.db = db

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

    def _pids(self) -> list[int]:
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        return pids

    def rss_mb(self) -> float:
        """Resident memory of the server and its children (the analysis worker process)."""
        total = 0.0
        for pid in self._pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and its children so far."""
        total = 0.0
        for pid in self._pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
        return total

    def stored(self) -> int:
        con = sqlite3.connect(self.db)
        try:
            return int(con.execute("SELECT COALESCE(SUM(n), 0) FROM chunks").fetchone()[0])
        finally:
            con.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _run_all(cmds: list[list[str]], timeout: float = 3600) -> list[dict[str, Any]]:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"a sender failed: {stderr[-2000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def record(tmp: Path, spans: int) -> tuple[list[Path], dict[str, Any]]:
    paths = [tmp / f"sender-{i}.bin" for i in range(SENDERS)]
    t0 = time.perf_counter()
    got = _run_all([[sys.executable, __file__, "--record", str(p), str(spans // SENDERS), str(i)]
                    for i, p in enumerate(paths)])
    wall = time.perf_counter() - t0
    n = sum(g["exported"] for g in got)
    return paths, {"spans": n, "wall": wall, "rate": n / wall}


def otlp_json_file(paths: list[Path], out: Path) -> int:
    """The recorded requests as OTLP/JSON lines (hex ids), in the order the senders exported them."""
    import base64

    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    n = 0
    with open(out, "w") as fh:
        for path in paths:
            for body, count in _bodies(str(path)):
                doc = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
                for rs in doc.get("resourceSpans", []):
                    for ss in rs.get("scopeSpans", []):
                        for sp in ss.get("spans", []):
                            for key in ("traceId", "spanId", "parentSpanId"):
                                if key in sp:
                                    sp[key] = base64.b64decode(sp[key]).hex()
                fh.write(json.dumps(doc) + "\n")
                n += count
    return n


def file_baseline(path: Path, spans: int, tmp: Path, i: int) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run([sys.executable, "-m", "agent_debug.cli.main", "ingest", str(path), "--db",
                          str(tmp / f"file{i}.db"), "--json"], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    doc = json.loads(res.stdout)
    if doc["records"] != spans:
        raise SystemExit(f"file ingest kept {doc['records']} of {spans} spans: {res.stderr[-2000:]}")
    best = doc["seconds"]
    return {"spans": spans, "seconds": best, "rate": spans / best, "mb": path.stat().st_size / 1e6,
            "cpu_us_per_span": 1e6 * cpu / spans}


def replay(paths: list[Path], tmp: Path, name: str, seconds: float, expected: int | None) -> dict[str, Any]:
    srv = Serve(tmp / f"{name}.db", "--idle", "5")
    start_at = time.time() + 2.0
    cmds = [[sys.executable, __file__, "--replay", srv.url, str(p), str(seconds), str(start_at)] for p in paths]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    cpu0 = srv.cpu_seconds()
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic()
    samples: list[tuple[float, int, float]] = []  # (seconds since start, stored, rss MB)
    while any(p.poll() is None for p in procs):
        time.sleep(5 if seconds else 0.5)
        if seconds:
            h = srv.health()
            samples.append((time.monotonic() - t0, h["records_stored"], srv.rss_mb()))
            print(f"  t={samples[-1][0]:6.1f}s stored={samples[-1][1]:9d} rss={samples[-1][2]:7.1f} MB "
                  f"sessions={h['sessions']}", flush=True)
    sent = failed = 0
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a sender failed: {err[-2000:]}")
        got = json.loads(out.strip().splitlines()[-1])
        sent += got["sent"]
        failed += got["failed"]
    target = expected if expected is not None else sent
    while srv.health()["records_stored"] < target and time.monotonic() - t0 < 3600:
        time.sleep(0.05)
    done = time.monotonic() - t0
    cpu = srv.cpu_seconds() - cpu0
    h = srv.health()
    sessions = _wait_done(srv)
    srv.stop()
    stored = srv.stored()
    out: dict[str, Any] = {"sent": sent, "failed": failed, "stored": stored, "lost": sent - stored,
                           "seconds": done, "rate": stored / done, "cpu_us_per_span": 1e6 * cpu / max(1, stored),
                           "duplicates": h["duplicates"], "conflicts": h["conflicts"], "rejected": h["spans_rejected"],
                           "sessions": sessions}
    if samples:
        warm = [s for s in samples if s[0] >= WARMUP] or samples
        first, last = warm[0], warm[-1]
        out["rate"] = (last[1] - first[1]) / max(1e-9, last[0] - first[0])
        rss = [s[2] for s in warm]
        out.update(rss_first_mb=rss[0], rss_max_mb=max(rss), rss_last_mb=rss[-1],
                   rss_growth_pct=100.0 * (rss[-1] - rss[0]) / max(1e-9, rss[0]))
    return out


def _wait_done(srv: Serve, timeout: float = 60.0) -> dict[str, int]:
    """Sessions by state once every run has been analyzed (or the timeout passed)."""
    end = time.monotonic() + timeout
    h = srv.health()
    while time.monotonic() < end and (h["sessions"]["recording"] or h["sessions"]["analyzing"]):
        time.sleep(0.5)
        h = srv.health()
    return h["sessions"]  # type: ignore[no-any-return]


def live(tmp: Path, seconds: float) -> dict[str, Any]:
    srv = Serve(tmp / "live.db", "--idle", "5")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = srv.cpu_seconds()
    t0 = time.monotonic()
    got = _run_all([[sys.executable, __file__, "--live", srv.url, str(seconds), str(i)] for i in range(SENDERS)])
    created = sum(g["spans"] for g in got)
    while srv.health()["records_stored"] < created and time.monotonic() - t0 < seconds + 120:
        time.sleep(0.1)
    wall = time.monotonic() - t0
    cpu = srv.cpu_seconds() - cpu0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv.stop()
    stored = srv.stored()
    senders_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"created": created, "stored": stored, "lost": created - stored, "rate": stored / wall,
            "server_cpu_us_per_span": 1e6 * cpu / max(1, stored),
            "senders_cpu_us_per_span": 1e6 * senders_cpu / max(1, stored)}


def watch_latency(tmp: Path, spans: int) -> dict[str, Any]:
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

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("inf")

    return {"spans": len(ends), "missing": len(ends) - len(lat), "p50_ms": pct(0.5), "p95_ms": pct(0.95),
            "max_ms": lat[-1] if lat else float("inf")}


def main() -> None:
    modes = {"--record": lambda a: record_main(a[0], int(a[1]), int(a[2])),
             "--replay": lambda a: replay_main(a[0], a[1], float(a[2]), float(a[3])),
             "--live": lambda a: live_main(a[0], float(a[1]), int(a[2])),
             "--watch-writer": lambda a: watch_writer_main(a[0], int(a[1]), a[2])}
    if len(sys.argv) > 1 and sys.argv[1] in modes:
        return modes[sys.argv[1]](sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=100_000, help="spans recorded (the same for file and serve)")
    ap.add_argument("--seconds", type=float, default=60.0, help="the sustained run (the target: 300)")
    ap.add_argument("--live-seconds", type=float, default=30.0)
    ap.add_argument("--watch-spans", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as d:
        tmp = Path(d)
        paths, rec = record(tmp, args.spans)
        print(f"recorded: {rec['spans']} spans from {SENDERS} OTel SDK processes (BatchSpanProcessor, the OTLP "
              f"exporter's protobuf encoder), {rec['rate']:.0f} spans/s with no server at all", flush=True)
        jsonl = tmp / "spans.otlp.jsonl"
        n = otlp_json_file(paths, jsonl)
        # the two paths take turns, twice (the machine is shared: its load changes from minute to minute); the
        # best of each is compared
        fbs, rps = [], []
        for i in range(2):
            fb = file_baseline(jsonl, n, tmp, i)
            fbs.append(fb)
            print(f"file:   agent-debug ingest of those {n} spans as OTLP/JSON ({fb['mb']:.1f} MB): "
                  f"{fb['seconds']:.2f} s, {fb['rate']:.0f} spans/s; cpu {fb['cpu_us_per_span']:.0f} us per span",
                  flush=True)
            rp = replay(paths, tmp, f"replay{i}", 0.0, rec["spans"])
            rps.append(rp)
            print(f"serve:  the same {rp['sent']} spans from {SENDERS} processes through the OTLP/HTTP exporter's "
                  f"client: {rp['stored']} stored ({rp['lost']} lost, {rp['failed']} refused) in "
                  f"{rp['seconds']:.2f} s, "
                  f"{rp['rate']:.0f} spans/s; server cpu {rp['cpu_us_per_span']:.0f} us per span (with its analysis "
                  f"worker); duplicates {rp['duplicates']}, conflicts {rp['conflicts']}; sessions {rp['sessions']}",
                  flush=True)
        fb = max(fbs, key=lambda f: f["rate"])
        rp = max(rps, key=lambda r: r["rate"])
        print(f"best of 2: file {fb['rate']:.0f} spans/s, serve {rp['rate']:.0f} spans/s; cpu per span: file "
              f"{min(f['cpu_us_per_span'] for f in fbs):.0f} us, serve {min(r['cpu_us_per_span'] for r in rps):.0f} us",
              flush=True)
        print(f"sustained: {SENDERS} processes looping over their requests for {args.seconds:.0f} s", flush=True)
        su = replay(paths, tmp, "sustained", args.seconds, None)
        print(f"sustained: {su['stored']} of {su['sent']} acknowledged spans stored ({su['lost']} lost), "
              f"{su['rate']:.0f} spans/s after {WARMUP:.0f} s; memory (server + analysis worker) first "
              f"{su['rss_first_mb']:.1f} MB, max {su['rss_max_mb']:.1f} MB, last {su['rss_last_mb']:.1f} MB "
              f"({su['rss_growth_pct']:+.1f}%); sessions {su['sessions']}", flush=True)
        lv = live(tmp, args.live_seconds)
        print(f"live:   {SENDERS} processes creating spans while exporting, {args.live_seconds:.0f} s: {lv['stored']} "
              f"of {lv['created']} stored ({lv['lost']} lost), {lv['rate']:.0f} spans/s; cpu per span: senders "
              f"{lv['senders_cpu_us_per_span']:.0f} us, server {lv['server_cpu_us_per_span']:.0f} us "
              f"({os.cpu_count()} cores for both)", flush=True)
        wl = watch_latency(tmp, args.watch_spans)
        print(f"watch:  {wl['spans']} SDK spans, {wl['missing']} not announced; span end -> `span` event "
              f"p50 {wl['p50_ms']:.0f} ms, p95 {wl['p95_ms']:.0f} ms, max {wl['max_ms']:.0f} ms")
    ratio = rp["rate"] / fb["rate"]
    lost = sum(r["lost"] for r in rps) + su["lost"] + lv["lost"]
    ok = (ratio >= TARGET_RATIO and lost == 0 and wl["missing"] == 0 and wl["p95_ms"] <= TARGET_P95_MS
          and su["rss_growth_pct"] <= TARGET_RSS_GROWTH)
    print(f"serve_ratio={ratio:.2f} serve={rp['rate']:.0f} spans/s file={fb['rate']:.0f} spans/s "
          f"sustained={su['rate']:.0f} spans/s lost={lost} rss_growth={su['rss_growth_pct']:+.1f}% "
          f"live={lv['rate']:.0f} spans/s watch_p95={wl['p95_ms']:.0f}ms  targets: ratio>={TARGET_RATIO} lost=0 "
          f"rss_growth<={TARGET_RSS_GROWTH:.0f}% watch_p95<={TARGET_P95_MS:.0f}ms  {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
