"""`agent-debug report` without a browser: the embedded document against the other commands' `--json`, the
message-flow graph against the records, the compressed detail blocks, the CLI's exit codes and `--json`.
What the page shows in a real browser: test_report_browser.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.analysis.buckets import load_rules
from agent_debug.analysis.source import FileSource
from agent_debug.columns import TraceSpans, summarize
from agent_debug.report.details import read_block
from agent_debug.report.document import build_document, build_run, preorder
from agent_debug.report.page import DOC_ELEMENT_ID, page_html
from conftest import ROOT, rec, run_cli, write_jsonl

FIXTURE = ROOT / "fixtures" / "benchmark_trace.jsonl"
MS = 1_000_000


def records_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def embedded_doc(html: bytes) -> dict[str, Any]:
    """The JSON document a report file carries, read back the way the page does (the <script> element's text)."""
    m = re.search(rb'<script type="application/json" id="' + DOC_ELEMENT_ID.encode() + rb'">(.*?)</script>', html, re.S)
    assert m is not None
    return dict(orjson.loads(m.group(1)))


def expected_edges(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Agent interactions computed straight from the records: a span whose causal parent belongs to another agent,
    and a SEND addressed to another agent."""
    by_id = {r["span_id"]: r for r in records}
    out = set()
    for r in records:
        parent = by_id.get(r.get("parent_id"))
        if parent is not None and parent["agent_name"] != r["agent_name"]:
            out.add((parent["agent_name"], r["agent_name"]))
        to = (r.get("attributes") or {}).get("message.to")
        if r["event_type"] == "SEND" and to and to != r["agent_name"]:
            out.add((r["agent_name"], to))
    return out


def expected_self_ns(records: list[dict[str, Any]]) -> dict[str, int]:
    """Each span's own time, computed here from the records: its duration minus the union of its children's
    intervals (clipped to it). A SEND span lasts until the work it caused is done (its children's ends)."""
    start = {r["span_id"]: round(r["timestamp"] * 1e6) * 1000 for r in records}
    kids: dict[str | None, list[dict[str, Any]]] = {}
    for r in records:
        kids.setdefault(r["parent_id"], []).append(r)

    def end(r: dict[str, Any]) -> int:
        own = start[r["span_id"]] + r["duration_ns"]
        if r["event_type"] != "SEND":
            return own
        return max([own, *(end(c) for c in kids.get(r["span_id"], []))])

    out = {}
    for r in records:
        lo, hi = start[r["span_id"]], end(r)
        covered, run_lo, run_hi = 0, 0, None
        for a, b in sorted((max(lo, start[c["span_id"]]), min(hi, end(c))) for c in kids.get(r["span_id"], [])):
            if b <= a:
                continue
            if run_hi is None or a > run_hi:
                covered += 0 if run_hi is None else run_hi - run_lo
                run_lo, run_hi = a, b
            else:
                run_hi = max(run_hi, b)
        covered += 0 if run_hi is None else run_hi - run_lo
        out[r["span_id"]] = hi - lo - covered
    return out


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("report") / "bench.html"
    r = run_cli("report", "--from", str(FIXTURE), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return out, orjson.loads(r.stdout)


def test_the_document_holds_what_critical_path_and_why_print(bench_report: tuple[Path, dict[str, Any]]) -> None:
    path, _ = bench_report
    doc = embedded_doc(path.read_bytes())
    (tid,) = doc["data"]
    run = doc["data"][tid]
    crit = orjson.loads(run_cli("critical-path", "--from", str(FIXTURE), "--json").stdout)
    why = orjson.loads(run_cli("why", "--from", str(FIXTURE), "--json").stdout)
    crit.pop("notices", None), why.pop("notices")  # the source's notices are the document's, not each run's
    assert run["critical"] == crit
    assert run["why"] == why
    assert run["state"] == "DONE" and doc["runs"][0]["state"] == "DONE"
    assert run["status"] == why["status"] == "passed"


def test_every_span_once_in_tree_order_with_its_parent_before_it(bench_report: tuple[Path, dict[str, Any]]) -> None:
    path, _ = bench_report
    run = next(iter(embedded_doc(path.read_bytes())["data"].values()))
    records = records_of(FIXTURE)
    spans = run["spans"]
    assert sorted(spans["id"]) == sorted(r["span_id"] for r in records)
    by_id = {r["span_id"]: r for r in records}
    base = min(round(r["timestamp"] * 1e6) * 1000 for r in records)
    for k, sid in enumerate(spans["id"]):
        r = by_id[sid]
        p = spans["parent"][k]
        assert (spans["id"][p] if p >= 0 else None) == r["parent_id"]
        assert p < k  # pre-order: a parent comes before its children
        assert run["dict"]["agent"][spans["agent"][k]] == r["agent_name"]
        assert run["dict"]["type"][spans["type"][k]] == r["event_type"]
        assert spans["dur"][k] == r["duration_ns"]
        assert spans["start"][k] == round(r["timestamp"] * 1e6) * 1000 - base


def test_detail_blocks_give_back_each_record(bench_report: tuple[Path, dict[str, Any]]) -> None:
    path, _ = bench_report
    run = next(iter(embedded_doc(path.read_bytes())["data"].values()))
    by_id = {r["span_id"]: r for r in records_of(FIXTURE)}
    details = run["details"]
    assert details["encoding"] == "gzip+base64+json"
    decoded = [d for k in range(len(details["blocks"])) for d in read_block(details, k)]
    assert len(decoded) == len(run["spans"]["id"])
    self_ns = expected_self_ns(list(by_id.values()))
    for sid, d in zip(run["spans"]["id"], decoded, strict=True):
        r = by_id[sid]
        assert d.get("attributes") == r.get("attributes")
        assert d.get("payload") == r.get("payload")
        assert d["self_ns"] == self_ns[sid], by_id[sid]["name"]
    root = decoded[0]
    assert root["other"]["workflow"] == "repo-fix-agent"  # envelope fields are kept beside the columns


def test_flow_edges_are_exactly_the_agent_interactions_in_the_records(bench_report: tuple[Path, dict[str, Any]]
                                                                       ) -> None:
    path, summary = bench_report
    run = next(iter(embedded_doc(path.read_bytes())["data"].values()))
    edges = {(e["from"], e["to"]) for e in run["flow"]["edges"]}
    assert edges == expected_edges(records_of(FIXTURE))
    assert summary["runs"][0]["flow_edges"] == [f"{a}->{b}" for a, b in sorted(edges)]
    bottleneck = [n["agent"] for n in run["flow"]["nodes"] if n["bottleneck"]]
    assert bottleneck == [run["critical"]["bottleneck"]["agent_name"]]


def test_flow_counts_messages_and_calls_with_their_latency() -> None:
    records = [
        rec("root", agent="lead", duration_ms=100),
        rec("s1", "root", agent="lead", event_type="SEND", start=0.0, duration_ms=0.01,
            attributes={"message.to": "worker"}),
        rec("r1", "s1", agent="worker", event_type="RECEIVE", start=0.002, duration_ms=20),
        rec("s2", "root", agent="lead", event_type="SEND", start=0.030, duration_ms=0.01,
            attributes={"message.to": "worker"}),
        rec("r2", "s2", agent="worker", event_type="RECEIVE", start=0.034, duration_ms=40),
        rec("back", "r2", agent="worker", event_type="SEND", start=0.070, duration_ms=0.01,
            attributes={"message.to": "lead"}),  # a reply nobody received
        rec("tool", "root", agent="router", event_type="TOOL_CALL", start=0.080, duration_ms=10),
    ]
    ts = TraceSpans.from_records("t1", records)
    run = build_run(ts, summarize(ts), load_rules())
    edges = {(e["from"], e["to"]): e for e in run["flow"]["edges"]}
    assert set(edges) == {("lead", "worker"), ("worker", "lead"), ("lead", "router")}
    lw = edges[("lead", "worker")]
    assert (lw["messages"], lw["calls"], lw["count"]) == (2, 0, 2)  # the RECEIVEs are the same messages
    # a message lasts until the work it caused is done: 22 ms and 74 ms after the sends
    assert lw["latency_ns"] == (22 * MS + 44 * MS) // 2 and lw["max_latency_ns"] == 44 * MS
    assert lw["delivery_ns"] == (2 * MS + 4 * MS) // 2
    assert lw["first_span_id"] == "s1"
    assert (edges[("worker", "lead")]["messages"], edges[("worker", "lead")]["delivery_ns"]) == (1, None)
    lr = edges[("lead", "router")]
    assert (lr["messages"], lr["calls"], lr["latency_ns"]) == (0, 1, 10 * MS)


def test_tree_order_puts_orphans_after_roots_and_breaks_cycles() -> None:
    records = [rec("root", duration_ms=10), rec("a", "root", start=0.001), rec("lost", "gone", start=0.002),
               rec("x", "y", start=0.003), rec("y", "x", start=0.004)]
    ts = TraceSpans.from_records("t1", records)
    run = build_run(ts, summarize(ts), load_rules())
    ids = run["spans"]["id"]
    assert ids[:2] == ["root", "a"] and set(ids) == {"root", "a", "lost", "x", "y"}
    assert run["tops"]["missing"] == [{"parent_id": "gone", "spans": [ids.index("lost")]}]
    assert [c["span_ids"][0] for c in run["tops"]["cycles"]] == ["x"]
    assert any("missing parent" in n for n in run["notes"]) and any("cycle" in n for n in run["notes"])
    from agent_debug.analysis.tree import build_tree

    assert len(preorder(build_tree(ts))) == len(ts)


def test_hostile_text_cannot_close_the_embedded_script(tmp_path: Path) -> None:
    evil = "</script><script>window.pwned=1</script><!--"
    f = write_jsonl(tmp_path / "t.jsonl", [rec("root", name=evil, attributes={"x": evil}, payload={"p": evil})])
    src = FileSource([f])
    doc = build_document(src, [src.list()[0].trace_id], load_rules()).doc
    html = page_html(doc)
    assert html.count(b"</script>") == 2  # the document's and the app's own, nothing from the records
    assert b"<script>window.pwned" not in html
    assert embedded_doc(html)["data"]["t1"]["dict"]["name"] == [evil]


def test_cli_json_summary_has_a_stable_shape(bench_report: tuple[Path, dict[str, Any]]) -> None:
    path, summary = bench_report
    assert set(summary) == {"output", "bytes", "format", "version", "runs", "notices"}
    assert summary["output"] == str(path) and summary["bytes"] == path.stat().st_size
    assert summary["notices"] == [] and summary["format"] == "agent-debug-report"
    (run,) = summary["runs"]
    assert set(run) == {"trace_id", "workflow", "status", "state", "duration_ns", "span_count", "error_spans",
                        "bucket", "root_cause_span_id", "critical_path_spans", "bottleneck_agent", "flow_edges",
                        "stacking", "detail_blocks"}
    assert (run["span_count"], run["status"], run["bucket"]) == (25, "passed", None)


def test_cli_default_output_name_and_a_store_source(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    assert run_cli("ingest", str(FIXTURE), "--db", str(db)).returncode == 0
    r = run_cli("report", "--db", str(db), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (out,) = tmp_path.glob("agent-debug-report-*.html")
    tid = records_of(FIXTURE)[0]["trace_id"]
    assert out.name == f"agent-debug-report-{tid[:12]}.html"
    assert f"wrote {out.name}" in r.stdout
    doc = embedded_doc(out.read_bytes())
    assert list(doc["data"]) == [tid]


def test_cli_several_runs_newest_first_and_limit(tmp_path: Path) -> None:
    fixtures = [ROOT / "fixtures" / f for f in ("benchmark_trace.jsonl", "faulty_trace.jsonl", "healthy_trace.jsonl")]
    r = run_cli("report", *[a for f in fixtures for a in ("--from", str(f))], "--json", "-o", str(tmp_path / "a.html"))
    assert r.returncode == 0, r.stderr
    runs = orjson.loads(r.stdout)["runs"]
    assert len(runs) == 3
    starts = [min(x["timestamp"] for x in records_of(f)) for f in fixtures]
    newest_first = [records_of(f)[0]["trace_id"] for _, f in sorted(zip(starts, fixtures, strict=True), reverse=True)]
    assert [x["trace_id"] for x in runs] == newest_first
    r = run_cli("report", "--from", str(ROOT / "fixtures" / "faulty_trace.jsonl"), "--from", str(FIXTURE),
                "--limit", "1", "--json", "-o", str(tmp_path / "b.html"))
    summary = orjson.loads(r.stdout)
    assert len(summary["runs"]) == 1 and summary["notices"] == ["1 older runs left out (name them, or raise --limit)"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["report", "nope", "--from", str(FIXTURE)], 4, "Error: no trace matches 'nope'"),
    (["report", "--from", "EMPTY"], 3, "Error: no trace files found in EMPTY"),
    (["report", "--from", str(FIXTURE), "-o", "AFILE/x.html"], 8,
     "Error: cannot write AFILE/x.html: a part of the path is a file, not a folder"),
    (["report", "--from", str(FIXTURE), "--limit", "0"], 2, "--limit"),
])
def test_cli_errors_are_one_line_with_their_exit_code(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    args = [a.replace("EMPTY", str(tmp_path / "EMPTY")).replace("AFILE", str(tmp_path / "afile")) for a in args]
    message = message.replace("AFILE", str(tmp_path / "afile")).replace("EMPTY", str(tmp_path / "EMPTY"))
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.html"))


def test_the_library_imports_neither_typer_nor_rich() -> None:
    code = ("import sys\nfrom agent_debug.report.document import build_document\nfrom agent_debug.report.page import "
            "page_html\npage_html(None)\nprint([m for m in ('typer', 'rich') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_page_without_a_document_is_the_live_shell() -> None:
    html = page_html(None, csp=None, extra_head="<script>window.boot=1</script>")
    assert f'id="{DOC_ELEMENT_ID}"'.encode() not in html
    assert b"Content-Security-Policy" not in html and b"window.boot=1" in html
    strict = page_html(None)
    assert b"connect-src 'none'" in strict
