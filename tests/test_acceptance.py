"""One acceptance rule: what `validate` accepts, `ingest` stores; every other record is a counted reject with a
reason; and nothing in a record's content aborts validate, ingest, or a later read of the store (traces, tree,
critical-path, bucket, why) or of the files themselves (`--from`).

A hypothesis property test drives both paths with the same generated files: our JSON lines (plain and gzip),
MessagePack (plain and gzip), loguru envelopes, and real foreign documents (OTLP, Langfuse, LangSmith,
Who&When transcripts) with odd values put in: types outside the spec, huge and negative numbers, NaN and
infinities, nesting to 2,000 levels, non-UTF-8 bytes, duplicate keys.
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agent_debug.analysis.batch import bucket_runs
from agent_debug.analysis.buckets import diagnose, load_rules
from agent_debug.analysis.critical import analyze, critical_times
from agent_debug.analysis.source import FileSource, StoreSource
from agent_debug.analysis.tree import build_tree
from agent_debug.analysis.treeview import build_view, nested_json
from agent_debug.errors import NothingReadable
from agent_debug.formats.accept import DEEP_MARKER
from agent_debug.formats.reader import ReadReport, read_file, read_paths
from agent_debug.formats.validate import validate_paths
from agent_debug.store.ingest import ingest
from agent_debug.store.query import TraceFilter
from conftest import ROOT, rec

FOREIGN = sorted(p for p in (ROOT / "fixtures" / "foreign").rglob("*.json"))
RULES = load_rules(None)

# -- values ---------------------------------------------------------------------------------------------------

DEEP = object()  # stands for "nested `depth` levels here"; serialized by hand (orjson writes at most 254 levels)
BAD_UTF8 = object()  # stands for a string whose bytes are not UTF-8


class Deep:
    def __init__(self, depth: int, kind: str) -> None:
        self.depth, self.kind = depth, kind


class BadText:
    pass


odd_scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8), st.sampled_from(["abc", "", "12", "1e400", "nan", "-5"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**63 - 1, 2**64 - 1, 2**64, -(2**63) - 1, 2**53 + 1, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
odd_values = st.recursive(
    odd_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
) | st.builds(Deep, st.sampled_from([3, 120, 127, 128, 129, 200, 253, 254, 255, 256, 300, 1000, 1023, 1024, 1025,
                                     2000]), st.sampled_from(["list", "dict"])) | st.just(BadText())

FIELDS = ("trace_id", "span_id", "parent_id", "agent_name", "event_type", "timestamp", "duration_ns", "name",
          "status", "error", "payload", "token_cost", "modality", "run_id", "session_id", "workflow", "actor",
          "attributes")


@st.composite
def records(draw: Any) -> dict[str, Any]:
    """A valid record with some of its fields (or token_cost / attribute values) replaced by odd values."""
    i = draw(st.integers(0, 5))
    r = rec(f"s{i}", None if i == 0 else draw(st.sampled_from(["s0", "s1", "gone"])),
            trace_id=draw(st.sampled_from(["t1", "t2"])), start=draw(st.floats(0, 100)),
            token_cost={"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.01},
            attributes={"outcome.passed": draw(st.booleans())}, actor="me", workflow="wf")
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(FIELDS + ("token_cost.prompt_tokens", "token_cost.completion_tokens",
                                               "token_cost.cost_usd", "attributes.outcome.passed",
                                               "attributes.source.file", "attributes.retrieval.doc_count",
                                               "attributes.tool.exit_code", "payload.x")))
        value = draw(odd_values)
        if "." in where:
            head, key = where.split(".", 1)
            if not isinstance(r.get(head), dict):
                r[head] = {}
            r[head][key] = value
        else:
            r[where] = value
    return r


# -- writing odd values by hand ---------------------------------------------------------------------------------


def to_json(v: Any) -> str:
    """JSON text of `v`, with Deep nesting and BadText markers, NaN and infinities as bare tokens."""
    if isinstance(v, Deep):
        return ("[" * v.depth + "1" + "]" * v.depth) if v.kind == "list" else ('{"a":' * v.depth + "1" + "}" * v.depth)
    if isinstance(v, BadText):
        return '"\udcff"'  # becomes a lone surrogate in the text, invalid UTF-8 once encoded with surrogateescape
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(map(to_json, v)) + "]"
    if isinstance(v, float) and not math.isfinite(v):  # as Python's json module writes them: not JSON
        return "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"
    return json.dumps(v)


def json_line(r: dict[str, Any], duplicate: bool) -> bytes:
    text = to_json(r)
    if duplicate:  # a duplicate key: the first span_id is a decoy, the last one wins (as in every JSON parser)
        text = '{"span_id":"decoy",' + text[1:]
    return text.encode("utf-8", "surrogateescape") + b"\n"


def to_msgpack(v: Any) -> bytes:
    if isinstance(v, Deep):
        return (b"\x91" if v.kind == "list" else b"\x81\xa1a") * v.depth + b"\x01"
    if isinstance(v, BadText):
        return b"\xa2\xff\xfe"  # a str whose bytes are not UTF-8
    if isinstance(v, dict):
        return _map_header(len(v)) + b"".join(to_msgpack(str(k)) + to_msgpack(x) for k, x in v.items())
    if isinstance(v, list):
        return _array_header(len(v)) + b"".join(map(to_msgpack, v))
    if isinstance(v, int) and not -(2**63) <= v < 2**64:
        return msgpack.packb(float(v))
    return msgpack.packb(v)


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


def _set_leaf(obj: Any, pick: int, value: Any) -> Any:
    """`obj` with its `pick`-th leaf (in a walk of dicts and lists, modulo their count) set to `value`."""
    paths: list[tuple[Any, Any]] = []
    stack = [obj]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, x in items:
            if isinstance(x, (dict, list)) and x:
                stack.append(x)
            else:
                paths.append((node, k))
    if paths:
        node, k = paths[pick % len(paths)]
        node[k] = value
    return obj


# -- the files ----------------------------------------------------------------------------------------------------

KINDS = ("jsonl", "jsonl.gz", "msgpack", "msgpack.gz", "envelope", "foreign")


@st.composite
def trace_files(draw: Any) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    if kind == "foreign":
        path = draw(st.sampled_from(FOREIGN))
        doc = orjson.loads(path.read_bytes())
        for _ in range(draw(st.integers(1, 4))):
            doc = _set_leaf(doc, draw(st.integers(0, 10_000)), draw(odd_values))
        return path.name, to_json(doc).encode("utf-8", "surrogateescape")
    recs = draw(st.lists(records(), min_size=1, max_size=6))
    if kind.startswith("msgpack"):
        data = b"".join(map(to_msgpack, recs))
    elif kind == "envelope":
        data = b"".join(
            json_line({"text": "x\n", "record": {"level": {"name": "INFO"}, "extra": r}}, draw(st.booleans()))
            for r in recs)
    else:
        data = b"".join(json_line(r, draw(st.booleans())) for r in recs)
    if kind.endswith(".gz"):
        return f"t.{kind}", gzip.compress(data)
    return ("t.jsonl" if kind == "envelope" else f"t.{kind}"), data


def read_everything(src: Any) -> int:
    """Every read command's library path on every trace of `src`, with the JSON each command would print."""
    runs = src.list(TraceFilter())
    for s in runs:
        ts = src.load(s.trace_id, records=True)
        tree = build_tree(ts)
        crit = critical_times(tree)
        orjson.dumps(nested_json(tree, crit), option=orjson.OPT_NON_STR_KEYS, default=str)
        build_view(tree, set(crit))
        orjson.dumps(analyze(src.load(s.trace_id, records="lazy")).as_dict(), option=orjson.OPT_NON_STR_KEYS,
                     default=str)
        d = diagnose(ts, src.summary(s.trace_id), RULES)
        orjson.dumps(d.as_dict() if d else None, option=orjson.OPT_NON_STR_KEYS, default=str)
        orjson.dumps(s.as_dict(), option=orjson.OPT_NON_STR_KEYS)
    orjson.dumps(bucket_runs(src, TraceFilter(), RULES).as_dict(), option=orjson.OPT_NON_STR_KEYS, default=str)
    return len(runs)


