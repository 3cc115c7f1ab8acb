"""The live view of `serve` in a real browser (Debian's Chromium driven by Playwright, as test_report_browser.py):
the real server in a subprocess, a span written by the SDK into a watched directory and spans sent by the
OpenTelemetry SDK's OTLP/HTTP exporter, each shown as it arrives, the run's state going to DONE with its analysis;
with `--token`, the page logs in once and works. Screenshots go to `screenshots/` (or $AGENT_DEBUG_SCREENSHOTS).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from serve_support import Server, cli_env
from test_report_browser import CHROMIUM, LAUNCH_ARGS, ROWS, shot, skip_reason

pytest.importorskip("starlette")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

SDK_WRITER = """
import json, sys, agent_debug as ad
ad.configure({logs!r})
with ad.run("live-sdk", actor="test", agent="lead") as run:
    print(json.dumps({{"trace": run.trace_id, "root": run.root.span_id}}), flush=True)
    sys.stdin.readline()
    with ad.span("look it up", agent="worker", event_type="TOOL_CALL", attributes={{"tool.query": "weather"}}) as s:
        pass
    print(json.dumps({{"span": s.span_id}}), flush=True)
    sys.stdin.readline()
    with ad.span("answer", agent="lead", event_type="LLM_CALL") as s2:
        pass
ad.shutdown()
print(json.dumps({{"span2": s2.span_id}}), flush=True)
"""

OTLP_SENDER = """
import json
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
provider = TracerProvider(resource=Resource.create({{"service.name": "otlp-live"}}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint={endpoint!r}{headers}),
                                               schedule_delay_millis=50))
tracer = provider.get_tracer("live-test")
with tracer.start_as_current_span("invoke_agent planner", attributes={{"gen_ai.operation.name": "invoke_agent",
                                                                    "gen_ai.agent.name": "planner"}}) as root:
    with tracer.start_as_current_span("chat", attributes={{"gen_ai.operation.name": "chat",
                                                          "gen_ai.usage.input_tokens": 12}}) as chat:
        pass
    with tracer.start_as_current_span("execute_tool search", attributes={{"gen_ai.operation.name": "execute_tool",
                                                                         "gen_ai.tool.name": "search"}}) as tool:
        tool.set_status(Status(StatusCode.ERROR, "TimeoutError: the tool did not answer"))
    root.set_status(Status(StatusCode.ERROR, "the run failed"))
ctx = root.get_span_context()
ids = {{"trace": format(ctx.trace_id, "032x"), "root": format(ctx.span_id, "016x"),
        "chat": format(chat.get_span_context().span_id, "016x"),
        "tool": format(tool.get_span_context().span_id, "016x")}}
assert provider.force_flush(30_000)
provider.shutdown()
print(json.dumps(ids))
"""


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
def live_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open a server's live view in a fresh context; every script error is recorded, and a test fails on one."""
    opened: list[tuple[Any, list[str]]] = []

    def _open(url: str, *, ready: bool = True) -> Any:
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}")
                if m.type == "error" and "401" not in m.text else None)
        page.response = page.goto(url)
        if ready:
            page.wait_for_selector("#ad-live[data-conn='live']", timeout=30_000)
        opened.append((ctx, errors))
        return page

    yield _open
    for ctx, errors in opened:
        ctx.close()
        assert errors == []


