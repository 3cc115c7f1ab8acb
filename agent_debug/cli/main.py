"""The `agent-debug` application: every command is registered here, one module per command group.

`main` is the one place where failures become what the user sees: every expected failure is one line on stderr,
`Error: <what> <which>`, and the exit code of the README's table; Ctrl-C is `Error: interrupted`, exit 130.
"""

from __future__ import annotations

import signal
import sys
from difflib import get_close_matches
from importlib import import_module
from types import FrameType
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

from agent_debug.errors import AgentDebugError, StoreError
from agent_debug.gcpause import one_shot_process

try:  # recent typer vendors click; older versions use click itself
    from typer._click import Command, Context, HelpFormatter
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
    from typer._click.utils import make_default_short_help
except ImportError:  # pragma: no cover - depends on the installed typer
    # the type checker sees the vendored names above; these are the same API as other classes (ignored below)
    from click import Command, Context, HelpFormatter  # type: ignore[assignment]
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]
    from click.utils import make_default_short_help  # type: ignore[no-redef]

HELP = "Trace, diagnose, replay and evaluate LLM agent runs, offline."
_SETTINGS: dict[str, Any] = {"no_args_is_help": True, "add_completion": False, "pretty_exceptions_enable": False,
                             "rich_markup_mode": None}

# Every command, in the order `--help` lists them: name -> (the module of agent_debug.cli that registers it, the
# summary `agent-debug --help` shows: the command's own help, checked by tests/test_cli_basics.py). The CLI loads
# a command's module only when that command runs, so `--help` and every command start without building the
# others (typer builds a command's parameters from its signature: tens of ms for all of them).
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "Read trace files and report files, records, traces and rejects by reason."),
    "demo": ("demo", "Run a batch of the demo agent team (healthy runs, recovered retries, and a failure of every "
                     "bucket), write rotated, compressed trace files, and summarize."),
    "ingest": ("store", "Ingest trace files into the store (append-only, idempotent, incremental)."),
    "traces": ("store", "List runs with status, duration, span count, agents, tokens and cost."),
    "tree": ("analysis", "The causal tree of a run with a latency waterfall; the critical path is highlighted."),
    "critical-path": ("analysis", "The chain of span segments that determines end-to-end latency, the bottleneck, "
                                  "per-agent hotspots, and sequential steps that could have run in parallel "
                                  "(latency stacking)."),
    "export": ("interop", "Export traces as OTLP/JSON lines (one TracesData per trace) for OpenTelemetry tools."),
    "bucket": ("diagnose", "Give every failed run one bucket and a root cause; a table per bucket and clusters "
                           "ranked by impact."),
    "why": ("diagnose", "One run's story: root cause -> hops -> visible failure, with the evidence; and, for every "
                        "run (failed or not), the ranked suspects: the spans most likely to hold its mistake."),
    "session": ("diagnose", "The turns of one conversation with each one's outcome and bucket, and the earliest "
                            "turn where things went wrong."),
    "mark": ("outcomes", "Record your verdict on runs (the store keeps it; trace files are never changed): bucket, "
                         "why, eval, the clusters and traces then treat it as the runs' outcome."),
    "patterns": ("outcomes", "Failure rate by modality, agent, model, tool and route, with counts, 95% Wilson "
                             "intervals and a test of independence (Fisher's exact test), the strongest "
                             "associations first."),
    "packet": ("replay", "Write a replay packet for one run: small, redacted, mode 0600."),
    "replay": ("replay", "Re-run a packet's failing path against deterministic stubs (no network, no API spend) "
                         "and say whether it reproduced: same output, same path, same failure bucket."),
    "report": ("report", "Write one self-contained HTML file (opens from disk, offline): the waterfall with the "
                         "critical path, errors and latency stacking, the message flow between agents, and why the "
                         "run failed; with several runs, a run list to switch between them."),
    "serve": ("serve", "Receive OpenTelemetry traces (OTLP/HTTP at /v1/traces) and follow trace directories, run a "
                       "debug session per run (attached, recording, analyzing, done), and serve the runs as a live "
                       "view in the browser (/), as JSON (/api/runs) and as events (/api/events)."),
    "tail": ("serve", "The live view for incidents: runs in flight with their state, span counts and elapsed time, "
                      "the newest spans, and failures with their bucket and root cause as they are analyzed."),
    "store": ("store", "The store itself: its ClickHouse schema, copying it between backends."),
    "eval": ("evaluate", "Evaluate cases over runs: correctness (regex or Gemini judge), token/latency budgets, "
                         "agent topology, deterministic checks; pass rates, pass@k and pass^k."),
    "dataset": ("evaluate", "Regression datasets: recorded runs kept as eval cases in a versioned TOML file."),
}