def check_one_rule(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "in"
        d.mkdir()
        (d / name).write_bytes(data)
        v = validate_paths([d])
        accepted = {(r["trace_id"], r["span_id"]) for r in read_paths([d])}
        res = ingest([d], Path(tmp) / "traces.db")
        # the same records accepted, the same rejected for the same reasons
        assert res.readable == v.records
        assert res.rejected == v.rejected and res.rejects_by_reason == v.rejects_by_reason
        # every accepted record is stored: one span per (trace, span id), a repeat is a duplicate or a conflict
        assert res.records == len(accepted) and res.records + res.duplicates + res.conflicts <= v.records
        if v.rejected:
            lines = (Path(tmp) / "traces.rejects.jsonl").read_bytes().splitlines()
            assert len(lines) == v.rejected and all(orjson.loads(x)["reason"] for x in lines)
        src = StoreSource(Path(tmp) / "traces.db")
        try:
            assert read_everything(src) == len({tid for tid, _ in accepted})
            stored = {(s.trace_id, sid) for s in src.list(TraceFilter()) for sid in src.load(s.trace_id).span_id}
            assert stored == accepted
            assert sum(s.span_count for s in src.list(TraceFilter())) == res.records
        finally:
            src.close()
        if v.records == 0:  # `--from` with nothing readable is a one-line error (exit 3), as validate's
            with pytest.raises(NothingReadable):
                FileSource([d])
            return
        files = FileSource([d])
        read_everything(files)
        assert sum(len(ts) for ts in files.traces.values()) == v.records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trace_files())
