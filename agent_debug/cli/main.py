"""The `agent-debug` application: every command is registered here, one module per command group."""

from __future__ import annotations

import sys

import typer

from agent_debug.errors import AgentDebugError

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
    for name in ("store", "analysis", "interop", "diagnose", "replay", "evaluate", "serve"):
        try:
            module = __import__(f"agent_debug.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"agent_debug.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    try:
        app()
    except AgentDebugError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
