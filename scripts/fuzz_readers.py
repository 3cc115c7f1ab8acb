"""Fuzz every reader and importer: our JSON lines and MessagePack (plain and gzip), loguru envelopes, whole-document
`.json` files, and every foreign-format importer in agent_debug/formats (OTLP, OpenInference, Langfuse, LangSmith,
transcripts), found by sniffing and forced with `--format`.

Inputs are mutations of real seeds (fixtures/ and ../shared/data: records, envelopes, foreign documents with
their long lists cut to a few items) and generated structures: odd values put into records and documents (types
outside the spec, huge and negative numbers, NaN and infinities, nesting up to 2,000 levels, invalid UTF-8,
duplicate keys), then byte-level mutations (flips, inserts, deletes, splices, truncation) of the text, of the
MessagePack bytes and of the gzip bytes (damaged CRCs, cut and spliced members).

A crash is any exception out of a reader, an importer that fails on an input (the reader turns that into
"import failed" rejects; here it counts as a crash), or a record a reader yields that could not be stored or
summarized (not plain JSON within the depth limit, or its columns fail). Every input is timed.

    .venv/bin/python scripts/fuzz_readers.py                 # 1,000,000 inputs on 2 processes
    .venv/bin/python scripts/fuzz_readers.py --quick         # a few seconds (the test suite runs this)
    .venv/bin/python scripts/fuzz_readers.py -n 50000 --seed 7 --jobs 1

Prints the inputs per reader, the crashes (each saved under --crash-dir with its traceback), the slowest input's
time and how many took over 1 s. Exits 1 if anything crashed or took over 1 s.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import multiprocessing
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import orjson  # noqa: E402

from agent_debug.columns import TraceSpans, envelope_of  # noqa: E402
from agent_debug.formats import registry  # noqa: E402
from agent_debug.formats.accept import MAX_DEPTH, _Probe  # noqa: E402
from agent_debug.formats.reader import ReadReport, read_file_batches  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
_PROBE = _Probe()
SLOW_S = 1.0
MAX_SEED_LIST = 2  # foreign documents' lists are cut to this many items (strings to 200 characters, objects to 40
MAX_SEED_KEYS = 40  # keys): every shape, small inputs

# -- seeds ---------------------------------------------------------------------------------------------------------


def _shrink(v: Any, depth: int = 0) -> Any:
    if isinstance(v, dict):
        return {k: _shrink(x, depth + 1) for k, x in list(v.items())[:MAX_SEED_KEYS]}
    if isinstance(v, list):
        return [_shrink(x, depth + 1) for x in v[:MAX_SEED_LIST]]
    if isinstance(v, str) and len(v) > 200:
        return v[:200]
    return v


def load_seeds() -> dict[str, list[Any]]:
    """Parsed seeds by kind: "record" (our records), and one list of documents per importer name."""
    seeds: dict[str, list[Any]] = {"record": []}
    for imp in registry.importers():
        seeds[imp.name] = []
    files = sorted((ROOT / "fixtures").rglob("*.json*")) + sorted(SHARED.rglob("*.json*")) if SHARED.is_dir() \
        else sorted((ROOT / "fixtures").rglob("*.json*"))
    for path in files:
        data = path.read_bytes()
        docs: list[Any] = []
        try:
            docs = [orjson.loads(data)]
        except orjson.JSONDecodeError:
            for line in data.splitlines()[:200]:
                try:
                    docs.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        for doc in docs:
            if isinstance(doc, dict) and "span_id" in doc:
                seeds["record"].append(doc)
                continue
            imp = registry.sniff(doc)
            if imp is not None and len(seeds[imp.name]) < 60:
                seeds[imp.name].append(_shrink(doc))
    seeds["openinference"].append({  # a Phoenix span (the shared data holds TRAIL's nested export only)
        "name": "llm", "context": {"trace_id": "0x" + "ab" * 16, "span_id": "0x" + "cd" * 8}, "parent_id": None,
        "span_kind": "LLM", "start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-01T00:00:01.5Z",
        "status_code": "OK", "attributes": {"llm.token_count.prompt": 12, "input.value": "hi"}, "events": []})
    return seeds


# -- odd values ----------------------------------------------------------------------------------------------------


class Deep:
    """Nesting `depth` levels deep, written by hand (orjson writes at most 254 levels)."""

    def __init__(self, depth: int, kind: str) -> None:
        self.depth, self.kind = depth, kind


class BadText:
    """A string whose bytes are not UTF-8."""


ODD_SCALARS: list[Any] = [
    None, True, False, "", "abc", "12", "-1", "1e400", "nan", "\u0000", "x" * 3000, 0, -1, 1, 2**31, 2**53 + 1,
    2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30), 0.5, -0.0, 1e308, -1e308,
    float("nan"), float("inf"), float("-inf"), 4.6e9, -4.6e9, 4_600_000_000_000_000_001, "ok", "error",
    "2025-01-01T00:00:00Z", "PT1M48.7S", "0x" + "0" * 32, "STATUS_CODE_ERROR", {}, [], [None], {"": None},
]
DEPTHS = [2, 50, 127, 128, 129, 200, 253, 254, 255, 256, 300, 1000, 1023, 1024, 1025, 2000]


def odd_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if r < 0.55 or depth > 3:
        v = rng.choice(ODD_SCALARS)
        return copy.deepcopy(v) if isinstance(v, (list, dict)) else v  # never shared: a later mutation of it
        # would change every input that holds it, and could make it hold itself
    if r < 0.7:
        return Deep(rng.choice(DEPTHS), rng.choice(("list", "dict")))
    if r < 0.75:
        return BadText()
    if r < 0.87:
        return [odd_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(("a", "type", "value", "id", "name", "", "0")): odd_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def leaves(obj: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value in `obj`, containers included."""
    out: list[tuple[Any, Any]] = []
    stack = [obj]
    while stack:
        node = stack.pop()
        it = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, x in it:
            out.append((node, k))
            if isinstance(x, (dict, list)):
                stack.append(x)
    return out


