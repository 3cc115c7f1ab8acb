"""Tolerant readers: every complete record kept, cuts and partial lines reported, garbage rejected."""

from __future__ import annotations

import gzip
from pathlib import Path

import msgpack
import orjson
import pytest

from agent_debug.errors import UsageError
from agent_debug.formats.reader import ReadReport, read_file, read_paths
from conftest import rec, run_cli, write_jsonl


def _records(n: int, trace: str = "t1") -> list[dict]:
    return [rec(f"s{i}", None if i == 0 else "s0", trace_id=trace, start=i) for i in range(n)]


def test_truncated_gzip_keeps_complete_records_and_reports_the_cut(tmp_path: Path) -> None:
    full = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in _records(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) * 2 // 3])
    report = ReadReport()
    got = list(read_file(path, report))
    assert 100 < len(got) < 2000
    assert [r["span_id"] for r in got] == [f"s{i}" for i in range(len(got))]
    assert report.files[0].truncated and "ends early" in report.files[0].truncated
    assert report.rejected == 0


def test_partial_last_line_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    data = b"".join(orjson.dumps(r) + b"\n" for r in _records(3)) + b'{"trace_id": "t1", "span'
    path.write_bytes(data)
    report = ReadReport()
    got = list(read_file(path, report))
    assert len(got) == 3
    assert "partial last line" in (report.files[0].truncated or "")
    assert report.files[0].end_offset == data.rindex(b"\n") + 1  # resume point: before the partial line


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(orjson.dumps(rec("a")) + b"\n" + orjson.dumps(rec("b")))
    assert [r["span_id"] for r in read_file(path)] == ["a", "b"]


def test_garbage_non_utf8_and_missing_fields_are_rejected_with_location(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        orjson.dumps(rec("ok1")),
        b"not json at all",
        b"\xff\xfe\x00garbage",
        orjson.dumps({"trace_id": "t1", "span_id": "x"}),
        orjson.dumps(rec("bad-dur", duration_ns=-5)),
        b"[1, 2, 3]",
        b"",
        orjson.dumps(rec("ok2")),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = ReadReport()
    got = [r["span_id"] for r in read_file(path, report)]
    assert got == ["ok1", "ok2"]
    assert report.rejected == 5
    locations = [r.location for r in report.rejects]
    assert locations == ["line 2", "line 3", "line 4", "line 5", "line 6"]
    reasons = {r.location: r.reason for r in report.rejects}
    assert reasons["line 4"].startswith("missing field parent_id")
    assert reasons["line 5"].startswith("duration_ns")
    assert report.rejects[1].raw == b"\xff\xfe\x00garbage"  # kept verbatim


def test_unknown_event_types_are_kept(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [rec("a", event_type="HANDOFF")])
    (r,) = read_file(path)
    assert r["event_type"] == "HANDOFF"


def test_uncompressed_file_wins_over_partial_gz_beside_it(tmp_path: Path) -> None:
    records = _records(50)
    write_jsonl(tmp_path / "traces.2026.jsonl", records)
    full = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records))
    (tmp_path / "traces.2026.jsonl.gz").write_bytes(full[:40])
    report = ReadReport()
    got = list(read_paths([tmp_path], report))
    assert len(got) == 50
    skipped = [f for f in report.files if f.skipped]
    assert len(skipped) == 1 and skipped[0].path.endswith(".jsonl.gz")


def test_loguru_envelope_lines(tmp_path: Path) -> None:
    inner = rec("a", agent="planner")
    env = {"text": "msg\n", "record": {"extra": inner, "level": {"name": "INFO", "no": 20},
                                       "process": {"id": 42, "name": "Main"}, "message": "msg"}}
    path = tmp_path / "app.jsonl"
    path.write_bytes(orjson.dumps(env) + b"\n")
    (r,) = read_file(path)
    assert r["agent_name"] == "planner" and r["attributes"]["loguru.level"] == "INFO"


