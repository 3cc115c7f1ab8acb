"""Stop an ingest at every step it has, and check that the next ingest ends where a clean one does.

Run as a script (`python tests/crash_sweep.py WORKDIR [--every N] [--raise]`) by tests/test_ingest_crash.py: it
is a fresh process with no threads, so it can fork one child per stopping point cheaply (the imports are
paid once). Each child is a real process: it ingests with `AGENT_DEBUG_INGEST_FAULT=kill:K` (the store's test
hook SIGKILLs it at its K-th step: a transaction begun, chunks written, a flush, summaries, rejects, a commit)
or `raise:K` (an exception at that step, as a file that fails would raise). Another child then ingests the
same files again without a fault, and the store, dumped table by table without wall-clock columns (chunk
records decompressed, the rejects file byte for byte), must equal the one a clean run of the same stages
made. Prints one JSON object: the stopping points tried per stage, and every mismatch found.

The corpus, in three stages that each ingest after the previous one: JSON lines, gzip and MessagePack files,
rejected lines, a trace split over files, a big trace (BIG_TRACE is lowered to 40 here) whose parents come
after their children, a file appended to (a trace it had gets more spans, so its summary is recomputed from
the store), a conflict and duplicates, and a rotation (the live file becomes `.gz` plus more, a new one starts).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import sqlite3
import sys
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_debug.store.chunks as chunks
import agent_debug.store.ingest as ingest_mod
from agent_debug.store.ingest import FAULT_ENV, ingest, rejects_path
from conftest import rec


def _spans(tid: str, n: int, *, first: int = 0, start: float = 0.0, cost: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(first, first + n):
        extra: dict[str, Any] = {}
        if cost and i % 3 == 0:
            extra["token_cost"] = {"prompt_tokens": i, "completion_tokens": 2 * i, "cost_usd": i / 1000}
        if i % 11 == 5:
            extra["status"] = "error"
        parent = None if i == 0 else f"{tid}-s{(i - 1) // 3}"
        out.append(rec(f"{tid}-s{i}", parent, trace_id=tid, agent=f"agent{i % 4}", event_type="TOOL_CALL",
                       start=start + i * 0.01, duration_ms=5 + i % 7, workflow="wf", **extra))
    return out


def _lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def stage(directory: Path, n: int) -> None:
    """Bring `directory` to stage n (0, 1, 2), from stage n - 1."""
    directory.mkdir(parents=True, exist_ok=True)
    if n == 0:
        t3 = _spans("t3", 30, cost=True)
        (directory / "run1.jsonl").write_bytes(_lines(_spans("t1", 30, cost=True) + _spans("t2", 20) + t3[:15]))
        bad = b'{"trace_id": "t4", "span_id": "x"}\nnot json at all\n'
        (directory / "run2.jsonl.gz").write_bytes(gzip.compress(_lines(t3[15:] + _spans("t4", 40)) + bad))
        (directory / "run3.msgpack").write_bytes(b"".join(msgpack.packb(r) for r in _spans("t5", 15, cost=True)))
        big = _spans("big", 90)
        big.reverse()  # children before their parents, as writers write spans when they end
        (directory / "run5.jsonl").write_bytes(_lines(big))
    elif n == 1:
        with open(directory / "run1.jsonl", "ab") as fh:  # the live file grows: t1 goes on, t6 starts
            fh.write(_lines(_spans("t1", 20, first=30, cost=True) + _spans("t6", 25)) + b'{"half": \n')
        conflict = _spans("t2", 1)[0] | {"name": "changed"}
        (directory / "run4.jsonl").write_bytes(
            _lines([conflict] + _spans("t4", 10) + _spans("big", 40, first=90)) + b"[1, 2]\n")
    else:  # rotation: run1.jsonl (read up to its partial line) is compressed with its rest; a new one starts
        live = directory / "run1.jsonl"
        data = live.read_bytes()
        data = data[: data.rindex(b"\n") + 1] + _lines(_spans("t6", 10, first=25))
        (directory / "run1.2024-01-01_00-00-00.jsonl.gz").write_bytes(gzip.compress(data))
        live.write_bytes(_lines(_spans("t7", 30) + _spans("t1", 5, first=50, cost=True)))


STAGES = 3


def dump(db: Path) -> dict[str, Any]:
    """Everything the store holds, without wall-clock columns; chunk records decompressed."""
    con = sqlite3.connect(db)
    try:
        out: dict[str, Any] = {
            "traces": [list(r[:-1]) for r in con.execute("SELECT * FROM traces ORDER BY trace_id")],
            "chunks": [[cid, tid, n, cols.decode(), zlib.decompress(records).decode(), codec, ing]
                       for cid, tid, n, cols, records, codec, ing in con.execute("SELECT * FROM chunks ORDER BY id")],
            "files": [list(r[:-1]) for r in con.execute("SELECT * FROM files ORDER BY path")],
            "conflicts": [[r[0], r[1], r[2], bytes(r[3]).decode(), r[4], r[5]]
                          for r in con.execute("SELECT * FROM conflicts ORDER BY trace_id, span_id, hash")],
            "ingests": [r[0] for r in con.execute("SELECT id FROM ingests ORDER BY id")],
            "meta": [list(r) for r in con.execute("SELECT * FROM meta ORDER BY key")],
        }
    finally:
        con.close()
    rj = rejects_path(db)
    out["rejects"] = rj.read_text() if rj.exists() else ""
    return out


def _child(fn: Any, fault: str | None) -> int:
    """Run fn() in a forked child (with the fault hook armed); its exit status as os.waitstatus_to_exitcode."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            if fault:
                os.environ[FAULT_ENV] = fault
            else:
                os.environ.pop(FAULT_ENV, None)
            fn()
        except BaseException:
            code = 17
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for key in a:
        if a[key] != b[key]:
            x, y = a[key], b[key]
            if isinstance(x, list) and isinstance(y, list):
                first = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
                out.append(f"{key}: {len(x)} vs {len(y)} rows, first difference at {first}: "
                           f"{str(x[first:first + 1])[:300]} vs {str(y[first:first + 1])[:300]}")
            else:
                out.append(f"{key}: {str(x)[:300]} vs {str(y)[:300]}")
    return out


