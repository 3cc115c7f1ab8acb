"""Eval case files: TOML with `[[case]]` tables, validated once at load with errors that name the file, the
case and the field.

A case says which runs it judges (`workflow`, or one pinned `trace_id`), what a good run looks like (an output
regex, a Gemini judge, token and latency budgets, interaction edges between agents, deterministic checks), and
optionally how to re-execute the workflow (`entrypoint` + `input`) for multi-run pass rates. Regression
datasets (`agent-debug dataset add`) are case files too, with `version = N` at the top.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent_debug.errors import CaseFileError, UsageError

TOP_LEVEL_KEYS = frozenset({"version", "case"})
SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
SCHEMA_KEYWORDS = frozenset({"type", "required", "properties", "items", "enum"})
SCHEMA_ANNOTATIONS = frozenset({"title", "description", "$schema", "$id", "$comment", "examples", "default"})
_EDGE = re.compile(r"^\s*([^\s>-][^>]*?)\s*->\s*([^\s>-][^>]*?)\s*$")
_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class Case(BaseModel):
    """One eval case. Unknown keys are rejected so that a typo never silently disables a check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Unique among the loaded case files; names the JUnit suite.")
    workflow: str | None = Field(None, description="The runs that belong to the case (root `workflow`).")
    trace_id: str | None = Field(None, description="Pin the case to one recorded run (dataset cases).")
    task: str | None = Field(None, description="The task given to the judge; default: the root's task.summary.")
    expected_output_pattern: str | None = Field(None, description="Regex searched in the final output.")
    forbidden_output_pattern: str | None = Field(
        None, description="Regex that must NOT match the final output (a known-bad answer must not come back).")
    expected: str | None = Field(None, description="Reference answer for the judge.")
    judge: bool = Field(False, description="Grade correctness with the Gemini judge (needs an API key).")
    max_tokens: int = Field(50_000, ge=0, description="Budget for prompt + completion tokens of the whole run.")
    max_latency_ms: float = Field(30_000, ge=0, description="Budget for the root span's duration.")
    expected_topology: list[str] = Field(default_factory=list, description="'a->b' edges that must all appear.")
    require_nonempty_tools: bool = Field(False, description="Every tool call / retrieval returned something.")
    output_schema: dict[str, Any] | None = Field(None, description="JSON-schema subset the output must match.")
    entrypoint: str | None = Field(None, description="'module:function' that runs the workflow (for --runs).")
    input: dict[str, Any] | None = Field(None, description="The input passed to the entrypoint (for --runs).")
    label: Literal["pass", "fail"] | None = Field(None, description="Human verdict of the pinned run.")
    min_pass_rate: float | None = Field(None, ge=0, le=1, description="Gate on the pass rate; default 1.0.")
    packet: str | None = Field(None, description="Replay packet of the pinned run, relative to the file.")

    @field_validator("expected_output_pattern", "forbidden_output_pattern")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("expected_topology")
    @classmethod
    def _edges_parse(cls, value: list[str]) -> list[str]:
        for edge in value:
            parse_edge(edge)
        return value

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_shape(cls, value: str | None) -> str | None:
        if value is not None and not _ENTRYPOINT.match(value):
            raise ValueError(f"must look like 'package.module:function', not {value!r}")
        return value

    @field_validator("output_schema")
    @classmethod
    def _schema_supported(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_schema(value)
        return value

    @model_validator(mode="after")
    def _selects_runs(self) -> Case:
        if not (self.workflow or self.trace_id or self.entrypoint):
            raise ValueError("needs 'workflow' (its runs), 'trace_id' (one run) or 'entrypoint' (to run it)")
        return self

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [parse_edge(e) for e in self.expected_topology]


class CaseFile(BaseModel):
    """One loaded file: its path (for messages and relative packet paths), its version, its cases."""

    path: Path
    version: int | None
    cases: list[Case]


def parse_edge(text: str) -> tuple[str, str]:
    """'orchestrator->verifier' -> ('orchestrator', 'verifier'); anything else is a ValueError."""
    match = _EDGE.match(text) if isinstance(text, str) else None
    if not match or match.group(1) == match.group(2):
        raise ValueError(f"edge {text!r} must look like 'agent_a->agent_b' with two different agents")
    return match.group(1), match.group(2)


def check_schema(schema: Any, where: str = "") -> None:
    """Refuse keywords the validator does not implement, so a schema never passes by being half-read."""
    at = f"{where}: " if where else ""
    if not isinstance(schema, dict):
        raise ValueError(f"{at}a schema must be a table")
    unknown = sorted(set(schema) - SCHEMA_KEYWORDS - SCHEMA_ANNOTATIONS)
    if unknown:
        raise ValueError(f"{at}unsupported keyword {unknown[0]!r} (supported: {', '.join(sorted(SCHEMA_KEYWORDS))})")
    types = schema.get("type")
    for t in [types] if isinstance(types, str) else (types or []):
        if t not in SCHEMA_TYPES:
            raise ValueError(f"{at}unknown type {t!r} (one of {', '.join(sorted(SCHEMA_TYPES))})")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{at}'required' must be a list of property names")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise ValueError(f"{at}'properties' must be a table")
    for name, sub in props.items():
        check_schema(sub, f"{where}.properties.{name}".lstrip("."))
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items".lstrip("."))
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise ValueError(f"{at}'enum' must be a list")


def load_case_file(path: Path | str) -> CaseFile:
    """Read and validate one case file; the first problem raises CaseFileError in one line."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"case file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"case file is a directory: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CaseFileError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot be read: {exc}") from None
    return parse_case_data(data, path)


def parse_case_data(data: dict[str, Any], path: Path) -> CaseFile:
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise CaseFileError(f"{path}: unknown top-level key {unknown[0]!r} (expected 'version' and [[case]] tables)")
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise CaseFileError(f"{path}: 'version' must be a non-negative integer, not {version!r}")
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list):
        raise CaseFileError(f"{path}: 'case' must be an array of tables: write [[case]], not [case]")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(raw_cases, start=1):
        case = _validate_case(raw, path, number)
        if case.name in seen:
            raise CaseFileError(f"{path}: case {case.name!r} (#{number}): name already used by case #{seen[case.name]}")
        seen[case.name] = number
        cases.append(case)
    return CaseFile(path=path, version=version, cases=cases)


def _validate_case(raw: Any, path: Path, number: int) -> Case:
    name = raw.get("name") if isinstance(raw, dict) else None
    label = f"case {name!r} (#{number})" if isinstance(name, str) and name else f"case #{number}"
    if not isinstance(raw, dict):
        raise CaseFileError(f"{path}: {label}: must be a table")
    try:
        return Case.model_validate(raw)
    except ValidationError as exc:
        raise CaseFileError(f"{path}: {label}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """The first pydantic error as 'field 'x': message' (one line; the rest are usually consequences)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown field {loc!r}"
    if err["type"] == "missing":
        return f"field {loc!r} is required"
    if not loc:
        return msg
    got = err.get("input")
    shown = f" (got {got!r})" if err["type"] != "value_error" and not isinstance(got, (dict, list)) else ""
    return f"field {loc!r}: {msg}{shown}"


def load_case_files(paths: list[Path]) -> list[CaseFile]:
    """Load every file; a case name used in two files is an error (reports and JUnit suites are per name)."""
    files = [load_case_file(p) for p in paths]
    owner: dict[str, Path] = {}
    for f in files:
        for case in f.cases:
            if case.name in owner:
                raise CaseFileError(f"{f.path}: case {case.name!r}: name already used in {owner[case.name]}")
            owner[case.name] = f.path
    return files
