"""Options shared by every command (defined once), JSON output, and error reporting."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="The store (SQLite). Default: $AGENT_DEBUG_DB, else ./.agent-debug/traces.db.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
FromOption = Annotated[
    list[Path] | None,
    typer.Option("--from", help="Read these trace files or directories directly instead of the store."),
]
FormatOption = Annotated[
    str | None,
    typer.Option("--format", help="Force the input format instead of detecting it (e.g. otlp, langfuse)."),
]


def db_path(db: Path | None) -> Path:
    if db is not None:
        return db
    env = os.environ.get("AGENT_DEBUG_DB")
    return Path(env) if env else Path(".agent-debug") / "traces.db"


def print_json(obj: Any) -> None:
    sys.stdout.buffer.write(
        orjson.dumps(obj, default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    )
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(type(obj).__name__)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, a distinct exit code, no traceback."""
    sys.stderr.write(f"Error: {message}\n")
    raise typer.Exit(code)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def stdout_console() -> Any:
    from rich.console import Console

    return Console()
