"""Tolerant, streaming readers for trace files (spec: "Files").

Every complete record is kept; a partial last line or a truncated gzip member is reported, never fatal; damaged
compressed data is skipped to the next gzip member and reported (`gzip_stream`), an undecodable MessagePack object
is skipped (`msgpack_stream`); an invalid record becomes a `Reject` (source, line or offset, reason, the raw
bytes) and reading goes on. What is a record and what it may hold is decided by one rule for every reader
(`accept`). Memory stays constant for our own formats (foreign whole-document formats are loaded one document at
a time).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from io import BytesIO
from itertools import compress, repeat
from operator import add, itemgetter, not_
from pathlib import Path
from typing import IO, Any

import orjson

from agent_debug.errors import UsageError
from agent_debug.formats import registry
from agent_debug.formats.accept import MAX_DEPTH, accept, safe_dumps, within_limits
from agent_debug.formats.gzip_stream import GzipStream
from agent_debug.formats.msgpack_stream import MsgpackStream
from agent_debug.model import FORMAT_VERSION, MAX_DURATION_NS, MAX_TIMESTAMP, REQUIRED_FIELDS

CHUNK = 1 << 18
MAX_LINE = 64 << 20  # a single line longer than this is rejected without being held in memory
MAX_DOCUMENT = 512 << 20  # a whole-document `.json` file larger than this is refused

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".log")
MSGPACK_SUFFIXES = (".msgpack", ".mpk")
GZ = ".gz"


@dataclass
class Reject:
    """A record that could not be read, kept verbatim."""

    source: str
    location: str
    reason: str
    raw: bytes


@dataclass
class FileReport:
    """What reading one file found."""

    path: str
    format: str = "agent-debug"
    records: int = 0
    rejected: int = 0
    lines: int = 0  # lines read up to end_offset (JSON lines files)
    end_offset: int = 0  # byte offset after the last complete record (plain files only)
    truncated: str | None = None  # why the file ended early (a cut gzip member, a partial last line)
    skipped: str | None = None  # why the whole file was not read
    damage: list[str] = field(default_factory=list)  # damaged places in it (compressed data), each kept around

    @property
    def damaged(self) -> bool:
        """Was anything cut or damaged (so something may be missing)?"""
        return bool(self.truncated or self.damage)


@dataclass
class ReadReport:
    """What reading a set of paths found: per file, plus rejects by reason."""

    files: list[FileReport] = field(default_factory=list)
    reject_reasons: Counter[str] = field(default_factory=Counter)
    rejects: list[Reject] = field(default_factory=list)
    keep_rejects: bool = True

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    @property
    def notices(self) -> list[str]:
        """One line per cut, partial tail or skipped file, for stderr."""
        out = []
        for f in self.files:
            if f.skipped:
                out.append(f"{f.path}: skipped: {f.skipped}")
            for what in f.damage:
                out.append(f"{f.path}: damaged: {what}")
            if f.truncated:
                out.append(f"{f.path}: {f.truncated}")
        return out

    @property
    def damaged(self) -> int:
        """Files with something cut or damaged."""
        return sum(1 for f in self.files if f.damaged)


def is_trace_file(path: Path) -> bool:
    name = path.name
    if name.endswith(GZ):
        name = name[: -len(GZ)]
    return name.endswith(JSONL_SUFFIXES + MSGPACK_SUFFIXES)


def expand_paths(paths: Iterable[str | os.PathLike[str]], report: ReadReport | None = None) -> list[Path]:
    """Files to read, in a stable order: directories recursively; a partial `X.gz` beside `X` is skipped.

    Raises UsageError for a path that does not exist or is neither a regular file nor a directory.
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(q for q in path.rglob("*") if q.is_file() and is_trace_file(q)))
        elif path.is_file():
            out.append(path)
        elif path.exists():  # a FIFO, a device (/dev/zero), a socket: reading it could block or never end
            raise UsageError(f"not a regular file or directory: {path}")
        else:
            raise UsageError(f"no such file or directory: {path}")
    seen: set[Path] = set()
    unique: list[Path] = []
    for q in out:
        if q not in seen:
            seen.add(q)
            unique.append(q)
    names = {str(q) for q in unique}
    kept: list[Path] = []
    for q in unique:
        if q.name.endswith(GZ) and str(q)[: -len(GZ)] in names:
            # a crash during rotation compression leaves both: the uncompressed file is the complete one
            if report is not None:
                report.files.append(
                    FileReport(str(q), skipped=f"{q.name[:-3]} exists beside it (interrupted compression)")
                )
            continue
        kept.append(q)
    return kept


