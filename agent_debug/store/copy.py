"""`agent-debug store copy --from DB --to DB`: move a store between backends (SQLite, chdb, a ClickHouse server),
losing nothing: every span's record as stored (so positions, trees and summaries come out the same), the
conflicts, the rejects, the file offsets (a later ingest of the same files goes on where the source stopped) and
the verdicts. Then the two are compared: counts of each, and a sample of traces column by column and record by
record; a difference is a StoreError.

Spans go through the destination's own ingest (its dedupe, summaries and layout), read from staging JSON Lines
files of the stored records (a few tens of MB each, in a temp folder, removed after).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_debug.columns import COLUMNS
from agent_debug.errors import StoreError
from agent_debug.store.api import Store, StoreCounts

STAGING_BYTES = 64 << 20
SAMPLE = 8


@dataclass
class CopyResult:
    source: str
    target: str
    counts: dict[str, int]  # what both hold (equal, or the copy failed)
    checked: list[str] = field(default_factory=list)  # traces compared span by span
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def copy_store(src: Store, dst: Store, *, sample: int = SAMPLE, staging: Path | None = None,
               progress: Callable[[int, int], None] | None = None) -> CopyResult:
    """Copy every trace and everything kept beside them from `src` into `dst`, which must hold no traces."""
    t0 = time.perf_counter()
    if dst.counts().traces:
        raise StoreError(f"store copy needs an empty destination; {dst.location.shown} holds traces")
    runs = src.list_traces()
    with tempfile.TemporaryDirectory(prefix="agent-debug-copy-", dir=staging) as tmp:
        files = _stage(src, [s.trace_id for s in runs], Path(tmp), progress)
        if files:
            dst.ingest(files)
            dst.forget_files([str(f.resolve()) for f in files])
    dst.put_bookkeeping(src.files(), src.conflicts(), src.rejects())
    verdicts = list(src.verdicts().values())
    if verdicts:
        dst.put_verdicts(verdicts)
    before, after = src.counts(), dst.counts()
    if before != after:
        raise StoreError(f"store copy incomplete: {src.location.shown} holds {_shown(before)}, "
                         f"{dst.location.shown} {_shown(after)}")
    checked = _compare(src, dst, _sample([s.trace_id for s in runs], [s.span_count for s in runs], sample))
    return CopyResult(src.location.shown, dst.location.shown, after.as_dict(), checked,
                      round(time.perf_counter() - t0, 3))


def _stage(src: Store, trace_ids: list[str], tmp: Path, progress: Callable[[int, int], None] | None) -> list[Path]:
    """The stored records as JSON Lines files of about STAGING_BYTES each, trace after trace, in stored order."""
    files: list[Path] = []
    fh = None
    size = 0
    try:
        for k, tid in enumerate(trace_ids, 1):
            if fh is None or size >= STAGING_BYTES:
                if fh is not None:
                    fh.close()
                files.append(tmp / f"part-{len(files):05d}.jsonl")
                fh = open(files[-1], "wb")
                size = 0
            lines = src.record_lines(tid)
            data = b"\n".join(lines) + b"\n"
            fh.write(data)
            size += len(data)
            if progress is not None:
                progress(k, len(trace_ids))
    finally:
        if fh is not None:
            fh.close()
    return files


def _sample(ids: list[str], sizes: list[int], n: int) -> list[str]:
    """The first, the last and the largest trace, and others picked at random (seeded: the same every run)."""
    if not ids:
        return []
    picked = dict.fromkeys([ids[0], ids[-1], ids[max(range(len(ids)), key=sizes.__getitem__)]])
    rest = [t for t in ids if t not in picked]
    picked.update(dict.fromkeys(random.Random(0).sample(rest, min(len(rest), max(0, n - len(picked))))))
    return list(picked)


def _compare(src: Store, dst: Store, trace_ids: list[str]) -> list[str]:
    for tid in trace_ids:
        a, b = src.load(tid, records=True), dst.load(tid, records=True)
        for name in (*COLUMNS, "envelopes", "records"):
            if getattr(a, name) != getattr(b, name):
                raise StoreError(f"store copy differs: trace {tid} has other {name} in {dst.location.shown}")
        if src.summary(tid) != dst.summary(tid):
            raise StoreError(f"store copy differs: trace {tid} is summarized otherwise in {dst.location.shown}")
    return trace_ids


def _shown(c: StoreCounts) -> str:
    return ", ".join(f"{v} {k}" for k, v in c.as_dict().items())