def otlp_send(endpoint: str, token: str | None = None) -> dict[str, str]:
    headers = f", headers={{'Authorization': 'Bearer {token}'}}" if token else ""
    out = subprocess.run([sys.executable, "-c", OTLP_SENDER.format(endpoint=endpoint + "/v1/traces", headers=headers)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return orjson.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_live_view_shows_sdk_and_otlp_spans_as_they_arrive_and_the_run_reaching_done(
        live_page: Callable[..., Any], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with Server(tmp_path / "live.db", "--watch", str(logs), "--idle", "30") as srv:
        page = live_page(srv.url + "/")
        assert page.response.headers["content-security-policy"].startswith("default-src 'none'")
        writer = subprocess.Popen([sys.executable, "-c", SDK_WRITER.format(logs=str(logs))], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert writer.stdin is not None and writer.stdout is not None
        ids = orjson.loads(writer.stdout.readline())
        writer.stdin.write("\n")
        writer.stdin.flush()
        sid = orjson.loads(writer.stdout.readline())["span"]
        # the span written by the SDK is shown while its run is still recording (its root has not ended)
        page.wait_for_selector(f"{ROWS}[data-span-id='{sid}']", timeout=15_000)
        page.wait_for_selector(f"#ad-run-head[data-trace-id='{ids['trace']}'][data-state='RECORDING']")
        assert page.get_attribute(f"tr.run[data-trace-id='{ids['trace']}']", "data-state") == "RECORDING"
        assert "missing parent" in (page.text_content("#ad-waterfall") or "")  # the root is written when it ends
        page.click(f"{ROWS}[data-span-id='{sid}'] .wf-name")  # its details come from the server
        page.wait_for_selector(f"#ad-details[data-span-id='{sid}'][data-loaded='true'] tr[data-attr='tool.query']")
        shot(page, "live-recording.png")
        page.click("#ad-follow")  # clicking a span stopped following new runs: follow again
        writer.stdin.write("\n")
        writer.stdin.flush()
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        sid2 = orjson.loads(out.strip().splitlines()[-1])["span2"]
        page.wait_for_selector(f"{ROWS}[data-span-id='{ids['root']}']", timeout=15_000)
        page.wait_for_selector(f"{ROWS}[data-span-id='{sid2}']")
        page.wait_for_selector("#ad-run-head[data-state='DONE']", timeout=30_000)
        page.wait_for_selector(".flow-edge[data-edge='lead->worker']")  # the analysis arrived with DONE
        assert "missing parent" not in (page.text_content("#ad-waterfall") or "")
        # the page follows the next run: spans sent by the OpenTelemetry SDK's OTLP exporter
        sent = otlp_send(srv.url)
        for key in ("root", "chat", "tool"):
            page.wait_for_selector(f"{ROWS}[data-span-id='{sent[key]}']", timeout=15_000)
        page.wait_for_selector(f"#ad-run-head[data-trace-id='{sent['trace']}'][data-state='DONE']", timeout=30_000)
        page.wait_for_selector(f"{ROWS}[data-span-id='{sent['tool']}'][data-status='error']")
        page.wait_for_selector(f"#ad-diagnosis a[data-role='root_cause'][data-span-id='{sent['tool']}']")
        states = dict(page.eval_on_selector_all("tr.run", "els => els.map(e => [e.dataset.traceId, e.dataset.state])"))
        assert states == {ids["trace"]: "DONE", sent["trace"]: "DONE"}
        assert page.get_attribute(f"tr.run[data-trace-id='{sent['trace']}']", "data-status") == "error"
        shot(page, "live-done.png")
        # a run picked in the list is shown, with the analysis the server computes for it
        page.click(f"tr.run[data-trace-id='{ids['trace']}']")
        page.wait_for_selector(f"#ad-run-head[data-trace-id='{ids['trace']}'][data-state='DONE']")
        assert page.is_checked("#ad-follow") is False
        # a page opened now gets what is stored, pinned to a run with #run=
        later = live_page(srv.url + "/#run=" + sent["trace"][:12])
        later.wait_for_selector(f"#ad-run-head[data-trace-id='{sent['trace']}'][data-state='DONE']")
        assert sorted(later.eval_on_selector_all(ROWS, "els => els.map(e => e.dataset.spanId)")) == \
            sorted([sent["root"], sent["chat"], sent["tool"]])


def test_with_a_token_the_page_logs_in_once_and_then_works(live_page: Callable[..., Any], tmp_path: Path) -> None:
    token = "s3cret-live-token"
    with Server(tmp_path / "t.db", env=cli_env(AGENT_DEBUG_TOKEN=token)) as srv:
        refused = live_page(srv.url + "/", ready=False)
        assert refused.response.status == 401 and "?token=" in (refused.text_content("body") or "")
        assert live_page(srv.url + "/?token=wrong", ready=False).response.status == 401
        page = live_page(srv.url + "/?token=" + token)
        assert page.url == srv.url + "/"  # the token left the address bar
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
        sent = otlp_send(srv.url, token)
        page.wait_for_selector(f"{ROWS}[data-span-id='{sent['chat']}']", timeout=15_000)
        page.wait_for_selector(f"#ad-run-head[data-trace-id='{sent['trace']}'][data-state='DONE']", timeout=30_000)
        shot(page, "live-token.png")
        # the cookie is for reading: it does not let a page post spans
        status = page.evaluate("() => fetch('/v1/traces', {method: 'POST', headers: {'Content-Type': "
                               "'application/json'}, body: '{}'}).then(r => r.status)")
        assert status == 401
