"""From a finished span to bytes on disk, without making the agent wait.

The caller's whole cost is one `orjson.dumps` and one `deque.append` (`Writer.emit`): a record is serialized
when its span ends, so it shows what the agent saw then. A background thread takes the buffer in batches and
does its work per batch, in C: the batch is joined, searched once for redaction triggers (`Redactor.
redact_batch`; only a record holding one is parsed and walked), and handed to a private loguru logger in a few
large messages, so the thread gives up the GIL a few times per batch, not per record (each time it does, a
caller in a tight loop may keep the GIL until its next hand-off: see `emit`). The file sink is flushed to the OS
after every batch (at least every `flush_interval`), so a process killed with SIGKILL loses at most what it
emitted in the last interval. Rotated files are gzip-compressed at a fast level on a separate thread (loguru's
default gzip level 9 runs inline and stalls).

Each process writes its own file (`<prefix>-<host>-<pid>.jsonl`), so several processes can share a directory
without interleaving records.
"""

from __future__ import annotations

import gzip
import operator
import os
import random
import shutil
import socket
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import msgpack
import orjson

from agent_debug.sdk.redact import Redactor

# flags carried beside a serialized record (only when sampling needs them), so sampling needs no parsing
F_ERROR = 1  # this span ended with status error
F_ROOT = 2  # this span is a run's root
F_KEEP = 4  # the run failed, errored, or was slow: keep it whole

BATCH = 512  # records per batch at most: the passes that hold the GIL take well under 1 ms, the batch stays in
# cache between them, and a caller waiting for the GIL gets it back soon (2048 stalled calls 4-18 ms in bench_emit)
MIN_BATCH = 256
WAKE_AT = 4096  # a backlog this long wakes the writer before its flush interval is up
YIELD_MASK = 127  # beyond WAKE_AT, the caller hands the writer the GIL once per 128 records (see emit)
MESSAGE_MAX = 4 << 20  # bytes per loguru message at most: every message is one write() and one GIL hand-off
KEEP_BUFFER_MAX = 8 << 20


@dataclass
class WriterStats:
    """Counters the SDK reports through `agent_debug.stats()`."""

    emitted: int = 0
    written: int = 0
    dropped: int = 0
    sampled_out: int = 0
    redacted: int = 0
    internal_errors: int = 0
    batches: int = 0
    files_compressed: int = 0
    max_batch_seconds: float = 0.0
    writer_cpu_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"last_errors": self.errors[-5:]}


def fast_gzip(path: str, *, level: int = 1, on_done: Callable[[], None] | None = None) -> None:
    """Compress a rotated file to `path.gz` (via a temporary name), then remove `path`."""
    tmp = f"{path}.gz.tmp"
    try:
        if os.path.getsize(path) == 0:
            os.remove(path)
            return
        try:
            from isal import igzip

            def opener(p: str) -> Any:
                return igzip.open(p, "wb", compresslevel=min(level, 3))
        except ImportError:

            def opener(p: str) -> Any:
                return gzip.open(p, "wb", compresslevel=level)
        with open(path, "rb") as src, opener(tmp) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)  # reads and (de)flate release the GIL: few hand-offs
        os.replace(tmp, f"{path}.gz")
        os.remove(path)
        if on_done is not None:
            on_done()
    except (OSError, zlib.error):
        # leave `path` in place: the reader prefers the uncompressed file and nothing is lost
        try:
            os.remove(tmp)
        except OSError:
            pass


_ATTRS = b'"attributes":{'


def flatten_nested_attributes(data: bytes) -> bytes:
    """Attributes are flat (spec): a dict value given at span creation becomes dotted keys here, in the writer
    thread, so the caller never pays for the check. Cheap when there is nothing to do: one rfind and one find."""
    i = data.rfind(_ATTRS)
    if i < 0 or data.find(b"{", i + len(_ATTRS)) < 0:
        return data
    rec = orjson.loads(data)
    attrs = rec.get("attributes")
    if not isinstance(attrs, dict) or not any(isinstance(v, dict) for v in attrs.values()):
        return data
    flat: dict[str, Any] = {}
    stack = [("", attrs)]
    while stack:
        prefix, d = stack.pop()
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                stack.append((key + ".", v))
            else:
                flat[key] = v
    rec["attributes"] = flat
    return orjson.dumps(rec)


def _retention_rule(retention: str | int | None) -> tuple[str, float] | None:
    """`None`, a number of rotated files to keep, or an age such as "14 days" / "12 hours"."""
    if retention is None:
        return None
    if isinstance(retention, int):
        return ("count", retention)
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day|week)s?\s*", str(retention).lower())
    if not m:
        raise ValueError(f"retention must be a file count or an age like '14 days', not {retention!r}")
    unit = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}[m.group(2)]
    return ("age", float(m.group(1)) * unit)