def test_validate_and_ingest_accept_the_same_records_and_every_read_survives(f: tuple[str, bytes]) -> None:
    check_one_rule(*f)


# -- the known crashers, each pinned ------------------------------------------------------------------------------

BASE = rec("s1", token_cost={"prompt_tokens": 1})


@pytest.mark.parametrize("name,line", [
    ("tokens as text", {**BASE, "token_cost": {"prompt_tokens": "abc"}}),
    ("tokens as an object", {**BASE, "token_cost": {"prompt_tokens": {}}}),
    ("tokens past 63 bits", {**BASE, "token_cost": {"prompt_tokens": 2**63}}),
    ("tokens summing past 63 bits", [{**BASE, "span_id": f"s{i}", "token_cost": {"prompt_tokens": 2**53}}
                                     for i in range(1100)]),
    ("an actor that is an object", {**BASE, "actor": {"user": "me"}}),
    ("a name that is a list", {**BASE, "name": ["a", {"b": 1}]}),
    ("the earliest and latest times, no root", [{**BASE, "parent_id": "x", "timestamp": -4.5e9},
                                                 {**BASE, "span_id": "s2", "parent_id": "x", "timestamp": 4.5e9,
                                                  "duration_ns": 4_600_000_000_000_000_000}]),
])
def test_known_crashers_are_stored(tmp_path: Path, name: str, line: Any) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "t.jsonl").write_bytes(b"".join(json_line(r, False) for r in (line if isinstance(line, list) else [line])))
    check_one_rule("t.jsonl", (d / "t.jsonl").read_bytes())
    res = ingest([d], tmp_path / "traces.db")
    assert res.records == (len(line) if isinstance(line, list) else 1) and res.rejected == 0