def file_kind(path: Path) -> str:
    name = path.name
    if name.endswith(GZ):
        name = name[: -len(GZ)]
    return "msgpack" if name.endswith(MSGPACK_SUFFIXES) else "json"


class _Skipped:
    """A stream whose first `n` bytes are read and dropped (a compressed stream cannot seek)."""

    def __init__(self, fh: IO[bytes], n: int) -> None:
        self._fh = fh
        self._left = n
        self.problem: str | None = None
        self.damage: list[str] = getattr(fh, "damage", [])
        self.broke = False

    def read(self, size: int = CHUNK) -> bytes:
        while self._left > 0:
            chunk = self._fh.read(CHUNK)
            if not chunk:
                self._left = 0
                break
            if len(chunk) > self._left:
                chunk = chunk[self._left :]
                self._left = 0
                return chunk
            self._left -= len(chunk)
        data = self._fh.read(size)
        self.problem = getattr(self._fh, "problem", None)
        self.broke = getattr(self._fh, "broke", False)
        return data


def open_binary(path: Path, raw: IO[bytes] | None = None) -> IO[bytes]:
    """`path`'s content (decompressed); `raw`: the file already open (read through it, not through the name)."""
    if path.name.endswith(GZ):
        return GzipStream(path, raw)  # type: ignore[return-value]  # it reads and seeks as the readers need
    return raw if raw is not None else open(path, "rb")


def _chunks(fh: IO[bytes], frep: FileReport) -> Iterator[tuple[bytes, bool]]:
    """Yield (decompressed chunk, whether it follows a break): a cut gzip stream ends the file with a note, damaged
    compressed data is skipped with one (`GzipStream`), never an exception."""
    while True:
        try:
            chunk = fh.read(CHUNK)
        except OSError as exc:
            frep.truncated = f"read error ({exc}); complete records kept"
            return
        finally:
            damage = getattr(fh, "damage", None)
            if damage:
                frep.damage = list(damage)
        if not chunk:
            problem = getattr(fh, "problem", None)
            if problem:
                frep.truncated = f"{problem}; complete records kept"
            return
        yield chunk, getattr(fh, "broke", False)


def _reject(
    report: ReadReport, frep: FileReport, location: str, reason: str, raw: bytes | Callable[[], bytes]
) -> None:
    frep.rejected += 1
    report.reject_reasons[reason.split(":", 1)[0]] += 1
    if report.keep_rejects:
        report.rejects.append(Reject(frep.path, location, reason, raw() if callable(raw) else raw))