def mutate_structure(obj: Any, rng: random.Random) -> Any:
    """A deep copy of `obj` with a few values replaced by odd ones, keys dropped or retyped."""
    obj = orjson.loads(orjson.dumps(obj))
    places = leaves(obj)
    for _ in range(rng.randint(1, 4)):
        if not places:
            break
        node, k = rng.choice(places)
        r = rng.random()
        if r < 0.7:
            node[k] = odd_value(rng)
        elif r < 0.85 and isinstance(node, dict):
            del node[k]
            places = leaves(obj)
        elif isinstance(node, list):
            node.append(node[k])
        else:
            node[k + "_"] = node[k]
    return obj


# -- encoders that write what orjson and msgpack will not ------------------------------------------------------------


def to_json(v: Any) -> str:
    if isinstance(v, Deep):
        return ("[" * v.depth + "1" + "]" * v.depth) if v.kind == "list" else ('{"a":' * v.depth + "1" + "}" * v.depth)
    if isinstance(v, BadText):
        return '"\udcff\udcfe"'
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(map(to_json, v)) + "]"
    if isinstance(v, float) and not math.isfinite(v):
        return "1e400" if v > 0 else "-1e400" if v < 0 else "NaN"  # what a careless writer puts there
    return json.dumps(v)


def _fragment(v: Any) -> Any:
    if isinstance(v, (Deep, BadText)):
        return orjson.Fragment(to_json(v).encode("utf-8", "surrogateescape"))
    raise TypeError


def json_bytes(v: Any) -> bytes:
    """JSON of `v` with its Deep and BadText parts: orjson with those as fragments (NaN and infinities become
    null), or, for integers beyond 64 bits, the slow way."""
    try:
        return orjson.dumps(v, default=_fragment)
    except TypeError:
        return to_json(v).encode("utf-8", "surrogateescape")


def to_msgpack(v: Any) -> bytes:
    if isinstance(v, Deep):
        return (b"\x91" if v.kind == "list" else b"\x81\xa1a") * v.depth + b"\x01"
    if isinstance(v, BadText):
        return b"\xa2\xff\xfe"
    if isinstance(v, dict):
        n = len(v)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
        return head + b"".join(to_msgpack(k) + to_msgpack(x) for k, x in v.items())
    if isinstance(v, list):
        n = len(v)
        head = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        return head + b"".join(map(to_msgpack, v))
    if isinstance(v, int) and not -(2**63) <= v < 2**64:
        return msgpack.packb(float(v))
    return msgpack.packb(v)


# -- byte mutations --------------------------------------------------------------------------------------------------

TOKENS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"\n", b"\r\n", b"\x00", b"\xff", b"\xc1", b"1e400", b"-0",
          b"NaN", b"null", b'"span_id"', b'"trace_id":', b"9" * 30, b"\\u0000", b"\\ud800", b"\x1f\x8b\x08\x00",
          b"\x91" * 300, b"\xdd\xff\xff\xff\xff", b"\xdb\x7f\xff\xff\xff", b"[" * 1100, b"\n" * 50]


def mutate_bytes(data: bytes, rng: random.Random, donor: bytes = b"") -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        n = len(b)
        if op < 0.3 and n:
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op < 0.45:
            b[rng.randint(0, n) : rng.randint(0, n)] = b""
        elif op < 0.65:
            at = rng.randint(0, n)
            b[at:at] = rng.choice(TOKENS)
        elif op < 0.75 and n:
            i = rng.randrange(n)
            b[i : i] = b[i : i + rng.randint(1, 64)] * rng.randint(1, 8)
        elif op < 0.85 and donor:
            i = rng.randrange(len(donor))
            at = rng.randint(0, n)
            b[at:at] = donor[i : i + rng.randint(1, 200)]
        elif op < 0.93:
            del b[rng.randint(0, n) :]
        elif n:
            b[rng.randrange(n)] = rng.randrange(256)
    return bytes(b)


