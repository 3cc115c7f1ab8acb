"""What a trace or packet says is data: a recorded entrypoint runs only when it is the project's own code, and a
trace id names a file only once made safe.

A hostile packet or trace names `os:system` (or any installed function) with a shell command as its input; the
commands refuse with one line and a distinct exit code, and nothing runs. The project's own module (under the
current directory or PYTHONPATH) and the demo's workflow still run, and AGENT_DEBUG_TRUSTED_PATHS trusts a
directory explicitly. A packet named after a trace id like `../../x` or `/tmp/y` stays in its folder.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent_debug.demo.system import ENTRYPOINT
from agent_debug.replay.trust import BUILT_IN, TRUSTED_PATHS_ENV, refusal
from conftest import ROOT, run_cli

DEMO_PACKET = ROOT / "packets" / "demo" / "retrieval_miss.json"
CASES = ROOT / "fixtures" / "eval_cases.toml"
HEALTHY = ROOT / "fixtures" / "healthy_trace.jsonl"


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """The real command, in `cwd`, with its own AGENT_DEBUG_HOME."""
    return run_cli(*args, cwd=cwd, env={"AGENT_DEBUG_HOME": str(cwd / "home"), **(env or {})})


def _packet(tmp_path: Path, entrypoint: str, inp: Any) -> Path:
    packet = orjson.loads(DEMO_PACKET.read_bytes())
    packet.update(entrypoint=entrypoint, input=inp)
    path = tmp_path / "hostile.json"
    path.write_bytes(orjson.dumps(packet))
    return path


@pytest.mark.parametrize("entrypoint", ["os:system", "subprocess:getoutput", "posix:system", "builtins:exec",
                                        "shutil:rmtree", "os.path:exists"])
def test_a_packet_naming_a_standard_library_function_is_refused(tmp_path: Path, entrypoint: str) -> None:
    marker = tmp_path / "pwned"
    inp = f"touch {marker}" if entrypoint != "builtins:exec" else f"open({str(marker)!r}, 'w')"
    path = _packet(tmp_path, entrypoint, inp)
    r = cli(tmp_path, "replay", str(path))
    assert r.returncode == 6, r.stdout + r.stderr
    assert r.stderr.startswith(f"Error: refusing to run entrypoint {entrypoint!r} named by packet {path}: module ")
    assert "standard library" in r.stderr and TRUSTED_PATHS_ENV in r.stderr and r.stderr.count("\n") == 1
    assert not marker.exists()


def test_an_installed_package_is_refused_even_in_a_venv_inside_the_project(tmp_path: Path) -> None:
    # the suite's own venv lives inside the repository: site-packages under the current directory is still
    # the Python environment, not the project's code
    why = refusal("orjson:dumps")
    assert why is not None and "installed in the Python environment" in why
    marker = tmp_path / "never"
    r = cli(tmp_path, "replay", str(_packet(tmp_path, "orjson:dumps", str(marker))), "--json")
    assert r.returncode == 6 and "installed in the Python environment" in r.stderr and not marker.exists()


def test_trusted_paths_trust_an_installed_package_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.find_spec("orjson")
    assert spec is not None and spec.submodule_search_locations
    monkeypatch.setenv(TRUSTED_PATHS_ENV, str(Path(next(iter(spec.submodule_search_locations))).parent))
    assert refusal("orjson:dumps") is None


def test_the_projects_own_module_runs(tmp_path: Path) -> None:
    """Under the current directory (with `python -m`) or on PYTHONPATH: the project's code, so it runs."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_flow.py").write_text(
        "from pathlib import Path\n\ndef run(inp):\n    Path(inp['marker']).write_text('ran')\n")
    marker = tmp_path / "ran"
    path = _packet(tmp_path, "my_flow:run", {"marker": str(marker)})
    r = cli(project, "replay", str(path), "--json", env={"PYTHONPATH": str(project)})
    assert r.returncode in (0, 1), r.stderr  # it ran: reproduced or not is the replay's answer
    assert marker.read_text() == "ran" and json.loads(r.stdout)["executed"] is True
    # the same module outside the current directory and PYTHONPATH is refused
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    marker.unlink()
    r = cli(elsewhere, "replay", str(path), env={"PYTHONPATH": ""})
    assert r.returncode == 6 and not marker.exists()
    assert "Error: refusing to run entrypoint 'my_flow:run'" in r.stderr or "cannot import" in r.stderr


