"""The `agent-debug` application: every command is registered here, one module per command group.

`main` is the one place where failures become what the user sees: every expected failure is one line on stderr,
`Error: <what> <which>`, and the exit code of the README's table; Ctrl-C is `Error: interrupted`, exit 130.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
from types import FrameType

import typer

from agent_debug.errors import AgentDebugError, StoreError

try:  # recent typer vendors click; older versions use click itself
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[no-redef]

app = typer.Typer(
    name="agent-debug",
    help="Trace, diagnose, replay and evaluate LLM agent runs, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from agent_debug.cli import demo, validate

    validate.register(app)
    demo.register(app)
    for name in ("store", "analysis", "interop", "diagnose", "outcomes", "replay", "evaluate", "report", "serve"):
        try:
            module = __import__(f"agent_debug.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"agent_debug.cli.{name}":
                raise
            continue
        module.register(app)


_register()


class Interrupted(BaseException):
    """Ctrl-C. A BaseException like KeyboardInterrupt (no `except Exception` swallows it), but not one: the
    command framework turns KeyboardInterrupt into a silent exit, and the user is owed a line saying why."""


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def one_line(message: str) -> str:
    """An error message as one line: messages quoting a file's content or a parser's report may hold newlines."""
    return " ".join(message.split("\n")).strip()


def _usage_error(exc: ClickException) -> tuple[str, int]:
    message = one_line(exc.format_message()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f" (see `{ctx.command_path} {ctx.help_option_names[0]}`)"
    return message, exc.exit_code


def _os_error(exc: OSError) -> str:
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"could not run: {exc.strerror or type(exc).__name__}" + (f": {' -> '.join(files)}" if files else "")


def main() -> None:
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        code = app(standalone_mode=False, prog_name="agent-debug")
    except NoArgsIsHelpError as exc:  # `agent-debug` or a group alone: its help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except ClickException as exc:  # bad option or argument: one line, exit 2
        message, code = _usage_error(exc)
        sys.stderr.write(f"Error: {message}\n")
        sys.exit(code)
    except AgentDebugError as exc:
        sys.stderr.write(f"Error: {one_line(str(exc))}\n")
        sys.exit(exc.exit_code)
    except (Interrupted, KeyboardInterrupt, typer.Abort):
        sys.stderr.write("Error: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except sqlite3.DatabaseError as exc:  # damaged pages met outside the store's own checks
        sys.stderr.write(f"Error: the store could not be read: {one_line(str(exc))}\n")
        sys.exit(StoreError.exit_code)
    except OSError as exc:  # the file system refused something no command checks for itself: still one line
        sys.stderr.write(f"Error: {_os_error(exc)}\n")
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