def _envelope(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The trace record inside a loguru `serialize=True` envelope, or None if `obj` is not one."""
    rec = obj.get("record")
    if not isinstance(rec, dict) or "text" not in obj:
        return None
    extra = rec.get("extra")
    if not isinstance(extra, dict):
        return None
    out = dict(extra)
    attrs = dict(out.get("attributes") or {}) if isinstance(out.get("attributes"), dict) else {}
    level = rec.get("level")
    if isinstance(level, dict) and "name" in level:
        attrs.setdefault("loguru.level", level["name"])
    if isinstance(rec.get("process"), dict) and "id" in rec["process"]:
        attrs.setdefault("loguru.process", rec["process"]["id"])
    if attrs:
        out["attributes"] = attrs
    return out


class _Classifier:
    """Turns parsed values into records, collecting foreign-format values for a per-file conversion."""

    def __init__(self, forced: registry.Importer | None) -> None:
        self.forced = forced
        self.foreign: dict[str, tuple[registry.Importer, list[tuple[str, bytes, Any]]]] = {}

    def classify(self, obj: Any) -> tuple[dict[str, Any] | None, bool]:
        """Return (record-or-None, taken). `taken` means a foreign importer now holds the value."""
        if self.forced is None and isinstance(obj, dict):
            if "span_id" in obj or "trace_id" in obj and "agent_name" in obj:
                return obj, False
            env = _envelope(obj)
            if env is not None:
                return env, False
        imp = self.forced or registry.sniff(obj)
        if imp is None:
            return (obj if isinstance(obj, dict) else None), False
        return None, True


def _foreign(classifier: _Classifier, imp: registry.Importer, location: str, raw: bytes, obj: Any) -> None:
    classifier.foreign.setdefault(imp.name, (imp, []))[1].append((location, raw, within_limits(obj)))


Pair = tuple[dict[str, Any], bytes | None]  # a record, and its line (with its b"\n") when that is the record
Columns = dict[str, Sequence[Any]]  # a batch's field values by name (see `record_columns`)
Batch = tuple[list[dict[str, Any]], list[bytes | None], Columns | None]  # records, lines as in Pair, columns
BATCH = 64  # lines parsed, checked and handed on together (few enough to stay in the CPU cache)

_REQUIRED = itemgetter(*REQUIRED_FIELDS)
_EMPTY: dict[str, Any] = {}
_STR = {str}
_PARENT_TYPES = {str, type(None)}
_NUMBER = {float, int}
_INT = {int}
_DICT = {dict}
_STATUSES = {"ok", "error"}
_OBJECT_FIELDS = ("attributes", "payload", "token_cost", "error")
_VERSIONS = {None, FORMAT_VERSION}
_VERSION_TYPES = {type(None), int}


def record_columns(recs: list[dict[str, Any]]) -> Columns:
    """The fields of checked records as columns: the required ones, and `name`, `status`, `token_cost` (None
    where absent; `status` "ok"). A few C-level passes instead of a Python loop per record."""
    n = len(recs)
    get = dict.get
    tid, sid, parent, agent, et, ts, dur = zip(*map(_REQUIRED, recs), strict=True)
    return {"trace_id": tid, "span_id": sid, "parent_id": parent, "agent_name": agent, "event_type": et,
            "timestamp": ts, "duration_ns": dur, "name": list(map(get, recs, repeat("name", n))),
            "status": list(map(get, recs, repeat("status", n), repeat("ok", n))),
            "token_cost": list(map(get, recs, repeat("token_cost", n)))}


def _checked_columns(objs: list[Any]) -> Columns | None:
    """`record_columns` of values parsed from JSON that all pass `model.check_record`'s fast path (so they are
    valid records, and unchanged), checked column-wise in C; None when any one does not (then they are checked
    one by one). Must accept exactly what that fast path accepts, for JSON values (which are never NaN or
    infinite): a type set per column instead of a type test per value (tests/test_contracts.py checks it)."""
    try:
        cols = record_columns(objs)
        parents, ts, dur = cols["parent_id"], cols["timestamp"], cols["duration_ns"]
        parent_types = set(map(type, parents))
        if not (
            set(map(type, cols["trace_id"])) == _STR and all(cols["trace_id"])
            and set(map(type, cols["span_id"])) == _STR and all(cols["span_id"])
            and (parent_types == _STR and all(parents) or parent_types <= _PARENT_TYPES and "" not in parents)
            and set(map(type, cols["agent_name"])) == _STR and set(map(type, cols["event_type"])) == _STR
            and set(map(type, ts)) <= _NUMBER and min(ts) > -MAX_TIMESTAMP and max(ts) < MAX_TIMESTAMP
            and set(map(type, dur)) == _INT and min(dur) >= 0 and max(dur) <= MAX_DURATION_NS
            and set(cols["status"]) <= _STATUSES
        ):
            return None
        n = len(objs)
        get = dict.get
        for key in _OBJECT_FIELDS:
            if set(map(type, map(get, objs, repeat(key, n), repeat(_EMPTY, n)))) != _DICT:
                return None
        versions = list(map(get, objs, repeat("format_version", n)))
        if versions.count(None) != n and not (set(map(type, versions)) <= _VERSION_TYPES
                                              and set(versions) <= _VERSIONS):  # True == 1: the types first
            return None
    except (KeyError, TypeError, ValueError):  # a value that is not a record, or not hashable
        return None
    return cols


def _yield_checked(
    rec: dict[str, Any], report: ReadReport, frep: FileReport, location: str, raw: bytes | Callable[[], bytes]
) -> Iterator[Pair]:
    kept, reason = accept(rec)
    if kept is not None:
        frep.records += 1
        yield kept, None
    else:
        _reject(report, frep, location, str(reason), raw)


def _read_json_lines(
    fh: IO[bytes], frep: FileReport, report: ReadReport, cls: _Classifier, start_line: int
) -> Iterator[Batch]:
    """Batches of (records, their lines) in file order.

    The hot path: each chunk's lines are parsed BATCH at a time with `map` and checked column-wise
    (`_checked_columns`), with no Python loop per line, and handed on while the records are still in the CPU
    cache. A part with anything unusual in it (a blank or invalid line, an envelope, a foreign record, a value
    to normalize, a reject) is redone line by line by `_lines_one_by_one`."""
    loads = orjson.loads
    rest = b""
    lineno = start_line
    offset = frep.end_offset
    overlong = False
    fast = cls.forced is None
    for chunk, broke in _chunks(fh, frep):
        if broke:  # damaged compressed data was skipped: a line it cut is lost (and counted)
            if rest.strip() and not overlong:
                _reject(report, frep, f"line {lineno + 1}", "line cut by damaged compressed data", rest[:4096])
                lineno += 1
            offset += len(rest)
            rest, overlong = b"", False
        lines = BytesIO(chunk).readlines()  # each keeps its b"\n" (memchr: faster than bytes.split)
        if rest:  # the start of the first line came with the chunk before
            lines[0] = rest + lines[0]
        rest = lines.pop() if lines[-1][-1:] != b"\n" else b""
        if overlong:  # still skipping the remainder of an over-long line
            if not lines:
                rest = b""
                continue
            offset += len(lines[0])
            lines = lines[1:]
            overlong = False
        n_lines, n_bytes = len(lines), sum(map(len, lines))
        numbers: Sequence[int] = range(lineno + 1, lineno + n_lines + 1)
        blank = list(map(bytes.isspace, lines))
        if True in blank:  # blank lines are dropped here, with C-level passes: a tiny fraction of a record's cost
            numbers = list(compress(numbers, map(not_, blank)))
            lines = list(compress(lines, map(not_, blank)))
        for j in range(0, len(lines), BATCH):
            part = lines[j : j + BATCH] if len(lines) > BATCH else lines
            objs: list[Any] | None = None
            if fast:
                try:
                    objs = list(map(loads, part))
                except orjson.JSONDecodeError:
                    objs = None
                if objs is not None and not _maybe_deep(part):
                    cols = _checked_columns(objs)
                    if cols is not None:  # every one is a valid record of ours
                        frep.records += len(objs)
                        # (checked: the objects are records, and each line is its record's own)
                        yield objs, part, cols  # type: ignore[misc]
                        continue
            recs: list[dict[str, Any]] = []
            raws: list[bytes | None] = []
            _lines_one_by_one(part, objs, numbers[j : j + BATCH], report, frep, cls, recs, raws)
            if recs:
                yield recs, raws, None
        lineno += n_lines
        offset += n_bytes
        frep.end_offset = offset
        frep.lines = lineno
        if len(rest) > MAX_LINE:
            lineno += 1
            _reject(report, frep, f"line {lineno}", f"line longer than {MAX_LINE} bytes", rest[:4096])
            offset += len(rest)
            rest = b""
            overlong = True
    if rest.strip() and not overlong:
        # A partial last line: maybe a writer still busy, maybe a crash. Try it whole (a file without a final
        # newline is common); if it does not parse, report the cut and leave end_offset before it.
        try:
            obj = loads(rest)
        except orjson.JSONDecodeError:
            note = f"partial last line {lineno + 1} ({len(rest)} bytes) not read"
            frep.truncated = f"{frep.truncated}; {note}" if frep.truncated else note
            return
        recs, raws = [], []
        _lines_one_by_one([rest + b"\n"], [obj], [lineno + 1], report, frep, cls, recs, raws)
        if recs:
            yield recs, raws, None
        frep.end_offset = offset + len(rest)
        frep.lines = lineno + 1


def _maybe_deep(part: list[bytes]) -> bool:
    """Could a line of `part` nest deeper than the acceptance rule keeps (see `accept.may_be_deep`)?"""
    deepest: int = max(map(add, map(bytes.count, part, repeat(b"{")), map(bytes.count, part, repeat(b"["))))
    return deepest > MAX_DEPTH


def _lines_one_by_one(
    lines: list[bytes], objs: list[Any] | None, numbers: Sequence[int], report: ReadReport, frep: FileReport,
    cls: _Classifier, recs: list[dict[str, Any]], raws: list[bytes | None],
) -> None:
    """Lines (each ending in b"\\n", numbered `numbers`) one at a time (`objs`: their parsed values, when all
    parsed): records go to `recs`/`raws`, rejects to the report, foreign values to the classifier."""
    fast = cls.forced is None
    for k, line in enumerate(lines):
        where = f"line {numbers[k]}"
        verbatim = line[:-1] if line[-1:] == b"\n" else line  # as the file has it, for rejects
        if objs is not None:
            obj = objs[k]
        else:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                if line.strip():
                    _reject(report, frep, where, f"invalid JSON: {exc}", verbatim)
                continue
        if fast and type(obj) is dict and "span_id" in obj:  # one of our records
            kept, reason = accept(obj, line)
            if kept is not None:
                frep.records += 1
                recs.append(kept)
                raws.append(line if kept is obj else None)  # a record cut short is stored as it was kept
            else:
                _reject(report, frep, where, str(reason), verbatim)
            continue
        rec, taken = cls.classify(obj)
        if taken:
            imp = cls.forced or registry.sniff(obj)
            assert imp is not None
            _foreign(cls, imp, where, verbatim, obj)
        elif rec is None:
            _reject(report, frep, where, "not an object", verbatim)
        else:
            kept, reason = accept(rec)
            if kept is not None:
                frep.records += 1
                recs.append(kept)
                raws.append(None)  # an envelope: the line is not the record itself
            else:
                _reject(report, frep, where, str(reason), verbatim)


def _batched(pairs: Iterable[Pair], size: int = 0) -> Iterator[Batch]:
    recs: list[dict[str, Any]] = []
    raws: list[bytes | None] = []
    size = size or BATCH
    for rec, raw in pairs:
        recs.append(rec)
        raws.append(raw)
        if len(recs) >= size:
            yield recs, raws, None
            recs, raws = [], []
    if recs:
        yield recs, raws, None


def _read_msgpack(fh: IO[bytes], frep: FileReport, report: ReadReport, cls: _Classifier) -> Iterator[Pair]:
    """The objects of a MessagePack stream; one that cannot be decoded is a reject and reading goes on after it
    (`MsgpackStream`); an object cut by damaged compressed data is a reject too. Consecutive top-level values
    that are not maps (garbage decodes as one value per byte or so) are one reject, not one per value."""
    stream = MsgpackStream(frep.end_offset, MAX_LINE)
    fed = frep.end_offset  # stream offset after the last chunk
    run = _NotMaps()
    for chunk, broke in _chunks(fh, frep):
        if broke and stream.pending:
            run.flush(report, frep)
            where = f"offset {stream.base}"
            _reject(report, frep, where, "object cut by damaged compressed data", bytes(stream.buf))
        if broke:
            stream.restart(fed)
        stream.feed(chunk)
        fed += len(chunk)
        for item in stream.items():
            frep.end_offset = item.end  # a growing file is read on from here next time
            obj = item.value
            if item.error is None and type(obj) is not dict and cls.forced is None:  # not a record (nor foreign)
                if run.end != item.start:
                    run.flush(report, frep)
                run.add(item, stream.raw(item))
                continue
            run.flush(report, frep)
            where = f"offset {item.start}"
            if item.error is not None:
                _reject(report, frep, where, item.error, stream.raw(item))
                continue
            rec, taken = cls.classify(obj)
            if taken:
                imp = cls.forced or registry.sniff(obj)
                assert imp is not None
                _foreign(cls, imp, where, stream.raw(item), obj)
            elif rec is None:
                _reject(report, frep, where, "not a map", stream.raw(item))
            else:
                yield from _yield_checked(rec, report, frep, where, partial(stream.raw, item))
        if stream.corrupt:
            run.flush(report, frep)
            _reject(report, frep, f"offset {stream.base}", f"invalid MessagePack: {stream.corrupt}; "
                    "rest of file not readable", b"")
            return
    run.flush(report, frep)
    if stream.pending:
        note = f"partial last object at offset {stream.base} ({stream.pending} bytes) not read"
        frep.truncated = f"{frep.truncated}; {note}" if frep.truncated else note


class _NotMaps:
    """A run of consecutive top-level MessagePack values that are not maps, rejected as one."""

    KEPT = 1 << 16  # bytes of the run kept verbatim in the reject

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.start = self.end = -1
        self.count = 0
        self.raw: list[bytes] = []
        self.kept = 0

    def add(self, item: Any, raw: bytes) -> None:
        if self.count == 0:
            self.start = item.start
        self.end = item.end
        self.count += 1
        if self.kept < self.KEPT:
            self.raw.append(raw)
            self.kept += len(raw)

    def flush(self, report: ReadReport, frep: FileReport) -> None:
        if not self.count:
            return
        reason = "not a map" if self.count == 1 else (
            f"not a map: {self.count} values that are not maps ({self.end - self.start} bytes)")
        _reject(report, frep, f"offset {self.start}", reason, b"".join(self.raw)[: self.KEPT])
        self._clear()


def _read_document(
    fh: IO[bytes], frep: FileReport, report: ReadReport, cls: _Classifier
) -> Iterator[Pair] | None:
    """A `.json` file that is one JSON document (not JSON lines). Returns None if it is not one."""
    parts: list[bytes] = []
    total = 0
    while chunk := fh.read(CHUNK):
        parts.append(chunk)
        total += len(chunk)
        if total > MAX_DOCUMENT:
            return None
    data = b"".join(parts)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None

    if damage := getattr(fh, "damage", None):  # a GzipStream's
        frep.damage = list(damage)
    if problem := getattr(fh, "problem", None):
        frep.truncated = f"{problem}; complete records kept"

    def gen() -> Iterator[Pair]:
        frep.end_offset = len(data)
        items = obj if isinstance(obj, list) and cls.forced is None and registry.sniff(obj) is None else [obj]
        for i, item in enumerate(items):
            loc = f"item {i}" if len(items) > 1 else "document"
            rec, taken = cls.classify(item)
            if taken:
                imp = cls.forced or registry.sniff(item)
                assert imp is not None
                _foreign(cls, imp, loc, b"", item)
            elif rec is None:
                _reject(report, frep, loc, "not a trace record or a known format", partial(safe_dumps, item))
            else:
                yield from _yield_checked(rec, report, frep, loc, partial(safe_dumps, item))

    return gen()


def read_file(
    path: str | os.PathLike[str],
    report: ReadReport | None = None,
    *,
    start_offset: int = 0,
    start_line: int = 0,
    format: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the records of one file. `start_offset` resumes a plain (uncompressed) file where it stopped."""
    for rec, _ in read_file_pairs(path, report, start_offset=start_offset, start_line=start_line, format=format):
        yield rec


