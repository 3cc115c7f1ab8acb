"""The demo batch: spec-conforming files (checked by an independent reader), failures of every bucket, no
orphans, no secrets on disk."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from agent_debug.demo.runner import DemoResult, run_demo
from conftest import read_all_bytes

REQUIRED = {"trace_id": str, "span_id": str, "agent_name": str, "event_type": str}


def independent_read(directory: Path) -> list[dict[str, Any]]:
    """A reader written from the spec alone (stdlib json + gzip), sharing no code with agent_debug."""
    out = []
    for p in sorted(directory.iterdir()):
        raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".jsonl.gz") else p.read_bytes()
        assert p.name.endswith((".jsonl", ".jsonl.gz")), p.name
        for line in raw.decode("utf-8").split("\n"):
            if not line:
                continue
            r = json.loads(line)
            for key, typ in REQUIRED.items():
                assert isinstance(r[key], typ) and r[key], (key, r)
            assert r["parent_id"] is None or isinstance(r["parent_id"], str)
            assert isinstance(r["timestamp"], float) and r["timestamp"] > 1.6e9
            assert isinstance(r["duration_ns"], int) and r["duration_ns"] >= 0
            assert r.get("status", "ok") in ("ok", "error")
            if r.get("status") == "error":
                assert set(r["error"]) >= {"type", "message"}
            for k, v in (r.get("attributes") or {}).items():
                assert k == k.lower() or k.startswith("gen_ai."), k
                assert not isinstance(v, dict), (k, v)
                if isinstance(v, list):
                    assert all(not isinstance(x, (dict, list)) for x in v), (k, v)
            out.append(r)
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return run_demo(tmp_path_factory.mktemp("demo"), 27, seed=3)


def test_demo_files_follow_the_spec(demo: DemoResult) -> None:
    records = independent_read(Path(demo.trace_dir))
    assert len(records) == demo.sdk_stats["written"] > 0
    assert any(p.endswith(".jsonl.gz") for p in demo.files)  # rotated and compressed


def test_demo_has_failures_of_every_bucket_and_no_orphans(demo: DemoResult) -> None:
    records = independent_read(Path(demo.trace_dir))
    spans = {(r["trace_id"], r["span_id"]) for r in records}
    orphans = [r for r in records if r["parent_id"] and (r["trace_id"], r["parent_id"]) not in spans]
    assert orphans == []
    assert demo.failed >= 5
    buckets = {r.bucket for r in demo.runs if r.bucket}
    assert buckets == {"retrieval_miss", "tool_execution", "planner_drift", "verifier_false_positive",
                       "routing_mistake", "disagreement"}
    for lab in demo.runs:
        assert lab.passed == (lab.bucket is None), lab
        if lab.bucket:
            session = {r["trace_id"] for r in records if lab.session_id and r.get("session_id") == lab.session_id}
            where = session or {lab.trace_id}  # a turn's root cause may lie in an earlier turn of its session
            assert lab.root_cause_span_id in {r["span_id"] for r in records if r["trace_id"] in where}
    roots = {r["trace_id"]: r for r in records if r["parent_id"] is None}
    assert len(roots) == 27
    failed = [r for r in roots.values() if r.get("status") == "error"
              or r.get("attributes", {}).get("outcome.passed") is False]
    assert len(failed) == demo.failed


def test_demo_retries_are_linked(demo: DemoResult) -> None:
    records = independent_read(Path(demo.trace_dir))
    retries = [r for r in records if "retry.of" in r.get("attributes", {})]
    assert retries
    by_id = {r["span_id"]: r for r in records}
    for r in retries:
        first = by_id[r["attributes"]["retry.of"]]
        assert first["status"] == "error" and first["name"] == r["name"]


def test_no_secret_reaches_disk(demo: DemoResult) -> None:
    raw = read_all_bytes(Path(demo.directory))
    assert b"wJalrXUtnFEMI" not in raw and b"ghp_a1B2c3" not in raw
    assert b"[REDACTED:github_token]" in raw