def gz(data: bytes, rng: random.Random) -> bytes:
    """`data` as gzip, in one or more members, sometimes damaged."""
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, 2)))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out = b"".join(gzip.compress(p, compresslevel=rng.choice((1, 6)), mtime=0) for p in parts)
    r = rng.random()
    if r < 0.25 and len(out) > 8:  # a damaged CRC or length trailer
        b = bytearray(out)
        b[len(b) - rng.randint(1, 8)] ^= 0xFF
        out = bytes(b)
    elif r < 0.6:
        out = mutate_bytes(out, rng)
    return out


# -- the inputs: (reader, file name, bytes, forced format) ------------------------------------------------------------


def _records(seeds: dict[str, list[Any]], rng: random.Random) -> list[Any]:
    recs = [rng.choice(seeds["record"]) for _ in range(rng.randint(1, 6))]
    return [mutate_structure(r, rng) if rng.random() < 0.6 else r for r in recs]


def _lines(values: list[Any], rng: random.Random) -> bytes:
    out = []
    for v in values:
        line = json_bytes(v)
        if rng.random() < 0.1 and line.startswith(b"{") and len(line) > 2:
            line = b'{"span_id":"dup",' + line[1:]  # a duplicate key
        out.append(line + rng.choice((b"\n", b"\n", b"\r\n", b"\n\n")))
    return b"".join(out)


def make_input(seeds: dict[str, list[Any]], rng: random.Random, reader: str) -> tuple[str, bytes, str | None]:
    if reader in ("jsonl", "jsonl.gz", "envelope"):
        recs = _records(seeds, rng)
        if reader == "envelope":
            recs = [{"text": "x\n", "record": {"extra": r, "level": {"name": rng.choice(["INFO", None, 3])},
                                              "process": {"id": rng.choice([1, "x", None])}}} for r in recs]
        data = _lines(recs, rng)
        if rng.random() < 0.5:
            data = mutate_bytes(data, rng, json_bytes(rng.choice(seeds["record"])))
        if reader == "jsonl.gz":
            return "t.jsonl.gz", gz(data, rng), None
        return "t.jsonl", data, None
    if reader in ("msgpack", "msgpack.gz"):
        data = b"".join(map(to_msgpack, _records(seeds, rng)))
        if rng.random() < 0.5:
            data = mutate_bytes(data, rng)
        if reader == "msgpack.gz":
            return "t.msgpack.gz", gz(data, rng), None
        return "t.msgpack", data, None
    # a foreign format: reader is its importer's name
    doc = rng.choice(seeds[reader])
    if rng.random() < 0.7:
        doc = mutate_structure(doc, rng)
    forced = reader if rng.random() < 0.3 else None
    if rng.random() < 0.5:
        data, name = json_bytes(doc), "doc.json"
    else:
        data, name = json_bytes(doc) + b"\n" + json_bytes(rng.choice(seeds[reader])) + b"\n", "lines.jsonl"
    if rng.random() < 0.4:
        data = mutate_bytes(data, rng, json_bytes(rng.choice(seeds[reader])))
    if rng.random() < 0.1:
        return name + ".gz", gz(data, rng), forced
    return name, data, forced


# -- running one -----------------------------------------------------------------------------------------------------


class Crash(Exception):
    """A reader broke its contract on an input."""


def _storable(rec: dict[str, Any]) -> None:
    """What ingest does with a record's content must work: plain JSON within the depth limit, columns, envelope."""
    if not _PROBE.fits(rec):  # orjson.dumps inside ORJSON_DEPTH - MAX_DEPTH lists
        raise Crash(f"a record that is not plain JSON within {MAX_DEPTH} levels")
    ts = TraceSpans(rec["trace_id"])
    ts.add(rec)
    orjson.dumps(envelope_of(rec))


def run_one(path: Path, fmt: str | None) -> tuple[int, int]:
    """Read the file; raise on a broken contract. Returns (records, rejects)."""
    report = ReadReport()
    n = 0
    for recs, _lines, _cols in read_file_batches(path, report, format=fmt):
        for rec in recs:
            _storable(rec)
        n += len(recs)
    failed = [r for r in report.rejects if " import failed: " in r.reason]
    if failed:
        raise Crash(f"an importer failed: {failed[0].reason}")
    report.notices  # noqa: B018 - the notices are built too
    return n, report.rejected


def readers(seeds: dict[str, list[Any]]) -> list[str]:
    own = ["jsonl", "jsonl.gz", "envelope", "msgpack", "msgpack.gz"]
    return own + [imp.name for imp in registry.importers() if seeds.get(imp.name)]


