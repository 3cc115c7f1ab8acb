"""Per-span details (attributes, payload, error, the record's other fields, self time) as compressed blocks.

The waterfall needs only the columns of every span; a span's record is needed when someone clicks it. So the
records travel in blocks of `BLOCK_SIZE` spans (in the document's span order, so a subtree shares few
blocks): each block a JSON array, gzip-compressed, base64-encoded. The page inflates one block when one of
its spans is opened (`DecompressionStream`, built into the browser), which keeps a 100k-span report a fraction
of its records' size and its load time independent of their size.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson

BLOCK_SIZE = 500
ENCODING = "gzip+base64+json"
# fields the columns already carry; the rest of a record is shown as it was written
_IN_COLUMNS = frozenset({"trace_id", "span_id", "parent_id", "agent_name", "event_type", "timestamp",
                         "duration_ns", "name", "status", "token_cost", "attributes", "payload", "error"})


def _compressor() -> Callable[[bytes], bytes]:
    """gzip at a fast level; isal's when installed (several times faster), zlib's otherwise."""
    try:
        from isal import igzip

        return lambda data: igzip.compress(data, compresslevel=2)
    except ImportError:
        return lambda data: _zlib_gzip(data, 6)


def _zlib_gzip(data: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def detail_of(rec: dict[str, Any] | None, self_ns: int) -> dict[str, Any]:
    """What the details panel shows beyond the columns."""
    out: dict[str, Any] = {"self_ns": self_ns}
    if not rec:
        return out
    for key in ("attributes", "payload", "error", "token_cost"):
        if rec.get(key) is not None:
            out[key] = rec[key]
    other = {k: v for k, v in rec.items() if k not in _IN_COLUMNS}
    if other:
        out["other"] = other
    return out


def detail_blocks(order: Sequence[int], record: Callable[[int], dict[str, Any] | None], self_ns: Sequence[int],
                  block_size: int = BLOCK_SIZE) -> dict[str, Any]:
    """{"encoding", "block_size", "blocks": [base64 ...]}: details of the spans `order` lists, in that order."""
    compress = _compressor()
    blocks: list[str] = []
    for lo in range(0, len(order), block_size):
        chunk = [detail_of(record(i), self_ns[i]) for i in order[lo : lo + block_size]]
        data = orjson.dumps(chunk, default=_default, option=orjson.OPT_NON_STR_KEYS)
        blocks.append(base64.b64encode(compress(data)).decode("ascii"))
    return {"encoding": ENCODING, "block_size": block_size, "blocks": blocks}


def read_block(details: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """Block k decoded (what the page does in JS; for tests and tools)."""
    raw = base64.b64decode(details["blocks"][k])
    return list(orjson.loads(zlib.decompress(raw, 47)))


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)
