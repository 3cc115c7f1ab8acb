"""The command line: light --help, help text for every command, every command in the README."""

from __future__ import annotations

import subprocess
import sys

import typer.main

from conftest import ROOT, run_cli


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; sys.argv=['agent-debug','--help']\nfrom agent_debug.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('google.genai', 'networkx') if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_sdk_import_is_light() -> None:
    code = "import agent_debug, sys; print([m for m in ('typer', 'rich', 'networkx', 'google.genai') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _commands() -> list[tuple[str, object]]:
    from agent_debug.cli.main import app

    group = typer.main.get_command(app)
    out = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        out.append((name, cmd))
        for sub, subcmd in getattr(cmd, "commands", {}).items():
            out.append((f"{name} {sub}", subcmd))
    return out


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing_help = [n for n, c in _commands() if not (getattr(c, "help", None) or "").strip()]
    assert missing_help == []
    missing_doc = [n for n, _ in _commands() if f"agent-debug {n}" not in readme]
    assert missing_doc == []


def test_unknown_command_is_a_usage_error() -> None:
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr
