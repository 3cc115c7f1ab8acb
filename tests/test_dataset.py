"""`agent-debug dataset add`: recorded runs become regression cases in a versioned TOML file that `eval` runs."""

from __future__ import annotations

import json
import re
import shutil
import threading
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, strategies as st

from agent_debug.analysis.source import FileSource
from agent_debug.eval.cases import load_case_file
from agent_debug.eval.dataset import add_regression, exact_pattern, toml_string
from conftest import ROOT, run_cli

FIXTURES = ROOT / "fixtures"
CASES = FIXTURES / "eval_cases.toml"
FAULTY = FIXTURES / "faulty_trace.jsonl"
HEALTHY = FIXTURES / "healthy_trace.jsonl"


def cli(tmp_path: Path, *args: str) -> Any:
    return run_cli(*args, cwd=tmp_path, env={"AGENT_DEBUG_HOME": str(tmp_path / "home")})


def trace_id(path: Path) -> str:
    return orjson.loads(path.read_bytes().split(b"\n", 1)[0])["trace_id"]


def packets_available() -> bool:
    try:
        import agent_debug.replay.packet  # noqa: F401
    except ImportError:
        return False
    return True


needs_packets = pytest.mark.skipif(not packets_available(),
                                   reason="agent_debug.replay.packet (build_packet/write_packet) is not available yet")


