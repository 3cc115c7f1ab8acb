"""Every real trace written by another system imports completely: nothing rejected, every source span kept, every
trace a tree. Span counts are taken from the source files here, independently of the importers.

The full data lives outside the repository (../shared/data, or $AGENT_DEBUG_SHARED/data); without it these tests
run on the licensed samples in fixtures/foreign, and the TRAIL tests (whose data may not be republished) skip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_debug.formats.reader import ReadReport, read_paths
from conftest import FOREIGN_DATA as DATA


def files(folder: str, pattern: str = "*.json") -> list[Path]:
    return sorted((DATA / folder).rglob(pattern))


def cases(folder: str) -> list[Any]:
    """The files of a folder as test cases, or one skipped case saying the folder is absent."""
    found = files(folder)
    return found or [pytest.param(None, id="absent", marks=pytest.mark.skip(reason=f"no {folder} in {DATA}"))]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read(path: Path) -> tuple[list[dict[str, Any]], ReadReport]:
    report = ReadReport()
    records = list(read_paths([path], report))
    return records, report


# ---------------------------------------------------------------------------------------------------------------
# counting spans in the sources, without the importers


def otlp_span_ids(doc: dict[str, Any]) -> set[str]:
    return {
        s["spanId"].lower()
        for rs in doc["resourceSpans"]
        for ss in rs.get("scopeSpans", []) + rs.get("instrumentationLibrarySpans", [])
        for s in ss["spans"]
    }


def langfuse_observation_ids(doc: dict[str, Any]) -> set[str]:
    inner = doc["trace"].get("observations") or []
    return {o["id"] for o in [*doc["observations"], *inner]}


def langsmith_run_ids(doc: dict[str, Any]) -> set[str]:
    runs = [*doc.get("post", []), *doc.get("patch", [])]
    return {r.get("id") or r["dotted_order"].split(".")[-1].split("Z", 1)[1] for r in runs}


def trail_spans(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stack = list(doc["spans"])
    while stack:
        s = stack.pop()
        yield s
        stack.extend(s.get("child_spans") or [])


def trail_distinct(doc: dict[str, Any]) -> dict[str, int]:
    """span_id -> number of different versions (an exact copy of a span is the same span)."""
    versions: dict[str, set[str]] = {}
    for s in trail_spans(doc):
        body = json.dumps({k: v for k, v in s.items() if k != "child_spans"}, sort_keys=True)
        versions.setdefault(s["span_id"], set()).add(body)
    return {k: len(v) for k, v in versions.items()}


# ---------------------------------------------------------------------------------------------------------------
# tree checks


def assert_trees(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every trace builds a tree from parent ids: unique ids, no cycles. Returns trace -> orphan parent ids."""
    by_trace: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        spans = by_trace.setdefault(r["trace_id"], {})
        assert r["span_id"] not in spans, f"duplicate span id {r['span_id']} in {r['trace_id']}"
        spans[r["span_id"]] = r
    orphans: dict[str, list[str]] = {}
    for tid, spans in by_trace.items():
        for sid, rec in spans.items():
            if rec["parent_id"] is not None and rec["parent_id"] not in spans:
                orphans.setdefault(tid, []).append(rec["parent_id"])
            seen = {sid}
            parent = rec["parent_id"]
            while parent is not None and parent in spans:
                assert parent not in seen, f"cycle through {parent} in {tid}"
                seen.add(parent)
                parent = spans[parent]["parent_id"]
        tops = [r for r in spans.values() if r["parent_id"] is None or r["parent_id"] not in spans]
        assert tops, f"trace {tid} has no top span"
        assert all("source.file" in t["attributes"] and "source.format" in t["attributes"] for t in tops)
    return orphans


def assert_clean(report: ReadReport, fmt: str) -> None:
    assert report.rejected == 0, [(r.location, r.reason) for r in report.rejects[:3]]
    assert [f.format for f in report.files] == [fmt]


# ---------------------------------------------------------------------------------------------------------------
# per format


@pytest.mark.parametrize("path", cases("otlp"), ids=lambda p: p.name)
def test_otlp_files(path: Path) -> None:
    records, report = read(path)
    assert_clean(report, "otlp")
    assert {r["span_id"] for r in records} == otlp_span_ids(load(path))
    orphans = assert_trees(records)
    assert sum(map(len, orphans.values())) == 1  # the example's parent span is not in the file


@pytest.mark.parametrize("path", cases("langfuse"), ids=lambda p: p.name)
def test_langfuse_files(path: Path) -> None:
    records, report = read(path)
    assert_clean(report, "langfuse")
    doc = load(path)
    source = langfuse_observation_ids(doc)
    root = f"trace:{doc['trace']['id']}"
    assert {r["span_id"] for r in records} == source | {root}
    assert len(records) == len(source) + 1
    orphans = assert_trees(records)
    missing = {o["parentObservationId"] for o in doc["observations"]
               if o.get("parentObservationId") and o["parentObservationId"] not in source}
    assert set(orphans.get(doc["trace"]["id"], [])) == missing
    generations = {o["id"] for o in doc["observations"] if o["type"] == "GENERATION"}
    assert {r["span_id"] for r in records if r["event_type"] == "LLM_CALL"} >= generations


