"""The report in a real browser: Debian's Chromium driven by Playwright (`executable_path`, no browser download).

Each test opens a report file from disk (file://) and checks what a person would see through the page's DOM hooks
(docs/report.md): the critical path highlighted exactly, the message-flow edges exactly, a clicked span's
attributes, the why panel's links, no request leaving file://, a 100k-span run loading and scrolling, the live
view's update entry point. Screenshots go to `screenshots/` (or $AGENT_DEBUG_SCREENSHOTS).

Without Chromium or the playwright package every test here is skipped with the reason; `scripts/test.sh`
installs Chromium when it can and says loudly when it could not.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.analysis.buckets import load_rules
from agent_debug.analysis.source import StoreSource
from agent_debug.columns import TraceSpans, summarize
from agent_debug.report.document import build_document, build_run
from agent_debug.report.page import page_html, write_page
from conftest import ROOT, rec, run_cli, write_jsonl
from test_report import FIXTURE, expected_edges, records_of

CHROMIUM = os.environ.get("AGENT_DEBUG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("AGENT_DEBUG_SCREENSHOTS") or ROOT / "screenshots")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-dev-shm-usage", "--disable-extensions"]
ROWS = "#ad-waterfall .wf-row[data-span-id]"


def skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: the playwright package is not installed (pip install -e '.[dev]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium, or point "
                "AGENT_DEBUG_CHROMIUM at one; scripts/test.sh installs it when run as root)")
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open a file in a fresh browser context; every request and script error is recorded, and a test fails on a
    script error."""
    opened: list[tuple[Any, list[str]]] = []

    def _open(path: Path, *, width: int = 1600, height: int = 1000, wait: bool = True) -> Any:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        page = ctx.new_page()
        errors: list[str] = []
        page.requests = []
        page.errors = errors
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.goto(path.as_uri())
        if wait:
            page.wait_for_selector("#ad-run-head[data-state]", state="attached", timeout=30_000)
        opened.append((ctx, errors))
        return page

    yield _open
    for ctx, errors in opened:
        ctx.close()
        assert errors == []


def shot(page: Any, name: str, *, full_page: bool = False) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def report(tmp: Path, name: str, *args: str) -> Path:
    out = tmp / name
    r = run_cli("report", *args, "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def bench_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report(tmp_path_factory.mktemp("b"), "bench.html", "--from", str(FIXTURE))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("demo")
    r = run_cli("demo", "--dir", str(d), "--runs", "12")
    assert r.returncode == 0, r.stderr
    return d / "store.db"


def _rows(page: Any) -> list[dict[str, Any]]:
    return list(page.eval_on_selector_all(ROWS, "els => els.map(e => ({id: e.dataset.spanId, "
                                                "critical: e.dataset.critical || null, "
                                                "status: e.dataset.status || null}))"))


def test_the_critical_path_is_highlighted_exactly(open_page: Callable[..., Any], bench_html: Path) -> None:
    page = open_page(bench_html)
    crit = orjson.loads(run_cli("critical-path", "--from", str(FIXTURE), "--json").stdout)
    rows = _rows(page)
    assert sorted(r["id"] for r in rows) == sorted(r["span_id"] for r in records_of(FIXTURE))
    assert {r["id"] for r in rows if r["critical"] == "true"} == {seg["span_id"] for seg in crit["path"]}
    assert all(r["critical"] in (None, "true") for r in rows) and all(r["status"] is None for r in rows)
    assert page.get_attribute("#ad-run-head", "data-state") == "DONE"
    shot(page, "report-benchmark.png", full_page=True)


def test_a_partial_critical_path_is_highlighted_exactly(open_page: Callable[..., Any], demo_db: Path) -> None:
    """The benchmark run is sequential (every span is on its path): here runs where only some spans are."""
    out = report(demo_db.parent, "demo-crit.html", "--db", str(demo_db))
    page = open_page(out)
    partial = 0
    for tid in page.eval_on_selector_all("tr.run", "els => els.map(e => e.dataset.traceId)"):
        page.click(f"tr.run[data-trace-id='{tid}']")
        page.wait_for_selector(f"#ad-run-head[data-trace-id='{tid}']")
        crit = orjson.loads(run_cli("critical-path", tid, "--db", str(demo_db), "--json").stdout)
        rows = _rows(page)
        highlighted = {r["id"] for r in rows if r["critical"] == "true"}
        assert highlighted == {seg["span_id"] for seg in crit["path"]}
        if len(highlighted) < len(rows):
            partial += 1
            # highlighted for the eye too: a critical bar is amber, another is not
            colour = "e => getComputedStyle(e.querySelector('.wf-bar')).backgroundColor"
            amber = "rgb(245, 158, 11)"
            assert page.eval_on_selector(f"{ROWS}[data-critical='true']:not([data-status])", colour) == amber
            assert page.eval_on_selector(f"{ROWS}:not([data-critical])", colour) != amber
        if partial >= 2:
            break
    assert partial >= 2


def test_the_message_flow_has_exactly_the_agent_edges(open_page: Callable[..., Any], bench_html: Path) -> None:
    page = open_page(bench_html)
    records = records_of(FIXTURE)
    edges = set(page.eval_on_selector_all(".flow-edge", "els => els.map(e => e.dataset.edge)"))
    assert edges == {f"{a}->{b}" for a, b in expected_edges(records)}
    agents = set(page.eval_on_selector_all(".flow-node", "els => els.map(e => e.dataset.agent)"))
    assert agents == {r["agent_name"] for r in records}
    crit = orjson.loads(run_cli("critical-path", "--from", str(FIXTURE), "--json").stdout)
    bottleneck = page.eval_on_selector_all(".flow-node[data-bottleneck='true']", "els => els.map(e => e.dataset.agent)")
    assert bottleneck == [crit["bottleneck"]["agent_name"]]
    sends_to_planner = sum(1 for r in records if r["event_type"] == "SEND"
                           and (r.get("attributes") or {}).get("message.to") == "planner")
    label = page.text_content(".flow-edge[data-edge='orchestrator->planner'] text")
    assert label is not None and label.startswith(f"{sends_to_planner} msg · ")
    # clicking an edge shows the span that carried it
    page.click(".flow-edge[data-edge='orchestrator->planner'] path", force=True)
    first_send = next(r["span_id"] for r in records if r["name"] == "send:planner")
    page.wait_for_selector(f"#ad-details[data-span-id='{first_send}']")


def test_clicking_a_span_shows_its_attributes_and_payload(open_page: Callable[..., Any], bench_html: Path) -> None:
    page = open_page(bench_html)
    by_id = {r["span_id"]: r for r in records_of(FIXTURE)}
    for sid in ("448bf9ac7ec29a11", "8643374325ff7fcc"):  # a routing decision, a tool call with a payload
        page.click(f"{ROWS}[data-span-id='{sid}'] .wf-name")
        page.wait_for_selector(f"#ad-details[data-span-id='{sid}'][data-loaded='true']")
        assert page.get_attribute(f"{ROWS}.selected", "data-span-id") == sid
        shown = dict(page.eval_on_selector_all(
            "#ad-details tr[data-attr]", "els => els.map(e => [e.dataset.attr, e.querySelector('td').textContent])"))
        attrs = by_id[sid]["attributes"]
        assert shown == {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in attrs.items()}
        if "payload" in by_id[sid]:
            assert json.loads(page.text_content("#ad-details pre[data-payload]") or "") == by_id[sid]["payload"]
        details = page.text_content("#ad-details") or ""
        assert by_id[sid]["agent_name"] in details and "self time" in details and "critical time" in details
    shot(page, "report-span-details.png")


def test_zoom_to_a_span_and_back(open_page: Callable[..., Any], bench_html: Path) -> None:
    page = open_page(bench_html)
    sid = "0e1cb869d4b8422b"
    page.dblclick(f"{ROWS}[data-span-id='{sid}'] .wf-name")
    width = f"document.querySelector(\"{ROWS}[data-span-id='{sid}'] .wf-bar\").style.width"
    page.wait_for_function(f"() => parseFloat({width}) > 90")
    assert page.is_enabled("#ad-zoom-reset")
    page.click("#ad-zoom-reset")
    page.wait_for_function(f"() => parseFloat({width}) < 20")


def test_the_why_panel_links_to_the_root_cause(open_page: Callable[..., Any], demo_db: Path) -> None:
    out = report(demo_db.parent, "demo.html", "--db", str(demo_db))
    runs = orjson.loads(run_cli("traces", "--db", str(demo_db), "--json").stdout)["traces"]
    failed = [r for r in runs if r["status"] == "failed"][:1] + [r for r in runs if r["status"] == "error"][:1]
    assert len(failed) == 2
    page = open_page(out)
    states = page.eval_on_selector_all("tr.run", "els => els.map(e => e.dataset.state)")
    assert states == ["DONE"] * len(runs)
    for run in failed:
        tid = run["trace_id"]
        page.click(f"tr.run[data-trace-id='{tid}']")
        page.wait_for_selector(f"#ad-run-head[data-trace-id='{tid}'][data-state='DONE']")
        why = orjson.loads(run_cli("why", tid, "--db", str(demo_db), "--json").stdout)["diagnosis"]
        links = page.eval_on_selector_all("#ad-diagnosis a[data-span-id]",
                                          "els => els.map(e => [e.dataset.role, e.dataset.spanId])")
        chain = [sid for role, sid in links if role in ("root_cause", "hop", "visible_failure")]
        assert chain == why["chain"]
        assert [sid for role, sid in links if role == "root_cause"] == [why["root_cause"]["span_id"]]
        assert [sid for role, sid in links if role == "suspect"] == [s["span_id"] for s in why["suspects"][1:13]]
        assert page.text_content("#ad-diagnosis .badge.bucket") == why["bucket"]
        assert len([sid for role, sid in links if role == "evidence"]) == len(why["evidence"])
        # each link goes to its span in the waterfall: select another span first, then follow the root cause
        other = next(sid for sid in page.eval_on_selector_all(ROWS, "els => els.map(e => e.dataset.spanId)")
                     if sid != why["root_cause"]["span_id"])
        page.click(f"{ROWS}[data-span-id='{other}'] .wf-name")
        page.click("#ad-diagnosis a[data-role='root_cause']")
        root = why["root_cause"]["span_id"]
        page.wait_for_selector(f"#ad-details[data-span-id='{root}'][data-loaded='true']")
        assert page.get_attribute(f"{ROWS}.selected", "data-span-id") == root
        ts = StoreSource(demo_db).load(tid)
        errors = {sid for sid, st in zip(ts.span_id, ts.status, strict=True) if st == "error"}
        assert {r["id"] for r in _rows(page) if r["status"] == "error"} == errors
        shot(page, f"report-why-{run['status']}.png")


def test_a_run_not_marked_failed_shows_its_ranked_suspects(open_page: Callable[..., Any], tmp_path: Path) -> None:
    """No error status, so no diagnosis: the Why panel lists the suspects `why --json` ranks (a tool that said
    'ERROR:' with a success status, the calls after it), never "nothing to explain", and each one links to its
    span."""
    src = ROOT / "fixtures" / "foreign" / "langfuse" / "csharp-agent-with-gemini-2026-03-09.trace.json"
    why = orjson.loads(run_cli("why", "--from", str(src), "--json").stdout)
    assert why["diagnosis"] is None and not why["failed"] and len(why["suspects"]) >= 2
    page = open_page(report(tmp_path, "unmarked.html", "--from", str(src)))
    text = page.text_content("#ad-diagnosis") or ""
    assert "nothing to explain" not in text
    assert page.text_content("#ad-diagnosis [data-note]") == why["note"]
    links = page.eval_on_selector_all("#ad-diagnosis a[data-role='suspect']", "els => els.map(e => e.dataset.spanId)")
    assert links == [s["span_id"] for s in why["suspects"][:12]]
    assert why["suspects"][0]["evidence"][0] in text
    top = why["suspects"][0]["span_id"]
    page.click("#ad-diagnosis a[data-role='suspect']")
    page.wait_for_selector(f"#ad-details[data-span-id='{top}'][data-loaded='true']")
    assert page.get_attribute(f"{ROWS}.selected", "data-span-id") == top
    shot(page, "report-why-unmarked.png")


def test_no_request_leaves_the_file(open_page: Callable[..., Any], demo_db: Path) -> None:
    out = report(demo_db.parent, "offline.html", "--db", str(demo_db))
    page = open_page(out)
    for tid in page.eval_on_selector_all("tr.run", "els => els.map(e => e.dataset.traceId)")[:4]:
        page.click(f"tr.run[data-trace-id='{tid}']")
        page.click(f"{ROWS} >> nth=3")
        page.wait_for_selector("#ad-details[data-loaded='true']")
    page.click(".flow-node >> nth=1")
    assert page.requests == [out.as_uri()]
    # and the page's policy refuses any request it would try
    outcome = page.evaluate("fetch('http://127.0.0.1:9/x').then(() => 'sent', () => 'refused')")
    assert outcome == "refused"
    refusals = [e for e in page.errors if "Content Security Policy" in e]
    assert refusals and refusals[0].startswith("console: Connecting to 'http://127.0.0.1:9/x' violates")
    page.errors[:] = [e for e in page.errors if e not in refusals]


def test_hostile_text_is_shown_as_text(open_page: Callable[..., Any], tmp_path: Path) -> None:
    evil = '</script><img src="x" onerror="window.pwned=1"><script>window.pwned=1</script>'
    f = write_jsonl(tmp_path / "t.jsonl", [
        rec("root", name=evil, agent=evil, attributes={evil: evil}, payload={"p": evil}, duration_ms=10),
        rec("child", "root", agent="other", name="x'\"><b>", start=0.001, attributes={"message.to": evil}),
    ])
    out = report(tmp_path, "evil.html", "--from", str(f))
    page = open_page(out)
    page.click(f"{ROWS}[data-span-id='root'] .wf-name")
    page.wait_for_selector("#ad-details[data-span-id='root'][data-loaded='true']")
    assert page.evaluate("window.pwned") is None
    assert json.loads(page.text_content("#ad-details pre[data-payload]") or "") == {"p": evil}
    assert page.eval_on_selector_all("#ad-details tr[data-attr]", "els => els.map(e => [e.dataset.attr, "
                                     "e.querySelector('td').textContent])") == [[evil, evil]]
    assert page.eval_on_selector_all(".flow-node[data-agent='other']", "els => els.length") == 1
    assert page.requests == [out.as_uri()]


class _Memory:
    """A Source of traces held in memory (what `--from` gives, without writing and re-reading 40 MB of JSON)."""

    def __init__(self, ts: TraceSpans) -> None:
        self.ts, self.notices = ts, []

    def summary(self, trace_id: str) -> Any:
        return summarize(self.ts)

    def load(self, trace_id: str, *, records: bool | str = False) -> TraceSpans:
        return self.ts


@pytest.fixture(scope="module")
def big_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    import synth

    records = list(synth.trace_records(100_000, 5, fail=True))
    ts = TraceSpans.from_records(records[0]["trace_id"], records)
    doc = build_document(_Memory(ts), [ts.trace_id], load_rules()).doc  # type: ignore[arg-type]
    out = tmp_path_factory.mktemp("big") / "big.html"
    write_page(doc, out)
    return out


def test_a_100k_span_report_loads_and_scrolls(open_page: Callable[..., Any], big_html: Path) -> None:
    assert big_html.stat().st_size < 30_000_000
    t0 = time.monotonic()
    page = open_page(big_html, height=900)
    loaded = time.monotonic() - t0
    state = page.evaluate("AgentDebugReport.state()")
    assert state["spans"] == 100_000
    critical = page.eval_on_selector_all(f"{ROWS}[data-critical='true']", "els => els.length")
    assert critical > 0  # big runs open collapsed, the critical path's spans left open
    page.click("#ad-expand")
    page.wait_for_function("() => AgentDebugReport.state().rows > 50000")
    rows = page.evaluate("AgentDebugReport.state().rows")
    assert page.eval_on_selector_all(".wf-row", "els => els.length") < 400  # virtualized
    page.evaluate("document.getElementById('ad-wf-scroll').scrollTop = 1e9")
    page.wait_for_selector(f".wf-row[data-row='{rows - 1}']")
    last = page.get_attribute(f".wf-row[data-row='{rows - 1}']", "data-span-id") or page.get_attribute(
        f".wf-row[data-row='{rows - 2}']", "data-span-id")
    assert last
    page.click(f"{ROWS}[data-span-id='{last}'] .wf-name")
    page.wait_for_selector(f"#ad-details[data-span-id='{last}'][data-loaded='true']")  # from a late block
    assert page.eval_on_selector_all("#ad-details tr[data-attr]", "els => els.length") > 0
    page.fill("#ad-find", "tool:pytest")
    page.press("#ad-find", "Enter")
    page.wait_for_function("() => (AgentDebugReport.state().selected || '') !== " + json.dumps(last))
    shot(page, "report-100k.png")
    print(f"100k-span report: {big_html.stat().st_size / 1e6:.1f} MB, opened in {loaded:.2f} s, {rows} rows expanded")


def test_the_live_entry_point_adds_spans_and_states(open_page: Callable[..., Any], tmp_path: Path) -> None:
    shell = tmp_path / "live.html"
    shell.write_bytes(page_html(None))
    page = open_page(shell, wait=False)
    page.wait_for_function("() => window.AgentDebugReport !== undefined")
    t0 = 1_800_000_000_000_000_000

    def span(sid: str, parent: str | None, agent: str, start_ms: int, **kw: Any) -> dict[str, Any]:
        return {"span_id": sid, "parent_id": parent, "agent_name": agent, "event_type": kw.pop("event_type", "AGENT"),
                "name": sid, "status": "ok", "start_ns": t0 + start_ms * 1_000_000, "duration_ns": 5_000_000, **kw}

    apply = "u => AgentDebugReport.applyUpdate(u)"
    page.evaluate(apply, {"type": "runs", "runs": [{"trace_id": "T1", "state": "ATTACHED", "status": "unknown",
                                                     "workflow": "live", "span_count": 0, "duration_ns": 0}]})
    page.evaluate(apply, {"type": "spans", "trace_id": "T1", "spans": [
        span("child", "root", "worker", 2, detail={"attributes": {"k": "v"}}),  # before its parent arrives
    ]})
    page.wait_for_selector(f"{ROWS}[data-span-id='child']")
    assert "missing parent root" in (page.text_content("#ad-waterfall") or "")
    page.evaluate(apply, {"type": "state", "trace_id": "T1", "state": "RECORDING"})
    page.evaluate(apply, {"type": "spans", "trace_id": "T1", "spans": [span("root", None, "lead", 0)]})
    page.wait_for_selector(f"{ROWS}[data-span-id='root']")
    assert "missing parent" not in (page.text_content("#ad-waterfall") or "")
    assert page.get_attribute("tr.run[data-trace-id='T1']", "data-state") == "RECORDING"
    assert page.get_attribute("#ad-run-head", "data-state") == "RECORDING"
    assert page.eval_on_selector_all(".flow-edge", "els => els.length") == 0  # no analysis yet
    page.click(f"{ROWS}[data-span-id='child'] .wf-name")
    page.wait_for_selector("#ad-details[data-span-id='child'][data-loaded='true'] tr[data-attr='k']")
    page.evaluate(apply, {"type": "state", "trace_id": "T1", "state": "ANALYZING"})
    page.wait_for_selector("#ad-run-head[data-state='ANALYZING']")
    # the analysis arrives as the run's data, computed by the library as the report does
    records = [rec("root", agent="lead", trace_id="T1", start=0.0, duration_ms=5, attributes={"outcome.passed": True}),
               rec("child", "root", agent="worker", trace_id="T1", start=0.002, duration_ms=5)]
    for r in records:
        r["timestamp"] = t0 / 1e9 + (0.002 if r["span_id"] == "child" else 0.0)
    ts = TraceSpans.from_records("T1", records)
    page.evaluate(apply, {"type": "run", "trace_id": "T1", "run": build_run(ts, summarize(ts), load_rules())})
    page.wait_for_selector(".flow-edge[data-edge='lead->worker']")
    page.wait_for_selector("#ad-run-head[data-state='DONE'][data-status='passed']")
    assert {r["id"] for r in _rows(page) if r["critical"] == "true"} == {"root", "child"}
    assert page.get_attribute(f"{ROWS}.selected", "data-span-id") == "child"  # selection kept across updates
    assert page.get_attribute("tr.run[data-trace-id='T1']", "data-state") == "DONE"