def test_deep_nesting_is_cut_to_a_marker_in_every_format(tmp_path: Path) -> None:
    deep = Deep(300, "list")
    r = {**BASE, "payload": {"x": deep}}
    files = {
        "a.jsonl": json_line(r, False),
        "b.jsonl": json_line({"text": "x", "record": {"extra": r}}, False),
        "c.msgpack": to_msgpack({**r, "span_id": "s3"}),
        "d.json": b'{"span_id":"s","payload":' + b"[" * 300 + b"]" * 300 + b"}",  # the validate crasher
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    v = validate_paths([tmp_path])
    assert v.records == 3 and v.rejected == 1 and v.rejects_by_reason == {"missing field trace_id": 1}
    res = ingest([tmp_path], tmp_path / "db" / "traces.db")
    assert res.records == 2 and res.duplicates == 1  # s1 from the line and the envelope: the same content; s3
    src = StoreSource(tmp_path / "db" / "traces.db")
    ts = src.load("t1", records=True)
    payloads = [r["payload"] for r in ts.records]
    # kept down to MAX_DEPTH levels (the record is level 1, payload 2, x 3), then the marker
    node = payloads[0]["x"]
    depth = 3
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert node == DEEP_MARKER and depth == 129
    src.close()


def test_nesting_beyond_what_a_parser_reads_is_a_reject_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(json_line({**BASE, "payload": {"x": Deep(2000, "dict")}}, False))
    (tmp_path / "b.msgpack").write_bytes(to_msgpack({**BASE, "payload": {"x": Deep(2000, "list")}})
                                         + to_msgpack({**BASE, "span_id": "after"}))
    v = validate_paths([tmp_path])
    assert v.records == 1 and v.rejected == 2  # the MessagePack object after the deep one is read
    assert set(v.rejects_by_reason) == {"invalid JSON", "invalid MessagePack"}


def test_a_messagepack_object_that_cannot_be_decoded_is_one_reject_and_reading_goes_on(tmp_path: Path) -> None:
    good = [msgpack.packb({**BASE, "span_id": f"g{i}"}) for i in range(4)]
    keyed_by_map = b"\x81\x81\xa1a\x01\x02"  # {{"a": 1}: 2}: a key Python cannot hash
    not_utf8 = to_msgpack({**BASE, "span_id": "bad", "name": BadText()})
    too_deep = b"\x91" * 1100 + b"\x01"
    path = tmp_path / "t.msgpack"
    path.write_bytes(good[0] + keyed_by_map + good[1] + not_utf8 + good[2] + too_deep + good[3])
    report = ReadReport()
    got = [r["span_id"] for r in read_file(path, report)]
    assert got == ["g0", "g1", "g2", "g3"]
    reasons = [r.reason for r in report.rejects]
    assert reasons[0].startswith("invalid MessagePack: TypeError") and reasons[2].startswith("invalid MessagePack")
    assert reasons[1] == "invalid UTF-8 in a string"
    assert report.rejects[0].raw == keyed_by_map and report.rejects[2].raw == too_deep  # kept verbatim
    assert report.rejects[0].location == f"offset {len(good[0])}"


def test_a_run_of_messagepack_garbage_is_one_reject(tmp_path: Path) -> None:
    """Garbage decodes as one small value per byte or so: one reject for the run, not thousands."""
    garbage = bytes(range(0x00, 0x7F)) * 40  # positive fixints: 5,080 values
    path = tmp_path / "t.msgpack"
    path.write_bytes(msgpack.packb({**BASE, "span_id": "a"}) + garbage + msgpack.packb({**BASE, "span_id": "b"}))
    report = ReadReport()
    assert [r["span_id"] for r in read_file(path, report)] == ["a", "b"]
    (reject,) = report.rejects
    assert reject.reason == f"not a map: {len(garbage)} values that are not maps ({len(garbage)} bytes)"
    assert reject.raw == garbage and dict(report.reject_reasons) == {"not a map": 1}
