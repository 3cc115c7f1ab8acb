"""Bad input end to end: every readable record kept, rejects reported by reason, nothing hangs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson

from conftest import rec, run_cli


def test_a_directory_of_bad_input_loses_nothing_readable(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    good_cut = [rec(f"g{i}", None if i == 0 else "g0", trace_id="cut", start=i) for i in range(3000)]
    full = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in good_cut))
    (d / "cut.jsonl.gz").write_bytes(full[: len(full) // 2])
    lines = [
        orjson.dumps(rec("root", trace_id="mix")),
        b"garbage {{{",
        b"\xff\xfe bytes that are not utf-8",
        orjson.dumps({"trace_id": "mix", "span_id": "nofields"}),
        orjson.dumps(rec("orphan", "ghost", trace_id="mix", start=1)),
        orjson.dumps(rec("c1", "c2", trace_id="mix", start=2)),
        orjson.dumps(rec("c2", "c1", trace_id="mix", start=3)),
        orjson.dumps(rec("dup", "root", trace_id="mix", start=4)),
        orjson.dumps(rec("dup", "root", trace_id="mix", start=4)),
        orjson.dumps(rec("dup", "root", trace_id="mix", start=4, name="changed")),
        orjson.dumps(rec("big", "root", trace_id="mix", start=5, payload={"blob": "z" * (8 << 20)})),
    ]
    (d / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # count what is readable independently of our reader: complete gzip lines + valid lines above
    readable_cut = 0
    dec = gzip.GzipFile(fileobj=__import__("io").BytesIO(full[: len(full) // 2]))
    data = b""
    try:
        while chunk := dec.read(1 << 16):
            data += chunk
    except EOFError:
        pass
    readable_cut = data.count(b"\n")
    db = tmp_path / "t.db"
    r = run_cli("ingest", str(d), "--db", str(db), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    res = json.loads(r.stdout)
    # mixed: root, orphan, c1, c2, dup, big are new; the second dup is a duplicate, the third a conflict
    assert res["records"] >= readable_cut + 6
    assert res["duplicates"] == 1 and res["conflicts"] == 1
    assert res["rejected"] == 3
    assert set(res["rejects_by_reason"]) == {"invalid JSON", "missing field parent_id"}
    rejects = Path(res["rejects_file"]).read_text().splitlines()
    assert len(rejects) == 3 and all("source" in json.loads(x) and "reason" in json.loads(x) for x in rejects)
    assert any("ends early" in n for n in res["notices"])
    for cmd in ("tree", "critical-path"):
        out = run_cli(cmd, "mix", "--db", str(db))
        assert out.returncode == 0, out.stderr
    tree = run_cli("tree", "mix", "--db", str(db)).stdout
    assert "missing parent ghost" in tree and "cycle broken here" in tree
    again = json.loads(run_cli("ingest", str(d), "--db", str(db), "--json").stdout)
    assert again["records"] == 0