def test_real_loguru_serialize_sink_is_readable(tmp_path: Path) -> None:
    """An app that already logs with loguru (serialize=True, rotation, gz) emits records we read."""
    from agent_debug.sdk.writer import _private_logger

    logger = _private_logger()  # its own handlers: nothing printed by the host's default sink
    logger.add(str(tmp_path / "mas_traces.jsonl"), serialize=True, rotation="10 KB", compression="gz",
               filter=lambda r: "trace_id" in r["extra"])
    for i in range(100):
        r = rec(f"s{i}", None if i == 0 else "s0")
        logger.bind(**r).info("span")
    logger.info("an unrelated app log line, filtered out of the trace sink")
    logger.remove()
    report = ReadReport()
    got = list(read_paths([tmp_path], report))
    assert len(got) == 100 and report.rejected == 0
    assert list(tmp_path.glob("*.gz"))


def test_msgpack_truncated_keeps_complete_objects(tmp_path: Path) -> None:
    data = b"".join(msgpack.packb(r) for r in _records(20))
    path = tmp_path / "x.msgpack"
    path.write_bytes(data[:-7])
    report = ReadReport()
    got = list(read_file(path, report))
    assert len(got) == 19
    assert "partial last object" in (report.files[0].truncated or "")


def test_msgpack_gz_and_garbage(tmp_path: Path) -> None:
    good = gzip.compress(b"".join(msgpack.packb(r) for r in _records(5)))
    (tmp_path / "a.msgpack.gz").write_bytes(good)
    (tmp_path / "b.mpk").write_bytes(msgpack.packb(rec("z")) + b"\xc1\xc1\xc1garbage")
    report = ReadReport()
    got = list(read_paths([tmp_path], report))
    assert len(got) == 6
    assert report.rejected == 1 and "invalid MessagePack" in report.rejects[0].reason


def test_huge_payload_is_kept(tmp_path: Path) -> None:
    big = rec("big", payload={"blob": "x" * (8 << 20)})
    path = write_jsonl(tmp_path / "big.jsonl", [big, rec("after")])
    got = list(read_file(path))
    assert [r["span_id"] for r in got] == ["big", "after"]


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        list(read_paths([tmp_path / "nope"]))


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", _records(4))
    r = run_cli("validate", "--json", str(good))
    assert r.returncode == 0, r.stderr
    out = orjson.loads(r.stdout)
    assert (out["records"], out["traces"], out["rejected"]) == (4, 1, 0)

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(orjson.dumps(rec("a")) + b"\nnope\n")
    r = run_cli("validate", str(bad))
    assert r.returncode == 1 and "invalid JSON" in r.stdout

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"nope\n")
    assert run_cli("validate", str(garbage)).returncode == 3

    r = run_cli("validate", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"Error: no such file or directory: {tmp_path / 'missing.jsonl'}"
    assert "Traceback" not in r.stderr


def test_a_record_of_a_newer_format_version_is_rejected_by_name(tmp_path: Path) -> None:
    """`format_version` (docs/trace-format.md): absent or 1 is read; a newer major version is a reject that names
    it, in the bulk path and the one-by-one path alike; the rest of the file is read."""
    from agent_debug.model import FORMAT_VERSION

    newer = FORMAT_VERSION + 1
    ok = [rec(f"s{i}", None if i == 0 else "s0", trace_id="t1", start=i) for i in range(3)]
    ok[1]["format_version"] = FORMAT_VERSION
    lines = [orjson.dumps(r) for r in ok]
    lines.append(orjson.dumps(dict(rec("new"), format_version=newer)))
    lines.append(orjson.dumps(dict(rec("odd"), format_version="1")))
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = ReadReport()
    got = list(read_file(path, report))
    assert [r["span_id"] for r in got] == ["s0", "s1", "s2"]
    assert [(r.location, r.reason) for r in report.rejects] == [
        ("line 4", f"format_version {newer} is newer than this agent-debug reads ({FORMAT_VERSION}): upgrade "
                   "agent-debug"),
        ("line 5", "format_version must be an integer")]
    r = run_cli("validate", str(path))
    assert r.returncode == 1 and f"format_version {newer} is newer" in r.stdout
    packed = tmp_path / "t.msgpack"  # MessagePack goes through the one-by-one path
    packed.write_bytes(msgpack.packb(ok[0]) + msgpack.packb(dict(rec("new"), format_version=newer)))
    report = ReadReport()
    assert [r["span_id"] for r in read_file(packed, report)] == ["s0"]
    assert report.reject_reasons == {f"format_version {newer} is newer than this agent-debug reads "
                                     f"({FORMAT_VERSION})": 1}