def _size_limit(rotation: str | int | Any) -> int | None:
    """The size a size rotation allows, in bytes (None for rotations by time or by a callable)."""
    if isinstance(rotation, int) and not isinstance(rotation, bool):
        return rotation
    if isinstance(rotation, str):
        import re

        m = re.fullmatch(r"\s*([\d.]+)\s*([kmg]?i?b)\s*", rotation.lower())
        if m:
            unit = {"b": 1, "kb": 1000, "mb": 10**6, "gb": 10**9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
            return int(float(m.group(1)) * unit.get(m.group(2), 1))
    return None


def _chunk_size(rotation: str | int | Any) -> int:
    """Largest message to hand loguru: a quarter of a size rotation (so files stay close to their limit), at
    most MESSAGE_MAX."""
    limit = _size_limit(rotation)
    return MESSAGE_MAX if limit is None else max(1, min(MESSAGE_MAX, limit // 4))


def _nested_attributes(batch: list[bytes]) -> list[int]:
    """Records whose attributes may hold a dict: the last `{` of the record is not the attributes' own (they
    come last). Three passes in C over the batch (`map`, no bytecode per record); Python looks only at the
    records flagged (a record without attributes is flagged too, and `flatten_nested_attributes` passes it)."""
    last_brace = map(bytes.rfind, batch, repeat(b"{"))
    plain = list(map(bytes.startswith, batch, repeat(_ATTRS), map(operator.sub, last_brace, repeat(13))))
    if all(plain):
        return []
    return [i for i, ok in enumerate(plain) if not ok]


def _private_logger() -> Any:
    """A loguru logger with its own handler set: the host's sinks never see our records, and we never touch
    the host's logger configuration. Built the way loguru builds its global logger."""
    from loguru._logger import Core, Logger

    return Logger(
        core=Core(),
        exception=None,
        depth=0,
        record=False,
        lazy=False,
        colors=False,
        raw=False,
        capture=True,
        patchers=[],
        extra={},
    )


class Writer:
    """One per process. `emit` is the only method on the agent's hot path."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        format: str = "jsonl",
        prefix: str = "traces",
        rotation: str | int = "20 MB",
        retention: str | int | None = "14 days",
        compression: str | Callable[[str], None] | None = "gz",
        buffer_size: int = 100_000,
        flush_interval: float = 0.1,
        sample_rate: float = 1.0,
        redactor: Redactor | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if format not in ("jsonl", "msgpack"):
            raise ValueError(f"format must be 'jsonl' or 'msgpack', not {format!r}")
        self.directory = Path(directory)
        self.format = format
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self.sample_rate = sample_rate
        self.keep_all = sample_rate >= 1.0  # no sampling: the buffer holds bare records, never flags
        self.redactor = redactor or Redactor()
        self._retention = _retention_rule(retention)
        self.stats = WriterStats()
        self._on_error = on_error
        # bare records (bytes); with sampling, a record with flags comes as (trace_id, flags, bytes)
        self._q: deque[Any] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._compressors: list[threading.Thread] = []
        self._pending: dict[str, list[tuple[int, bytes]]] = {}
        self._pending_since: dict[str, float] = {}
        self._decisions: OrderedDict[str, bool] = OrderedDict()
        self._recent: deque[bytes] = deque(maxlen=2)
        self.path = self.directory / f"{prefix}-{socket.gethostname()}-{os.getpid()}.{format}"

        self._chunk = _chunk_size(rotation)
        if compression == "gz":
            compression = self._compress_in_background
        elif compression in (None, "none"):
            compression = None
        self._sink = _binary_file_sink(self.path, rotation, compression)
        self._size_rotation = rotation is None or _is_size(rotation)
        self._size_limit = _size_limit(rotation)
        self._file_bytes = 0  # what the open file holds, as far as we wrote it
        self._thread = threading.Thread(target=self._run, name="agent-debug-writer", daemon=True)
        self._thread.start()

    # -- hot path -------------------------------------------------------------------------------------------

    def emit(self, trace_id: str, flags: int, data: bytes) -> None:
        q = self._q
        if len(q) >= self.buffer_size:
            self.stats.dropped += 1
            return
        q.append(data if flags == 0 or self.keep_all else (trace_id, flags, data))
        if len(q) & YIELD_MASK == 0 and len(q) >= WAKE_AT:
            # a burst the writer has not kept up with: wake it, and once per 128 records hand it the GIL (a
            # thread that only asks for the GIL waits a whole switch interval, 5 ms, each time the caller holds
            # it: in a tight loop the writer would fall ever further behind and a crash would lose the backlog)
            self._wake.set()
            time.sleep(0)

    # -- writer thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        # wake four times per flush interval: a record waits at most a quarter of it to be taken, and batches are
        # sized (see `_batch_size`) so that the backlog is written well within the rest, on a busy machine too
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval / 4)
            self._wake.clear()
            self._drain()
        self._drain(final=True)

    def _batch_size(self) -> int:
        """As many records as the writer handles in a fifth of the flush interval (from its CPU time per
        record so far), within [MIN_BATCH, BATCH]."""
        st = self.stats
        if st.emitted < 1000 or st.writer_cpu_seconds <= 0:
            return BATCH
        per_record = st.writer_cpu_seconds / st.emitted
        return max(MIN_BATCH, min(BATCH, int(self.flush_interval / 5 / per_record)))

    def _drain(self, final: bool = False) -> None:
        q = self._q
        take = q.popleft
        cpu = time.thread_time
        while q:
            t0 = time.perf_counter()
            c0 = cpu()
            try:
                # popped in C, without a bytecode per record (appends from other threads may interleave safely)
                batch = list(map(operator.call, repeat(take, min(len(q), self._batch_size()))))
                self.stats.emitted += len(batch)
                if not self.keep_all:
                    batch = self._sample(batch)
                if batch:
                    self._write(batch)
                self._expire_pending(final)
            except Exception as exc:  # never let the writer thread die
                self._internal_error(exc)
            self.stats.writer_cpu_seconds += cpu() - c0
            self.stats.batches += 1
            self.stats.max_batch_seconds = max(self.stats.max_batch_seconds, time.perf_counter() - t0)
        if final:
            self._expire_pending(True)
        self._idle.set()

    def _sample(self, batch: list[Any]) -> list[bytes]:
        """Tail sampling, record by record: a run's records wait for its root, then all go or none."""
        out: list[bytes] = []
        for item in batch:
            if type(item) is bytes:
                trace_id, flags, data = _trace_id_of(item), 0, item
            else:
                trace_id, flags, data = item
            self._accept(trace_id, flags, data, out)
        return out

    def _accept(self, trace_id: str, flags: int, data: bytes, out: list[bytes]) -> None:
        decided = self._decisions.get(trace_id)
        if decided is not None:
            if decided:
                out.append(data)
            else:
                self.stats.sampled_out += 1
            return
        pend = self._pending.get(trace_id)
        if pend is None:
            pend = self._pending[trace_id] = []
            self._pending_since[trace_id] = time.monotonic()
        pend.append((flags, data))
        if flags & F_ROOT:
            keep = any(f & (F_ERROR | F_KEEP) for f, _ in pend) or self._coin(trace_id)
            self._decide(trace_id, keep, out)

    def _coin(self, trace_id: str) -> bool:
        # deterministic per trace, so every process writing spans of one run makes the same choice
        return random.Random(trace_id).random() < self.sample_rate

    def _decide(self, trace_id: str, keep: bool, out: list[bytes]) -> None:
        pend = self._pending.pop(trace_id, [])
        self._pending_since.pop(trace_id, None)
        self._decisions[trace_id] = keep
        if len(self._decisions) > 50_000:
            self._decisions.popitem(last=False)
        if keep:
            out.extend(d for _, d in pend)
        else:
            self.stats.sampled_out += len(pend)

    def _expire_pending(self, final: bool) -> None:
        """Runs whose root never arrived (still open at shutdown, or very long): keep what we have."""
        if not self._pending:
            return
        now = time.monotonic()
        held = sum(len(v) for v in self._pending.values())
        out: list[bytes] = []
        for trace_id, since in list(self._pending_since.items()):
            if final or now - since > 600 or held > self.buffer_size:
                self._decide(trace_id, True, out)
        if out:
            self._write(out)

    def _write(self, batch: list[bytes]) -> None:
        """Flatten nested attributes (rare), redact the batch, and hand it to loguru in large messages."""
        for i in _nested_attributes(batch):
            batch[i] = flatten_nested_attributes(batch[i])
        n = len(batch)
        batch.append(b"")  # joined, the batch then ends with a newline: no copy to add one
        records, joined, changed = self.redactor.redact_batch(batch)
        self.stats.redacted += changed
        if self.format == "msgpack":
            self._write_msgpack(joined, n)
        else:
            self._write_jsonl(joined)
        self.stats.written += n
        if len(joined) <= KEEP_BUFFER_MAX:
            # alive until two batches later: the allocator reuses the pages the batches before freed instead of
            # giving them back to the OS and faulting fresh ones in (~0.3 page faults per record fewer)
            self._recent.append(joined)

    def _write_jsonl(self, joined: bytes) -> None:
        """Messages of at most `self._chunk` bytes, cut at record ends (`joined` ends with a newline): size
        rotation stays close to its limit and never splits a record."""
        chunk, n, start = self._chunk, len(joined), 0
        if n <= chunk:
            self._write_one(joined)
            return
        while start < n:
            end = n
            if n - start > chunk:
                end = joined.rfind(b"\n", start, start + chunk) + 1
                if end <= start:
                    end = joined.find(b"\n", start + chunk) + 1 or n
            self._write_one(joined[start:end])
            start = end

    def _write_msgpack(self, joined: bytes, count: int) -> None:
        """One JSON parse of the whole batch, then one MessagePack pack per message (array header cut off)."""
        records = orjson.loads(b"[" + joined.rstrip(b"\n").replace(b"\n", b",") + b"]")
        per = max(1, int(count * self._chunk / max(1, len(joined))))
        for i in range(0, len(records), per):
            group = records[i : i + per]
            packed = msgpack.packb(group)
            self._write_one(packed[_array_header_size(len(group)):])

    def _write_one(self, data: bytes) -> None:
        """One write() of our bytes through loguru's file sink (rotation, compression): unbuffered, so what
        is written survives the process being killed. While a size rotation is not due, the bytes go straight
        to the sink's open file: loguru's own check (a seek and a tell) would hand the GIL over twice more."""
        sink = self._sink
        f = sink._file
        limit = self._size_limit
        if f is not None and limit is not None and self._file_bytes + len(data) <= limit:
            f.write(data)
            self._file_bytes += len(data)
            return
        sink.write(data if self._size_rotation else _Message(data))
        f = sink._file
        self._file_bytes = f.tell() if f is not None and limit is not None else 0

    def _compress_in_background(self, path: str) -> None:
        def done() -> None:
            self.stats.files_compressed += 1
            self._apply_retention()

        t = threading.Thread(target=fast_gzip, args=(path,), kwargs={"on_done": done}, daemon=True)
        t.start()
        self._compressors = [c for c in self._compressors if c.is_alive()] + [t]

    def _apply_retention(self) -> None:
        """Remove this writer's rotated files beyond the retention rule (count or age)."""
        rule = self._retention
        if rule is None:
            return
        stem = self.path.name[: -len(self.format) - 1]
        rotated = []
        for p in self.directory.glob(f"{stem}.*.{self.format}*"):
            try:
                rotated.append((p.stat().st_mtime, p))
            except OSError:
                continue
        rotated.sort(reverse=True)
        kind, value = rule
        doomed = rotated[int(value):] if kind == "count" else [x for x in rotated if time.time() - x[0] > value]
        for _, p in doomed:
            try:
                p.unlink()
            except OSError:
                pass

    def _internal_error(self, exc: BaseException) -> None:
        self.stats.internal_errors += 1
        self.stats.errors.append(f"{type(exc).__name__}: {exc}")
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                pass

    # -- control ----------------------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything buffered so far; True if the buffer emptied in time."""
        deadline = time.monotonic() + timeout
        while self._q and time.monotonic() < deadline:
            self._idle.clear()
            self._wake.set()
            self._idle.wait(0.05)
        return not self._q

    def close(self, timeout: float = 10.0) -> None:
        """Flush, stop the thread, close the files, and wait for background compression."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        try:
            self._sink.stop()
        except Exception as exc:
            self._internal_error(exc)
        for t in self._compressors:
            t.join(timeout)


def _trace_id_of(data: bytes) -> str:
    """A record's trace id from its bytes: the SDK writes `{"trace_id":"...` first."""
    end = data.find(b'"', 13)
    if data.startswith(b'{"trace_id":"') and end > 13 and b"\\" not in data[13:end]:
        return data[13:end].decode()
    return str(orjson.loads(data).get("trace_id"))


class _Message(bytes):
    """A message for loguru's time-based rotation, which reads the record's time."""

    @property
    def record(self) -> dict[str, Any]:
        from loguru._datetime import aware_now

        return {"time": aware_now()}


def _is_size(rotation: Any) -> bool:
    """Is `rotation` a file size (loguru then looks only at the message's length)?"""
    if isinstance(rotation, int) and not isinstance(rotation, bool):
        return True
    if isinstance(rotation, str):
        import re

        return re.fullmatch(r"\s*[\d.]+\s*[kmgt]?i?b\s*", rotation.lower()) is not None
    return False


def _binary_file_sink(path: Path, rotation: Any, compression: str | Callable[[str], None] | None) -> Any:
    """loguru's own file sink (rotation, the compression hook, the rotated file names), opened in binary mode
    and unbuffered: each message is our bytes in one write(), with no text layer copying them three times."""
    from loguru._file_sink import FileSink

    return FileSink(str(path), rotation=rotation, retention=None, compression=compression, delay=True,
                    mode="ab", buffering=0, encoding=None)


def _array_header_size(n: int) -> int:
    """Bytes of the MessagePack array header `packb` writes before n items."""
    return 1 if n < 16 else 3 if n < 65536 else 5
