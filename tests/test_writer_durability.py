"""What the SDK writes reads back identical; a writer killed mid-run leaves readable files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import agent_debug as ad
from agent_debug.formats.reader import ReadReport, read_paths
from agent_debug.sdk import runtime

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
attr_values = st.one_of(scalars, st.lists(scalars, max_size=4))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
span_shapes = st.lists(
    st.tuples(st.text(min_size=1, max_size=12), st.sampled_from(["AGENT", "LLM_CALL", "TOOL_CALL", "X_CUSTOM"]),
              st.dictionaries(st.text(min_size=1, max_size=10), attr_values, max_size=6),
              st.dictionaries(st.text(max_size=8), json_values, max_size=3),
              st.integers(0, 3), st.booleans()),
    min_size=1, max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=span_shapes, fmt=st.sampled_from(["jsonl", "msgpack"]))
def test_what_the_sdk_writes_reads_back_identical(tmp_path_factory: Any, shapes: list, fmt: str) -> None:
    directory = tmp_path_factory.mktemp("rt")
    ad.configure(directory, format=fmt, flush_interval=0.01)
    with runtime.collect() as emitted:
        with ad.run("wf", actor="prop"):
            for name, et, attrs, payload, depth, fail in shapes:
                ctxs = [ad.span(f"{name}.{d}", event_type=et) for d in range(depth + 1)]
                spans = [c.__enter__() for c in ctxs]
                spans[-1].set_attributes(attrs)
                if payload:
                    spans[-1].set_payload(payload)
                for c in reversed(ctxs):
                    c.__exit__(None, RuntimeError("x") if fail else None, None)
    ad.shutdown()
    redactor = runtime.make_redactor(runtime.Config())
    expected = sorted((orjson.loads(redactor.process(e)) for e in emitted), key=lambda r: r["span_id"])
    report = ReadReport()
    got = sorted(read_paths([directory], report), key=lambda r: r["span_id"])
    assert report.rejected == 0
    assert got == expected


CHILD = textwrap.dedent(
    """
    import sys, time, agent_debug as ad
    ad.configure(sys.argv[1], rotation="64 KB", flush_interval=0.01)
    i = 0
    while True:
        with ad.run("wf") as run:
            with ad.span("step", attributes={"i": i}) as s:
                s.set_payload({"text": "y" * 200})
        i += 1
        if i % 20 == 0:
            print(ad.stats()["written"], flush=True)  # records handed to the file so far
            time.sleep(0.002)
    """
)


def test_sigkill_mid_run_loses_at_most_the_unflushed_tail(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"})
    assert proc.stdout is not None
    written = 0
    deadline = time.monotonic() + 60
    while written < 4000 and time.monotonic() < deadline:
        written = int(proc.stdout.readline().split()[0])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    report = ReadReport()
    records = list(read_paths([tmp_path], report))
    assert report.rejected == 0, report.rejects[:3]
    assert len(list(tmp_path.glob("*.gz"))) >= 2, sorted(p.name for p in tmp_path.iterdir())  # rotated before the kill
    assert len(records) >= written  # everything flushed before the kill is readable: only the tail is lost
    # every record that made it is whole and well-formed
    steps = sorted(r["attributes"]["i"] for r in records if r["name"] == "step")
    assert len(set(steps)) == len(steps)


def test_two_processes_share_a_directory_without_interleaving(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys, agent_debug as ad
        ad.configure(sys.argv[1], flush_interval=0.001)
        for i in range(2000):
            with ad.span("p" + sys.argv[2], attributes={"i": i}) as s:
                s.set_payload({"t": "z" * 300})
        ad.shutdown()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(n)], env=env) for n in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    report = ReadReport()
    records = list(read_paths([tmp_path], report))
    assert report.rejected == 0 and len(records) == 4000
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


FULL_SPEED = textwrap.dedent(
    """
    import sys, time, agent_debug as ad
    ad.configure(sys.argv[1], format=sys.argv[2])  # default settings: flush_interval 0.1, buffer 100,000
    out, clock, i = sys.stdout, time.monotonic, 0
    payload = {"answer": "rotate the intermediate first then reload the proxies " * 8, "scores": [0.9, 0.8]}
    with ad.run("wf"):
        while True:  # a tight loop: no pause, no sleep
            with ad.span("step", attributes={"i": i, "tool.name": "search"}) as s:
                s.set_payload(payload)
            i += 1
            if i % 256 == 0:
                out.write(f"{i} {clock()}\\n")  # spans 0 .. i-1 have ended (emitted) by this time
                out.flush()
    """
)


@pytest.mark.parametrize("fmt", ["jsonl", "msgpack"])
def test_sigkill_at_full_speed_loses_at_most_the_last_flush_interval(tmp_path: Path, fmt: str) -> None:
    """The process reports how many spans it has emitted as it goes; killed with SIGKILL at full speed, every
    span it had emitted one flush interval (0.1 s) before the kill is in the files."""
    proc = subprocess.Popen([sys.executable, "-c", FULL_SPEED, str(tmp_path), fmt], stdout=subprocess.PIPE,
                            text=True, env={k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"})
    assert proc.stdout is not None
    reports: list[tuple[int, float]] = []
    started = time.monotonic()
    while time.monotonic() - started < 60:
        count, at = proc.stdout.readline().split()
        reports.append((int(count), float(at)))
        if reports[-1][0] >= 60_000 or (reports[-1][0] >= 8_000 and time.monotonic() - started > 20):
            break
    killed_at = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    reports += [(int(c), float(t)) for c, t in (line.split() for line in proc.stdout.read().splitlines())]
    proc.wait()
    safe = max((c for c, t in reports if t <= killed_at - 0.1), default=0)
    report = ReadReport()
    found = sorted(r["attributes"]["i"] for r in read_paths([tmp_path], report) if r["name"] == "step")
    assert report.rejected == 0, report.rejects[:3]
    assert len(found) == len(set(found))  # nothing written twice
    emitted = reports[-1][0]
    assert safe > 0 and found[: safe] == list(range(safe)), (
        f"emitted {emitted}, {safe} of them 0.1 s before the kill, found {len(found)}")


@pytest.mark.parametrize("rotation", ["20 MB", 4096, "1 week", "00:00"])
def test_every_kind_of_rotation_writes_readable_files(tmp_path: Path, rotation: Any) -> None:
    """Size rotations hand loguru's sink bare bytes; time rotations a message that carries the time."""
    ad.configure(tmp_path, rotation=rotation, flush_interval=0.01)
    before = ad.stats()["internal_errors"]  # a process-wide count: earlier tests may have added to it
    with ad.run("wf"):
        for i in range(200):
            with ad.span("s", attributes={"i": i}) as s:
                s.set_payload({"text": "x" * 100})
    assert ad.shutdown()["internal_errors"] == before
    report = ReadReport()
    got = sorted(r["attributes"]["i"] for r in read_paths([tmp_path], report) if r["name"] == "s")
    assert report.rejected == 0 and got == list(range(200))
    if rotation == 4096:
        assert len(list(tmp_path.iterdir())) > 3  # rotated, each file a whole number of records
