"""Bad input, end to end through the real CLI: every readable record is kept (counted here independently of
the reader), every reject is reported with its reason and kept verbatim, nothing hangs, and the traces that
came out of the mess can still be shown (`tree`, `critical-path`)."""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.store.db import connect
from agent_debug.store.query import load_trace
from conftest import ROOT, rec

BIG = 8 << 20  # an 8 MB payload


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command, with a hard timeout: a hang fails the test instead of stalling the suite."""
    env = dict(os.environ, COLUMNS="200")
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", "agent_debug.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _complete_lines(gz_bytes: bytes) -> list[bytes]:
    """The complete lines in a cut gzip stream, inflated with zlib directly (not with our reader)."""
    data = zlib.decompressobj(31).decompress(gz_bytes)
    return data.split(b"\n")[:-1]


@pytest.fixture(scope="module")
def mess(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("bad") / "in"
    d.mkdir()
    expect_kept: set[tuple[str, str]] = set()
    rejects: list[tuple[str, bytes]] = []  # (reason prefix, verbatim line)

    # 1. a rotated file cut half-way through its gzip stream (a crash during compression)
    cut = [rec(f"c{i}", None if i == 0 else "c0", trace_id="cut", start=i * 0.001, duration_ms=1 + i % 7)
           for i in range(4000)]
    whole = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in cut))
    part = whole[: len(whole) // 2]
    (d / "traces.2026-11-21_10-00-00_000001.jsonl.gz").write_bytes(part)
    complete = _complete_lines(part)
    assert 100 < len(complete) < 4000
    expect_kept |= {("cut", orjson.loads(line)["span_id"]) for line in complete}

    # 2. the live file: good records with garbage in between, in batches big enough for the bulk path
    good = [rec("root", trace_id="mix", duration_ms=500, agent="orchestrator")]
    good += [rec(f"g{i}", "root", trace_id="mix", start=0.001 * i, duration_ms=2) for i in range(300)]
    good += [rec("orphan1", "ghost", trace_id="mix", start=0.1), rec("orphan2", "ghost", trace_id="mix", start=0.2),
             rec("cyc1", "cyc2", trace_id="mix", start=0.3), rec("cyc2", "cyc1", trace_id="mix", start=0.31),
             rec("self", "self", trace_id="mix", start=0.32),
             rec("big", "root", trace_id="mix", start=0.4, payload={"blob": "z" * BIG}),
             rec("nulls", "root", trace_id="mix", start=0.41, attributes=None, payload=None),  # null = absent
             rec("floaty", "root", trace_id="mix", start=0.42, duration_ns=2_000_000.0)]  # a whole float
    envelope = {"text": "span\n", "record": {"level": {"name": "INFO"}, "process": {"id": 7},
                                             "extra": rec("env", "root", trace_id="mix", start=0.43)}}
    bad_lines = {
        "invalid JSON": [b"this is not json {{{", b"\xff\xfe\x00 not utf-8 at all", b'{"trace_id": "mix", "span'],
        "missing field parent_id": [orjson.dumps({"trace_id": "mix", "span_id": "nofields"})],
        "missing field timestamp": [orjson.dumps({k: v for k, v in rec("nots", trace_id="mix").items()
                                                  if k != "timestamp"})],
        "not an object": [b"[1, 2, 3]", b'"just a string"'],
        "duration_ns must be an integer >= 0": [orjson.dumps(rec("neg", "root", trace_id="mix", duration_ns=-5))],
        "status must be ok or error": [orjson.dumps(rec("st", "root", trace_id="mix", status="maybe"))],
        "timestamp out of range (epoch seconds)": [orjson.dumps(rec("far", "root", trace_id="mix",
                                                                    timestamp=1e14))],
    }
    lines: list[bytes] = [orjson.dumps(r) for r in good[:150]]
    for reason, group in bad_lines.items():
        for line in group:
            lines.append(line)
            rejects.append((reason, line))
    lines += [b"", b"   "]  # blank lines: neither records nor rejects
    lines += [orjson.dumps(r) for r in good[150:]]
    lines.append(orjson.dumps(envelope))
    lines += [orjson.dumps(good[5]), orjson.dumps(good[6])]  # the same records again: duplicates
    changed = dict(good[7], name="changed")  # the same ids (g6), other content: a conflict
    lines.append(orjson.dumps(changed))
    (d / "traces.jsonl").write_bytes(b"\n".join(lines) + b"\n" + b'{"trace_id": "mix", "span_id": "partial"')
    expect_kept |= {("mix", r["span_id"]) for r in good} | {("mix", "env")}

    db = d.parent / "store" / "traces.db"
    started = time.monotonic()
    out = _cli("ingest", str(d), "--db", str(db), "--json")
    seconds = time.monotonic() - started
    return {"dir": d, "db": db, "out": out, "seconds": seconds, "kept": expect_kept, "rejects": rejects,
            "conflict": ("mix", "g6"), "complete_cut": len(complete)}


def test_ingest_keeps_every_readable_record_and_reports_the_rest(mess: dict[str, Any]) -> None:
    out = mess["out"]
    assert out.returncode == 1, out.stdout + out.stderr  # some rejected, everything readable kept
    assert mess["seconds"] < 120
    res = orjson.loads(out.stdout)
    assert res["records"] == len(mess["kept"])
    assert res["duplicates"] == 2 and res["conflicts"] == 1
    assert res["conflict_list"] == [{"trace_id": "mix", "span_id": mess["conflict"][1]}]
    expected_reasons = Counter(reason.split(":", 1)[0] for reason, _ in mess["rejects"])
    assert res["rejected"] == len(mess["rejects"]) == sum(expected_reasons.values())
    assert res["rejects_by_reason"] == dict(expected_reasons)
    notices = " ".join(res["notices"])
    assert "truncated gzip member" in notices and "partial last line" in notices
    with connect(mess["db"]) as db:
        stored = {(t, s) for t in ("cut", "mix") for s in load_trace(db, t).span_id}
    assert stored == mess["kept"]


def test_rejects_are_kept_verbatim_with_source_location_and_reason(mess: dict[str, Any]) -> None:
    res = orjson.loads(mess["out"].stdout)
    entries = [orjson.loads(x) for x in Path(res["rejects_file"]).read_bytes().splitlines()]
    assert len(entries) == res["rejected"]
    got = [(e["reason"], e["raw"].encode() if "raw" in e else base64.b64decode(e["raw_base64"])) for e in entries]
    for (reason, line), (got_reason, got_raw) in zip(mess["rejects"], got, strict=True):
        assert got_raw == line  # byte for byte
        assert got_reason.startswith(reason)
    assert all(e["source"].endswith("traces.jsonl") and e["location"].startswith("line ") for e in entries)


def test_the_8mb_payload_is_kept_whole(mess: dict[str, Any]) -> None:
    with connect(mess["db"]) as db:
        ts = load_trace(db, "mix", records=True)
    assert ts.records is not None
    big = ts.records[ts.span_id.index("big")]
    assert len(big["payload"]["blob"]) == BIG
    env = ts.records[ts.span_id.index("env")]
    assert env["attributes"]["loguru.level"] == "INFO"


def test_tree_and_critical_path_work_on_what_came_out(mess: dict[str, Any]) -> None:
    db = str(mess["db"])
    tree = _cli("tree", "mix", "--db", db, timeout=60)
    assert tree.returncode == 0, tree.stderr
    assert "missing parent ghost" in tree.stdout
    assert "cycle broken here: cyc1 -> cyc2" in tree.stdout and "cycle broken here: self" in tree.stdout
    assert "310 spans" in tree.stdout
    tree_json = _cli("tree", "mix", "--db", db, "--json", timeout=60)
    assert tree_json.returncode == 0
    crit = _cli("critical-path", "mix", "--db", db, "--json", timeout=60)
    assert crit.returncode == 0, crit.stderr
    res = orjson.loads(crit.stdout)
    assert res["bottleneck"] is not None and sum(s["critical_ns"] for s in res["path"]) == res["duration_ns"]
    cut = _cli("critical-path", "cut", "--db", db, "--json", timeout=60)
    assert cut.returncode == 0 and orjson.loads(cut.stdout)["trace_id"] == "cut"


def test_reingesting_the_mess_adds_nothing(mess: dict[str, Any]) -> None:
    again = _cli("ingest", str(mess["dir"]), "--db", str(mess["db"]), "--json")
    res = orjson.loads(again.stdout)
    assert res["records"] == 0 and res["conflicts"] == 0 and res["rejected"] == 0
    # the cut .gz has not changed since it was read: skipped, not parsed again; the live file is read only after
    # its last offset (the partial last line)
    assert res["duplicates"] == 0 and res["files_skipped"] == 1
    assert again.returncode == 0
    assert any("partial last line" in n for n in res["notices"])