def test_langfuse_csharp_orphans_are_kept() -> None:
    path = DATA / "langfuse" / "csharp-agent-with-gemini-2026-03-09.trace.json"
    records, _ = read(path)
    orphans = assert_trees(records)
    assert orphans and all(orphans.values())
    assert len(records) == len(load(path)["observations"]) + 1


@pytest.mark.parametrize("path", cases("langsmith"), ids=lambda p: p.name)
def test_langsmith_files(path: Path) -> None:
    records, report = read(path)
    assert_clean(report, "langsmith")
    assert {r["span_id"] for r in records} == langsmith_run_ids(load(path))
    assert_trees(records)
    assert all(r["duration_ns"] > 0 for r in records)  # the patch's end_time reached its post


@pytest.mark.parametrize("path", cases("trail/traces"), ids=lambda p: p.name)
def test_trail_traces(path: Path) -> None:
    records, report = read(path)
    assert_clean(report, "openinference")
    doc = load(path)
    versions = trail_distinct(doc)
    assert len(records) == sum(versions.values())
    assert {r["span_id"].split("#")[0] for r in records} == set(versions)
    assert {r["trace_id"] for r in records} == {doc["trace_id"]}
    assert_trees(records)
    errors = {s["span_id"] for s in trail_spans(doc) if s["status_code"] == "Error"}
    assert {r["span_id"] for r in records if r.get("status") == "error"} == errors


def test_trail_trace_with_seven_missing_parents_keeps_every_span() -> None:
    path = DATA / "trail" / "traces" / "72822db6e120878d916b515c2501246b.json"
    if not path.exists():
        pytest.skip(f"that TRAIL trace is not present in {DATA}")
    doc = load(path)
    records, _ = read(path)
    ids = {s["span_id"] for s in trail_spans(doc)}
    tops = [r for r in records if r["parent_id"] not in {x["span_id"] for x in records}]
    assert len(doc["spans"]) == 7 and len(tops) == 7
    assert {r["span_id"] for r in records} == ids
    assert all(t["parent_id"] is not None for t in tops)  # kept pointing at the missing parents
    assert len(assert_trees(records)[doc["trace_id"]]) == 7


def _annotation(path: Path) -> dict[str, Any]:
    """TRAIL annotation files may carry a trailing comma; strip it before parsing."""
    text = re.sub(r",(\s*[}\]])", r"\1", path.read_text(encoding="utf-8"))
    value: dict[str, Any] = json.loads(text)
    return value


@pytest.mark.parametrize("path", cases("trail/annotations"), ids=lambda p: p.name)
def test_trail_annotated_locations_exist_after_import(path: Path) -> None:
    trace = DATA / "trail" / "traces" / path.name
    if not trace.exists():
        pytest.skip("no trace for this annotation")
    records, _ = read(trace)
    ids = {r["span_id"] for r in records}
    # One TRAIL annotation's location is the annotators' note "Span ID not found for this shard", not an id:
    # a location with a space in it names no span and is left out.
    locations = {e["location"] for e in _annotation(path).get("errors", []) if " " not in e["location"]}
    assert locations <= ids


@pytest.mark.parametrize("path", cases("who_and_when"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_who_and_when_logs(path: Path) -> None:
    records, report = read(path)
    assert_clean(report, "transcript")
    doc = load(path)
    assert len(records) == len(doc["history"]) + 1
    assert_trees(records)
    root = next(r for r in records if r["parent_id"] is None)
    steps = sorted((r for r in records if r is not root), key=lambda r: r["attributes"]["transcript.step"])
    assert [r["attributes"]["transcript.step"] for r in steps] == list(range(len(doc["history"])))
    assert [r["payload"]["content"] for r in steps] == [m["content"] for m in doc["history"]]
    flags = [doc[k] for k in ("is_correct", "is_corrected") if k in doc]
    failed = False in flags or bool(doc.get("mistake_agent"))
    expected = False if failed else (True if True in flags else None)
    assert root["attributes"].get("outcome.passed") is expected
    assert root["attributes"]["label.mistake_step"] == int(doc["mistake_step"])
    assert root["attributes"]["label.mistake_agent"] == doc["mistake_agent"]
    speakers = {(m.get("name") or m["role"]).split(" (")[0] for m in doc["history"]}
    assert {r["agent_name"] for r in steps} == speakers


@pytest.mark.parametrize("folder", ["otlp", "langfuse", "langsmith", "trail/traces", "who_and_when"])
def test_whole_folders_validate(folder: str) -> None:
    from agent_debug.formats.validate import validate_paths

    if not (DATA / folder).is_dir():
        pytest.skip(f"no {folder} in {DATA}")
    result = validate_paths([DATA / folder])
    assert result.rejected == 0 and result.records > 0
    assert result.files == len(files(folder))
