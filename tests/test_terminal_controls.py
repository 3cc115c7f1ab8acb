"""Trace data never drives the reader's terminal.

Names, agents, errors and workflows are written by whoever produced the trace. Holding ESC ] 52 (sets the
clipboard), ESC ] 0 (the window title), ESC [ 2 J (clears the screen), BEL, the 8-bit CSI or a bidirectional
override, they reach the screen through every command's tables and panels, and through error lines. There the
controls are dropped (tables, panels: the layout stays) or shown as escapes (one-line errors and warnings);
rich's own styling is untouched.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from conftest import run_cli

EVIL = "step\x1b]0;PWNED\x07\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b31m\u202eevil\x7f"
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
RICH_STYLE = re.compile("\x1b\\[[0-9;]*m")


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("controls") / "t.jsonl"
    root = {"trace_id": "t1", "span_id": "a1", "parent_id": None, "agent_name": "agent" + EVIL,
            "event_type": "AGENT", "timestamp": 1.7e9, "duration_ns": 10, "name": EVIL, "format_version": 1,
            "status": "error", "error": {"type": "X" + EVIL, "message": "m" + EVIL}, "run_id": "r",
            "workflow": "wf" + EVIL, "actor": "x"}
    child = {"trace_id": "t1", "span_id": "a2", "parent_id": "a1", "agent_name": "tool" + EVIL,
             "event_type": "TOOL_CALL", "timestamp": 1.7e9, "duration_ns": 5, "name": "call" + EVIL,
             "format_version": 1, "status": "error", "error": {"type": "ToolError", "message": EVIL}}
    path.write_bytes(orjson.dumps(root) + b"\n" + orjson.dumps(child) + b"\n")
    return path


COMMANDS = [("tree", "t1"), ("why", "t1"), ("traces",), ("critical-path", "t1"), ("bucket",), ("bucket", "--suspects")]


@pytest.mark.parametrize("color", [False, True], ids=["plain", "color"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_no_control_from_the_trace_reaches_the_terminal(trace: Path, args: tuple[str, ...], color: bool) -> None:
    r = run_cli(*args, "--from", str(trace), cwd=trace.parent, env={"FORCE_COLOR": "1"} if color else {"NO_COLOR": "1"})
    assert r.returncode in (0, 1), r.stderr
    for out in (r.stdout, r.stderr):
        assert CONTROLS.search(RICH_STYLE.sub("", out)) is None, repr(out[:2000])
    assert "]0;PWNED" in r.stdout or args[0] in ("traces", "bucket")  # what is left shows as text
    if color:
        assert RICH_STYLE.search(r.stdout), "rich's own styling is kept"


def test_an_error_line_shows_the_controls_as_escapes(trace: Path) -> None:
    r = run_cli("tree", "nope\x1b[2J\x07", "--from", str(trace), cwd=trace.parent)
    assert r.returncode == 4
    assert r.stderr == "Error: no trace matches 'nope\\x1b[2J\\x07'\n"


def test_json_keeps_the_data_exactly(trace: Path) -> None:
    r = run_cli("tree", "t1", "--from", str(trace), "--json", cwd=trace.parent)
    assert r.returncode == 0 and "\x1b" not in r.stdout  # JSON escapes what is below 0x20
    names = {n["name"] for n in _walk(orjson.loads(r.stdout))}
    assert EVIL in names


def _walk(doc: object) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if isinstance(doc, dict):
        if "name" in doc and "span_id" in doc:
            out.append(doc)
        for v in doc.values():
            out.extend(_walk(v))
    elif isinstance(doc, list):
        for v in doc:
            out.extend(_walk(v))
    return out


def test_json_on_a_terminal_escapes_what_orjson_leaves_raw() -> None:
    from agent_debug.cli.common import json_inert

    doc = {"name": EVIL + "\u2066x\u2069 caf\u00e9 \u2013 \u2026", "n": 1}
    raw = orjson.dumps(doc)
    inert = json_inert(raw)
    assert orjson.loads(inert) == doc  # the same document
    assert CONTROLS.search(inert.decode()) is None
    assert "café – …".encode() in inert  # other non-ASCII text stays as it was
    assert json_inert(b'{"plain": "text"}') == b'{"plain": "text"}'


def test_json_on_a_terminal_is_inert(trace: Path) -> None:
    """`--json` printed to a terminal (a pty here): no control from the trace is written raw."""
    import os
    import pty
    import subprocess
    import sys

    main, secondary = pty.openpty()
    env = dict(os.environ, COLUMNS="200")
    env.pop("PYTEST_CURRENT_TEST", None)
    command = [sys.executable, "-m", "agent_debug.cli.main", "tree", "t1", "--from", str(trace), "--json"]
    proc = subprocess.Popen(command, stdout=secondary, stderr=subprocess.PIPE, cwd=trace.parent, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(main)
    out = b"".join(chunks).decode().replace("\r\n", "\n")
    assert proc.returncode == 0
    assert CONTROLS.search(out) is None, repr(out[:500])
    assert EVIL in {n["name"] for n in _walk(orjson.loads(out))}
