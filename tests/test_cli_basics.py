"""The command line: light --help, help text for every command, every command in the README."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import orjson
import typer.main

from conftest import ROOT, run_cli

# what a command that does not need them must not import (a fast start: issue 13; scripts/bench_start.py times it)
HEAVY = ("google.genai", "networkx", "agent_debug.sdk", "agent_debug.schema", "agent_debug.eval")


def _imported_by(*argv: str, extra: str = "") -> list[str]:
    """The modules a fresh process has imported after running `agent-debug ARGV` (and `extra` code before)."""
    code = (f"import sys; sys.argv=['agent-debug', *{list(argv)!r}]\n{extra}\nfrom agent_debug.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('MODULES', sorted(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "120"})
    line = next((x for x in out.stdout.splitlines() if x.startswith("MODULES ")), None)
    assert line is not None, out.stdout + out.stderr
    return list(ast.literal_eval(line.removeprefix("MODULES ")))


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith(HEAVY))


def test_help_imports_no_command_module_and_nothing_heavy() -> None:
    """`agent-debug --help` lists the commands from the registry (`cli.main.COMMANDS`) without loading their
    modules; pydantic is not loaded at all."""
    modules = _imported_by("--help")
    assert _heavy(modules) == []
    assert [m for m in modules if m.startswith("agent_debug.cli.") and m != "agent_debug.cli.main"] == []
    assert not [m for m in modules if m == "pydantic" or m.startswith("pydantic.")]


def test_every_command_help_and_traces_and_tree_import_nothing_heavy(tmp_path: Path) -> None:
    """Each command's --help, and `traces` and `tree` on a small store, load only their own command module and
    neither the SDK nor our pydantic models nor networkx (typer itself may load pydantic to parse options)."""
    db = tmp_path / "t.db"
    assert run_cli("ingest", str(ROOT / "fixtures" / "faulty_trace.jsonl"), "--db", str(db)).returncode == 0
    from agent_debug.cli.main import COMMANDS

    runs = [[*name.split(), "--help"] for name in COMMANDS] + [["eval", "calibrate", "--help"],
                                                                ["dataset", "add", "--help"]]
    runs += [["traces", "--db", str(db)], ["tree", "--last", "--db", str(db)], ["traces", "--json", "--db", str(db)]]
    for argv in runs:
        modules = _imported_by(*argv)
        assert _heavy(modules) == [], argv
        if "--help" in argv:  # help is plain text: no rich
            assert not [m for m in modules if m == "rich" or m.startswith("rich.")], argv
        own = COMMANDS[argv[0]][0]
        others = {m for m, _ in COMMANDS.values()} - {own}
        assert [m for m in modules if m.removeprefix("agent_debug.cli.") in others] == [], argv


def test_the_registry_lists_every_command_with_its_own_help() -> None:
    """`--help` shows `cli.main.COMMANDS`' summaries without building the commands: they must be the commands'
    own help, in the order the whole application registers them, and the page the same at any width."""
    import typer.main

    from agent_debug.cli.main import COMMANDS, app, root_command

    full = typer.main.get_command(app)
    assert list(full.commands) == list(COMMANDS)  # type: ignore[attr-defined]
    for name, cmd in full.commands.items():  # type: ignore[attr-defined]
        assert COMMANDS[name][1] == cmd.get_short_help_str(10**6), name
    for width in (60, 120):
        pages = []
        for command in (full, root_command()):
            with command.make_context("agent-debug", ["--help"], resilient_parsing=True) as ctx:
                formatter = ctx.make_formatter()
                formatter.width = width
                command.format_help(ctx, formatter)
                pages.append(formatter.getvalue())
        assert pages[0] == pages[1]


def test_sdk_import_is_light() -> None:
    code = ("import agent_debug, sys; print([m for m in ('typer', 'rich', 'networkx', 'google.genai', 'pydantic', "
            "'agent_debug.sdk') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_typo_still_gets_a_suggestion() -> None:
    r = run_cli("tre")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0].startswith("Error: No such command 'tre'. Did you mean 'tree'")


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


def test_every_file_the_docs_link_to_exists() -> None:
    """Images and relative links in the README and docs/ point at files in the repository."""
    import re

    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {target}")
    assert missing == []


def test_unknown_command_is_a_usage_error() -> None:
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_a_packet_of_a_run_that_did_not_fail_says_it_has_no_bucket(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = run_cli("packet", "--from", str(ROOT / "fixtures" / "healthy_trace.jsonl"), "--output", str(out),
                _first_trace(ROOT / "fixtures" / "healthy_trace.jsonl"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bucket none," in r.stdout and "None" not in r.stdout
    assert out.is_file()


def _first_trace(path: Path) -> str:
    return str(orjson.loads(path.read_text().splitlines()[0])["trace_id"])


def test_why_text_says_how_many_suspects_it_did_not_show() -> None:
    from rich.text import Text

    from agent_debug.cli.views import _suspect_lines

    def suspect(n: int) -> dict[str, object]:
        return {"score": 0.9 - n / 100, "agent_name": "a", "name": f"call{n}", "span_id": f"s{n}", "signal": "x",
                "bucket": "unclassified", "evidence": []}

    body = Text()
    _suspect_lines(body, {"suspects": [suspect(n) for n in range(11)], "method": "span signals"})
    assert "call7 " in body.plain and "call8 " not in body.plain
    assert "... and 3 more suspects (--json lists them all)" in body.plain
    body = Text()
    _suspect_lines(body, {"suspects": [suspect(n) for n in range(8)], "method": "span signals"})
    assert "more suspects" not in body.plain