def read_file_pairs(
    path: str | os.PathLike[str],
    report: ReadReport | None = None,
    *,
    start_offset: int = 0,
    start_line: int = 0,
    format: str | None = None,
) -> Iterator[Pair]:
    """`read_file`, yielding (record, raw line) pairs; the raw line is None when it is not the record itself
    (an envelope, a foreign format, MessagePack). The store hashes and keeps the raw line when it has one."""
    for recs, raws, _ in read_file_batches(path, report, start_offset=start_offset, start_line=start_line,
                                           format=format):
        yield from zip(recs, raws, strict=True)


def read_file_batches(
    path: str | os.PathLike[str],
    report: ReadReport | None = None,
    *,
    start_offset: int = 0,
    start_line: int = 0,
    format: str | None = None,
    opened: IO[bytes] | None = None,
) -> Iterator[Batch]:
    """`read_file_pairs` in batches: the records, their raw lines, and (for a batch checked in bulk, the usual
    case for our own JSON lines) the records' fields as columns. The form bulk readers like the store take, with
    no per-record hand-over. `opened`: `path` already open, at its start, read instead of opening the name
    again (the store reads a file that rotation may rename or replace meanwhile through one handle); closed."""
    path = Path(path)
    report = report if report is not None else ReadReport()
    frep = FileReport(str(path), end_offset=start_offset)
    report.files.append(frep)
    forced = None
    if format and format != "agent-debug":
        forced = registry.by_name(format)
        if forced is None:
            raise UsageError(f"unknown format {format!r}; known: {', '.join(registry.format_names())}")
    cls = _Classifier(forced)
    try:
        fh = open_binary(path, opened)
    except OSError as exc:
        frep.skipped = f"cannot open: {exc.strerror or exc}"
        return
    with fh:
        kind = file_kind(path)
        if start_offset and not path.name.endswith(GZ):
            fh.seek(start_offset)
        elif start_offset:
            # a rotated copy of content already read: skip, do not parse (the readers below only read: a _Skipped
            # is an IO[bytes] for them, as a GzipStream is)
            fh = _Skipped(fh, start_offset)  # type: ignore[assignment]
        if kind == "msgpack":
            yield from _batched(_read_msgpack(fh, frep, report, cls))
        else:
            doc = None
            if path.name.endswith((".json", ".json.gz")) and not start_offset:
                doc = _read_document(fh, frep, report, cls)
                if doc is None:
                    fh.seek(0)
            if doc is not None:
                yield from _batched(doc)
            else:
                yield from _read_json_lines(fh, frep, report, cls, start_line)
    yield from _batched(_convert_foreign(cls, frep, report))


