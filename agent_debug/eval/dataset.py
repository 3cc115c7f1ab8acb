"""Regression datasets: recorded runs turned into eval cases, appended to a versioned TOML file in the repo.

A dataset is a case file (same schema) with `version = N` at the top; every `add` appends one `[[case]]` pinned
to its run (`trace_id`) and increments the version, so a dataset's history reads in `git log -p`. What the case
asserts about the output:

- `--expected TEXT` given: `expected_output_pattern` is `re.escape(TEXT)` (the text must appear in the output).
- label `pass`, no expected text: the recorded output, exactly (`\\A...\\Z`): the run must keep answering so.
- label `fail`: `forbidden_output_pattern` is the recorded output, exactly: the failure must not come back.

Evaluated on its recorded run, a labelled case passes when the checks agree with the label (so a `fail` case
checks that the known-bad run is still flagged). With `eval --runs N` the workflow is re-executed from the run's
entrypoint and input, and the new runs must pass: the label is about the recorded run, not the new ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel

from agent_debug.columns import summarize
from agent_debug.errors import CaseFileError, CouldNotRun, OutputError, UsageError
from agent_debug.eval.cases import Case, parse_case_data
from agent_debug.eval.harness import final_output, recorded_task, root_record
from agent_debug.model import escaped

DEFAULT_DATASET = Path("datasets") / "regressions.toml"
HEADER = ("# Regression cases for `agent-debug eval` (a case file: see docs/eval.md).\n"
          "# Appended by `agent-debug dataset add`; the version goes up by one with every case.\n")
_VERSION_LINE = re.compile(r"^version[ \t]*=[ \t]*(\d+)[ \t]*(#.*)?$", re.MULTILINE)
_TABLE_LINE = re.compile(r"^[ \t]*\[", re.MULTILINE)


class AddedCase(BaseModel):
    """What `dataset add` did: the file, its new version, the case as written, the packet it wrote."""

    dataset: Path
    version: int
    case: dict[str, Any]
    packet: Path | None


def add_regression(source: Any, trace: str, *, name: str, label: Literal["pass", "fail"],
                   expected: str | None = None, dataset: Path = DEFAULT_DATASET,
                   packet: bool = True) -> AddedCase:
    """Append a case pinned to `trace` (an id or unique prefix) to `dataset`, creating the file if needed."""
    if not name.strip():
        raise UsageError("the case name must not be empty")
    trace_id = source.resolve(trace)
    case = derive_case(source, trace_id, name=name, label=label, expected=expected)
    existed = dataset.exists()
    try:
        return _append(source, trace_id, case, dataset, packet)
    except BaseException:
        if not existed and dataset.exists() and dataset.stat().st_size == 0:
            dataset.unlink()  # do not leave an empty file behind a refused add
        raise


def _append(source: Any, trace_id: str, case: dict[str, Any], dataset: Path, packet: bool) -> AddedCase:
    name = case["name"]
    with _locked(dataset) as handle:
        try:
            text = handle.read()
        except UnicodeDecodeError as exc:
            raise CaseFileError(f"{dataset}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        data = _parse_existing(text, dataset)
        if any(c.get("name") == name for c in data.get("case", [])):
            raise UsageError(f"case {name!r} is already in {dataset}")
        version = int(data.get("version") or 0) + 1
        packet_path = _write_packet(source, trace_id, dataset) if packet else None
        if packet_path is not None:
            case["packet"] = Path(os.path.relpath(packet_path, dataset.parent)).as_posix()
        new_text = _with_version(text or HEADER, version) + case_block(case, trace_id)
        parse_case_data(tomllib.loads(new_text), dataset)  # never write a file eval would refuse
        _replace(dataset, new_text)
    return AddedCase(dataset=dataset, version=version, case=case, packet=packet_path)


def derive_case(source: Any, trace_id: str, *, name: str, label: Literal["pass", "fail"],
                expected: str | None) -> dict[str, Any]:
    """The case fields from the recorded run (see the module docstring for the output semantics)."""
    ts = source.load(trace_id, records=True)
    summ = summarize(ts)
    root = root_record(ts, summ)
    output = final_output(root)
    case: dict[str, Any] = {"name": name}
    workflow = summ.workflow or (root or {}).get("workflow")
    if workflow:
        case["workflow"] = workflow
    case.update({"trace_id": trace_id, "label": label, "task": recorded_task(root) or name})
    if expected is not None:
        case["expected"] = expected
        case["expected_output_pattern"] = re.escape(expected)
    elif label == "pass" and output is not None:
        case["expected_output_pattern"] = exact_pattern(output)
    if label == "fail" and output is not None:
        case["forbidden_output_pattern"] = exact_pattern(output)
    tokens = summ.prompt_tokens + summ.completion_tokens
    if tokens > Case.model_fields["max_tokens"].default:
        case["max_tokens"] = 2 * tokens  # the recorded run must not fail on a default budget it never had
    latency_ms = summ.duration_ns / 1e6
    if latency_ms > Case.model_fields["max_latency_ms"].default:
        case["max_latency_ms"] = float(round(2 * latency_ms))
    return case


def exact_pattern(text: str) -> str:
    """A regex matching exactly `text`, nothing more (re.escape is safe for any input)."""
    return r"\A" + re.escape(text) + r"\Z"


def toml_string(text: str) -> str:
    """A TOML string: a literal '...' string when the text allows it (readable regexes), else a basic one."""
    if "'" not in text and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return f"'{text}'"
    out = []
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a dataset")


# what a TOML comment may not hold: control characters but tab (a newline among them)
_COMMENT_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def case_block(case: dict[str, Any], trace_id: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # the trace id is data: in a comment it must stay on its line (a newline in it would write TOML of its own,
    # an entrypoint, say, that `eval` then runs as the user's)
    lines = ["", f"# added {stamp} from run {escaped(trace_id, _COMMENT_CONTROLS)}", "[[case]]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in case.items()]
    return "\n".join(lines) + "\n"


def _parse_existing(text: str, dataset: Path) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CaseFileError(f"{dataset}: not valid TOML: {exc}") from None
    parse_case_data(data, dataset)
    return data


def _with_version(text: str, version: int) -> str:
    """Rewrite the top-level `version = N` line (the one before any table), or put one after the header."""
    match = _VERSION_LINE.search(text)
    first_table = _TABLE_LINE.search(text)
    if match and (first_table is None or match.start() < first_table.start()):
        return text[: match.start()] + f"version = {version}" + text[match.end():]
    lines = text.splitlines(keepends=True)
    head = 0
    while head < len(lines) and lines[head].lstrip().startswith("#"):
        head += 1
    return "".join(lines[:head]) + f"version = {version}\n" + "".join(lines[head:])


def _write_packet(source: Any, trace_id: str, dataset: Path) -> Path:
    try:
        from agent_debug.replay.packet import write_packet
        from agent_debug.replay.skeleton import build_packet
    except ImportError as exc:
        raise CouldNotRun(f"cannot write the replay packet ({exc}); add the case without one: --no-packet") from None
    return Path(write_packet(build_packet(source, trace_id), dataset.parent / "packets"))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[str]]:
    """The dataset open and exclusively locked (two concurrent adds must not lose a case); created if missing.

    The file is replaced atomically on write, so after taking the lock we check it is still the file at `path`
    and start over if another writer replaced it meanwhile."""
    if sys.platform != "win32":  # not on POSIX: no lock
        import fcntl
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise OutputError.from_os(path, exc) from None
        try:
            if sys.platform != "win32":
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:
                    handle.close()
                    continue
            handle.seek(0)
            yield handle
            return
        finally:
            handle.close()


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError.from_os(path, exc) from None
