"""The same answers from every backend: `tree --json` and `critical-path --json` of every run are byte-identical
between SQLite, chdb and a ClickHouse server over HTTP (the demo batch, the fixtures, ../shared/data), and so
is every command's `--json` run by the real CLI on the demo batch."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.analysis.critical import analyze, critical_times
from agent_debug.analysis.tree import build_tree
from agent_debug.analysis.treeview import nested_json
from agent_debug.store.api import Store, open_store
from conftest import ROOT, SHARED_DATA, run_cli

pytest.importorskip("chdb")
pytest.importorskip("clickhouse_connect")


def _dumps(doc: Any) -> bytes:
    """As the CLI prints it (`cli.common.print_json`)."""
    from agent_debug.cli.common import _default

    try:
        return orjson.dumps(doc, default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
        return json.dumps(doc, default=_default).encode()


# when a file was written: its timestamps, and the time in the gzip headers of the page's embedded blocks
_STAMP = re.compile(rb'"(?:created_at|generated_at)": ?"[^"]+"|"H4sI[A-Za-z0-9+/]{8}')


def _corpora(base: Path) -> dict[str, list[Path]]:
    from agent_debug.demo.runner import run_demo

    demo = run_demo(base / "demo", 9, seed=5)
    out = {"demo": [Path(demo.trace_dir)],
           "fixtures": [p for p in (ROOT / "fixtures").iterdir() if p.suffix == ".jsonl" or p.name == "foreign"]}
    if SHARED_DATA.is_dir():
        out["shared"] = [p for p in SHARED_DATA.iterdir() if p.is_dir()]
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, clickhouse_server: str) -> Iterator[dict[str, dict[str, Store]]]:
    """Each corpus ingested into each backend: {corpus: {backend: store}} (chdb: one engine, a database each)."""
    base = tmp_path_factory.mktemp("identical")
    out: dict[str, dict[str, Store]] = {}
    try:
        for name, paths in _corpora(base).items():
            out[name] = {}
            for backend, where in (("sqlite", str(base / f"{name}.db")),
                                   ("chdb", f"chdb://{base / 'chdb'}?database={name}"),
                                   ("http", f"{clickhouse_server}/identical_{name}")):
                store = out[name][backend] = open_store(where)
                res = store.ingest(paths)
                assert res.records > 0, (name, backend)
        yield out
    finally:
        for by_backend in out.values():
            for store in by_backend.values():
                store.close()


@pytest.mark.parametrize("corpus", ["demo", "fixtures", "shared"])
def test_runs_trees_and_critical_paths_are_byte_identical(stores: dict[str, dict[str, Store]], corpus: str) -> None:
    if corpus not in stores:
        pytest.skip(f"no {SHARED_DATA}")
    by = stores[corpus]
    runs = {b: s.list_traces() for b, s in by.items()}
    assert runs["sqlite"] and runs["chdb"] == runs["sqlite"] and runs["http"] == runs["sqlite"]
    for summary in runs["sqlite"]:
        tid = summary.trace_id
        docs: dict[str, tuple[bytes, bytes]] = {}
        for backend, store in by.items():
            ts = store.load(tid, records="lazy")
            t = build_tree(ts)
            tree = _dumps(nested_json(t, critical_times(t)))
            cp = _dumps(analyze(store.load(tid, records="lazy")).as_dict())
            docs[backend] = (tree, cp)
        assert docs["chdb"] == docs["sqlite"], tid
        assert docs["http"] == docs["sqlite"], tid


@pytest.mark.parametrize("corpus", ["demo", "fixtures", "shared"])
def test_pattern_dimensions_found_in_sql_equal_those_found_in_the_records(stores: dict[str, dict[str, Store]],
                                                                          corpus: str) -> None:
    """`patterns` on ClickHouse asks the engine what each run has (one aggregation); the answer is what
    `analysis.patterns.run_values` finds in the loaded records, run by run."""
    from agent_debug.analysis.patterns import run_values

    if corpus not in stores:
        pytest.skip(f"no {SHARED_DATA}")
    sqlite = stores[corpus]["sqlite"]
    ids = [s.trace_id for s in sqlite.list_traces()]
    want = {tid: run_values(sqlite.load(tid, records=True)) for tid in ids}
    assert any(v["model"] or v["tool"] or v["route"] for v in want.values()) or corpus != "demo"
    for backend in ("chdb", "http"):
        assert stores[corpus][backend].run_values(ids) == want  # type: ignore[attr-defined]


# -- every command, through the real CLI ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_stores(tmp_path_factory: pytest.TempPathFactory, clickhouse_server: str) -> dict[str, Any]:
    from agent_debug.demo.runner import run_demo

    base = tmp_path_factory.mktemp("cli-identical")
    demo = run_demo(base / "demo", 9, seed=3)
    dbs = {"sqlite": str(base / "traces.db"), "chdb": f"chdb://{base / 'chdb'}",
           "http": f"{clickhouse_server}/cli_identical"}
    for db in dbs.values():
        res = run_cli("ingest", demo.trace_dir, "--db", db, "--json")
        assert res.returncode == 0, res.stderr
    failed = [r.trace_id for r in demo.runs if not r.passed]
    session = next((r for r in demo.runs if getattr(r, "session_id", None)), None)
    return {"dbs": dbs, "failed": failed, "base": base, "session": session}


def _commands(c: dict[str, Any]) -> list[list[str]]:
    f = c["failed"]
    return [["traces", "--json"], ["traces", "--failed", "--slowest", "2", "--json"],
            ["tree", f[0], "--json"], ["tree", f[1], "--json", "--errors"], ["critical-path", f[0], "--json"],
            ["why", f[0], "--json"], ["bucket", "--json"], ["patterns", "--json", "--min-runs", "1"],
            ["export", f[1]], ["export", "all"]]


@pytest.mark.parametrize("backend", ["chdb", "http"])
def test_every_read_command_answers_as_on_sqlite(cli_stores: dict[str, Any], backend: str) -> None:
    for args in _commands(cli_stores):
        want = run_cli(*args, "--db", cli_stores["dbs"]["sqlite"])
        got = run_cli(*args, "--db", cli_stores["dbs"][backend])
        assert want.returncode == 0, (args, want.stderr)
        assert (got.returncode, got.stderr) == (0, want.stderr), args
        assert got.stdout == want.stdout, args


@pytest.mark.parametrize("backend", ["chdb", "http"])
def test_writing_commands_work_on_every_backend(cli_stores: dict[str, Any], backend: str, tmp_path: Path) -> None:
    """packet, report and mark write: the same packet and page as from SQLite; a verdict changes the listing."""
    tid = cli_stores["failed"][0]
    outputs = {}
    for b in ("sqlite", backend):
        db = cli_stores["dbs"][b]
        packet = run_cli("packet", tid, "--db", db, "--output", str(tmp_path / f"{b}.json"), "--json")
        assert packet.returncode == 0, packet.stderr
        report = run_cli("report", tid, "--db", db, "--output", str(tmp_path / f"{b}.html"))
        assert report.returncode == 0, report.stderr
        outputs[b] = tuple(_STAMP.sub(b"<time>", (tmp_path / f"{b}.{ext}").read_bytes()) for ext in ("json", "html"))
    assert outputs[backend] == outputs["sqlite"]  # but when each was written
    db = cli_stores["dbs"][backend]
    ok = next(t["trace_id"] for t in orjson.loads(run_cli("traces", "--db", db, "--json").stdout)["traces"]
              if not t["failed"])
    assert run_cli("mark", ok, "--failed", "--db", db).returncode == 0
    failed = orjson.loads(run_cli("traces", "--failed", "--db", db, "--json").stdout)["traces"]
    assert ok in {t["trace_id"] for t in failed}
    assert run_cli("mark", ok, "--clear", "--db", db).returncode == 0


def test_without_the_extra_a_clickhouse_store_is_one_line_naming_it(tmp_path: Path) -> None:
    """A user without `agent-debug[clickhouse]`: chdb and clickhouse_connect cannot be imported."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("chdb", "clickhouse_connect"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('no module named {name}', name='{name}')\n")
    env = {"PYTHONPATH": f"{blocker}"}
    for db, missing in ((f"chdb://{tmp_path / 'x'}", "chdb"), ("clickhouse://localhost/db", "clickhouse-connect")):
        res = run_cli("traces", "--db", db, env=env)
        assert res.returncode == 5, res.stderr
        assert res.stderr.splitlines() == [
            f"Error: --db {db.replace('localhost/db', 'default@localhost:8123/db')} needs {missing}, which is not "
            "installed: pip install 'agent-debug[clickhouse]'"]
    assert not (tmp_path / "x").exists()
    shutil.rmtree(blocker)
