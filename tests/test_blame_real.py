"""Blame on real labelled runs nobody on the team wrote (../shared/data: Who&When, TRAIL). Skipped cleanly in a
fresh clone, which has no such folder. The thresholds are numbers computed here (trivial baselines on the same
runs), not constants typed in."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_debug.analysis.blame import blame_spans, blame_transcript
from agent_debug.analysis.source import FileSource
from agent_debug.analysis.spans import TraceSpans
from conftest import ROOT, SHARED_DATA, run_cli

WHO_AND_WHEN = SHARED_DATA / "who_and_when"
TRAIL = SHARED_DATA / "trail"

pytestmark = pytest.mark.skipif(not (WHO_AND_WHEN.is_dir() and TRAIL.is_dir()),
                                reason=f"no labelled real data at {SHARED_DATA}")


@pytest.fixture(scope="module")
def measure() -> Iterator[Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import measure_blame

        yield measure_blame
    finally:
        sys.path.remove(str(ROOT / "scripts"))


@pytest.fixture(scope="module")
def who_and_when(measure: Any) -> dict[str, Any]:
    return measure.measure_who_and_when(SHARED_DATA)


def test_every_who_and_when_failure_gets_a_bucket() -> None:
    out = run_cli("bucket", "--from", str(WHO_AND_WHEN), "--json")
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)["runs"]
    files = sorted(WHO_AND_WHEN.rglob("*.json"))
    assert len(runs) == len(files) >= 60
    assert all(r["bucket"] and r["root_cause"]["span_id"] for r in runs)
    assert {r["source"]["format"] for r in runs} == {"transcript"}


@pytest.mark.parametrize("split", ["algorithm-generated", "hand-crafted"])
def test_blame_beats_the_trivial_rules_on_each_split(who_and_when: dict[str, Any], split: str) -> None:
    s = who_and_when["splits"][split]
    trivial = s["trivial_best_agent"]  # the better of "first speaker" and "most frequent speaker", computed here
    assert s["n"] >= 20 and 0 < trivial < 1
    assert s["default"].agent_acc >= trivial, (s["default"].as_dict(), trivial)
    assert s["cross"][1].agent_acc >= trivial  # chosen on the other split
    assert s["loo"].agent_acc >= trivial  # chosen without this run


def test_blame_reads_no_labels_on_real_transcripts() -> None:
    """Removing every `label.*` attribute and the ground truth changes nothing."""
    src = FileSource([WHO_AND_WHEN / "Hand-Crafted"])
    for s in src.list()[:8]:
        ts = src.load(s.trace_id, records=True)
        assert ts.records is not None
        stripped = []
        for r in ts.records:
            r = dict(r)
            r["attributes"] = {k: v for k, v in (r.get("attributes") or {}).items() if not k.startswith("label.")}
            r["payload"] = {k: v for k, v in (r.get("payload") or {}).items() if k != "ground_truth"}
            stripped.append(r)
        assert any(k.startswith("label.") for r in ts.records for k in (r.get("attributes") or {}))
        assert blame_transcript(TraceSpans.from_records(s.trace_id, stripped)).as_dict() == \
            blame_transcript(ts).as_dict()


def test_trail_traces_bucket_and_blame_without_crashing(measure: Any) -> None:
    out = run_cli("bucket", "--from", str(TRAIL / "traces"), "--json")
    assert out.returncode == 0, out.stderr
    json.loads(out.stdout)
    src = FileSource([TRAIL / "traces"])
    assert len(src.list()) >= 6
    for s in src.list():
        ts = src.load(s.trace_id, records=True)
        for span_id, bucket in blame_spans(ts):
            assert span_id in ts.span_id and bucket in {"tool_execution", "retrieval_miss", "planner_drift",
                                                        "verifier_false_positive", "routing_mistake", "unclassified"}


def test_trail_annotations_parse_tolerantly(measure: Any, tmp_path: Path) -> None:
    bad = tmp_path / "a.json"
    bad.write_text('{"errors": [{"category": "Context Handling Failure", "location": "x"},],}')
    doc = measure.load_tolerant_json(bad)
    assert measure.category_bucket(doc["errors"][0]["category"]) == "planner_drift"
    assert measure.category_bucket("Context Handling Failures") == "planner_drift"
    assert measure.category_bucket("Language-only") == measure.category_bucket("language only") == "unclassified"
    assert measure.category_bucket("Rate Limiting") == "tool_execution"


def test_trail_location_precision_beats_blaming_every_model_call(measure: Any) -> None:
    result = measure.measure_trail(SHARED_DATA)
    ours = result["rows"]["blame_spans (default signals)"]["gaia"]
    every = result["rows"]["baseline: every LLM span"]["gaia"]
    assert result["errors"]["gaia"] > 0 and ours["predicted"] > 0
    assert ours["precision"] > every["precision"] and ours["f1"] > every["f1"]

