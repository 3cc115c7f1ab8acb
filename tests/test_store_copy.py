"""`agent-debug store copy`: a store moved between backends (SQLite -> chdb -> a server over HTTP -> SQLite) keeps
every span, conflict, reject, verdict and file offset, answers every listing and tree as before, and a later
ingest of the same files goes on where the original stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import rec, run_cli, store_location, write_jsonl

pytest.importorskip("chdb")
pytest.importorskip("clickhouse_connect")


def _json(*args: str) -> Any:
    res = run_cli(*args, "--json")
    assert res.returncode in (0, 1), res.stderr
    return orjson.loads(res.stdout)


def test_a_store_copied_around_every_backend_loses_nothing(tmp_path: Path, clickhouse_server: str) -> None:
    from agent_debug.demo.runner import run_demo

    demo = run_demo(tmp_path / "demo", 6, seed=11)
    logs = tmp_path / "logs"
    logs.mkdir()
    live = write_jsonl(logs / "live.jsonl", [rec(f"s{i}", None if i == 0 else "s0", trace_id="live", start=i * 0.1)
                                             for i in range(20)])
    (logs / "bad.jsonl").write_bytes(b'{"trace_id": "x"}\n\xff\xfe not utf-8\n'
                                     + orjson.dumps(rec("b", trace_id="b")) + b"\n")
    first = store_location("sqlite", tmp_path / "a")
    (tmp_path / "a").mkdir()
    assert _json("ingest", demo.trace_dir, str(logs), "--db", first)["rejected"] == 2
    changed = write_jsonl(tmp_path / "changed.jsonl", [rec("s3", "s0", trace_id="live", start=0.3, duration_ms=7)])
    assert _json("ingest", str(changed), "--db", first)["conflicts"] == 1
    failed = _json("traces", "--failed", "--db", first)["traces"][0]["trace_id"]
    assert run_cli("mark", failed, "--passed", "--reason", "flaky", "--db", first).returncode == 0

    chain = [first, store_location("chdb", tmp_path), f"{clickhouse_server}/copy_{abs(hash(str(tmp_path))) % 10**9}",
             str(tmp_path / "back.db")]
    listing = _json("traces", "--db", first)
    tree = _json("tree", failed, "--db", first)
    for src, dst in zip(chain, chain[1:], strict=False):
        out = _json("store", "copy", "--from", src, "--to", dst)
        assert out["counts"] == {"traces": listing["count"], "spans": sum(t["span_count"] for t in listing["traces"]),
                                 "conflicts": 1, "rejects": 2, "verdicts": 1, "files": 5}, (src, dst)
        assert failed in out["checked"] and len(out["checked"]) >= 3
        got = _json("traces", "--db", dst)
        assert got["traces"] == listing["traces"]  # the verdict included
        rejected, conflicted = got["notices"]  # where the rejects are kept differs by backend
        assert rejected.startswith("2 records were rejected at ingest (kept verbatim in ")
        assert conflicted == listing["notices"][1]
        assert {**_json("tree", failed, "--db", dst), "notices": None} == {**tree, "notices": None}
    last = chain[-1]
    with open(live, "ab") as fh:
        fh.write(b"".join(orjson.dumps(rec(f"s{i}", "s0", trace_id="live", start=i * 0.1)) + b"\n"
                          for i in range(20, 25)))
    res = _json("ingest", str(logs), demo.trace_dir, "--db", last)
    gz = len(list(Path(demo.trace_dir).rglob("*.gz")))
    assert gz >= 1
    # only what was appended is read: the complete .gz files are skipped, the plain ones read from their offsets
    assert (res["records"], res["duplicates"], res["files_skipped"], res["readable"]) == (5, 0, gz, 5)


def test_store_copy_refuses_a_destination_that_holds_traces(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "t.jsonl", [rec("a", trace_id="t")])
    a, b = str(tmp_path / "a.db"), store_location("chdb", tmp_path)
    for db in (a, b):
        assert run_cli("ingest", str(src), "--db", db).returncode == 0
    res = run_cli("store", "copy", "--from", a, "--to", b)
    assert res.returncode == 5
    assert res.stderr == f"Error: store copy needs an empty destination; {b} holds traces\n"
    missing = run_cli("store", "copy", "--from", str(tmp_path / "none.db"), "--to", b)
    assert missing.returncode == 5 and missing.stderr.startswith("Error: no store at")
