"""Redaction before anything is written: secrets by key name and by value pattern, then truncation.

The writer thread hands whole batches of serialized records to `Redactor.redact_batch`: the records are joined,
lowercased and searched once for literal triggers by one compiled multi-pattern automaton (Aho-Corasick, in
Rust, without the GIL; one per 64 triggers if extra keys make more). Only a record holding a trigger (that a
cheap anchored check at the hit does not rule out), or one that is too large, is parsed, walked, redacted by
structure and re-serialized. What was scrubbed is
recorded as paths and counts (`redacted.paths`, `redacted.count`), never values.

The triggers are a superset of what the key names and value patterns can match (lowercased, with every
separator spelling, JSON escapes accounted for), so a record the scan passes over is one the walk would not
have changed; `tests/test_redaction.py` checks this against the walk on generated records.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

# Key names whose values are secrets whatever they look like. A key is lowercased and '-', '.' and ' ' become
# '_' before the check; a key that ends in "token" is a secret too (auth_token, accessToken, csrf-token).
SECRET_KEY_PARTS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "cookie",
    "private_key",
    "privatekey",
    "access_key",
    "accesskey",
    "session_key",
    "sessionkey",
)

_NOT_ALNUM = r"(?<![A-Za-z0-9])"  # an ASCII boundary: `\b` fails next to '_' and next to letters like 'é'
_ASSIGN_KEYS = (
    r"(?ai:pass(?:word|wd|phrase)|pwd|secret|(?:api|access|private|session)[-_. ]?key"
    r"|(?:access|auth|refresh|session|id|api|bearer|csrf|xsrf|oauth|client|app|bot|personal)[-_]?token"
    r"|(?<![A-Za-z0-9_])token)"
)

# Value patterns: (kind, regex). Matches are replaced by `[REDACTED:<kind>]`; a pattern with a group `v`
# replaces only that group (the key of `password=...` stays readable).
VALUE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("private_key", r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)"),
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai_key", _NOT_ALNUM + r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("stripe_key", _NOT_ALNUM + r"[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("google_api_key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("aws_access_key", _NOT_ALNUM + r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}"),
    ("aws_secret_key", r"(?ai:aws_?secret_?(?:access_?)?key)['\"]?\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"),
    ("github_token", _NOT_ALNUM + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("gitlab_token", _NOT_ALNUM + r"glpat-[A-Za-z0-9_\-]{20,}"),
    ("slack_token", _NOT_ALNUM + r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("bearer_token", _NOT_ALNUM + r"(?ai:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    ("jwt", _NOT_ALNUM + r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("url_credentials", r"(?<=://)[^/\s:@]{1,64}:[^/\s@]{1,128}(?=@)"),
    # `password=hunter2`, `"api_key": "..."` inside free text, JSON held in a string, or a query string
    ("secret_assignment", _ASSIGN_KEYS + r"(?:\\?['\"])?[ \t]*[:=][ \t]*(?:\\?\"(?P<v>(?!\[REDACTED)[^\"\\\n]+)"
     r"|'(?P<w>(?!\[REDACTED)[^'\n]+)|(?P<x>(?!\[REDACTED)[^\s\"'\\&,;<>(){}\[\]]+))"),
)

# Before a hit the value patterns want no ASCII letter or digit; in JSON bytes such a letter may end an escape
# (`\n`, `\u00e9`) that stands for a character the pattern accepts.
_B_BOUNDARY = rb"(?:(?<![a-z0-9])|(?<=\\[nrtbf])|(?<=\\u[0-9a-f]{4}))"

# Literal triggers, searched in the lowercased JSON bytes, each with an optional check anchored at the hit (on
# the lowercased bytes, so a superset of the case-sensitive pattern) that rules out the common false hits. Each
# starts with bytes that are rare in JSON text (not a space, '_' or '.'): the search checks every place where a
# trigger's first bytes occur.
_KEY_TRIGGERS: tuple[tuple[bytes, bytes | None], ...] = (
    # every part of SECRET_KEY_PARTS, in every spelling of its separator
    (b"passw", None), (b"passph", None), (b"pwd", None), (b"secret", None), (b"authorization", None),
    (b"credential", None), (b"cookie", None),
    *((word.replace(b"_", sep), None) for word in (b"api_key", b"access_key", b"private_key", b"session_key")
      for sep in (b"_", b"-", b".", b" ", b"")),
)
_VALUE_TRIGGERS: tuple[tuple[bytes, bytes | None], ...] = (
    (b"-----begin", None),
    (b"sk-", _B_BOUNDARY + rb"sk-|sk-ant-"),
    (b"k_live", rb"(?<=[sr])k_live_"), (b"k_test", rb"(?<=[sr])k_test_"),
    (b"aiza", rb"aiza[0-9a-z_\-]{35}"),
    *((p, _B_BOUNDARY + rb"(?:akia|asia|agpa|aida|aroa|anpa)[0-9a-z]{16}")
      for p in (b"akia", b"asia", b"agpa", b"aida", b"aroa", b"anpa")),
    *((p, None) for p in (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_", b"glpat-")),
    (b"xox", rb"xox[abposr]-"),
    (b"bearer", None),
    (b"eyj", _B_BOUNDARY + rb"eyj[a-z0-9_\-]{8,}\.[a-z0-9_\-]{8,}\.[a-z0-9_\-]{8}"),
    (b"://", rb"://[^/:@\n]{1,400}:[^/@\n]{1,800}@"),
    # a key ending in "token" (its closing quote follows), or `token=` / `token: ` / `token\"` in free text
    *((b"token" + c, None) for c in (b'"', b"'", b"\\", b" ", b":", b"=")),
    (b"\xe2\x84\xaa", None),  # KELVIN SIGN: str.lower() makes it 'k', bytes.lower() does not
)

NEVER_WALKED = frozenset({"trace_id", "span_id", "parent_id", "timestamp", "duration_ns", "event_type",
                          "format_version"})

PREFILTER_ITEMS = 64  # a list this long is searched for triggers item by item before any item is walked
_KEY_SEPARATORS = str.maketrans({"-": "_", ".": "_", " ": "_"})


def _key_spellings(part: str) -> list[bytes]:
    """Every spelling a normalized key part can have in the lowercased bytes ('_' stands for - . or space).
    A part with more than three separators is found by its longest piece instead (a superset)."""
    pieces = part.split("_")
    if len(pieces) > 4:
        return [max(pieces, key=len).encode()]
    spellings = [pieces[0]]
    for piece in pieces[1:]:
        spellings = [s + sep + piece for s in spellings for sep in ("_", "-", ".", " ")]
    return sorted({s.encode() for s in spellings})


def _digest(text: str | bytes) -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


TEDDY_MAX = 64  # patterns per automaton: aho-corasick's SIMD prefilter (Teddy) takes up to 64; beyond, a search
# costs 2-3 ns per byte instead of 0.3, so extra keys that push the triggers past 64 add a group instead. Not 32
# (Teddy's faster Slim variant, 30% less CPU for the two searches of 28 on bench_emit's batches): every search
# gives the GIL away, and with one more per batch a caller in a tight loop kept it long enough that a SIGKILL at
# full speed lost 279-365 ms of spans in three runs of six (14-136 ms with one search per batch).


def _load_automaton(patterns: list[bytes]) -> Callable[[bytes], list[tuple[int, int, int]]]:
    """`find(haystack) -> [(pattern index, start, end)]`, non-overlapping leftmost-first within each group of at
    most TEDDY_MAX patterns (one search per group): the Rust automaton (it releases the GIL while it searches),
    or a slower pure-Python search when it is not installed."""
    try:
        import ahocorasick_rs

        groups = -(-len(patterns) // TEDDY_MAX)
        size = -(-len(patterns) // groups)
        finders = [(at, ahocorasick_rs.BytesAhoCorasick(patterns[at : at + size],
                                                        matchkind=ahocorasick_rs.MatchKind.LeftmostFirst)
                    .find_matches_as_indexes) for at in range(0, len(patterns), size)]
        if len(finders) == 1:
            return finders[0][1]

        def find_groups(haystack: bytes) -> list[tuple[int, int, int]]:
            out: list[tuple[int, int, int]] = []
            for at, find_in in finders:
                found = find_in(haystack)
                if found:
                    out.extend((i + at, s, e) for i, s, e in found)
            return out

        return find_groups
    except ImportError:  # pragma: no cover - the dependency is installed with the package
        pass

    def find(haystack: bytes) -> list[tuple[int, int, int]]:
        out = []
        for i, p in enumerate(patterns):
            at = haystack.find(p)
            while at >= 0:
                out.append((i, at, at + len(p)))
                at = haystack.find(p, at + 1)
        out.sort(key=lambda m: m[1])
        return out

    return find


@dataclass
class RedactionResult:
    paths: list[str]
    count: int
    truncated: bool


class Redactor:
    """Scrubs secrets from records. Stateless after construction (but for a cache of key verdicts), so the
    writer thread may share it."""

    def __init__(
        self,
        *,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        max_string_chars: int = 4096,
        max_payload_bytes: int = 16384,
        max_record_bytes: int = 32768,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.extra_keys = tuple(k.lower().translate(_KEY_SEPARATORS) for k in extra_keys if k)
        self.allow_keys = frozenset(allow_keys)
        extra_patterns = list(extra_patterns)
        patterns = list(VALUE_PATTERNS) + [(f"custom{i}", p) for i, p in enumerate(extra_patterns)]
        self.patterns = [(kind, re.compile(p)) for kind, p in patterns]
        self._parts = SECRET_KEY_PARTS + self.extra_keys
        self._key_verdicts: dict[str, bool] = {}
        self._extra: re.Pattern[bytes] | None = None
        self._extra_always = False
        if extra_patterns:
            try:
                self._extra = re.compile(b"|".join(p.encode() for p in extra_patterns))
            except (re.error, UnicodeEncodeError):
                self._extra_always = True  # not usable on bytes: every record gets the walk
        self.max_string_chars = max_string_chars
        self.max_payload_bytes = max_payload_bytes
        self.max_record_bytes = max_record_bytes
        triggers: dict[bytes, bytes | None] = dict(_KEY_TRIGGERS)
        for part in self.extra_keys:
            for spelling in _key_spellings(part):
                triggers[spelling] = None
        for literal, check in _VALUE_TRIGGERS:
            triggers.setdefault(literal, check)
        self._triggers = list(triggers)
        self._checks = [None if c is None else re.compile(c) for c in triggers.values()]
        # a trigger that can start inside another one: a rejected hit of the other must be searched again
        self._overlapped = [_can_hide(t, self._triggers) for t in self._triggers]
        self._longest = max(map(len, self._triggers))
        self._find = _load_automaton(self._triggers)
        self._find_all: Callable[[bytes], list[tuple[int, int, int]]] | None = None

    # -- finding the records that need the walk -----------------------------------------------------------------

    def needs_work(self, data: bytes) -> bool:
        """Could this record hold a secret (or is it too large)?"""
        return bool(self._candidates([data], data))

    def _candidates(self, batch: list[bytes], joined: bytes) -> set[int]:
        """Indexes of the records of `batch` (joined by newlines into `joined`) that must be walked."""
        limit = self.max_record_bytes
        todo: set[int] = set()
        if max(map(len, batch)) > limit:
            todo.update(i for i, d in enumerate(batch) if len(d) > limit)
        if self._extra_always:
            return set(range(len(batch)))
        positions: list[int] = []
        if self._extra is not None:
            positions.extend(m.start() for m in self._extra.finditer(joined))
        if self.enabled:
            positions.extend(self._trigger_hits(joined.lower()))
        if positions:
            ends = list(accumulate(map((1).__add__, map(len, batch))))
            todo.update(bisect_right(ends, p) for p in positions)
        return todo

    def _trigger_hits(self, low: bytes) -> list[int]:
        """Positions in the lowercased batch where a trigger holds (its anchored check passes). The search is
        non-overlapping: where a rejected hit may hide another trigger starting inside it, the bytes from
        there are searched again for every match."""
        hits: list[int] = []
        checks = self._checks
        for idx, start, end in self._find(low):
            check = checks[idx]
            if check is None or check.match(low, start):
                hits.append(start)
            elif self._overlapped[idx]:
                if self._find_all is None:
                    self._find_all = _overlapping(self._triggers)
                window = low[start + 1 : end + self._longest]
                for idx2, s2, _e2 in self._find_all(window):
                    check2 = checks[idx2]
                    if check2 is None or check2.match(low, start + 1 + s2):
                        hits.append(start + 1 + s2)
                        break
        return hits

    # -- redacting ----------------------------------------------------------------------------------------------

    def redact_batch(self, batch: list[bytes]) -> tuple[list[bytes], bytes, int]:
        """Redact a batch of serialized records: (records, the records joined by newlines, how many changed).
        Records without a trigger are passed through as they are, without being parsed."""
        joined = b"\n".join(batch)
        if not batch:
            return batch, joined, 0
        todo = self._candidates(batch, joined)
        if not todo:
            return batch, joined, 0
        out = list(batch)
        changed = 0
        for i in todo:
            new = self._walk_record(batch[i])
            if new != batch[i]:
                out[i] = new
                changed += 1
        return out, b"\n".join(out), changed

    def process(self, data: bytes) -> bytes:
        """Redact and truncate one serialized record. Returns the bytes to write."""
        if not self.needs_work(data):
            return data
        return self._walk_record(data)

    def _walk_record(self, data: bytes) -> bytes:
        rec = orjson.loads(data)
        result = self.scrub_record(rec)
        if not result.count and not result.truncated:
            return data
        return orjson.dumps(rec)

    def scrub_record(self, rec: dict[str, Any]) -> RedactionResult:
        """Redact a record in place (keys, then values), then truncate; note what was done on it."""
        paths: list[str] = []
        count = 0
        if self.enabled:
            for key in list(rec):
                if key in NEVER_WALKED:
                    continue
                if key == "attributes" and isinstance(rec[key], dict):
                    attrs = rec[key]
                    for akey in list(attrs):
                        if akey in ("redacted.paths", "redacted.count"):
                            continue
                        attrs[akey], n = self._walk(attrs[akey], f"attributes.{akey}", akey, paths)
                        count += n
                else:
                    rec[key], n = self._walk(rec[key], key, key, paths)
                    count += n
        truncated = self._truncate(rec)
        if count or truncated:
            attrs = rec.get("attributes")
            if not isinstance(attrs, dict):
                attrs = rec["attributes"] = {}
            if count:
                attrs["redacted.paths"] = sorted(set(paths) | set(attrs.get("redacted.paths") or []))
                attrs["redacted.count"] = count + int(attrs.get("redacted.count") or 0)
            if truncated:
                attrs["payload.truncated"] = True
        return RedactionResult(paths, count, truncated)

    def scrub_value(self, value: Any, path: str = "") -> tuple[Any, int]:
        """Redact any JSON-like value (used for replay packets). Returns (value, number of redactions)."""
        paths: list[str] = []
        return self._walk(value, path, path.rsplit(".", 1)[-1], paths)

    def is_secret_key(self, key: str) -> bool:
        """Is `key` (a dict key or attribute name) one whose value is a secret whatever it looks like?"""
        verdict = self._key_verdicts.get(key)
        if verdict is None:
            k = key.lower().translate(_KEY_SEPARATORS)
            verdict = k.endswith("token") or any(part in k for part in self._parts)
            if len(self._key_verdicts) < 100_000:
                self._key_verdicts[key] = verdict
        return verdict

    def _walk(self, value: Any, path: str, key: str, paths: list[str]) -> tuple[Any, int]:
        if key and key not in self.allow_keys and path not in self.allow_keys and self.is_secret_key(key):
            if value is None or value == "" or isinstance(value, bool):
                return value, 0
            paths.append(path)
            return "[REDACTED]", 1
        if isinstance(value, str):
            return self._scrub_string(value, path, paths)
        if isinstance(value, dict):
            total = 0
            for k in list(value):
                value[k], n = self._walk(value[k], f"{path}.{k}" if path else str(k), str(k), paths)
                total += n
            return value, total
        if isinstance(value, list):
            total = 0
            for i in self._items_to_walk(value):
                value[i], n = self._walk(value[i], f"{path}[{i}]", "", paths)
                total += n
            return value, total
        return value, 0

    def _items_to_walk(self, items: list[Any]) -> Iterable[int]:
        """The items of a list the walk could change: of a long list (a packet's thousands of spans), only those
        whose JSON holds a trigger, found by the writer's scan of a batch (`_candidates`: the triggers are a
        superset of what the walk redacts); every item of a short one, or of one that is not plain JSON."""
        if len(items) < PREFILTER_ITEMS or not self.enabled or self._extra_always:
            return range(len(items))
        try:
            batch = list(map(orjson.dumps, items))
        except (TypeError, orjson.JSONEncodeError):
            return range(len(items))
        return sorted(self._candidates(batch, b"\n".join(batch)))

    def _scrub_string(self, text: str, path: str, paths: list[str]) -> tuple[str, int]:
        total = 0
        for kind, rx in self.patterns:
            if rx.groupindex:
                text, n = rx.subn(_keep_key(kind), text)
            else:
                text, n = rx.subn(f"[REDACTED:{kind}]", text)
            total += n
        if total:
            paths.append(path)
        return text, total

    def _truncate(self, rec: dict[str, Any]) -> bool:
        truncated = False
        limit = self.max_string_chars

        def cut(value: Any) -> Any:
            nonlocal truncated
            if isinstance(value, str) and len(value) > limit:
                truncated = True
                return f"{value[:limit]}...[truncated {len(value) - limit} chars sha256:{_digest(value)}]"
            if isinstance(value, dict):
                return {k: cut(v) for k, v in value.items()}
            if isinstance(value, list):
                return [cut(v) for v in value]
            return value

        for key in ("payload", "attributes", "error", "name"):
            if key in rec:
                rec[key] = cut(rec[key])
        payload = rec.get("payload")
        if isinstance(payload, dict):
            data = orjson.dumps(payload, default=str)
            if len(data) > self.max_payload_bytes:
                truncated = True
                rec["payload"] = {
                    "truncated": True,
                    "bytes": len(data),
                    "sha256": _digest(data),
                    "preview": data[:1024].decode("utf-8", "replace"),
                }
        return truncated


def _keep_key(kind: str) -> Callable[[re.Match[str]], str]:
    """A replacement that redacts only the value group of the match (`password=[REDACTED:...]`)."""

    def replace(m: re.Match[str]) -> str:
        for group in ("v", "w", "x"):
            if m.group(group) is not None:
                start, end = m.span(group)
                whole = m.group(0)
                base = m.start()
                return f"{whole[: start - base]}[REDACTED:{kind}]{whole[end - base:]}"
        return m.group(0)

    return replace


def _can_hide(trigger: bytes, triggers: list[bytes]) -> bool:
    """Can another trigger start inside `trigger` (at offset 1 or later)? Then a rejected hit of `trigger`
    may have hidden it from the non-overlapping search."""
    for i in range(1, len(trigger)):
        tail = trigger[i:]
        if any(t.startswith(tail) or tail.startswith(t) or t in tail for t in triggers):
            return True
    return False


def _overlapping(patterns: list[bytes]) -> Callable[[bytes], list[tuple[int, int, int]]]:
    """Every match, overlapping ones too (used only on a record whose hit was ruled out)."""
    try:
        import ahocorasick_rs

        ac = ahocorasick_rs.BytesAhoCorasick(patterns)
        return lambda hay: ac.find_matches_as_indexes(hay, overlapping=True)
    except ImportError:  # pragma: no cover
        return _load_automaton(patterns)
