"""The page as one self-contained HTML file: the static shell with its styles and script inlined, and the
document embedded as JSON. Nothing is fetched at run time: it opens from disk, offline.

`page_html(None)` is the same page without a document, for a server (the live view) that hands it one with
`AgentDebugReport.render(doc)` and updates with `AgentDebugReport.applyUpdate(update)` (docs/report.md).
"""

from __future__ import annotations

import html
import os
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

DOC_ELEMENT_ID = "agent-debug-doc"
# the app's files (static/js/), concatenated in this order inside one function scope: no build step, no modules
SCRIPTS = ("base.js", "model.js", "waterfall.js", "panels.js", "flow.js", "app.js")
# the report makes no request at all: the browser itself refuses any (a server passes its own policy)
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
              "connect-src 'none'; base-uri 'none'; form-action 'none'")


def asset(name: str) -> str:
    """A static file shipped in the package (`agent_debug/report/static/`)."""
    return resources.files("agent_debug.report").joinpath("static", name).read_text(encoding="utf-8")


def app_script() -> str:
    """The page's JavaScript: static/js/ files in SCRIPTS order, in one strict-mode function scope."""
    body = "\n".join(asset(f"js/{name}") for name in SCRIPTS)
    return '(function () {\n"use strict";\n' + body + "})();\n"


def doc_json(doc: dict[str, Any]) -> bytes:
    """The document as JSON safe inside a <script> element: every '<' escaped (it occurs only in strings)."""
    return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS, default=str).replace(b"<", b"\\u003c")


def page_html(doc: dict[str, Any] | None, *, extra_head: str = "", csp: str | None = REPORT_CSP) -> bytes:
    """The HTML page; with `doc` it renders that document on load. `extra_head` goes at the end of <head> (a
    server's bootstrap script, say); `csp` is the Content-Security-Policy (None: none)."""
    shell = asset("report.html")
    title = html.escape(str(doc.get("title") or "agent-debug report")) if doc else "agent-debug"
    style = asset("report.css").replace("</style", "<\\/style")
    script = app_script().replace("</script", "<\\/script")
    head, _, tail = shell.partition("<!--AD-DOC-->")
    head = (head.replace("<!--AD-TITLE-->", title).replace("/*AD-STYLE*/", style)
            .replace("<!--AD-EXTRA-HEAD-->", extra_head)
            .replace("<!--AD-CSP-->", _csp_meta(csp)))
    tail = tail.replace("/*AD-SCRIPT*/", script)
    body = b""
    if doc is not None:
        body = (f'<script type="application/json" id="{DOC_ELEMENT_ID}">'.encode() + doc_json(doc) + b"</script>")
    return head.encode("utf-8") + body + tail.encode("utf-8")


def _csp_meta(csp: str | None) -> str:
    if not csp:
        return ""
    content = html.escape(csp, quote=False).replace('"', "&quot;")
    return f'<meta http-equiv="Content-Security-Policy" content="{content}">'


def write_page(doc: dict[str, Any], path: str | os.PathLike[str]) -> int:
    """Write the report file (atomically: a reader never sees half a page); its size in bytes."""
    data = page_html(doc)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    target.parent.mkdir(parents=True, exist_ok=True)  # like every other output: missing folders are created
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return len(data)
