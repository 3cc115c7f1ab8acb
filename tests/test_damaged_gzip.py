"""Damaged compressed files keep every complete record before the damage, and after it from the next clean member;
the damage is named (file, offset, what), and `validate` exits 1 whenever anything was cut or damaged."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import msgpack
import orjson
import pytest

from agent_debug.formats.reader import ReadReport, read_file
from agent_debug.sdk.writer import fast_gzip
from agent_debug.store.ingest import ingest
from conftest import rec, run_cli


def _lines(n: int, trace: str = "t1", first: int = 0) -> bytes:
    return b"".join(orjson.dumps(rec(f"s{i}", None if i == 0 else "s0", trace_id=trace, start=i,
                                     payload={"text": f"step {i} " * 20})) + b"\n" for i in range(first, first + n))


def _sdk_gz(tmp_path: Path, data: bytes, name: str = "traces.2026-01-01_00-00-00_000001.jsonl") -> Path:
    """A file compressed the way the SDK compresses a rotated file."""
    plain = tmp_path / name
    plain.write_bytes(data)
    fast_gzip(str(plain))
    return tmp_path / (name + ".gz")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _breaking_flip(member: bytes, base: int) -> int:
    """A byte of `member` (from its middle on) whose flip makes its deflate data fail (not merely differ, which
    only its CRC shows): the file offset, with the member at `base`. (Such bytes are rare: keep members small.)"""
    for k in range(len(member) // 2, len(member) - 8):
        damaged = bytearray(member)
        damaged[k] ^= 0xFF
        try:
            zlib.decompress(bytes(damaged), 31)
        except zlib.error as exc:
            if "check" not in str(exc):  # not the CRC or length trailer: the deflate data itself
                return base + k
    raise AssertionError("no flip breaks this member")


def _second_stored_block(member: bytes) -> int:
    """The offset of the length check (NLEN) of the second block of a member made at compression level 0 (stored
    blocks): flipping it makes the data fail exactly there, after the whole first block."""
    pos = 10  # after the gzip header (no optional fields)
    length = int.from_bytes(member[pos + 1 : pos + 3], "little")
    return pos + 5 + length + 3


def _clean_prefix_ids(damaged_member: bytes) -> list[str]:
    """The span ids of the valid records among the complete lines a byte-by-byte inflate gives before failing."""
    d = zlib.decompressobj(31)
    out = []
    for k in range(len(damaged_member)):
        try:
            out.append(d.decompress(damaged_member[k : k + 1]))
        except zlib.error:
            break
    ids = []
    for line in b"".join(out).split(b"\n")[:-1]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        ids.append(obj["span_id"])
    return ids


def _ids(path: Path, report: ReadReport | None = None) -> list[str]:
    return [r["span_id"] for r in read_file(path, report if report is not None else ReadReport())]


def test_a_bad_crc_loses_nothing_and_is_named(tmp_path: Path) -> None:
    for n in (88, 5000):  # the small file lost all 88; a larger one lost its last piece
        path = _sdk_gz(tmp_path, _lines(n), f"t{n}.jsonl")
        _flip(path, len(path.read_bytes()) - 8)  # the first CRC byte
        report = ReadReport()
        assert _ids(path, report) == [f"s{i}" for i in range(n)]
        (frep,) = report.files
        assert len(frep.damage) == 1 and "CRC does not match" in frep.damage[0]
        assert f"trailer at byte {len(path.read_bytes()) - 8}" in frep.damage[0]
        assert report.rejected == 0 and frep.truncated is None
        assert any("damaged: gzip member at byte 0: CRC" in n for n in report.notices)


def test_a_bad_length_trailer_loses_nothing(tmp_path: Path) -> None:
    path = _sdk_gz(tmp_path, _lines(300))
    _flip(path, len(path.read_bytes()) - 2)
    report = ReadReport()
    assert len(_ids(path, report)) == 300
    assert "length trailer says" in report.files[0].damage[0]


def test_validate_exits_1_on_damage_and_names_it(tmp_path: Path) -> None:
    path = _sdk_gz(tmp_path, _lines(88))
    _flip(path, len(path.read_bytes()) - 8)
    res = run_cli("validate", "--json", str(path))
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert out["records"] == 88 and out["rejected"] == 0 and out["damaged"] == 1
    assert any("CRC does not match" in n for n in out["notices"])
    plain = run_cli("validate", str(path))
    assert plain.returncode == 1 and "CRC does not match" in plain.stderr
    # a .gz with a bad CRC whose content holds no record at all: nothing readable, never 0
    empty = _sdk_gz(tmp_path, b"\n\n\n", "empty.jsonl")
    _flip(empty, len(empty.read_bytes()) - 8)
    assert run_cli("validate", str(empty)).returncode == 3
    # and an intact file still exits 0
    assert run_cli("validate", str(_sdk_gz(tmp_path, _lines(5), "fine.jsonl"))).returncode == 0


def test_corrupt_member_keeps_what_inflated_and_resumes_at_the_next_member(tmp_path: Path) -> None:
    parts = [_lines(400, first=0), _lines(400, first=400), _lines(400, first=800)]
    members = [gzip.compress(p, mtime=0) for p in parts]  # the same bytes every run (the header holds a time)
    path = tmp_path / "multi.jsonl.gz"
    path.write_bytes(b"".join(members))
    bad = _breaking_flip(members[1], len(members[0]))  # in the second half of the second member
    _flip(path, bad)
    report = ReadReport()
    records = list(read_file(path, report))
    got = [r["span_id"] for r in records]
    # every valid record among the complete lines the damaged member inflates to before it fails is kept: at
    # least those a byte-by-byte inflate gives (the output of the byte that fails is lost to it; a reader
    # inflating in larger pieces may still get that piece's whole lines), each exactly as written
    middle = _clean_prefix_ids(path.read_bytes()[len(members[0]) : len(members[0]) + len(members[1])])
    assert 100 < len(middle) < 400
    kept = len(got) - 800
    assert len(middle) <= kept < 400
    assert got == [f"s{i}" for i in range(400 + kept)] + [f"s{i}" for i in range(800, 1200)]
    assert records[400 : 400 + kept] == [orjson.loads(line) for line in parts[1].splitlines()[:kept]]
    (frep,) = report.files
    assert len(frep.damage) == 1
    what = frep.damage[0]
    assert f"gzip member at byte {len(members[0])}: corrupt data" in what
    assert f"resumed at the gzip member at byte {len(members[0]) + len(members[1])}" in what
    assert report.rejects[-1].reason == "line cut by damaged compressed data"  # counted and kept


def test_damage_with_no_later_member_keeps_what_came_before(tmp_path: Path) -> None:
    data = _lines(2000)
    member = gzip.compress(data, compresslevel=0)
    path = tmp_path / "stored.jsonl.gz"
    path.write_bytes(member)
    bad = _second_stored_block(member)
    _flip(path, bad)
    report = ReadReport()
    got = _ids(path, report)
    first_block = int.from_bytes(member[11:13], "little")  # bytes of data in the first block, all kept
    assert got == [f"s{i}" for i in range(data[:first_block].count(b"\n"))] and 0 < len(got) < 2000
    (frep,) = report.files
    (what,) = frep.damage
    # the decoder notices when the length check is complete (the byte after the flipped one); its message varies
    assert what.startswith(f"gzip member at byte 0: corrupt data at byte {bad + 1} (")
    assert what.endswith(f"); {first_block} bytes before it kept; no further gzip member in the file "
                         f"({len(member) - 10} bytes searched)")


def test_a_file_that_is_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(_lines(3))
    report = ReadReport()
    assert _ids(path, report) == []
    assert report.files[0].damage == [f"not gzip data at byte 0; no further gzip member in the file "
                                      f"({len(_lines(3)) - 1} bytes searched)"]
    assert run_cli("validate", str(path)).returncode == 3


def test_msgpack_gz_resumes_after_damage_without_mixing_objects(tmp_path: Path) -> None:
    def pack(first: int, n: int) -> bytes:
        return b"".join(msgpack.packb(rec(f"s{i}", trace_id="m", start=i, payload={"t": "x" * 200}))
                        for i in range(first, first + n))

    # the header's time is fixed: it changes the compressed bytes, so which flip breaks the data and how
    for mtime in (1_700_000_000, 1_700_000_007):
        members = [gzip.compress(pack(k, 300), mtime=mtime) for k in (0, 300, 600)]
        path = tmp_path / f"x{mtime}.msgpack.gz"
        path.write_bytes(b"".join(members))
        _flip(path, _breaking_flip(members[1], len(members[0])))
        report = ReadReport()
        got = _ids(path, report)
        assert got[:300] == [f"s{i}" for i in range(300)]
        assert got[-300:] == [f"s{i}" for i in range(600, 900)]
        assert report.files[0].damage
        # with the second time the flip leaves deflate data that does not end where it should: inflated on into
        # the next member, its output there was copies of what came before (deflate's back-references reach 32 KB
        # back), one of them a whole record read twice. The inflater now stops at the next member's header.
        assert len(set(got)) == len(got)
        res = ingest([path], tmp_path / f"s{mtime}" / "traces.db")
        assert res.duplicates == 0 and res.records == len(got)


def test_ingest_reports_the_damage_and_keeps_the_records(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    path = _sdk_gz(d, _lines(88))
    _flip(path, len(path.read_bytes()) - 8)
    res = ingest([d], tmp_path / "traces.db")
    assert res.records == 88 and res.rejected == 0
    assert any("CRC does not match" in n for n in res.notices)


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl.gz"
    body = b"\n" * 100_000 + orjson.dumps(rec("a")) + b"\n  \r\n\t\n" + b"not json\n" + orjson.dumps(rec("b")) + b"\n"
    path.write_bytes(gzip.compress(body))
    report = ReadReport()
    assert _ids(path, report) == ["a", "b"]
    assert [r.location for r in report.rejects] == ["line 100004"]


@pytest.mark.parametrize("mtime", [0, 879521323, 4280909070, 1743275783])
def test_damaged_data_that_runs_on_into_the_next_member_yields_no_garbage(tmp_path: Path, mtime: int) -> None:
    """With these header times the flip leaves deflate data the inflater (isal) does not fail on: it ran on into
    the next member, and what it made of those bytes parsed as a record (span s793 named s795, with a field
    'payame'). Now the output past a member header is held back, and dropped when the member ends damaged."""
    parts = [_lines(400, first=0), _lines(400, first=400), _lines(400, first=800)]
    members = [gzip.compress(p, mtime=mtime) for p in parts]
    path = tmp_path / "multi.jsonl.gz"
    path.write_bytes(b"".join(members))
    _flip(path, _breaking_flip(members[1], len(members[0])))
    report = ReadReport()
    records = list(read_file(path, report))
    written = [orjson.loads(line) for p in parts for line in p.splitlines()]
    kept = len(records) - 800
    assert 100 < kept < 400
    assert records == written[: 400 + kept] + written[800:]  # every record exactly as written, none made up
    assert "does not end before the next member" in report.files[0].damage[0]


@pytest.mark.parametrize("level", [0, 6])
def test_gzip_files_inside_records_are_data_not_members(tmp_path: Path, level: int) -> None:
    """Records carrying gzip blobs (MessagePack bin fields; a stored block holds them raw, headers and all): the
    look-alike members inside the data are checked, held, and released when the member ends intact."""
    records = [rec(f"s{i}", None if i == 0 else "s0", trace_id="g", start=i,
                   payload={"blob": gzip.compress(bytes(range(256)) * 12 + b"x" * 3000, mtime=0)})
               for i in range(300)]
    path = tmp_path / "blobs.msgpack.gz"
    path.write_bytes(gzip.compress(b"".join(msgpack.packb(r) for r in records), compresslevel=level, mtime=0))
    report = ReadReport()
    got = list(read_file(path, report))
    assert [r["span_id"] for r in got] == [f"s{i}" for i in range(300)]  # (bin values are read as text)
    assert report.files[0].damage == [] and report.rejected == 0


def test_a_file_of_header_look_alikes_is_read_as_data(tmp_path: Path) -> None:
    path = tmp_path / "lookalikes.jsonl.gz"
    path.write_bytes(gzip.compress(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" * 100_000, compresslevel=0, mtime=0))
    report = ReadReport()
    assert list(read_file(path, report)) == [] and report.files[0].damage == []


def test_what_is_held_after_a_look_alike_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Held output is capped (HELD_MAX): past it, the look-alike is taken for data and the output released."""
    from agent_debug.formats import gzip_stream

    monkeypatch.setattr(gzip_stream, "HELD_MAX", 100_000)
    records = [rec(f"s{i}", None if i == 0 else "s0", trace_id="c", start=i,
                   payload={"blob": gzip.compress(bytes(range(256)) * 12, mtime=0)} if i == 1 else {"t": "x" * 500})
               for i in range(3000)]
    path = tmp_path / "capped.msgpack.gz"
    path.write_bytes(gzip.compress(b"".join(msgpack.packb(r) for r in records), compresslevel=0, mtime=0))
    held: list[int] = []
    real_body = gzip_stream.GzipStream._body

    def body(self: gzip_stream.GzipStream) -> bytes:
        out = real_body(self)
        held.append(sum(map(len, self._held)))
        return out

    monkeypatch.setattr(gzip_stream.GzipStream, "_body", body)
    report = ReadReport()
    got = list(read_file(path, report))
    assert [r["span_id"] for r in got] == [f"s{i}" for i in range(3000)] and report.files[0].damage == []
    assert 0 < max(held) <= 100_000 + gzip_stream.MAX_OUT
