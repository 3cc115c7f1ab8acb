"""MessagePack streams: every complete object with its offset and bytes, past objects that cannot be decoded.

MessagePack has no framing, but its headers alone give each object's extent: an object `msgpack` refuses (nested
deeper than its stack, a map keyed by a map, a string too long) is measured with `object_end` and skipped as one
reject, and reading goes on with the next object. Only a byte that is no header at all (0xc1) ends the stream.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

# header byte -> (bytes of the header, bytes of a length that follows it (0: none), fixed payload bytes, kind)
# kind: 0 scalar, 1 array (length = items), 2 map (length = pairs), 3 str/bin/ext (length = bytes; ext +1 type)
_FIXED: dict[int, tuple[int, int, int, int]] = {
    0xC0: (1, 0, 0, 0), 0xC2: (1, 0, 0, 0), 0xC3: (1, 0, 0, 0),
    0xC4: (1, 1, 0, 3), 0xC5: (1, 2, 0, 3), 0xC6: (1, 4, 0, 3),
    0xC7: (1, 1, 1, 3), 0xC8: (1, 2, 1, 3), 0xC9: (1, 4, 1, 3),
    0xCA: (1, 0, 4, 0), 0xCB: (1, 0, 8, 0),
    0xCC: (1, 0, 1, 0), 0xCD: (1, 0, 2, 0), 0xCE: (1, 0, 4, 0), 0xCF: (1, 0, 8, 0),
    0xD0: (1, 0, 1, 0), 0xD1: (1, 0, 2, 0), 0xD2: (1, 0, 4, 0), 0xD3: (1, 0, 8, 0),
    0xD4: (1, 0, 2, 0), 0xD5: (1, 0, 3, 0), 0xD6: (1, 0, 5, 0), 0xD7: (1, 0, 9, 0), 0xD8: (1, 0, 17, 0),
    0xD9: (1, 1, 0, 3), 0xDA: (1, 2, 0, 3), 0xDB: (1, 4, 0, 3),
    0xDC: (1, 2, 0, 1), 0xDD: (1, 4, 0, 1), 0xDE: (1, 2, 0, 2), 0xDF: (1, 4, 0, 2),
}
_LEN = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I")}


class Corrupt(ValueError):
    """A byte that starts no MessagePack object (0xc1): nothing after it can be framed."""


@dataclass
class _Skip:
    """Where measuring an object stopped for want of bytes: resumed when more arrive (no quadratic rescans)."""

    start: int  # the object's offset in the stream
    pos: int  # the next header's offset in the stream
    remaining: int  # objects still to pass over


def object_end(data: bytes | bytearray, skip: _Skip, base: int) -> int | None:
    """The stream offset just after the object `skip` measures (`data` holds the stream from offset `base`),
    or None when `data` ends first (`skip` then says where to go on). Raises Corrupt on a 0xc1 byte."""
    pos, remaining, end = skip.pos - base, skip.remaining, len(data)
    while remaining:
        if pos >= end:
            break
        b = data[pos]
        remaining -= 1
        if b <= 0x7F or b >= 0xE0:
            pos += 1
        elif b <= 0x8F:
            remaining += 2 * (b & 0x0F)
            pos += 1
        elif b <= 0x9F:
            remaining += b & 0x0F
            pos += 1
        elif b <= 0xBF:
            pos += 1 + (b & 0x1F)
        elif b == 0xC1:
            raise Corrupt(f"byte 0xc1 at offset {base + pos} starts no MessagePack object")
        else:
            head, size, fixed, kind = _FIXED[b]
            if pos + head + size > end:
                remaining += 1
                break
            n = _LEN[size].unpack_from(data, pos + head)[0] if size else 0
            pos += head + size + fixed
            if kind == 1:
                remaining += n
            elif kind == 2:
                remaining += 2 * n
            elif kind == 3:
                pos += n
    skip.pos, skip.remaining = base + pos, remaining
    if remaining or pos > end:
        return None
    return base + pos


@dataclass
class Item:
    """One object of the stream: its value (or why it could not be decoded) and where it lies."""

    start: int
    end: int
    value: Any = None
    error: str | None = None


class MsgpackStream:
    """Objects from chunks of a MessagePack stream, with offsets counted from `base`: `feed` a chunk, then take
    `items()`. `restart()` after a break in the stream (damaged compressed data) drops a partial object.
    `corrupt` says why the stream cannot go on (nothing is read after that)."""

    def __init__(self, base: int, max_object: int) -> None:
        self.buf = bytearray()  # the stream from offset `base` on: bytes of objects not yet taken
        self.base = base
        self.max_object = max_object
        self.skip: _Skip | None = None
        self.why = ""  # why the object being skipped could not be decoded
        self.corrupt: str | None = None
        self._unpacker: Any = None
        self._ubase = base  # the stream offset where the unpacker started

    @property
    def pending(self) -> int:
        """Bytes of a partial object waiting for more data."""
        return len(self.buf)

    def feed(self, chunk: bytes) -> None:
        if self.corrupt:
            return
        self.buf += chunk
        if self._unpacker is not None:
            try:
                self._unpacker.feed(chunk)
            except msgpack.BufferFull:
                self.corrupt = f"object at offset {self.base} larger than {self.max_object} bytes"

    def restart(self, base: int) -> int:
        """Drop what is pending (returns how many bytes) and go on at stream offset `base`."""
        dropped = len(self.buf)
        self.buf, self.base, self.skip, self._unpacker = bytearray(), base, None, None
        return dropped

    def raw(self, item: Item) -> bytes:
        """The bytes of an item just yielded by `items()`."""
        return bytes(self.buf[item.start - self.base : item.end - self.base])

    def items(self) -> Iterator[Item]:
        """The objects complete in the data fed so far (an item's bytes: `raw(item)` before the next one)."""
        done = self.base  # stream offset of the first byte not yet taken
        while not self.corrupt and done < self.base + len(self.buf):
            if self.skip is not None:
                end = self._measure()
                if end is None:
                    break
                item = Item(self.skip.start, end, error=self.why)
                self.skip = None
            else:
                if self._unpacker is None:
                    self._start(done)
                try:
                    value = self._unpacker.unpack()
                except msgpack.OutOfData:
                    break
                except Exception as exc:  # noqa: BLE001 - any object msgpack refuses: measure it and go on
                    self.skip = _Skip(done, done, 1)
                    self.why = f"invalid MessagePack: {type(exc).__name__}: {exc}"
                    self._unpacker = None
                    continue
                item = Item(done, self._ubase + self._unpacker.tell(), value)
            yield item
            done = item.end
        if self.corrupt:
            self.buf = bytearray()
            return
        del self.buf[: done - self.base]
        self.base = done
        if len(self.buf) > self.max_object:
            self.corrupt = f"object at offset {done} larger than {self.max_object} bytes"

    def _start(self, at: int) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape",
                                          max_buffer_size=self.max_object + (1 << 20))
        self._unpacker.feed(bytes(self.buf[at - self.base :]))
        self._ubase = at

    def _measure(self) -> int | None:
        assert self.skip is not None
        try:
            end = object_end(self.buf, self.skip, self.base)
        except Corrupt as exc:
            self.corrupt = str(exc)
            return None
        if end is None and self.skip.pos - self.skip.start > self.max_object:
            self.corrupt = f"object at offset {self.skip.start} larger than {self.max_object} bytes"
        return end