def test_a_module_is_located_without_being_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "loud_module.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv(TRUSTED_PATHS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # the module is under the current directory: the project's code
    assert refusal("loud_module:f") is None
    monkeypatch.chdir(other)  # now it is not
    assert "outside the current directory and PYTHONPATH" in (refusal("loud_module:f") or "")
    monkeypatch.setenv("PYTHONPATH", str(code))
    assert refusal("loud_module:f") is None
    assert not (tmp_path / "imported").exists()  # found, never run


def test_the_demo_workflow_is_trusted_by_name() -> None:
    assert {ENTRYPOINT} == BUILT_IN
    assert refusal(ENTRYPOINT) is None


def test_eval_refuses_a_recorded_entrypoint_it_does_not_trust(tmp_path: Path) -> None:
    """`eval --runs` re-runs the entrypoint a recorded run names: from a trace file, so checked the same way."""
    marker = tmp_path / "pwned"
    records = [orjson.loads(line) for line in HEALTHY.read_bytes().splitlines() if line.strip()]
    root = next(r for r in records if r.get("parent_id") is None)
    root["attributes"]["run.entrypoint"] = "os:system"
    root["payload"]["input"] = f"touch {marker}"
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
    r = cli(tmp_path, "eval", str(CASES), "--from", str(hostile), "--runs", "1", "--json")
    assert r.returncode != 0 and not marker.exists(), r.stdout + r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["runs"] == [] and "refusing to run the recorded entrypoint 'os:system'" in json.dumps(case)


# -- file names from trace ids ------------------------------------------------------------------------------------

def _hostile_trace(path: Path, trace_id: str) -> Path:
    root = {"trace_id": trace_id, "span_id": "a1", "parent_id": None, "agent_name": "a", "event_type": "AGENT",
            "timestamp": 1.7e9, "duration_ns": 10, "name": "wf", "format_version": 1, "status": "error",
            "error": {"type": "X", "message": "m"}, "run_id": "r", "workflow": "wf", "actor": "x"}
    child = dict(root, span_id="a2", parent_id="a1", event_type="LLM_CALL", name="llm", status="ok")
    del child["error"], child["run_id"], child["workflow"], child["actor"]
    path.write_bytes(orjson.dumps(root) + b"\n" + orjson.dumps(child) + b"\n")
    return path


@pytest.mark.parametrize("trace_id", ["../../../escaped", "/tmp/absolute-escape", "..", "a/b\\c:d*e"])
def test_a_packet_named_after_a_hostile_trace_id_stays_in_its_folder(tmp_path: Path, trace_id: str) -> None:
    work = tmp_path / "a" / "b" / "c" / "work"
    work.mkdir(parents=True)
    trace = _hostile_trace(work / "t.jsonl", trace_id)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    r = cli(work, "packet", trace_id, "--from", str(trace), "--json")
    assert r.returncode == 0, r.stderr
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    packets = [p for p in written if p.suffix == ".json"]
    assert len(packets) == 1 and packets[0].parent.parent == work / "packets", packets
    assert orjson.loads(packets[0].read_bytes())["trace_id"] == trace_id  # the id itself is kept, in the file
    assert not Path("/tmp/absolute-escape.json").exists()


def test_file_stems_keep_plain_ids_and_tell_apart_the_ones_they_change() -> None:
    from agent_debug.model import file_stem

    assert file_stem("4bf92f3577b34da6a3ce929d0e0e4736") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert file_stem("01207075-a32a-48ed-a699-a41885f3f0b3") == "01207075-a32a-48ed-a699-a41885f3f0b3"
    a, b = file_stem("../x"), file_stem("__/x")
    assert "/" not in a and not a.startswith(".") and a != b and a != file_stem("../y")
    assert len(file_stem("z" * 1000)) < 120