_SEEDS: dict[str, list[Any]] = {}


def worker(args: tuple[int, int, int, str, bool]) -> dict[str, Any]:
    """Run `count` inputs from `seed`; return the counts (crashes saved under crash_dir)."""
    seed, count, _job, crash_dir, _quick = args
    if not _SEEDS:  # once per process
        _SEEDS.update(load_seeds())
    seeds = _SEEDS
    names = readers(seeds)
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    records = rejects = 0
    slowest, slowest_what, over = 0.0, "", 0
    slowest_input: tuple[str, bytes] | None = None
    generator_errors = 0
    first_crashes: list[str] = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        for i in range(count):
            reader = names[i % len(names)]
            try:
                name, data, fmt = make_input(seeds, rng, reader)
            except Exception as exc:  # noqa: BLE001 - a bug of this script's, not of a reader: counted, reported
                generator_errors += 1
                if len(first_crashes) < 5:
                    first_crashes.append(f"input generator ({reader}): {type(exc).__name__}: {exc}")
                continue
            path = Path(tmp) / name
            path.write_bytes(data)
            t0 = time.perf_counter()
            try:
                got, rej = run_one(path, fmt)
                records += got
                rejects += rej
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                crashes[reader] += 1
                saved = Path(crash_dir) / f"crash-{seed}-{i}-{name}"
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_bytes(data)
                tb = "".join(traceback.format_exception(exc))
                saved.with_name(saved.name + ".txt").write_text(f"format={fmt}\n{tb}")
                if len(first_crashes) < 5:
                    first_crashes.append(f"{reader}: {type(exc).__name__}: {exc} ({saved})")
            took = time.perf_counter() - t0
            counts[reader] += 1
            if took > slowest:
                slowest, slowest_what, slowest_input = took, f"{reader} {name} {len(data)} bytes", (name, data)
            if took > SLOW_S:
                over += 1
                saved = Path(crash_dir) / f"slow-{seed}-{i}-{name}"
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_bytes(data)
    if slowest_input is not None:  # kept for a look
        Path(crash_dir).mkdir(parents=True, exist_ok=True)
        (Path(crash_dir) / f"slowest-{seed}-{slowest_input[0]}").write_bytes(slowest_input[1])
    return {"counts": counts, "crashes": crashes, "records": records, "rejects": rejects, "slowest": slowest,
            "slowest_what": slowest_what, "over": over, "first_crashes": first_crashes,
            "generator_errors": generator_errors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--inputs", type=int, default=1_000_000, help="inputs in total (default 1,000,000)")
    p.add_argument("--quick", action="store_true", help="a few seconds: 1,500 inputs on one process")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    p.add_argument("--crash-dir", default=str(Path(tempfile.gettempdir()) / "agent-debug-fuzz"))
    a = p.parse_args(argv)
    total, jobs = (1500, 1) if a.quick else (a.inputs, max(1, a.jobs))
    # many small slices: progress, and an even share of the work across processes
    slices = max(jobs, total // 20_000) if not a.quick else 1
    sizes = [total // slices + (1 if k < total % slices else 0) for k in range(slices)]
    tasks = [(a.seed * 1_000_003 + k, n, k, a.crash_dir, a.quick) for k, n in enumerate(sizes)]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    if jobs == 1:
        results = [worker(t) for t in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for res in pool.imap_unordered(worker, tasks):
                results.append(res)
                done = sum(sum(r["counts"].values()) for r in results)
                print(f"  {done:,} inputs, {sum(sum(r['crashes'].values()) for r in results)} crashes, "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    counts: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    for r in results:
        counts.update(r["counts"])
        crashes.update(r["crashes"])
    slow = max(results, key=lambda r: r["slowest"])
    over = sum(r["over"] for r in results)
    n_crashes = sum(crashes.values())
    print(f"inputs: {sum(counts.values()):,} in {time.perf_counter() - t0:.0f} s (seed {a.seed}, {jobs} processes)")
    print("per reader: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    print(f"records read: {sum(r['records'] for r in results):,}; rejects: {sum(r['rejects'] for r in results):,}")
    print(f"crashes: {n_crashes}" + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(crashes.items())) + ")"
                                     if n_crashes else ""))
    for r in results:
        for line in r["first_crashes"]:
            print(f"  {line}")
    print(f"slowest input: {slow['slowest'] * 1000:.1f} ms ({slow['slowest_what']}); over {SLOW_S:.0f} s: {over}")
    gen_errors = sum(r["generator_errors"] for r in results)
    if gen_errors:
        print(f"input generator errors (inputs not run): {gen_errors}")
    return 1 if n_crashes or over or gen_errors else 0


if __name__ == "__main__":
    sys.exit(main())