def _restore(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def sweep(work: Path, every: int, kind: str, double: bool) -> dict[str, Any]:
    """Every stopping point of every stage (or every `every`-th), each from the store the clean run had before
    that stage, the inputs always at the same path (the store keeps offsets by path)."""
    src = work / "in"
    reference: list[dict[str, Any]] = []
    ref = work / "ref"
    ref.mkdir(parents=True)
    for n in range(STAGES):  # the clean run, stage by stage; the inputs and the store kept after each
        stage(src, n)
        assert _child(lambda: ingest([src], ref / "traces.db"), None) == 0
        reference.append(dump(ref / "traces.db"))
        shutil.copytree(src, work / f"in{n}")
        shutil.copytree(ref, work / f"store{n}")
    tried: dict[str, list[int]] = {}
    mismatches: list[str] = []
    for n in range(STAGES):
        tried[str(n)] = []
        k = 0
        while True:
            k += every
            _restore(work / f"in{n}", src)
            case = work / "case"
            if n:
                _restore(work / f"store{n - 1}", case)
            elif case.exists():
                shutil.rmtree(case)
            db = case / "traces.db"
            code = _child(partial(ingest, [src], db), f"{kind}:{k}")
            if code == 0:  # the ingest had fewer steps than k: every step was tried
                break
            expected = -signal.SIGKILL if kind == "kill" else 17
            if code != expected:
                mismatches.append(f"stage {n} step {k}: exit {code}, expected {expected}")
            tried[str(n)].append(k)
            if double:  # the next ingest is stopped too, a few steps in, before a clean one
                _child(partial(ingest, [src], db), f"kill:{(k * 7) % 5 + 1}")
            if _child(partial(ingest, [src], db), None) != 0:
                mismatches.append(f"stage {n} step {k}: the ingest after the stopped one failed")
            else:
                mismatches += [f"stage {n} step {k}: {d}" for d in _diff(reference[n], dump(db))]
    return {"tried": tried, "mismatches": mismatches}


def main() -> None:
    args = sys.argv[1:]
    work = Path(args[0])
    every = int(args[args.index("--every") + 1]) if "--every" in args else 1
    kind = "raise" if "--raise" in args else "kill"
    # small flushes and a low big-trace threshold: many steps per file, parent positions exercised
    ingest_mod.FLUSH_RECORDS = 25
    chunks.BIG_TRACE = 40
    chunks.STORED_BATCH = 16
    print(json.dumps(sweep(work, every, kind, "--double" in args)))


if __name__ == "__main__":
    main()
