"""Options shared by every command (defined once), JSON output, and error reporting."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol

import orjson
import typer

from agent_debug.errors import CouldNotRun
from agent_debug.model import escaped

if TYPE_CHECKING:
    from rich.console import Console

    from agent_debug.analysis.commands import Inputs

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="The store: a SQLite file, chdb:///DIR or clickhouse://[user[:password]@]host[:port]/database "
        "(the last two need the clickhouse extra). Default: $AGENT_DEBUG_DB, else ./.agent-debug/traces.db.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
FromOption = Annotated[
    list[Path] | None,
    typer.Option("--from", help="Read these trace files or directories directly instead of the store."),
]
VerdictsOption = Annotated[Path | None, typer.Option(
    "--verdicts", help="A verdict file (JSON Lines of {trace_id, passed, reason}) applied to the runs' status.")]
RulesOption = Annotated[Path | None, typer.Option("--rules", help="A TOML file merged over the default rules.")]
FormatOption = Annotated[
    str | None,
    typer.Option("--format", help="Force the input format instead of detecting it (e.g. otlp, langfuse)."),
]


def db_path(db: str | None) -> str:
    """The store `--db` names (a file path or a URL: see `store.api`), else $AGENT_DEBUG_DB, else the default."""
    if db is not None:
        return db
    env = os.environ.get("AGENT_DEBUG_DB")
    return env if env else str(Path(".agent-debug") / "traces.db")


# What orjson writes raw and a terminal may act on: DEL, the C1 controls (U+009B is CSI to some terminals) and the
# bidirectional overrides (it escapes everything below 0x20 itself). Their UTF-8 bytes occur only inside strings
# (JSON's own syntax is ASCII), so writing them as \\u escapes leaves the document's meaning unchanged.
_JSON_CONTROLS = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")


def json_inert(data: bytes) -> bytes:
    """`data` (JSON) with DEL, C1 controls and bidirectional overrides inside its strings written as \\u escapes."""
    if _JSON_CONTROLS.search(data) is None:
        return data
    return _JSON_CONTROLS.sub(lambda m: b"\\u%04x" % ord(m[0].decode()), data)


def print_json(obj: Any) -> None:
    try:
        data = orjson.dumps(obj, default=_default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # nesting orjson does not write (over 254 levels): the stdlib can
        data = _stdlib_dumps(obj)  # ASCII: every control is escaped already
    if sys.stdout.isatty():  # read on a terminal: trace data must not act on it (a pipe or a file pays nothing)
        data = json_inert(data)
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()


def print_result(doc: dict[str, Any], notices: Sequence[str]) -> None:
    """A command's `--json` document with its `notices` (always present; an empty list when there are none)."""
    print_json({**doc, "notices": list(notices)})


class Result(Protocol):
    """What every command's library call returns: its JSON document and the notices of what it read."""

    @property
    def notices(self) -> list[str]: ...

    def as_dict(self) -> dict[str, Any]: ...


def show(result: Result, json: bool, render: Callable[[Console], None]) -> None:
    """A command's result: its notices as warnings on stderr, then `--json` (the result's document with its
    notices) or `render` on stdout."""
    warn(result.notices)
    if json:
        print_result(result.as_dict(), result.notices)
    else:
        render(stdout_console())


def inputs(db: str | None, from_: list[Path] | None, format: str | None = None,
           verdicts: Path | None = None) -> Inputs:
    """Where a command reads runs from, as its shared options give it."""
    from agent_debug.analysis.commands import Inputs

    return Inputs(db_path(db), from_, format, verdicts)


# Characters a terminal acts on instead of showing: C0 controls but tab and newline, DEL, C1 (0x9b is CSI on some
# terminals), and the bidirectional overrides that reorder what is shown. Trace data is written by others: an
# agent's or a span's name holding ESC ] 52 sets the reader's clipboard, ESC [ 2 J clears the screen.
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with every terminal control written as its escape (`\\x1b`), so it is shown, never acted on."""
    return escaped(text, _TERMINAL_CONTROLS)


def inert(text: str) -> str:
    """`text` without terminal controls (what is left of a sequence, `[2J`, shows as text). For rendered tables and
    panels: rich measured the text without them (a control takes no cell), so dropping them keeps the layout; the
    `--json` output keeps them (escaped) for whoever needs the exact bytes."""
    return text if _TERMINAL_CONTROLS.search(text) is None else _TERMINAL_CONTROLS.sub("", text)


def warn(notices: Iterable[str]) -> None:
    """Every notice (records rejected, files cut, ...) as one `warning:` line on stderr, in both output modes:
    evidence that was left out must never be silent."""
    for note in notices:
        sys.stderr.write(f"warning: {visible(' '.join(str(note).splitlines()))}\n")
    sys.stderr.flush()


def _stdlib_dumps(obj: Any) -> bytes:
    """The stdlib's encoder writes what orjson refuses: deep nesting, integers over 64 bits, lone surrogates."""
    import json

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        return json.dumps(obj, default=_default).encode()
    except RecursionError:
        raise CouldNotRun("the result is nested too deeply to write as JSON") from None
    finally:
        sys.setrecursionlimit(limit)


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
    sys.stderr.write(f"Error: {visible(' '.join(message.splitlines()))}\n")
    raise typer.Exit(code)


def _showing_controls(console: Console) -> Console:
    """Every renderable this console prints has its text passed through `inert`: rich's own styling and cursor
    moves are separate segments and stay as they are."""
    from rich.console import RenderHook
    from rich.segment import Segment

    class Visible:
        def __init__(self, renderable: Any) -> None:
            self.renderable = renderable

        def __rich_console__(self, console: Any, options: Any) -> Any:
            for seg in console.render(self.renderable, options):
                yield seg if seg.control else Segment(inert(seg.text), seg.style)

    class Hook(RenderHook):
        def process_renderables(self, renderables: list[Any]) -> list[Any]:
            return [Visible(r) for r in renderables]

    console.push_render_hook(Hook())
    return console


def stderr_console() -> Console:
    from rich.console import Console

    return _showing_controls(Console(stderr=True))


def stdout_console() -> Console:
    from rich.console import Console

    return _showing_controls(Console())