def _convert_foreign(cls: _Classifier, frep: FileReport, report: ReadReport) -> Iterator[Pair]:
    base = os.path.basename(frep.path)
    for imp, items in cls.foreign.values():
        frep.format = imp.name
        try:
            converted = list(imp.convert([obj for _, _, obj in items], base))
        except registry.NotThisFormat as exc:
            for loc, raw, obj in items:
                _reject(report, frep, loc, f"not {imp.name} data: {exc}", raw or safe_dumps(obj))
            continue
        except Exception as exc:  # an importer bug must not lose the file silently
            for loc, raw, obj in items:
                _reject(report, frep, loc, f"{imp.name} import failed: {type(exc).__name__}: {exc}",
                        raw or safe_dumps(obj))
            continue
        for i, rec in enumerate(converted):
            yield from _yield_checked(rec, report, frep, f"{imp.name} span {i}", partial(safe_dumps, rec))


def read_paths(
    paths: Iterable[str | os.PathLike[str]],
    report: ReadReport | None = None,
    *,
    format: str | None = None,
    on_file: Callable[[FileReport], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the records of every trace file under `paths` (directories recursively)."""
    report = report if report is not None else ReadReport()
    for path in expand_paths(paths, report):
        for rec, _ in read_file_pairs(path, report, format=format):
            yield rec
        if on_file is not None:
            on_file(report.files[-1])
