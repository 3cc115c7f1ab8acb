"""Every expected failure at the CLI, through the real command: one `Error:` line on stderr (after any documented
`warning:` lines), the exit code of the README's table, never a traceback. And every result says what was left
out of it: the `notices` of every `--json` document and `warning:` lines on stderr, for `--from` and stores.

The table below is the contract; its cases run in parallel (each is a subprocess) and are asserted one by one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer.main

from agent_debug.analysis.source import FileSource
from agent_debug.replay.packet import write_packet
from agent_debug.replay.skeleton import build_packet
from agent_debug.store.db import connect
from agent_debug.store.ingest import ingest
from conftest import ROOT, rec, run_cli, write_jsonl

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes anywhere: permission cases cannot fail
REJECT_NOTICE = "1 record rejected (invalid JSON: 1)"
STORE_NOTICE = "1 record was rejected at ingest (kept verbatim in "


def _records() -> list[dict[str, Any]]:
    out = []
    for tid in ("aa1", "aa2", "bb1"):
        failed = tid == "aa1"
        out.append(rec("r", trace_id=tid, duration_ms=10, session_id="s1", status="error" if failed else "ok",
                       **({"error": {"type": "ValueError", "message": "boom"}} if failed else {})))
        out += [rec(f"c{i}", "r", trace_id=tid, start=0.001 * i) for i in range(3)]
    return out


def _call(hop: int = 0, **changes: Any) -> dict[str, Any]:
    call = {"hop": hop, "kind": "llm", "agent": "agent", "name": "r", "event_type": "LLM_CALL",
            "request_hash": "h0", "request": {"q": 1}, "response": {"text": "hi"}, "span_id": "r"}
    call.update(changes)
    return call


def _packet_variants(base: dict[str, Any]) -> dict[str, Any]:
    """name -> the packet's content (a dict made from the good packet, or raw bytes)."""
    good = dict(base, calls=[_call()])

    def with_(**changes: Any) -> dict[str, Any]:
        return {**good, **changes}

    without_agent = {k: v for k, v in _call().items() if k != "agent"}
    no_verifier = {k: v for k, v in good.items() if k != "verifier"}
    bad_span = dict(good["spans"][0])
    del bad_span["span_id"]
    return {
        "ok": good,
        "nothing": dict(base, calls=[], entrypoint=None),
        "calls-string": with_(calls="abc"),
        "calls-object": with_(calls={"0": _call()}),
        "call-number": with_(calls=[7]),
        "hop-string": with_(calls=[_call(hop="0")]),  # type: ignore[arg-type]
        "hop-negative": with_(calls=[_call(hop=-1)]),
        "hop-bool": with_(calls=[_call(hop=True)]),  # type: ignore[arg-type]
        "call-no-agent": with_(calls=[without_agent]),
        "call-kind": with_(calls=[_call(kind="rpc")]),
        "call-error-string": with_(calls=[{**_call(), "error": "boom"}]),
        "workflow-number": with_(workflow=5),
        "trace-id-empty": with_(trace_id=""),
        "run-list": with_(run=[]),
        "run-status-number": with_(run={"status": 3}),
        "failure-string": with_(failure="retrieval_miss"),
        "entrypoint-number": with_(entrypoint=5),
        "entrypoint-no-colon": with_(entrypoint="os.path", input={"x": 1}),
        "spans-object": with_(spans={}),
        "span-no-id": with_(spans=[bad_span]),
        "tool-events-string": with_(tool_events="none"),
        "version-string": with_(packet_version="1"),
        "version-newer": with_(packet_version=99),
        "no-verifier": no_verifier,
        "a-list": b"[1, 2, 3]",
        "not-json": b'{"packet_version": 1, "trace_id": ',
        "empty": b"",
        "deep": b'{"packet_version": 1, "input": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        "big-int": orjson.dumps(good).replace(b'"hop":0', b'"hop":99999999999999999999999'),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of sources in every state a user meets (commands run with it as the working directory)."""
    w = tmp_path_factory.mktemp("cli-errors")
    for name in ("clean", "dirty", "empty", "junk", "dirdb.db", "pk", "somedir"):
        (w / name).mkdir()
    write_jsonl(w / "clean" / "t.jsonl", _records())
    write_jsonl(w / "dirty" / "t.jsonl", _records())
    with open(w / "dirty" / "t.jsonl", "ab") as fh:
        fh.write(b"garbage, not a record\n")
    (w / "junk" / "x.jsonl").write_bytes(b"garbage {{{\n")
    ingest([w / "clean"], w / "clean.db")
    ingest([w / "dirty"], w / "dirty.db")
    connect(w / "empty.db").close()
    _damaged_copies(w)
    (w / "notsql.db").write_text("not a database\n")
    (w / "afile").write_text("a file where a folder should be\n")
    base = build_packet(FileSource([w / "clean"]), "aa1")
    for name, content in _packet_variants(base).items():
        target = w / "pk" / f"{name}.json"
        target.write_bytes(content if isinstance(content, bytes) else orjson.dumps(content))
    with open(w / "pk" / "huge.json", "wb") as fh:  # a sparse file over the size cap: nothing is read
        fh.truncate(300 << 20)
    write_packet(dict(base, calls=[_call()]), path=w / "ok-packet.json")
    _write_inputs(w)
    return w


def _damaged_copies(w: Path) -> None:
    """`pages.db`: the store opens (schema and migrations intact) but every other page is overwritten in part, as
    a bad disk does; `chunks.db`: SQLite is fine but the chunk blobs hold garbage."""
    with connect(w / "clean.db") as db:
        keep = {1} | {r[0] for r in db.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = '_migrations'")}
    db.close()
    data = bytearray((w / "clean.db").read_bytes())
    raw = int.from_bytes(data[16:18], "big")
    page = 65536 if raw == 1 else raw
    for number in range(2, len(data) // page + 1):
        if number not in keep:
            off = (number - 1) * page
            data[off: off + 400] = b"\xff" * 400
    (w / "pages.db").write_bytes(bytes(data))
    shutil.copy(w / "clean.db", w / "chunks.db")
    shutil.copy(w / "clean.db", w / "marks.db")  # `mark` writes verdicts: into a copy of its own
    with connect(w / "chunks.db") as db:
        db.execute("UPDATE chunks SET cols = x'c1ffee', records = x'0011223344'")
    db.close()


def _write_inputs(w: Path) -> None:
    files = {
        "cases/ok.toml": '[[case]]\nname = "pinned"\ntrace_id = "aa1"\nlabel = "fail"\n',
        "cases/bad-toml.toml": "[[case]\nname = ",
        "cases/bad-field.toml": "[[case]]\nname = 3\n",
        "cases/not-array.toml": "case = 3\n",
        "rules/bad-toml.toml": "x = [",
        "rules/thresholds.toml": "thresholds = 3\n",
        "rules/op.toml": '[[rule]]\nname = "a"\nbucket = "b"\nwhen = { attr = "x", op = "bogus", value = 1 }\n',
        "rules/regex.toml": '[[rule]]\nname = "a"\nbucket = "b"\nwhen = { name = "([" }\n',
        "rules/unknown.toml": "[rules]\nx = 1\n",
        "labels.jsonl": '{"task": "t", "actual": "a", "label": "maybe"}\n',
    }
    for name, text in files.items():
        (w / name).parent.mkdir(exist_ok=True)
        (w / name).write_text(text)
    (w / "cases" / "latin1.toml").write_bytes(b"# caf\xe9\n[[case]]\nname = 'x'\n")
    (w / "cases" / "a-folder.toml").mkdir()


@dataclass(frozen=True)
class Case:
    """One expected failure: the arguments, the exit code, and what the one error line must say."""

    name: str
    args: tuple[str, ...]
    code: int
    says: str  # a regex the `Error:` line must match (searched, not anchored)
    warnings: int = 0  # documented `warning:` lines before the error
    marks: tuple[Any, ...] = field(default=())


def _packet_cases() -> list[Case]:
    fields = {
        "calls-string": r"field calls: Input should be a valid list; got a JSON string",
        "calls-object": r"field calls: .*list; got a JSON object",
        "call-number": r"field calls\.0: Input should be an object; got a JSON number",
        "hop-string": r"field calls\.0\.hop: .*integer; got a JSON string",
        "hop-negative": r"field calls\.0\.hop: .*greater than or equal to 0",
        "hop-bool": r"field calls\.0\.hop: .*integer; got a JSON boolean",
        "call-no-agent": r"field calls\.0\.agent: Field required",
        "call-kind": r"field calls\.0\.kind: .*'llm' or 'tool'",
        "call-error-string": r"field calls\.0\.error: .*; got a JSON string",
        "workflow-number": r"field workflow: .*string; got a JSON number",
        "trace-id-empty": r"field trace_id: .*at least 1 character",
        "run-list": r"field run: Input should be an object; got a JSON list",
        "run-status-number": r"field run\.status: .*string",
        "failure-string": r"field failure: Input should be an object; got a JSON string",
        "entrypoint-number": r"field entrypoint: .*string",
        "entrypoint-no-colon": r"field entrypoint: .*pattern",
        "spans-object": r"field spans: .*list; got a JSON object",
        "span-no-id": r"field spans\.0: missing field span_id",
        "tool-events-string": r"field tool_events: .*list",
        "version-string": r"packet_version '1'",
        "version-newer": r"packet_version 99; this agent-debug reads 1 to 1",
        "no-verifier": r"lacks required keys: verifier",
        "a-list": r"is not a JSON object \(it is a JSON list\)",
        "not-json": r"is not valid JSON",
        "empty": r"is not valid JSON",
        "deep": r"is not valid JSON",
        "big-int": r"field calls\.0\.hop: .*integer; got a JSON number",
        "huge": r"is 300 MiB; packets over 256 MiB are not read",
        "nothing": r"nothing to replay in packet pk/nothing\.json: it holds no recorded calls and no entrypoint",
    }
    return [Case(f"replay-{name}", ("replay", f"pk/{name}.json"), 6,
                 rf"^Error: packet pk/{name}\.json.*{says}" if name != "nothing" else f"^Error: {says}")
            for name, says in fields.items()]


def _output_cases() -> list[Case]:
    through_file = "a part of the path is a file, not a folder"
    cases = [
        Case("packet-o-through-file", ("packet", "aa1", "--db", "clean.db", "-o", "afile/p.json"), 8,
             f"^Error: cannot write afile/p.json: {through_file}$"),
        Case("packet-o-directory", ("packet", "aa1", "--db", "clean.db", "-o", "somedir"), 8,
             "^Error: cannot write somedir: Is a directory$"),
        Case("export-o-through-file", ("export", "all", "--db", "clean.db", "-o", "afile/x.jsonl"), 8,
             f"^Error: cannot write afile/x.jsonl: {through_file}$"),
        Case("eval-junit-through-file", ("eval", "cases/ok.toml", "--db", "clean.db", "--junit", "afile/j.xml"), 8,
             f"^Error: cannot write afile/j.xml: {through_file}$"),
        Case("dataset-through-file", ("dataset", "add", "aa1", "--case", "c", "--label", "fail", "--db", "clean.db",
                                      "--dataset", "afile/d.toml"), 8,
             f"^Error: cannot write afile/d.toml: {through_file}$"),
        Case("dataset-directory", ("dataset", "add", "aa1", "--case", "c", "--label", "fail", "--db", "clean.db",
                                   "--dataset", "somedir"), 8, "^Error: cannot write somedir: Is a directory$"),
    ]
    if Path("/dev/full").exists():
        cases.append(Case("export-o-disk-full", ("export", "all", "--db", "clean.db", "-o", "/dev/full"), 8,
                          "^Error: cannot write /dev/full: No space left on device$"))
    not_root = pytest.mark.skipif(ROOT_USER, reason="root may write into a read-only folder")
    for name, args in {
        "packet": ("packet", "aa1", "--db", "clean.db", "-o", "readonly/p.json"),
        "export": ("export", "all", "--db", "clean.db", "-o", "readonly/x.jsonl"),
        "eval-junit": ("eval", "cases/ok.toml", "--db", "clean.db", "--junit", "readonly/j.xml"),
        "dataset": ("dataset", "add", "aa1", "--case", "c", "--label", "fail", "--db", "clean.db",
                    "--dataset", "readonly/d.toml"),
    }.items():
        cases.append(Case(f"{name}-into-readonly-folder", args, 8,
                          r"^Error: cannot write readonly/.*: Permission denied$", marks=(not_root,)))
    return cases


CASES: list[Case] = [
    # 2: usage
    Case("unknown-option", ("tree", "--bogus"), 2,
         r"^Error: No such option: --bogus \(see `agent-debug tree --help`\)$"),
    Case("unknown-command", ("frobnicate",), 2, r"^Error: No such command 'frobnicate'"),
    Case("missing-argument", ("session",), 2,
         r"^Error: Missing argument '(?i:session_id)' \(see `agent-debug session --help`\)$"),
    Case("bad-option-value", ("traces", "--db", "clean.db", "--slowest", "0"), 2,
         r"^Error: Invalid value for '--slowest'"),
    Case("bad-since", ("traces", "--db", "clean.db", "--since", "yesterday"), 2, r"^Error: not a time: 'yesterday'"),
    Case("bad-min-duration", ("tree", "aa1", "--db", "clean.db", "--min-duration", "soon"), 2,
         r"^Error: not a duration: 'soon'"),
    Case("since-too-far-back", ("traces", "--db", "clean.db", "--since", "99999999999999d"), 2,
         r"^Error: duration out of range: '99999999999999d' \(at most \d+ days\)$"),
    Case("since-year-one", ("bucket", "--db", "clean.db", "--since", "0001-01-01"), 2,
         r"^Error: not a time: '0001-01-01'"),
    Case("min-duration-infinite", ("tree", "aa1", "--db", "clean.db", "--min-duration", "9" * 400), 2,
         r"^Error: duration out of range"),
    Case("several-traces-unnamed", ("tree", "--db", "clean.db"), 2, r"^Error: name a trace: the source holds 3 traces"),
    Case("replay-bad-mode", ("replay", "ok-packet.json", "--mode", "bogus"), 2, r"^Error: unknown replay mode 'bogus'"),
    Case("replay-bad-inject", ("replay", "ok-packet.json", "--inject", "x"), 2, r"^Error: bad --inject 'x'"),
    Case("replay-folder-without-check", ("replay", "pk"), 2,
         r"^Error: Invalid value: a folder of packets needs --check"),
    Case("export-unknown-format", ("export", "all", "--db", "clean.db", "--format", "jaeger"), 2,
         r"^Error: unknown export format 'jaeger'"),
    Case("unknown-input-format", ("tree", "--from", "clean", "--format", "bogus"), 2,
         r"^Error: unknown format 'bogus'"),
    # 2: a missing file given as input
    Case("validate-missing", ("validate", "nope.jsonl"), 2, r"^Error: no such file or directory: nope.jsonl$"),
    Case("ingest-missing", ("ingest", "nope", "--db", "new.db"), 2, r"^Error: no such file or directory: nope$"),
    Case("from-missing", ("tree", "--from", "nope"), 2, r"^Error: no such file or directory: nope$"),
    Case("validate-device", ("validate", "/dev/zero"), 2, r"^Error: not a regular file or directory: /dev/zero$"),
    Case("replay-missing", ("replay", "nope.json"), 2, r"^Error: no such packet or directory: nope.json$"),
    Case("eval-missing", ("eval", "nope.toml", "--db", "clean.db"), 2, r"^Error: case file not found: nope.toml$"),
    Case("labels-missing", ("eval", "calibrate", "nope.jsonl"), 2, r"^Error: labels file not found: nope.jsonl$"),
    # 2: bad rules files
    Case("rules-missing", ("bucket", "--db", "clean.db", "--rules", "nope.toml"), 2,
         r"^Error: no such rules file: nope.toml$"),
    Case("rules-directory", ("bucket", "--db", "clean.db", "--rules", "clean"), 2,
         r"^Error: cannot read rules file clean: Is a directory$"),
    Case("rules-bad-toml", ("bucket", "--db", "clean.db", "--rules", "rules/bad-toml.toml"), 2,
         r"^Error: rules file rules/bad-toml.toml is not valid TOML"),
    Case("rules-thresholds-not-table", ("why", "aa1", "--db", "clean.db", "--rules", "rules/thresholds.toml"), 2,
         r"^Error: rules file rules/thresholds.toml: thresholds: must be a table$"),
    Case("rules-unknown-op", ("bucket", "--db", "clean.db", "--rules", "rules/op.toml"), 2,
         r"^Error: rules file rules/op.toml: rule 'a'.when.op: unknown operator 'bogus'"),
    Case("rules-bad-regex", ("session", "s1", "--db", "clean.db", "--rules", "rules/regex.toml"), 2,
         r"^Error: rules file rules/regex.toml: rule 'a'.when.name: not a valid regex"),
    Case("rules-unknown-table", ("bucket", "--from", "clean", "--rules", "rules/unknown.toml"), 2,
         r"^Error: rules file rules/unknown.toml: rules: unknown table"),
    # 2: bad case files and labels
    Case("cases-bad-toml", ("eval", "cases/bad-toml.toml", "--db", "clean.db"), 2,
         r"^Error: cases/bad-toml.toml: not valid TOML"),
    Case("cases-bad-field", ("eval", "cases/bad-field.toml", "--db", "clean.db"), 2,
         r"^Error: cases/bad-field.toml: case #1: field 'name'"),
    Case("cases-not-array", ("eval", "cases/not-array.toml", "--db", "clean.db"), 2,
         r"^Error: cases/not-array.toml: 'case' must be an array of tables"),
    Case("cases-not-utf8", ("eval", "cases/latin1.toml", "--db", "clean.db"), 2,
         r"^Error: cases/latin1.toml: cannot be read"),
    Case("cases-a-folder", ("eval", "cases/a-folder.toml", "--db", "clean.db"), 2,
         r"^Error: case file is a directory: cases/a-folder.toml$"),
    Case("labels-bad", ("eval", "calibrate", "labels.jsonl"), 2, r"^Error: labels.jsonl:1: 'label' must be"),
    # 3: nothing readable
    Case("validate-empty-folder", ("validate", "empty", "--json"), 3, r"^Error: no trace files found in empty$"),
    Case("validate-only-garbage", ("validate", "junk", "--json"), 3, r"^Error: nothing could be read from junk$"),
    Case("ingest-empty-folder", ("ingest", "empty", "--db", "e.db"), 3, r"^Error: no trace files found in empty$"),
    Case("ingest-only-garbage", ("ingest", "junk", "--db", "j.db", "--json"), 3,
         r"^Error: nothing could be read from junk$", warnings=0),
    Case("from-empty-folder", ("tree", "--from", "empty"), 3, r"^Error: no trace files found in empty$"),
    Case("from-only-garbage", ("bucket", "--from", "junk", "--json"), 3,
         r"^Error: nothing could be read from junk: 1 record rejected \(invalid JSON: 1\)"),
    # 4: trace not found or ambiguous
    Case("tree-no-match", ("tree", "zz", "--db", "clean.db"), 4, r"^Error: no trace matches 'zz'$"),
    Case("tree-ambiguous", ("tree", "a", "--db", "clean.db"), 4,
         r"^Error: trace prefix 'a' matches several traces: aa1, aa2$"),
    Case("why-empty-store", ("why", "--db", "empty.db"), 4, r"^Error: the source holds no traces$"),
    Case("critical-path-empty-store", ("critical-path", "--db", "empty.db", "--json"), 4,
         r"^Error: the source holds no traces$"),
    Case("export-ambiguous", ("export", "aa", "--db", "clean.db"), 4, r"^Error: trace prefix 'aa' matches several"),
    Case("export-ambiguous-from", ("export", "aa", "--from", "clean", "-o", "never.jsonl"), 4,
         r"^Error: trace prefix 'aa' matches several"),
    Case("export-no-match", ("export", "aa1", "zz", "--from", "clean"), 4, r"^Error: no trace matches 'zz'$"),
    Case("export-all-empty-store", ("export", "all", "--db", "empty.db"), 4, r"^Error: the source holds no traces$"),
    Case("packet-no-match", ("packet", "zz", "--from", "clean"), 4, r"^Error: no trace matches 'zz'$"),
    Case("session-unknown", ("session", "nope", "--db", "clean.db"), 4, r"^Error: no runs with session id 'nope'$"),
    # 5: store
    Case("store-missing", ("traces", "--db", "nope.db"), 5, r"^Error: no store at nope.db"),
    Case("store-not-sqlite", ("tree", "aa1", "--db", "notsql.db"), 5, r"^Error: cannot open store notsql.db"),
    Case("store-a-folder", ("bucket", "--db", "dirdb.db", "--json"), 5, r"^Error: cannot open store dirdb.db"),
    Case("store-through-a-file", ("ingest", "clean", "--db", "afile/x.db"), 5,
         r"^Error: cannot create a store at afile/x.db: .*afile"),
    Case("store-damaged-pages-tree", ("tree", "aa1", "--db", "pages.db"), 5,
         r"^Error: store pages.db could not be read: database disk image is malformed$"),
    Case("store-damaged-pages-bucket", ("bucket", "--db", "pages.db", "--json"), 5,
         r"^Error: store pages.db could not be read: database disk image is malformed$"),
    *[Case(f"store-damaged-chunks-{args[0]}", (*args, "--db", "chunks.db"), 5,
           r"^Error: trace aa1: stored chunk \d+ is damaged")
      for args in (("tree", "aa1"), ("critical-path", "aa1"), ("bucket",))],
    # 6: packets, 8: outputs
    *_packet_cases(),
    *_output_cases(),
]


def _check(case: Case, out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = out.stderr.splitlines()
    assert out.returncode == case.code, out.stderr
    assert len(lines) == case.warnings + 1, out.stderr
    assert all(line.startswith("warning: ") for line in lines[:-1]), out.stderr
    assert lines[-1].startswith("Error: ") and re.search(case.says, lines[-1]), lines[-1]


@pytest.fixture(scope="module")
def outcomes(work: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case of the table, run in parallel: each is a separate process of the real command."""
    readonly = work / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c.name: pool.submit(run_cli, *c.args, cwd=work) for c in CASES}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_expected_failure_is_one_line_with_its_exit_code(case: Case, outcomes: dict[str, Any]) -> None:
    _check(case, outcomes[case.name])


def test_the_table_covers_every_exit_code_of_the_readme() -> None:
    assert {c.code for c in CASES} >= {2, 3, 4, 5, 6, 8}


def test_a_failed_export_writes_nothing(work: Path, outcomes: dict[str, Any]) -> None:
    assert outcomes["export-ambiguous"].stdout == ""
    assert not (work / "never.jsonl").exists()


def test_the_good_packet_replays_and_missing_output_folders_are_created(work: Path) -> None:
    """The controls: the packet the malformed ones were made from replays, and outputs create their folders."""
    ok = run_cli("replay", "pk/ok.json", "--json", cwd=work)
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout)["reproduced"] is True
    runs = {
        "new/a/p.json": ("packet", "aa1", "--db", "clean.db", "-o", "new/a/p.json"),
        "new/b/x.jsonl": ("export", "aa1", "--db", "clean.db", "-o", "new/b/x.jsonl"),
        "new/c/j.xml": ("eval", "cases/ok.toml", "--db", "clean.db", "--junit", "new/c/j.xml"),
        "new/d/d.toml": ("dataset", "add", "aa1", "--case", "c", "--label", "fail", "--db", "clean.db",
                         "--dataset", "new/d/d.toml"),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(runs, pool.map(lambda a: run_cli(*a, cwd=work), runs.values()), strict=True))
    for path, out in results.items():
        assert out.returncode == 0, (path, out.stderr)
        assert (work / path).stat().st_size > 0


def test_ctrl_c_is_one_line_and_exit_130(work: Path, tmp_path: Path) -> None:
    """A replay whose entrypoint blocks (it says when it started), interrupted as a terminal would."""
    (tmp_path / "blocker.py").write_text("import time\nfrom pathlib import Path\n\n"
                                        "def run(inp):\n    Path(inp['marker']).write_text('started')\n"
                                        "    time.sleep(120)\n")
    marker = tmp_path / "started"
    packet = orjson.loads((work / "ok-packet.json").read_bytes())
    packet.update(entrypoint="blocker:run", input={"marker": str(marker)})
    (tmp_path / "p.json").write_bytes(orjson.dumps(packet))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.Popen([sys.executable, "-m", "agent_debug.cli.main", "replay", str(tmp_path / "p.json")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "never started"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, err) == (130, "Error: interrupted\n")


def test_the_readme_exit_code_table_is_the_one_the_errors_carry() -> None:
    """The README's table is the single source: every domain error's code is in it, every failure code in it
    is carried by a domain error."""
    import agent_debug.errors as errors

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    table = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| ([^|]+) \|", section, re.M)}
    carried = {cls.exit_code for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.AgentDebugError)}
    assert carried <= set(table)
    assert set(table) - carried == {0, 1, 130}  # done, a check said no, interrupted: not errors of the library
    assert "packet" in table[6] and "store" in table[5] and "output" in table[8]


# --- notices ----------------------------------------------------------------------------------------------------


def _commands() -> Iterator[tuple[str, Any]]:
    from agent_debug.cli.main import app

    for name, cmd in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", {})
        if not subs or getattr(cmd, "invoke_without_command", False):
            yield name, cmd
        for sub, subcmd in subs.items():
            yield f"{name} {sub}", subcmd


NO_JSON = {"export": "writes OTLP/JSON lines: its output is the document",
           "serve": "a server: its results are its API's JSON (each with `notices`)",
           "tail": "a live terminal view, until Ctrl-C"}
READS_TRACES = {"traces", "tree", "critical-path", "bucket", "why", "session", "packet", "eval", "dataset add",
                "report", "patterns"}


def _json_runs(w: Path, source: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """One run with --json of every command that has a result, reading from `source` where it reads traces."""
    tag = source[0].strip("-")  # outputs of --from and --db runs apart
    return {
        "validate": ("validate", "dirty"),
        "ingest": ("ingest", "dirty", "--db", f"fresh-{tag}.db"),
        "demo": ("demo", "--runs", "1", "--dir", f"demo-{tag}"),
        "traces": ("traces", *source),
        "tree": ("tree", "aa1", *source),
        "critical-path": ("critical-path", "aa1", *source),
        "bucket": ("bucket", *source),
        "why": ("why", "aa1", *source),
        "session": ("session", "s1", *source),
        "packet": ("packet", "aa1", "-o", f"out-{tag}/p.json", *source),
        "replay": ("replay", "pk/ok.json"),
        "report": ("report", "aa1", "-o", f"out-{tag}/r.html", *source),
        "mark": ("mark", "aa1", "--failed", "--db", "marks.db"),  # the store only: files are never changed
        "patterns": ("patterns", *source),
        "eval": ("eval", "cases/ok.toml", *source),
        "eval calibrate": ("eval", "calibrate", "calibrate-labels.jsonl"),
        "dataset add": ("dataset", "add", "aa1", "--case", "c", "--label", "fail", "--dataset",
                        f"out-{tag}/d.toml", *source),
        "store ddl": ("store", "ddl"),
        "store copy": ("store", "copy", "--from", "clean.db", "--to", f"copy-{tag}.db"),
    }


@pytest.fixture(scope="module")
def judge_env(work: Path) -> Iterator[dict[str, str]]:
    from gemini_server import judge_reply, ok, running_gemini_server

    (work / "calibrate-labels.jsonl").write_text('{"task": "t", "actual": "a", "label": "pass"}\n')
    with running_gemini_server() as server:
        server.default = ok(judge_reply(4))
        yield {"GEMINI_API_KEY": "test", "AGENT_DEBUG_JUDGE_BASE_URL": server.base_url}


def _run_all(work: Path, runs: dict[str, tuple[str, ...]], env: dict[str, str]) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, "--json", cwd=work, env=env) for name, args in runs.items()}
        return {name: f.result() for name, f in futures.items()}


def test_every_command_with_a_result_has_json_with_notices(work: Path, judge_env: dict[str, str]) -> None:
    """Every command (a new one too: the list comes from the app) has --json, and its document has `notices`;
    read from files with a rejected line, that notice is in the document and on stderr."""
    commands = dict(_commands())
    without_json = {n for n, c in commands.items() if not any("--json" in p.opts for p in c.params)}
    assert without_json == set(NO_JSON)
    runs = _json_runs(work, ("--from", "dirty"))
    assert set(runs) == set(commands) - set(NO_JSON)
    outs = _run_all(work, runs, judge_env)
    for name, out in outs.items():
        assert "Traceback" not in out.stderr, (name, out.stderr)
        assert isinstance(orjson.loads(out.stdout)["notices"], list), name
    for name in READS_TRACES:
        doc = orjson.loads(outs[name].stdout)
        assert [n for n in doc["notices"] if n.startswith(REJECT_NOTICE)], (name, doc["notices"])
        assert f"warning: {doc['notices'][0]}" in outs[name].stderr.splitlines(), (name, outs[name].stderr)
    assert orjson.loads(outs["replay"].stdout)["notices"] == []
    assert orjson.loads(outs["eval calibrate"].stdout)["notices"] == []


def test_store_notices_reach_every_reading_command(work: Path) -> None:
    """A store that rejected records at ingest says so, with where the rejects are kept, on every read."""
    runs = {name: args for name, args in _json_runs(work, ("--db", "dirty.db")).items() if name in READS_TRACES}
    outs = _run_all(work, runs, {})
    rejects = "dirty.rejects.jsonl"  # next to the store, as the user named it
    for name, out in outs.items():
        assert out.returncode == 0, (name, out.stderr)
        notices = orjson.loads(out.stdout)["notices"]
        assert notices == [f"{STORE_NOTICE}{rejects})"], (name, notices)
        assert out.stderr.splitlines() == [f"warning: {notices[0]}"], (name, out.stderr)
    clean = run_cli("bucket", "--db", "clean.db", "--json", cwd=work)
    assert (clean.stderr, orjson.loads(clean.stdout)["notices"]) == ("", [])


@pytest.mark.parametrize("command", [("bucket",), ("tree", "aa1"), ("why", "aa1"), ("export", "all")])
def test_notices_reach_stderr_without_json_too(work: Path, command: tuple[str, ...]) -> None:
    out = run_cli(*command, "--from", "dirty", cwd=work)
    assert out.returncode == 0, out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith(f"warning: {REJECT_NOTICE}")], out.stderr


@pytest.mark.parametrize("command", [("tree", "deep", "--json"), ("packet", "deep", "-o", "p.json", "--json")])
def test_a_record_nested_deeper_than_orjson_writes(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A record nested 300 levels deep (orjson reads 1024 levels but writes 254) is shown and packed."""
    deep: Any = "bottom"
    for _ in range(300):
        deep = [deep]
    (tmp_path / "deep.jsonl").write_text(json.dumps(rec("r", trace_id="deep", payload={"output": deep})) + "\n")
    out = run_cli(*command, "--from", "deep.jsonl", cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert orjson.loads(out.stdout)["trace_id"] == "deep"

