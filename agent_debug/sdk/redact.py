"""Redaction before anything is written: secrets by key name and by value pattern, then truncation.

The writer thread calls `Redactor.process(data)` on each serialized record. The common case costs one regex
scan over the bytes; only a record that might hold a secret (or is too large) is parsed, walked, and
re-serialized. What was scrubbed is recorded as paths and counts (`redacted.paths`, `redacted.count`), never
values.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

# Key names whose values are secrets whatever they look like (matched on the lowercased key, '-' as '_').
SECRET_KEY_PARTS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "cookie",
    "private_key",
    "access_key",
    "session_key",
)

# Value patterns: (kind, regex). Matches are replaced by `[REDACTED:<kind>]`.
VALUE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("private_key", r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)"),
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai_key", r"(?<![A-Za-z0-9])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("stripe_key", r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("google_api_key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"),
    ("aws_secret_key", r"(?i)aws_?secret_?(?:access_?)?key['\"]?\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("url_credentials", r"(?<=://)[^/\s:@]{1,64}:[^/\s@]{1,128}(?=@)"),
)

# Literal triggers, checked with `in` on the lowercased bytes (C substring search, no regex): only a record
# containing one of these is parsed and walked. A false positive costs that walk; a secret without one of these
# substrings cannot match a default key name or value pattern.
_TRIGGERS: tuple[bytes, ...] = (
    b"-----begin", b"sk-", b"sk_live", b"sk_test", b"rk_live", b"rk_test", b"aiza", b"akia", b"asia", b"agpa",
    b"aida", b"aroa", b"anpa", b"aws_secret", b"awssecret", b"aws-secret", b"ghp_", b"gho_", b"ghu_", b"ghs_",
    b"ghr_", b"github_pat_", b"glpat-", b"xox", b"bearer", b"eyj", b"://",
    b"password", b"passwd", b"passphrase", b"secret", b"api_key", b"apikey", b"api-key", b"authorization",
    b"credential", b"cookie", b"private", b"access_key", b"accesskey", b"session_key", b"sessionkey", b'token"',
)

NEVER_WALKED = frozenset({"trace_id", "span_id", "parent_id", "timestamp", "duration_ns", "event_type"})


def _is_secret_key(key: str, extra: tuple[str, ...]) -> bool:
    k = key.lower().replace("-", "_")
    if any(part in k for part in SECRET_KEY_PARTS) or any(part in k for part in extra):
        return True
    last = k.rsplit(".", 1)[-1].rsplit("_", 1)[-1]
    return last == "token"


def _digest(text: str | bytes) -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class RedactionResult:
    paths: list[str]
    count: int
    truncated: bool


class Redactor:
    """Scrubs secrets from records. Stateless after construction, so the writer thread may share it."""

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
        self.extra_keys = tuple(k.lower().replace("-", "_") for k in extra_keys)
        self.allow_keys = frozenset(allow_keys)
        patterns = list(VALUE_PATTERNS) + [(f"custom{i}", p) for i, p in enumerate(extra_patterns)]
        self.patterns = [(kind, re.compile(p)) for kind, p in patterns]
        self._triggers = _TRIGGERS + tuple(k.encode() for k in self.extra_keys)
        self._extra = re.compile(b"|".join(p.encode() for p in extra_patterns)) if extra_patterns else None
        self.max_string_chars = max_string_chars
        self.max_payload_bytes = max_payload_bytes
        self.max_record_bytes = max_record_bytes

    def needs_work(self, data: bytes) -> bool:
        """Could this record hold a secret (or is it too large)? Cheap: substring checks first."""
        if len(data) > self.max_record_bytes:
            return True
        if self._extra is not None and self._extra.search(data):
            return True
        if not self.enabled:
            return False
        low = data.lower()
        return any(t in low for t in self._triggers)

    def process(self, data: bytes) -> bytes:
        """Redact and truncate one serialized record. Returns the bytes to write."""
        if not self.needs_work(data):
            return data
        rec = orjson.loads(data)
        self.scrub_record(rec)
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

    def _walk(self, value: Any, path: str, key: str, paths: list[str]) -> tuple[Any, int]:
        if key and key not in self.allow_keys and path not in self.allow_keys and _is_secret_key(key, self.extra_keys):
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
            for i, item in enumerate(value):
                value[i], n = self._walk(item, f"{path}[{i}]", "", paths)
                total += n
            return value, total
        return value, 0

    def _scrub_string(self, text: str, path: str, paths: list[str]) -> tuple[str, int]:
        total = 0
        for kind, rx in self.patterns:
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
