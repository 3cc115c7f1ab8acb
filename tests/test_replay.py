"""Replay packets: reproduce without network or API spend; counterfactuals; regression suites."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from agent_debug.demo.runner import DemoResult, run_demo
from agent_debug.replay.engine import no_network, replay_packet
from agent_debug.replay.packet import REQUIRED_KEYS, load_packet
from conftest import ROOT, read_all_bytes, run_cli

REPO_PACKETS = sorted((ROOT / "packets").rglob("*.json"))
SECRETS = [b"wJalrXUtnFEMI", b"ghp_a1B2c3", b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaSJ9"]


@pytest.fixture
def offline() -> Iterator[None]:
    """The network is cut for the whole test, not just inside the engine."""
    with no_network():
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return run_demo(tmp_path_factory.mktemp("replaydemo"), 18, seed=5)


def _packets(demo: DemoResult) -> list[Path]:
    return sorted(Path(demo.packet_dir).rglob("*.json"))


def test_repo_packets_reproduce_offline(offline: None) -> None:
    buckets = set()
    assert len(REPO_PACKETS) >= 3
    for path in REPO_PACKETS:
        r = replay_packet(path)
        assert r.reproduced, (path, r.diff)
        assert r.executed and r.seconds < 1.0
        assert all(c["source"] == "recorded" for c in r.calls)
        buckets.add(r.failure_bucket)
    assert len(buckets) >= 3


def test_fresh_demo_packets_are_complete_small_private_and_reproduce(demo: DemoResult, offline: None) -> None:
    packets = _packets(demo)
    assert len(packets) == demo.failed  # the SDK wrote one per failed run, even with no CLI involved
    for path in packets:
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert path.stat().st_size < 64 * 1024
        pk = load_packet(path)
        assert set(REQUIRED_KEYS) <= set(pk)
        assert pk["entrypoint"] == "agent_debug.demo.system:run_workflow" and pk["input"]
        assert all({"tool", "exit_code"} <= set(t) for t in pk["tool_events"])
        assert set(pk["verifier"]) == {"passed", "reason"}
        r = replay_packet(path)
        assert r.reproduced, (path, r.diff)
        labelled = next(lab for lab in demo.runs if lab.trace_id == pk["trace_id"])
        if labelled.session_id is None:  # a turn's own replay cannot see the earlier turn that corrupted it
            assert r.failure_bucket == labelled.bucket
    raw = read_all_bytes(Path(demo.packet_dir))
    assert not [s for s in SECRETS if s in raw]
    assert b"[REDACTED:bearer_token]" in raw or b"[REDACTED:jwt]" in raw


def test_packet_cli_from_files_matches_sdk_packet(demo: DemoResult, tmp_path: Path) -> None:
    failed = next(lab for lab in demo.runs if lab.bucket == "planner_drift")
    out = tmp_path / "p.json"
    r = run_cli("packet", failed.trace_id[:10], "--from", demo.trace_dir, "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["bucket"] == "planner_drift" and os.stat(out).st_mode & 0o777 == 0o600
    r = run_cli("replay", str(out), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["reproduced"] is True and res["diff"] == []
    assert res["failure_bucket"] == "planner_drift"


def test_replay_cli_prints_the_block(offline: None) -> None:
    path = next(p for p in REPO_PACKETS if p.name.startswith("verifier_false_positive"))
    r = run_cli("replay", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    keys = [line.split(":", 1)[0] for line in lines[:6]]
    assert keys == ["trace_id", "workflow", "selected_model", "replayed_steps", "failure_bucket", "next_action"]
    assert "failure_bucket: verifier_false_positive" in r.stdout and "reproduced: yes" in r.stdout


def test_counterfactual_fix_at_the_root_cause_flips_the_outcome(tmp_path: Path) -> None:
    path = next(p for p in REPO_PACKETS if p.name.startswith("retrieval_miss"))
    pk = load_packet(path)
    docs = json.dumps({"exit_code": 0, "documents": ["docs/backfill.md", "src/jobs/s3.py"],
                       "output": ["docs/backfill.md"]})
    (tmp_path / "docs.json").write_text(docs)
    r = run_cli("replay", str(path), "--inject", f"researcher:retrieve#0=@{tmp_path / 'docs.json'}",
                "--fallback", "live", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert pk["failure"]["bucket"] == "retrieval_miss"
    assert res["outcome"]["status"] == "passed" and res["failure_bucket"] is None
    assert {d["field"] for d in res["diff"]} >= {"status", "bucket"}
    assert "injected" in [c["source"] for c in res["calls"]]
    # the same injection by hop index
    hop = next(c["hop"] for c in pk["calls"] if c["name"] == "retrieve")
    r2 = run_cli("replay", str(path), "--inject", f"{hop}={docs}", "--fallback", "live", "--json")
    assert json.loads(r2.stdout)["outcome"]["status"] == "passed"


def test_changed_request_without_fallback_fails_clearly() -> None:
    path = next(p for p in REPO_PACKETS if p.name.startswith("retrieval_miss"))
    r = run_cli("replay", str(path), "--inject", 'researcher:retrieve#0={"documents": ["x.md"], "output": ["x"]}')
    assert r.returncode == 7
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("Error: no recording for call #0 of writer")
    assert "failed request_hash" in err and "passed agent_order" in err and "--fallback live" in err


def test_check_folder_detects_a_packet_that_no_longer_reproduces(tmp_path: Path) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    for p in REPO_PACKETS[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    r = run_cli("replay", str(folder), "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("reproduced") == 3
    # change the recorded final answer: the workflow now produces a different output than recorded
    victim = folder / REPO_PACKETS[0].name
    pk = orjson.loads(victim.read_bytes())
    pk["run"]["output"] = "something else"
    victim.write_bytes(orjson.dumps(pk))
    r = run_cli("replay", str(folder), "--check", "--json")
    assert r.returncode == 1
    res = json.loads(r.stdout)
    assert res["reproduced"] == 2 and res["total"] == 3 and res["passed"] is False


def test_packet_without_entrypoint_walks_recorded_steps(tmp_path: Path) -> None:
    pk = orjson.loads(REPO_PACKETS[0].read_bytes())
    pk["entrypoint"] = None
    path = tmp_path / "noentry.json"
    path.write_bytes(orjson.dumps(pk))
    r = replay_packet(path)
    assert not r.executed and r.reproduced and r.failure_bucket == pk["failure"]["bucket"]


@pytest.mark.parametrize("content,message", [
    (b"{not json", "is not valid JSON"),
    (b'{"packet_version": 1}', "lacks required keys"),
    (b'{"packet_version": 99, "trace_id": "t", "workflow": "w", "selected_model": null, "task_summary": null, '
     b'"retrieval_refs": [], "tool_events": [], "verifier": {}}', "packet_version 99"),
])
def test_bad_packets_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    r = run_cli("replay", str(path))
    assert r.returncode == 6 and message in r.stderr and "Traceback" not in r.stderr


def test_replay_never_touches_the_network() -> None:
    with no_network(), pytest.raises(OSError, match="blocked"):
        socket.create_connection(("127.0.0.1", 9))


def test_pytest_plugin_turns_packets_into_tests(tmp_path: Path) -> None:
    suite = tmp_path / "pk"
    suite.mkdir()
    for p in REPO_PACKETS[:3]:
        (suite / p.name).write_bytes(p.read_bytes())
    (tmp_path / "test_packets.py").write_text(textwrap.dedent("""
        def test_packet_reproduces(agent_debug_packet):
            result = agent_debug_packet.replay()
            assert result.reproduced, result.diff
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--agent-debug-packets",
                        str(suite), str(tmp_path / "test_packets.py")], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed" in r.stdout


def test_repo_packets_as_tests(agent_debug_packet: object) -> None:
    """The plugin over this repository's packets/ (ini default)."""
    result = agent_debug_packet.replay()  # type: ignore[attr-defined]
    assert result.reproduced, result.diff