@needs_packets
def test_add_appends_cases_with_version_increments_and_packets(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets", ignore=shutil.ignore_patterns("packets"))
    start = load_case_file(tmp_path / "datasets" / "regressions.toml")
    assert (start.version, start.cases) == (0, [])  # the repo's starting point

    faulty, healthy = trace_id(FAULTY), trace_id(HEALTHY)
    r = cli(tmp_path, "dataset", "add", faulty[:8], "--case", "skipped-verifier", "--label", "fail",
            "--from", str(FAULTY), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    first = json.loads(r.stdout)
    assert (first["version"], first["dataset"]) == (1, "datasets/regressions.toml")
    r = cli(tmp_path, "dataset", "add", healthy, "--case", "healthy-s3", "--label", "pass",
            "--expected", "Root cause and fix per docs/backfill.md", "--from", str(HEALTHY))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "to datasets/regressions.toml, now version 2" in r.stdout

    text = (tmp_path / "datasets" / "regressions.toml").read_text()
    assert text.startswith("# Regression cases") and "\nversion = 2\n" in text and "version = 1" not in text
    f = load_case_file(tmp_path / "datasets" / "regressions.toml")
    assert f.version == 2
    bad, good = f.cases
    assert (bad.name, bad.trace_id, bad.label, bad.workflow, bad.task) == (
        "skipped-verifier", faulty, "fail", "repo-fix-agent", "fix flaky S3 backfill job")
    assert bad.expected_output_pattern is None and bad.forbidden_output_pattern is not None
    assert (good.expected, good.expected_output_pattern) == (
        "Root cause and fix per docs/backfill.md", r"Root\ cause\ and\ fix\ per\ docs/backfill\.md")
    for case in (bad, good):
        packet = tmp_path / "datasets" / case.packet
        assert packet.is_file() and json.loads(packet.read_text())["trace_id"] == case.trace_id
    assert first["packet"] == str(Path("datasets") / bad.packet)


@needs_packets
def test_the_dataset_then_runs_with_eval(tmp_path: Path) -> None:
    for tid, name, label in ((trace_id(FAULTY), "skipped-verifier", "fail"), (trace_id(HEALTHY), "healthy", "pass")):
        r = cli(tmp_path, "dataset", "add", tid, "--case", name, "--label", label, "--from", str(FAULTY),
                "--from", str(HEALTHY))
        assert r.returncode == 0, r.stderr
    r = cli(tmp_path, "eval", "datasets/regressions.toml", "--from", str(FAULTY), "--from", str(HEALTHY), "--json")
    assert r.returncode == 0, r.stdout + r.stderr  # both labels agree with the checks on the recorded runs
    cases = {c["name"]: c for c in json.loads(r.stdout)["cases"]}
    skipped = cases["skipped-verifier"]
    assert (skipped["label_agrees"], skipped["runs"][0]["verdict"]) == (True, "fail")
    assert (cases["healthy"]["label_agrees"], cases["healthy"]["runs"][0]["verdict"]) == (True, "pass")
    # re-executed from the recorded entrypoint and input, the known-bad output comes back: the regression shows
    r = cli(tmp_path, "eval", "datasets/regressions.toml", "--from", str(FAULTY), "--from", str(HEALTHY),
            "--runs", "1", "--json")
    assert r.returncode == 1
    cases = {c["name"]: c for c in json.loads(r.stdout)["cases"]}
    assert (cases["skipped-verifier"]["status"], cases["healthy"]["status"]) == ("fail", "pass")
    # with the case file and the dataset together, as CI would run them
    r = cli(tmp_path, "eval", str(CASES), "datasets/regressions.toml", "--from", str(HEALTHY), "--from", str(FAULTY))
    assert r.returncode == 1 and "missing edges orchestrator->verifier" in r.stdout


def test_duplicate_name_unknown_trace_and_bad_label_change_nothing(tmp_path: Path) -> None:
    r = cli(tmp_path, "dataset", "add", trace_id(HEALTHY), "--case", "h", "--label", "pass", "--no-packet",
            "--from", str(HEALTHY))
    assert r.returncode == 0, r.stderr
    dataset = tmp_path / "datasets" / "regressions.toml"
    before = dataset.read_text()
    r = cli(tmp_path, "dataset", "add", trace_id(HEALTHY), "--case", "h", "--label", "pass", "--no-packet",
            "--from", str(HEALTHY))
    assert (r.returncode, r.stderr) == (2, "Error: case 'h' is already in datasets/regressions.toml\n")
    r = cli(tmp_path, "dataset", "add", "zzz", "--case", "z", "--label", "pass", "--from", str(HEALTHY))
    assert (r.returncode, r.stderr) == (4, "Error: no trace matches 'zzz'\n")
    r = cli(tmp_path, "dataset", "add", trace_id(HEALTHY), "--case", "m", "--label", "maybe", "--from", str(HEALTHY))
    assert r.returncode == 2 and "--label" in r.stderr and "Traceback" not in r.stderr
    assert dataset.read_text() == before
    assert not (tmp_path / "datasets" / "packets").exists()  # --no-packet wrote none


def test_a_refused_add_leaves_no_new_file(tmp_path: Path) -> None:
    r = cli(tmp_path, "dataset", "add", trace_id(HEALTHY), "--case", " ", "--label", "pass", "--from", str(HEALTHY),
            "--dataset", "new/ds.toml")
    assert (r.returncode, r.stderr) == (2, "Error: the case name must not be empty\n")
    assert not (tmp_path / "new" / "ds.toml").exists()


def test_pass_label_without_expected_pins_the_recorded_output(tmp_path: Path) -> None:
    dataset = tmp_path / "ds.toml"
    added = add_regression(FileSource([HEALTHY]), trace_id(HEALTHY), name="exact", label="pass", dataset=dataset,
                           packet=False)
    output = orjson.loads(HEALTHY.read_bytes().split(b"\n", 1)[0])["payload"]["output"]
    pattern = load_case_file(dataset).cases[0].expected_output_pattern
    assert pattern == added.case["expected_output_pattern"] == exact_pattern(output)
    assert re.search(pattern, output) and not re.search(pattern, output + " extra")


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    dataset = tmp_path / "ds.toml"
    source = FileSource([HEALTHY])
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            add_regression(source, trace_id(HEALTHY), name=f"case-{i}", label="pass", dataset=dataset, packet=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    f = load_case_file(dataset)
    assert (f.version, sorted(c.name for c in f.cases)) == (8, sorted(f"case-{i}" for i in range(8)))


@given(st.text())
def test_toml_string_round_trips_any_text(text: str) -> None:
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


@given(st.text(min_size=1))
def test_escaped_expected_text_matches_itself_literally(text: str) -> None:
    pattern = tomllib.loads(f"p = {toml_string(re.escape(text))}")["p"]
    assert re.search(pattern, f"before {text} after")


def test_a_trace_id_with_a_newline_cannot_write_a_case_of_its_own(tmp_path: Path) -> None:
    """The trace id goes into a comment line: a newline in it would have written TOML (an entrypoint that `eval`
    runs as the user's own) into the dataset."""
    hostile = "x\n[[case]]\nname = 'injected'\nentrypoint = 'os:system'\ninput = 'touch pwned'\n# "
    records = [orjson.loads(line) for line in HEALTHY.read_bytes().splitlines() if line.strip()]
    for rec in records:
        rec["trace_id"] = hostile
    (tmp_path / "t.jsonl").write_bytes(b"".join(orjson.dumps(rec) + b"\n" for rec in records))
    r = cli(tmp_path, "dataset", "add", hostile, "--case", "h", "--label", "pass", "--no-packet",
            "--from", "t.jsonl")
    assert r.returncode == 0, r.stderr
    dataset = load_case_file(tmp_path / "datasets" / "regressions.toml")
    assert [c.name for c in dataset.cases] == ["h"] and dataset.cases[0].entrypoint is None
    assert dataset.cases[0].trace_id == hostile  # the id itself is kept, escaped inside its TOML string
