"""Watching trace directories: which files changed since the last look (short polling of sizes and times).

Polling costs one `scandir` per directory per look and works the same on every platform and file system,
including network mounts where change notifications do not arrive; at the default 20 ms it keeps the time from a
write to its ingest well inside the 200 ms budget. The ingest itself is the store's incremental file ingest,
which reads only what a file gained and recognises rotated copies.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent_debug.formats.reader import is_trace_file


class DirWatcher:
    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self._seen: dict[str, tuple[int, int, int]] = {}  # path -> (size, mtime_ns, inode)

    def changed(self) -> list[Path]:
        """Trace files that are new or changed since the last call (all of them on the first call), in name
        order; files that disappeared (rotation, retention) are forgotten."""
        now: dict[str, tuple[int, int, int]] = {}
        for d in self.dirs:
            if d.is_file():  # a single file named to follow (`tail --from FILE`)
                try:
                    st = d.stat()
                    now[str(d)] = (st.st_size, st.st_mtime_ns, st.st_ino)
                except OSError:
                    pass
            else:
                self._scan(str(d), now)
        out = [Path(p) for p, sig in sorted(now.items()) if self._seen.get(p) != sig]
        self._seen = now
        return out

    def retry(self, paths: list[Path]) -> None:
        """These files could not be ingested this time (rotated away mid-read, say): report them again next
        time, so nothing they hold is skipped."""
        for p in paths:
            self._seen.pop(str(p), None)

    def _scan(self, folder: str, out: dict[str, tuple[int, int, int]], depth: int = 0) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:  # removed or unreadable meanwhile: nothing to read there now
            return
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if depth < 16:
                        self._scan(e.path, out, depth + 1)
                elif is_trace_file(Path(e.name)):
                    st = e.stat()
                    out[e.path] = (st.st_size, st.st_mtime_ns, st.st_ino)
            except OSError:  # rotated away between the listing and the stat
                continue
