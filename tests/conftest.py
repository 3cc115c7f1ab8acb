"""Shared test helpers: record builders, a fresh SDK per test, and a runner for the real CLI."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    """The team's shared folder (real foreign traces in its data/): ../shared beside the repository, or wherever
    AGENT_DEBUG_SHARED points (point it at a folder that does not exist to run as a fresh clone does)."""
    override = os.environ.get("AGENT_DEBUG_SHARED")
    return Path(override) if override else ROOT.parent / "shared"


SHARED_DATA = _shared_dir() / "data"
HAVE_SHARED_DATA = SHARED_DATA.is_dir()
# real foreign traces: every file in the shared data when it is there, else the small licensed samples copied into
# fixtures/foreign (same folder names; no TRAIL, whose authors ask that it not be republished)
FOREIGN_FIXTURES = ROOT / "fixtures" / "foreign"
FOREIGN_DATA = SHARED_DATA if HAVE_SHARED_DATA else FOREIGN_FIXTURES


def rec(
    span_id: str,
    parent_id: str | None = None,
    *,
    trace_id: str = "t1",
    agent: str = "agent",
    event_type: str = "AGENT",
    start: float = 0.0,
    duration_ms: float = 1.0,
    **extra: Any,
) -> dict[str, Any]:
    """A spec-valid record with readable defaults; times in seconds/milliseconds for easy test arithmetic."""
    out: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent_id,
        "agent_name": agent,
        "event_type": event_type,
        "timestamp": 1_700_000_000.0 + start,
        "duration_ns": int(duration_ms * 1_000_000),
        "name": extra.pop("name", span_id),
    }
    out.update(extra)
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]], *, compress: bool | None = None) -> Path:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    if compress or (compress is None and path.name.endswith(".gz")):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def tree_json_span_ids(doc: dict[str, Any]) -> list[str]:
    """Every span id in a nested `tree --json` document (roots, missing parents, cycles), by an explicit walk."""
    out: list[str] = []
    stack: list[dict[str, Any]] = list(doc["roots"])
    stack += [child for m in doc["missing_parents"] for child in m["children"]]
    stack += [c["subtree"] for c in doc["cycles"]]
    while stack:
        node = stack.pop()
        out.append(node["span_id"])
        stack.extend(node["children"])
    return out


def read_all_bytes(directory: Path) -> bytes:
    """Every byte the files under `directory` hold, decompressed: for 'no secret on disk' checks."""
    out = []
    for p in sorted(directory.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p.name.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (EOFError, OSError):
                pass
        out.append(data)
    return b"\n".join(out)


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess, as a user runs it."""
    full_env = dict(os.environ)
    full_env.pop("PYTEST_CURRENT_TEST", None)
    full_env["COLUMNS"] = "200"
    full_env.setdefault("AGENT_DEBUG_HOME", str(cwd or ROOT))
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "agent_debug.cli.main", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, input=input, timeout=300,
    )


@pytest.fixture
def sdk(tmp_path: Path) -> Iterator[Path]:
    """A configured SDK writing to a fresh directory; shut down after the test."""
    import agent_debug as ad

    directory = tmp_path / "logs"
    ad.configure(directory, flush_interval=0.02)
    yield directory
    ad.shutdown()


@pytest.fixture(autouse=True)
def _isolate_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_DEBUG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENT_DEBUG_DB", raising=False)


# -- store backends: SQLite, chdb (ClickHouse in process) and a ClickHouse server over HTTP ----------------------

BACKENDS = ("sqlite", "chdb", "http")
CLICKHOUSE_URL_ENV = "AGENT_DEBUG_TEST_CLICKHOUSE_URL"  # clickhouse://user:password@host:port of a real server


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`clickhouse://user:password@host:port` of a ClickHouse server: $AGENT_DEBUG_TEST_CLICKHOUSE_URL when set,
    else tests/clickhouse_http_server.py (ClickHouse's HTTP interface answered by chdb) in a subprocess."""
    url = os.environ.get(CLICKHOUSE_URL_ENV)
    if url:
        yield url.rstrip("/")
        return
    pytest.importorskip("chdb")
    data = tmp_path_factory.mktemp("clickhouse-server")
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "clickhouse_http_server.py"), "--path",
                             str(data / "engine"), "--user", "tester", "--password", "s3cret:/@"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"the ClickHouse stand-in did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
    try:
        yield f"clickhouse://tester:s3cret%3A%2F%40@{line.split()[-1]}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def store_location(backend: str, tmp_path: Path, server: str | None = None) -> str:
    """A fresh store's `--db` value on this backend (a database of its own on the server)."""
    if backend == "sqlite":
        return str(tmp_path / "traces.db")
    if backend == "chdb":
        return f"chdb://{tmp_path / 'chstore'}"
    assert server is not None
    return f"{server}/t_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**12}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each store backend in turn (the ClickHouse ones need the clickhouse extra, which dev installs)."""
    if request.param != "sqlite":
        pytest.importorskip("chdb" if request.param == "chdb" else "clickhouse_connect")
    return str(request.param)


@pytest.fixture
def store_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh store's `--db` value on the backend under test."""
    server = request.getfixturevalue("clickhouse_server") if backend == "http" else None
    return store_location(backend, tmp_path, server)
# -- golden (exact-output) files ----------------------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_report_header(config: pytest.Config) -> str:
    if HAVE_SHARED_DATA:
        return f"foreign traces: {SHARED_DATA} (the full shared data)"
    return (f"foreign traces: {FOREIGN_FIXTURES} (samples; no shared data at {SHARED_DATA}: "
            "the TRAIL and the real-data blame tests skip)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="Rewrite tests/golden/*.txt from the current output instead of comparing with them.")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Any:
    """`golden(name, text)`: `text` must equal tests/golden/<name>.txt (with --update-golden, or the env var
    AGENT_DEBUG_UPDATE_GOLDEN=1, the file is written instead)."""
    update = request.config.getoption("--update-golden") or os.environ.get("AGENT_DEBUG_UPDATE_GOLDEN") == "1"

    def check(name: str, text: str) -> None:
        path = GOLDEN / f"{name}.txt"
        if update:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"no golden file {path.name}: run pytest with --update-golden to write it"
        expected = path.read_text()
        assert text == expected, f"{path.name} differs (run pytest --update-golden if the change is meant)"

    return check
