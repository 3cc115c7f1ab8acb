"""Span digests: what the bucket rules and the span signals read from a span's record, kept per span beside the
columns so that diagnosis runs on columns and parses only the records of the spans it reports, or whose text it
must read (`analysis/column_path.py`). Below the store (ingest makes them), like `columns.py`.

A digest is computed for a batch of records with C-level passes (ingest stores it in the chunk; a trace read from
files gets it when first needed). Per span:

- `df`, flags (below): the attribute facts the rules and signals test (`tool.exit_code` non-zero, a hard
  timeout, `tool.result_size = 0`, `retrieval.doc_count = 0`, ...), whether the span has an output and whether
  that output is empty text (`is_empty_text`, which span_context uses too), and `TEXT`: the output's text may
  hold a phrase some signal's pattern looks for, so its record must be read. `TEXT` is conservative: every
  pattern of the signals needs one of `TRIGGERS` (lowercase literals) in the text, so a text without any cannot
  match; a text with escapes that could spell one (`\\u`) or with the four non-ASCII letters that
  case-insensitive patterns match as ASCII ones is marked too. `CONCL` / `CONCL_IN`: the output / input may
  state a conclusion (`disagreement.conclusions`), by the same kind of test.
- `ol`: the length of the output as text (`span_context.raw_output`), in characters.
- `ih`: a digest of the input as text (what makes two tool calls the same call), None for no input.
- `da`: sparse attributes, {key: [[position, value], ...]} for the keys in SPARSE_KEYS (rare, read whole);
  `llm.finish_reason` only where it is not "stop" (FINISH says it is present); `error.type`, the `type` of the
  record's `error` object (what a failed action's evidence names).

`digest_records` is the reference: one record at a time, in plain Python; `digest_batch` must give the same.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, compress, repeat
from operator import add, is_not, mul, ne, not_, or_
from typing import Any

import orjson

TEXT_CAP = 20_000  # the first characters of a text the span signals read (span_context)
_EMPTY_TEXT = frozenset({"", "none", "null", "[]", "{}", '""', "''", "nan"})


def is_empty_text(text: str) -> bool:
    """Nothing but headers ("Execution logs:") and empty values ("None", "[]") once blank lines are dropped."""
    for line in text.splitlines():
        s = line.strip()
        if s and not s.endswith(":") and s.lower() not in _EMPTY_TEXT:
            return False
    return True


TEXT = 1 << 0  # the output may hold a signal's phrase (or cannot be checked cheaply): read the record
OUT = 1 << 1  # span_io output is not None
EMPTY = 1 << 2  # the output, as text, is empty (is_empty_text; no output at all counts as "")
EVENTS = 1 << 3  # the record has events (own_failure reads them): read the record
EXIT = 1 << 4  # tool.exit_code present
EXIT_FAIL = 1 << 5  # tool.exit_code an int (not a bool) other than 0
EXIT_ZERO = 1 << 6  # tool.exit_code == 0
HARD = 1 << 7  # tool.timeout_class == "hard"
SIZE_ZERO = 1 << 8  # tool.result_size == 0
DOC = 1 << 9  # retrieval.doc_count present
DOC_ZERO = 1 << 10  # retrieval.doc_count == 0
DOC_ZERO_NUM = 1 << 11  # retrieval.doc_count == 0 and not a bool
FINISH = 1 << 12  # llm.finish_reason present
IN = 1 << 13  # span_io input is not None
CONCL = 1 << 14  # the output may state a conclusion (disagreement.py)
CONCL_IN = 1 << 15  # the input may state one
LINE = 1 << 16  # the output, as text, is one line of printable characters (str.isprintable)

SPARSE_KEYS = frozenset({
    "retry.of", "route.lane", "route.required_lane", "route.risk", "route.model", "token.budget", "plan.steps",
    "verifier.passed", "verifier.reason", "gen_ai.response.finish_reasons", "call.hop", "retrieval.refs",
    "transcript.step", "outcome.reason", "outcome.passed",
})
ERROR_TYPE = "error.type"  # in `da`: the record's error object's `type` (not an attribute: the `error` field)
_DENSE = frozenset({"tool.exit_code", "tool.timeout_class", "tool.result_size", "retrieval.doc_count"})

# Literals (lowercase) one of which every match of the signals' patterns contains: span_signals' SELF_CORRECTION,
# PROGRESS, FABRICATION, NO_RESULTS, ERROR_TEXT, _FINAL; span_context's code blocks and tool calls; "exception"
# (an exception event's name); "\\u" (an escape inside a JSON text that could spell any of them).
TRIGGERS = (
    # SELF_CORRECTION
    "it seems", "it appears", "seems like", "seems that", "doesn't ", "does not ", "don't ", "do not ", "didn't ",
    "did not ", "can't see", "cannot see", "isn't ", "aren't ", "wasn't ", "weren't ", "is not ", "are not ",
    "was not ", "no matches", "no results", "no luck", "unable to", "failed to", "having difficulty",
    "having trouble", "still no", "still can't", "still cannot", "still unable", "couldn't ", "could not ",
    "can't ", "cannot ", "try again", "different approach", "another approach", "i apologi", "i see ",
    "error ", "issue ", "problem ", "let me ", "instead",
    # PROGRESS
    "successfully", "now i ", "i've ", "i have ", "excellent", "great", "perfect", "that works", "confirm",
    # FABRICATION
    "i cannot ", "i can't ", "i can not ", "i am unable", "i am not able", "access", "hypothetical", "assum",
    "placeholder", "example data", "sample data", "sample dataset", "simulat", "mock", "dummy",
    "for demonstration", "for illustration", "fictional", "made-up", "made up", "pretend",
    # NO_RESULTS
    "no result", "no documents", "no information", "no data", "no entries", "no records", "not found",
    "returned nothing", "returned no ", "0 results", "0 documents", "0 matches", "could not find",
    "couldn't find", "nothing found", "nothing was found", "does not exist", "doesn't exist", "404",
    # ERROR_TEXT
    "traceback", "error", "exception", "failed", "exit code ", "status", "http", "403 forbidden",
    "access denied", "captcha",
    # _FINAL, actions
    "final_answer", "final answer", "```", "tool_calls",
    "\\u",
)
# what disagreement.conclusions needs: a digit (_NUMBER), a yes/no word (_YESNO), an entity key (_ENTITY)
CONCLUSION_TRIGGERS = (
    *"0123456789", "yes", "no", "true", "false", "safe", "approved", "rejected", "compatible", "answer",
    "winner", "author", "owner", "capital", "city", "country", "company", "name", "cause", "culprit", "module",
    "file",
)
# letters that Python's case-insensitive patterns match as ASCII ones: İ ı ſ K
_FOLDS = ("\u0130", "\u0131", "\u017f", "\u212a")
_SEP = "\x00"  # joins a batch's texts for one scan: no literal holds it, so no match spans two texts
_MISSING = object()
_EMPTY_TOKENS = frozenset({"", "none", "null", "[]", "{}", '""', "''", "nan"})
_EMPTY_DICT: dict[str, Any] = {}


def _automaton(literals: Sequence[str]) -> Any:
    import ahocorasick_rs

    return ahocorasick_rs.AhoCorasick(list(literals))


_AC: dict[str, Any] = {}


def _scanner(kind: str) -> Any:
    ac = _AC.get(kind)
    if ac is None:
        ac = _AC[kind] = _automaton(TRIGGERS if kind == "text" else CONCLUSION_TRIGGERS)
    return ac


# -- the reference: one record at a time -------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """`span_context._as_text`, repeated here so that the two stay visibly the same."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _io(rec: dict[str, Any]) -> tuple[Any, Any]:
    """`span_context.span_io`."""
    payload = rec.get("payload") or {}
    attrs = rec.get("attributes") or {}
    if not isinstance(payload, dict):
        payload = {}
    if not isinstance(attrs, dict):
        attrs = {}
    inp = payload.get("input", payload.get("request"))
    out = payload.get("output", payload.get("response", payload.get("content")))
    return (inp if inp is not None else attrs.get("input.value"),
            out if out is not None else attrs.get("output.value"))