def _typer_app(modules: list[str]) -> typer.Typer:
    """A Typer application with the commands these modules register."""
    app = typer.Typer(name="agent-debug", help=HELP, **_SETTINGS)
    for module in dict.fromkeys(modules):
        import_module(f"agent_debug.cli.{module}").register(app)
    return app


def __getattr__(name: str) -> Any:
    """`app`: the whole application as one Typer (what tests and docs inspect). Running the CLI does not build it
    (`root_command` builds only the command that runs)."""
    if name == "app":
        app = globals()["app"] = _typer_app([module for module, _ in COMMANDS.values()])
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Commands(TyperGroup):
    """The top-level group: lists COMMANDS by their summaries, and builds a command (with the others of its
    module) only when it is looked up to run or to show its own help."""

    def __init__(self) -> None:
        super().__init__(name="agent-debug", help=HELP, no_args_is_help=True, rich_markup_mode=None)
        self._built: set[str] = set()

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if cmd_name not in self.commands:
            module = entry[0]
            built = typer.main.get_command(_typer_app([module]))
            names = [name for name, (m, _) in COMMANDS.items() if m == module]
            if len(names) == 1 and not isinstance(built, TyperGroup):
                self.commands[cmd_name] = built
            else:
                assert isinstance(built, TyperGroup)
                self.commands.update({name: built.commands[name] for name in names})
        return self.commands[cmd_name]

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        """As typer's, with "did you mean" drawn from every command (not only those built)."""
        if args and args[0] not in COMMANDS:
            matches = get_close_matches(args[0], list(COMMANDS))
            if matches and not args[0].startswith("-"):
                ctx.fail(f"No such command {args[0]!r}. Did you mean {', '.join(repr(m) for m in matches)}?")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The summaries, without building every command."""
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [(name, make_default_short_help(summary, limit)) for name, (_, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def root_command() -> Command:
    """The `agent-debug` command as it runs (commands built on demand)."""
    return _Commands()


class Interrupted(BaseException):
    """Ctrl-C. A BaseException like KeyboardInterrupt (no `except Exception` swallows it), but not one: the
    command framework turns KeyboardInterrupt into a silent exit, and the user is owed a line saying why."""


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def one_line(message: str) -> str:
    """An error message as one line: messages quoting a file's content or a parser's report may hold newlines, and
    ones quoting a trace's data terminal controls (shown as escapes, never acted on)."""
    from agent_debug.cli.common import visible

    return visible(" ".join(message.split("\n")).strip())


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
    one_shot_process()  # `serve` and `tail`, which run on, say otherwise
    try:
        code = root_command().main(standalone_mode=False, prog_name="agent-debug")
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
    except OSError as exc:  # the file system refused something no command checks for itself: still one line
        sys.stderr.write(f"Error: {one_line(_os_error(exc))}\n")
        sys.exit(3)
    except Exception as exc:
        sqlite3 = sys.modules.get("sqlite3")  # not imported at start: a command that met SQLite has loaded it
        if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
            raise
        # damaged pages met outside the store's own checks
        sys.stderr.write(f"Error: the store could not be read: {one_line(str(exc))}\n")
        sys.exit(StoreError.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
