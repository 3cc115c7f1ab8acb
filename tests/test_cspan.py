"""The compiled span core (`agent_debug/sdk/_cspan.c`) against its specification, the Python path in tracer.py.

- where a C compiler is, the install built the core and the SDK uses it;
- every record the compiled path writes is byte for byte what the Python path writes for the same span
  (`Span._record` serialized as `Span._emit` does): generated names, agents and kinds (quotes, control
  characters, non-ASCII, lone surrogates), payloads and attributes (values JSON has no type for, non-string keys,
  cycles), token costs, timestamps from tiny to huge; faults are counted as the Python path counts them;
- `span(...)` takes and refuses the same arguments;
- a span in a reference cycle is collected;
- the SDK's own test files pass with the core switched off (`AGENT_DEBUG_PURE_PYTHON=1`), in a subprocess.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import agent_debug as ad
from agent_debug.sdk import runtime, tracer
from agent_debug.sdk.safe import dumps_record

ROOT = Path(__file__).resolve().parents[1]
PURE = bool(os.environ.get("AGENT_DEBUG_PURE_PYTHON"))
needs_core = pytest.mark.skipif(not tracer.COMPILED, reason="the compiled span core is not built here")


def test_the_core_is_built_and_used_where_a_c_compiler_is() -> None:
    if PURE:
        assert not tracer.COMPILED and ad.stats()["span_core"] == "python"
        return
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine: the install could not build the core")
    assert tracer.COMPILED, "a C compiler is here, yet the install did not build agent_debug/sdk/_cspan.c"
    assert type(ad.span("x")).__mro__[1].__name__ == "SpanCore"
    assert tracer.span is ad.span  # the compiled factory is the one the package exports
    assert ad.stats()["span_core"] == "compiled"


# -- the same bytes ---------------------------------------------------------------------------------------------

class Opaque:
    """A value JSON has no type for (the record keeps its str)."""

    def __str__(self) -> str:
        return "<opaque>"


texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["tool:search", 'say "hi"', "back\\slash", "tab\there", "nl\n", "\x00", "\x7f", "é", "日本",
                     "\U0001f600", "\ud800", "a\udfffb", "</script>", ""]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), texts, st.builds(Opaque))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(texts, inner, max_size=3)), max_leaves=8)
mappings = st.dictionaries(st.one_of(texts, st.integers(0, 3)), values, max_size=4)


def _spec_bytes(s: tracer.Span) -> bytes:
    """What the Python path writes for this ended ok span."""
    rec = tracer.Span._record(s)
    try:
        return orjson.dumps(rec)
    except TypeError:
        return dumps_record(rec)[0]


@pytest.fixture
def host(tmp_path: Path) -> Any:
    ad.configure(tmp_path / "logs", flush_interval=0.05, raise_internal_errors=False)
    yield
    ad.shutdown()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=texts, agent=st.one_of(st.none(), texts), kind=texts, payload=st.one_of(st.none(), mappings),
       attributes=mappings, tokens=st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))),
       wall=st.one_of(st.just(None), st.floats(min_value=-1e20, max_value=1e20),
                      st.sampled_from([0.0, 1e-5, 1e-3, 5e-4, 1.5e9, 1e15, 9.99e14, 1e16, 2.0**53])),
       cyclic=st.booleans())
def test_the_compiled_path_writes_what_the_python_path_writes(host: Any, name: str, agent: str | None, kind: str,
                                                             payload: dict[Any, Any] | None,
                                                             attributes: dict[Any, Any],
                                                             tokens: tuple[int, int] | None, wall: float | None,
                                                             cyclic: bool) -> None:
    with runtime.collect(silent=True) as records, ad.run("wf") as run:
        if wall is not None:
            run.anchor_wall = wall  # the child's timestamp is the run's anchor plus the monotonic time since
        before = ad.stats()["internal_errors"]
        with ad.span(name, agent=agent, event_type=kind, attributes=attributes) as s:
            if payload is not None:
                if cyclic:
                    payload = dict(payload)
                    payload["self"] = payload
                s.set_payload(payload)
            if tokens is not None:
                s.add_tokens(prompt=tokens[0], completion=tokens[1])
        faults = ad.stats()["internal_errors"] - before
        written = list(records)
    assert len(written) >= 1
    assert written[0] == _spec_bytes(s)
    # a fault is counted once, as the Python path counts it (dumps_record says whether there was one)
    assert faults == (dumps_record(tracer.Span._record(s))[1] is not None)


def test_the_bytes_match_on_a_plain_span_too(host: Any) -> None:
    """The common case, spelled out: ids, agent inherited, payload, attributes, tokens."""
    with runtime.collect(silent=True) as records, ad.run("wf", agent="boss"):
        with ad.span("tool:search_docs", event_type="TOOL_CALL", attributes={"k": [1, 2.5, None]}) as s:
            s.set_payload({"query": "q", "n": 3})
            s.add_tokens(prompt=3, completion=4, cost_usd=0.25)
    rec = orjson.loads(records[0])
    assert records[0] == _spec_bytes(s)
    assert rec["agent_name"] == "boss" and rec["payload"] == {"query": "q", "n": 3}
    assert rec["token_cost"] == {"prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 0.25}


# -- span(...)'s arguments ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: ad.span(), "missing 1 required positional argument: 'name'"),
    (lambda: ad.span("a", "b"), "takes 1 positional argument but 2 were given"),
    (lambda: ad.span("a", colour="red"), "unexpected keyword argument 'colour'"),
    (lambda: ad.span("a", name="b"), "multiple values for argument 'name'"),
])
def test_span_refuses_the_arguments_python_refuses(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_span_takes_its_arguments_by_keyword_and_copies_the_attributes() -> None:
    attrs = {"a": 1}
    s = ad.span(name="n", agent="ag", event_type="PLAN", attributes=attrs, retry_of="0123456789abcdef")
    assert (s.name, s.agent_name, s.event_type, s._retry) == ("n", "ag", "PLAN", "0123456789abcdef")
    assert s.attributes == attrs and s.attributes is not attrs
    assert (s.payload, s.status, s.error, s.token_cost, s.run, s._ended) == (None, "ok", None, None, None, False)


def test_attributes_that_are_not_a_mapping_are_a_counted_fault(host: Any) -> None:
    before = ad.stats()["internal_errors"]
    s = ad.span("n", attributes=[1, 2, 3])  # type: ignore[arg-type]
    assert s.attributes == {} and ad.stats()["internal_errors"] == before + 1


# -- memory ---------------------------------------------------------------------------------------------------------

def test_a_span_in_a_reference_cycle_is_collected(host: Any) -> None:
    collected: list[bool] = []

    class Marker:
        def __del__(self) -> None:
            collected.append(True)

    with ad.run("wf"):
        with ad.span("cyclic") as s:
            s.attributes["me"] = s  # span -> attributes -> span
            s.attributes["marker"] = Marker()
    del s
    gc.collect()
    assert collected == [True]


# -- the Python path, in a subprocess -------------------------------------------------------------------------------

@needs_core
@pytest.mark.slow
def test_the_sdk_tests_pass_with_the_core_switched_off(tmp_path: Path) -> None:
    files = ["tests/test_sdk_paths.py", "tests/test_sdk.py", "tests/test_sdk_never_raises.py", "tests/test_spans.py",
             "tests/test_cspan.py"]
    env = {**os.environ, "AGENT_DEBUG_PURE_PYTHON": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist",
                           "--basetemp", str(tmp_path / "t"), *files],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


FALLBACK = """
import sys
import agent_debug.sdk._cspan as c
assert "agent_debug.sdk.tracer" not in sys.modules
if sys.argv[1] == "abi":
    c.ABI = 99  # a module built from another version of _cspan.c
else:
    def bind(**kwargs):
        raise TypeError("bind() got an unexpected keyword argument")
    c.bind = bind  # a module that refuses what tracer.py hands it
import orjson
import agent_debug as ad
from agent_debug.sdk import runtime, tracer
assert not tracer.COMPILED and ad.stats()["span_core"] == "python"
ad.configure(sys.argv[2], raise_internal_errors=False)
with runtime.collect(silent=True) as records, ad.run("wf"):
    with ad.span("child", attributes={"a": 1}) as s:
        s.set_payload({"p": 2})
rec = orjson.loads(records[0])
assert (rec["name"], rec["payload"], rec["attributes"]) == ("child", {"p": 2}, {"a": 1}), rec
print("python path", ad.stats()["internal_errors"])
"""


@needs_core
@pytest.mark.parametrize("how", ["abi", "bind"])
def test_a_core_that_does_not_fit_leaves_the_python_path(tmp_path: Path, how: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "AGENT_DEBUG_PURE_PYTHON")}
    proc = subprocess.run([sys.executable, "-c", FALLBACK, how, str(tmp_path / "logs")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"python path {1 if how == 'bind' else 0}"  # a refused bind is counted
