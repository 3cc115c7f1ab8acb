"""Reading gzip files that may be cut or damaged, keeping every byte that decompresses.

`gzip.GzipFile` raises on a truncated member, a bad CRC or a bad length trailer, and loses what it had inflated
of the last read. Here each member's header and trailer are parsed by hand and its deflate data inflated raw, so:

- a bad CRC or length trailer loses nothing: the data is returned and the mismatch reported;
- a member whose deflate data is corrupt returns everything up to the damaged byte (the failing piece is inflated
  again from a copy, byte by byte), then the rest of the file is scanned for the next gzip member header and
  reading resumes there (a break in the stream: `broke` is set on the first read after it);
- a member cut short (a writer still busy, or a crash) returns all it holds and says so in `problem`.

Every damage is described in `damage` (file offset and what), for the readers' notices.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol


class _Inflater(Protocol):
    """A raw deflate decompressor: zlib's `decompressobj` or isal's."""

    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    @property
    def unconsumed_tail(self) -> bytes: ...
    def decompress(self, data: bytes, /, max_length: int = 0) -> bytes: ...


_inflater: Callable[[int], _Inflater]
_crc32: Callable[[bytes, int], int]
_ERRORS: tuple[type[Exception], ...]
try:  # an optional, faster inflate and crc32 (the `fast` extra); same formats as zlib
    from isal import isal_zlib

    _inflater, _crc32 = isal_zlib.decompressobj, isal_zlib.crc32
    # isal's stub declares `error: Exception` (an instance); it is the exception class
    _ERRORS = (zlib.error, isal_zlib.error)  # type: ignore[assignment]
except ImportError:  # pragma: no cover - depends on the environment
    _inflater, _crc32, _ERRORS = zlib.decompressobj, zlib.crc32, (zlib.error,)

READ = 1 << 16  # compressed bytes read at a time
_HOLD = 10  # compressed bytes held back from the inflater until the next read: a member header's first ten
MAX_OUT = 1 << 20  # decompressed bytes made at a time (a small file may inflate to gigabytes)
HELD_MAX = 64 << 20  # decompressed bytes held back at most after a member header inside a member (see _body)
_MAGIC = b"\x1f\x8b\x08"
# a member header: magic, flags without reserved bits, mtime, extra flags 0/2/4, a known OS: a random match at a
# damaged spot is then about 1 in 2**37
_HEADER = re.compile(rb"\x1f\x8b\x08[\x00-\x1f][\x00-\xff]{4}[\x00\x02\x04][\x00-\x0d\xff]", re.DOTALL)
_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16
_TRAILER = struct.Struct("<II")


class GzipStream:
    """A read-only stream over the gzip members of a file that keeps every byte before a cut or damage."""

    def __init__(self, path: Path, raw: IO[bytes] | None = None) -> None:
        """`raw`: the file already open (at its start), read instead of opening `path` again."""
        self._fh = raw if raw is not None else open(path, "rb")
        self.problem: str | None = None  # why the stream ended early (a cut member)
        self.damage: list[str] = []  # each damaged place: compressed offset and what
        self.broke = False  # the data the last read returned follows a break (damage skipped)
        self._reset()

    def _reset(self) -> None:
        self._in = b""  # compressed input not yet used
        self._at = 0  # file offset of _in[0]
        self._file_done = False
        self._state = "header"
        self._members = 0
        self._break_pending = False
        self._break_next = False  # a break before the next member's data
        self._d: _Inflater | None = None
        self._member_at = 0
        self._body_at = 0
        self._crc = 0
        self._size = 0
        self._clear_until = 0  # file offset before which a header-like match was found to start no member
        self._returned = 0  # bytes of this member returned to the reader
        self._suspect: int | None = None  # a member header this member's data ran over (see _body)
        self._held: list[bytes] = []  # output inflated after it, returned once the member proves intact

    # -- stream interface -------------------------------------------------------------------------------------

    def read(self, size: int = READ) -> bytes:
        """Some decompressed bytes (never across a break), or b"" at the end."""
        self.broke = False
        while self._state != "done":
            out = self._step()
            if out:
                if self._break_pending:
                    self._break_pending = False
                    self.broke = True
                return out
        return b""

    def seek(self, offset: int) -> None:
        if offset:
            raise OSError("cannot seek in a compressed stream")
        self._fh.seek(0)
        self._reset()
        self.problem = None
        self.damage = []
        self.broke = False

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the states: header, body, scan -------------------------------------------------------------------------

    def _more(self) -> bool:
        """Read more compressed input; False at the end of the file."""
        if self._file_done:
            return False
        data = self._fh.read(READ)
        if not data:
            self._file_done = True
            return False
        self._in = self._in + data if self._in else data
        return True

    def _take(self, n: int) -> None:
        self._in = self._in[n:]
        self._at += n

    def _step(self) -> bytes:
        if self._state == "header":
            self._header()
            return b""
        if self._state == "scan":
            self._scan()
            return b""
        return self._body()

    def _header(self) -> None:
        while True:
            stripped = self._in.lstrip(b"\x00")  # padding between members is legal
            self._take(len(self._in) - len(stripped))
            if self._in or not self._more():
                break
        if not self._in:
            self._state = "done"
            return
        n = _header_length(self._in)
        while n == 0 and self._more():
            n = _header_length(self._in)
        if n < 0:
            if self._members == 0:
                self._damaged(f"not gzip data at byte {self._at}")
            else:  # the member before may have ended early (damaged): the next one may start inside it
                self._damaged(f"unexpected bytes after a gzip member at byte {self._at}", resume=self._body_at)
            return
        if n == 0:
            self.problem = f"compressed data ends early (truncated gzip member: header cut at byte {self._at})"
            self._state = "done"
            return
        self._member_at = self._at
        self._break_pending = self._break_pending or self._break_next
        self._break_next = False
        self._take(n)
        self._body_at = self._at
        self._d = _inflater(-15)
        self._crc = self._size = self._returned = 0
        self._suspect, self._held = None, []
        self._state = "body"
        self._members += 1

    def _body(self) -> bytes:
        if not self._in and not self._more():
            if self._suspect is not None:  # it never ended: it ran on into the member it ran over
                return self._salvage(None, limit=self._suspect)
            later = self._next_member(self._body_at)
            if later is None:
                self.problem = f"compressed data ends early (truncated gzip member at byte {self._member_at})"
                self._state = "done"
            else:  # damaged data that ran on into the next member: the next member is read from its start
                self._damaged(f"gzip member at byte {self._member_at}: corrupt data (it does not end before the "
                              f"next member)", resume=later)
            return b""
        raw, d = self._in, self._d
        assert d is not None
        end = len(raw) if self._file_done else len(raw) - _HOLD  # a header may straddle this read and the next
        if end <= 0:
            self._more()
            return b""
        feed = raw[:end]
        try:
            out = d.decompress(feed, MAX_OUT)
        except _ERRORS as exc:
            return self._salvage(exc, limit=self._suspect)
        used = len(feed) - len(d.unused_data if d.eof else d.unconsumed_tail)
        # Deflate data damaged so that it does not end where it should (the inflater is lenient about some
        # corruptions: no error) runs on into the next member, whose bytes inflate to garbage that may still parse
        # as records. So once the inflater has used the bytes of what starts like a member (its header parses,
        # its data inflates), what it makes is held back until this member ends intact (then it was data: a gzip
        # file inside a stored block, say). If it ends damaged or not at all, the held output is dropped, the
        # member is inflated again with zlib up to that header, and reading goes on there.
        if self._suspect is None:
            self._suspect = self._member_within(raw, used)
        self._take(used)
        self._crc = _crc32(out, self._crc)
        self._size += len(out)
        if self._suspect is not None:
            self._held.append(out)
            out = b""
            if sum(map(len, self._held)) > HELD_MAX:  # this much made on without an error: the header was data
                out = self._release()
        self._returned += len(out)
        if d.eof:
            return out + self._trailer()
        return out

    def _trailer(self) -> bytes:
        """Check the member's trailer; the output held back (see _body) if the member is intact, else what a
        salvage keeps."""
        while len(self._in) < 8 and self._more():
            pass
        if len(self._in) < 8:
            if self._suspect is not None:
                return self._salvage(None, limit=self._suspect)
            self.problem = f"compressed data ends early (truncated gzip member at byte {self._member_at}: no trailer)"
            self._state = "done"
            return b""
        crc, isize = _TRAILER.unpack_from(self._in)
        intact = crc == self._crc & 0xFFFFFFFF and isize == self._size & 0xFFFFFFFF
        held = b""
        if self._suspect is not None:
            if not intact:
                return self._salvage(None, limit=self._suspect)  # it ran over the member at the suspect header
            held = self._release()
        self._returned += len(held)
        if crc != self._crc & 0xFFFFFFFF:
            self.damage.append(f"gzip member at byte {self._member_at}: CRC does not match its data "
                               f"(trailer at byte {self._at}); the data is kept")
        elif isize != self._size & 0xFFFFFFFF:
            self.damage.append(f"gzip member at byte {self._member_at}: length trailer says {isize} bytes, "
                               f"it holds {self._size}; the data is kept")
        self._take(8)
        self._state = "header"
        if not intact:
            # its data may be what is damaged: a line or object it leaves unfinished must not run on into the
            # next member's; and damaged data may have run on into the next member, then read again from its start
            self._break_next = True
            later = self._next_member(self._body_at)
            if later is not None and later < self._at:
                self.damage[-1] += f"; its data ran on into the gzip member at byte {later}, read again from there"
                self._resume(later)
        return held

    def _release(self) -> bytes:
        """The output held after the suspect header, which was data after all (not looked at again)."""
        assert self._suspect is not None
        self._clear_until = max(self._clear_until, self._suspect + 1)
        held = b"".join(self._held)
        self._held, self._suspect = [], None
        return held

    def _member_within(self, raw: bytes, used: int) -> int | None:
        """The file offset of a gzip member that starts within the first `used` bytes of `raw` (the input the
        inflater just used), if any. Look-alikes (about 1 in 2**37 positions of deflate data, or any number in a
        hostile file's stored blocks) are checked once each and passed over."""
        start = max(0, self._clear_until - self._at)
        while (m := _HEADER.search(raw, start, min(len(raw), used + len(_MAGIC) + 7))) is not None:
            c = m.start()
            if c >= used:
                break
            if self._real_member(raw, c):
                return self._at + c
            start = c + 1
            self._clear_until = self._at + start
        return None

    def _real_member(self, raw: bytes, c: int) -> bool:
        """Whether a gzip member starts at `raw[c]`: its header parses and its data begins to inflate (a
        look-alike's "data" fails within its first bytes)."""
        head = raw[c : c + 4096]
        if len(head) < 4096 and not self._file_done:  # near the end of what is read: from the file
            head = self._read_at(self._at + c, 4096)
        n = _header_length(head)
        if n == 0 and len(head) == 4096:  # a header with a long name or extra field
            head = self._read_at(self._at + c, READ)
            n = _header_length(head)
        if n <= 0:
            return False
        try:
            zlib.decompressobj(-15).decompress(head[n:], 1 << 16)
        except zlib.error:
            return False
        return True

    def _read_at(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes of the file from `offset`, the read position left where it was."""
        back = self._fh.tell()
        self._fh.seek(offset)
        data = self._fh.read(n)
        self._fh.seek(back)
        return data

    def _salvage(self, exc: Exception | None, limit: int | None = None) -> bytes:
        """Inflate the member again with zlib up to the damaged byte (or, when its data ran up to the next member
        at `limit` without ending, up to there); return what had not been returned yet."""
        self._held, self._suspect = [], None  # what the inflater made after it ran over a member: not returned
        d = zlib.decompressobj(-15)
        self._fh.seek(self._body_at)
        at, out, made = self._body_at, [], 0  # made: bytes inflated so far (those returned already are dropped)
        bad = None
        while bad is None and not d.eof:
            piece = self._fh.read(4096 if limit is None else min(4096, limit - at))
            if not piece:
                break
            saved = d.copy()
            try:
                got = [d.decompress(piece)]
                at += len(piece)
            except zlib.error:
                d, got = saved, []
                for k in range(len(piece)):  # the damaged piece, a byte at a time: keep up to the bad byte
                    try:
                        got.append(d.decompress(piece[k : k + 1]))
                    except zlib.error:
                        bad = at + k
                        break
            for chunk in got:
                if made + len(chunk) > self._returned:
                    out.append(chunk[max(0, self._returned - made) :])
                made += len(chunk)
        data = b"".join(out)
        kept = self._returned + len(data)
        if exc is None and bad is None:  # zlib too inflated all of it without an error: kept, and said
            assert limit is not None
            self._damaged(f"gzip member at byte {self._member_at}: corrupt data (it does not end before the next "
                          f"member, at byte {limit}); {kept} bytes kept", resume=limit)
            return data
        bad = bad if bad is not None else at
        why = exc if exc is not None else f"it does not end before the next member, at byte {limit}"
        # the next member starts after this one's header, maybe before the bad byte (damaged data can run on
        # into it): look from this member's data on
        self._damaged(f"gzip member at byte {self._member_at}: corrupt data at byte {bad} ({why}); "
                      f"{kept} bytes before it kept", resume=self._body_at if limit is None else limit)
        return data

    def _damaged(self, what: str, resume: int | None = None) -> None:
        """Note the damage and look for the next member from `resume` (default: the byte after this one)."""
        self.damage.append(what)
        self._resume(resume if resume is not None else self._at + 1)

    def _resume(self, start: int) -> None:
        """Go on with the first gzip member header at or after file offset `start` (after a break)."""
        self._fh.seek(start)
        self._in, self._at, self._file_done = b"", start, False
        self._state = "scan"
        self._scan_from = start

    def _next_member(self, start: int) -> int | None:
        """The file offset of the first gzip member header at or after `start`, if any (reads the file again)."""
        back = self._fh.tell()
        self._fh.seek(start)
        tail = b""
        at = start
        while data := self._fh.read(READ):
            buf = tail + data
            m = _HEADER.search(buf)
            if m is not None:
                self._fh.seek(back)
                return at - len(tail) + m.start()
            tail = buf[-(len(_MAGIC) + 7) :]
            at += len(data)
        self._fh.seek(back)
        return None

    def _scan(self) -> None:
        while True:
            m = _HEADER.search(self._in)
            if m is not None:
                self._take(m.start())
                self.damage[-1] += f"; resumed at the gzip member at byte {self._at}"
                self._break_pending = True
                self._state = "header"
                return
            keep = len(_MAGIC) + 7  # a header may straddle two reads
            self._take(max(0, len(self._in) - keep))
            if not self._more():
                skipped = self._at + len(self._in) - self._scan_from
                self.damage[-1] += f"; no further gzip member in the file ({skipped} bytes searched)"
                self._state = "done"
                return


def _header_length(buf: bytes) -> int:
    """The length of the gzip member header at the start of `buf`; 0 if `buf` is too short to tell; -1 if it is
    not a member header."""
    if len(buf) < 10:
        return 0 if _MAGIC.startswith(buf[:3]) else -1
    if not buf.startswith(_MAGIC) or buf[3] & 0xE0:
        return -1
    flags, n = buf[3], 10
    if flags & _FEXTRA:
        if len(buf) < n + 2:
            return 0
        n += 2 + int.from_bytes(buf[n : n + 2], "little")
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            end = buf.find(b"\x00", n)
            if end < 0:
                return 0
            n = end + 1
    if flags & _FHCRC:
        n += 2
    return n if len(buf) >= n else 0