def input_digest(text: str) -> str:
    """What tells two inputs apart (64 bits of md5 of their text as `tool_text` cuts it)."""
    return hashlib.md5(text[:TEXT_CAP].encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _text_flags(text: str) -> int:
    low = text.lower()
    flags = 0
    if any(t in low for t in TRIGGERS) or (not text.isascii() and any(f in text for f in _FOLDS)):
        flags |= TEXT
    if any(t in low for t in CONCLUSION_TRIGGERS) or not text.isascii():  # \d and case folding go beyond ASCII
        flags |= CONCL
    return flags


def _attr_flags(attrs: dict[str, Any]) -> int:
    flags = 0
    code = attrs.get("tool.exit_code", _MISSING)
    if code is not _MISSING:
        flags |= EXIT
        if isinstance(code, int) and not isinstance(code, bool) and code != 0:
            flags |= EXIT_FAIL
        if code == 0:
            flags |= EXIT_ZERO
    if attrs.get("tool.timeout_class") == "hard":
        flags |= HARD
    if attrs.get("tool.result_size", _MISSING) == 0:
        flags |= SIZE_ZERO
    doc = attrs.get("retrieval.doc_count", _MISSING)
    if doc is not _MISSING:
        flags |= DOC
        if doc == 0:
            flags |= DOC_ZERO
            if not isinstance(doc, bool):
                flags |= DOC_ZERO_NUM
    if "llm.finish_reason" in attrs:
        flags |= FINISH
    return flags


def digest_records(recs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The digest columns of these records (the reference implementation: a Python loop per record)."""
    df: list[int] = []
    ol: list[int] = []
    ih: list[str | None] = []
    da: dict[str, list[list[Any]]] = {}
    for pos, rec in enumerate(recs):
        attrs = rec.get("attributes") or {}
        if not isinstance(attrs, dict):
            attrs = {}
        inp, out = _io(rec)
        text = as_text(out)
        flags = _attr_flags(attrs)
        tf = _text_flags(text)
        flags |= tf & TEXT
        if tf & CONCL:
            flags |= CONCL
        if out is not None:
            flags |= OUT
        if is_empty_text(text):
            flags |= EMPTY
        if text.isprintable():
            flags |= LINE
        payload = rec.get("payload")
        if rec.get("events") or (isinstance(payload, dict) and payload.get("events")):
            flags |= EVENTS
        if inp is not None:
            flags |= IN
            itext = as_text(inp)
            if _text_flags(itext) & CONCL:
                flags |= CONCL_IN
            ih.append(input_digest(itext) if itext else None)  # "" is what no input reads as too
        else:
            ih.append(None)
        df.append(flags)
        ol.append(len(text))
        for key in sorted(SPARSE_KEYS.intersection(attrs)):
            da.setdefault(key, []).append([pos, attrs[key]])
        fr = attrs.get("llm.finish_reason", _MISSING)
        if fr is not _MISSING and not (type(fr) is str and fr == "stop"):
            da.setdefault("llm.finish_reason", []).append([pos, fr])
        err = rec.get("error")
        if isinstance(err, dict):
            da.setdefault(ERROR_TYPE, []).append([pos, err.get("type")])
    return {"df": df, "ol": ol, "ih": ih, "da": da}


# -- the batch: C-level passes -----------------------------------------------------------------------------------


def _dicts(values: list[Any]) -> list[dict[str, Any]]:
    if set(map(type, values)) <= {dict}:
        return values
    return [v if isinstance(v, dict) else _EMPTY_DICT for v in values]


def _bits(mask: Iterable[Any], bit: int) -> Iterator[int]:
    """`bit` where the mask is true, else 0 (C-level)."""
    return map(mul, map(bool, mask), repeat(bit))


def _texts(values: list[Any]) -> list[str]:
    """`as_text` of each value, in C where they are strings or absent."""
    types = set(map(type, values))
    if types <= {str}:
        return values
    if types <= {str, type(None)}:
        return list(map(_or_empty, values, values))
    return [v if type(v) is str else as_text(v) for v in values]


_or_empty: Any = {None: ""}.get  # with a default: itself, "" for None (map(_or_empty, values, values))


def _scan(low: list[str], kind: str) -> set[int]:
    """Positions of the (lowercased) texts holding one of the kind's literals: one scan of them all."""
    if not low:
        return set()
    blob = _SEP.join(low)
    hits = _scanner(kind).find_matches_as_indexes(blob)
    if not hits:
        return set()
    ends = list(accumulate(map(add, map(len, low), repeat(1))))  # where each text's separator is
    return {bisect_right(ends, s) for _, s, _ in hits}


def _empties(texts: list[str], low: list[str]) -> tuple[list[bool], list[bool]]:
    """is_empty_text of each, and whether each is one printable line: single-line texts in C, others one by
    one."""
    stripped = list(map(str.strip, low))
    out = list(map(or_, map(_EMPTY_TOKENS.__contains__, stripped), map(str.endswith, stripped, repeat(":"))))
    line = list(map(str.isprintable, texts))
    if False in line:
        for i in compress(range(len(texts)), map(not_, line)):
            out[i] = is_empty_text(texts[i])
    return out, line


def _with_fallback(col: list[Any], attrs: list[dict[str, Any]], key: str) -> list[Any]:
    """`col`, with the attribute `key` where it is None (span_io's OpenInference fallback)."""
    if None not in col:
        return col
    fb = list(map(dict.get, attrs, repeat(key)))
    if fb.count(None) == len(fb):
        return col
    return [c if c is not None else f for c, f in zip(col, fb, strict=True)]


def _dense_flags(attrs: list[dict[str, Any]]) -> list[int]:
    """`_attr_flags` of each, with the Python call only for attributes holding one of the keys it reads."""
    n = len(attrs)
    flags = list(_bits(map(dict.__contains__, attrs, repeat("llm.finish_reason")), FINISH))
    some = list(compress(range(n), map(not_, map(_DENSE.isdisjoint, attrs))))
    for i in some:
        flags[i] = _attr_flags(attrs[i])
    return flags


def digest_batch(recs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`digest_records` of a batch, with a few C-level passes per column (the usual records take no Python loop
    per record: outputs that are plain strings; attributes are read in Python only where they hold a key the
    rules test)."""
    n = len(recs)
    if not n:
        return {"df": [], "ol": [], "ih": [], "da": {}}
    get = dict.get
    recs = recs if isinstance(recs, list) else list(recs)
    if not set(map(type, recs)) <= {dict}:
        return digest_records(recs)
    attrs = _dicts(list(map(get, recs, repeat("attributes"), repeat(_EMPTY_DICT))))
    payloads = _dicts(list(map(get, recs, repeat("payload"), repeat(_EMPTY_DICT))))
    # outputs and inputs, as span_io reads them
    out = _with_fallback(list(map(get, payloads, repeat("output"), map(
        get, payloads, repeat("response"), map(get, payloads, repeat("content"))))), attrs, "output.value")
    inp = _with_fallback(list(map(get, payloads, repeat("input"), map(get, payloads, repeat("request")))), attrs,
                         "input.value")
    texts = _texts(out)
    low = list(map(str.lower, texts))
    ol = list(map(len, texts))
    empties, lines = _empties(texts, low)
    flags = list(map(or_, _dense_flags(attrs), _bits(map(is_not, out, repeat(None)), OUT)))
    flags = list(map(or_, flags, _bits(empties, EMPTY)))
    flags = list(map(or_, flags, _bits(lines, LINE)))
    for i in _scan(low, "text"):
        flags[i] |= TEXT
    for i in _scan(low, "concl"):
        flags[i] |= CONCL
    if False in (ascii_ := list(map(str.isascii, texts))):
        for i in compress(range(n), map(not_, ascii_)):
            flags[i] |= CONCL  # \d and case folding go beyond ASCII
            if any(f in texts[i] for f in _FOLDS):
                flags[i] |= TEXT
    ih: list[str | None] = [None] * n
    if inp.count(None) != n:
        with_in = list(compress(range(n), map(is_not, inp, repeat(None))))
        itexts = _texts([inp[i] for i in with_in])
        concl = _scan(list(map(str.lower, itexts)), "concl")
        concl |= set(compress(range(len(itexts)), map(not_, map(str.isascii, itexts))))
        for k, i in enumerate(with_in):
            flags[i] |= IN | (CONCL_IN if k in concl else 0)
            ih[i] = input_digest(itexts[k]) if itexts[k] else None
    for col in (recs, payloads):
        ev = list(map(get, col, repeat("events")))
        if ev.count(None) != n:
            for i in compress(range(n), ev):
                flags[i] |= EVENTS
    da: dict[str, list[list[Any]]] = {}
    fr = list(map(get, attrs, repeat("llm.finish_reason"), repeat("stop")))
    if fr.count("stop") != n:
        for i in compress(range(n), map(ne, fr, repeat("stop"))):
            v = fr[i]
            if not (type(v) is str and v == "stop"):
                da.setdefault("llm.finish_reason", []).append([i, v])
    for i in compress(range(n), map(not_, map(SPARSE_KEYS.isdisjoint, attrs))):
        a = attrs[i]
        for key in sorted(SPARSE_KEYS.intersection(a)):
            da.setdefault(key, []).append([i, a[key]])
    errs = list(map(get, recs, repeat("error")))
    if errs.count(None) != n:
        for i in compress(range(n), errs):
            if isinstance(err := errs[i], dict):
                da.setdefault(ERROR_TYPE, []).append([i, err.get("type")])
    return {"df": flags, "ol": ol, "ih": ih, "da": da}
