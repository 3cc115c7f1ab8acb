"""How fast the CLI starts: `agent-debug --help`, a command's `--help`, `traces` and `tree` on a small store, each
against `python -c pass` measured in the same run (the machine is shared and noisy: ratios, medians of several
interleaved repeats).

Every sample is a fresh process of the installed `agent-debug` script (beside the interpreter; `python -m
agent_debug.cli.main` when there is none), so what is timed is interpreter start + imports + the command. The
reference is the same interpreter doing nothing. The script also lists the heavy modules each one imported
(`-X importtime`): the SDK, our pydantic models (agent_debug.schema, eval), networkx, google.genai; for
`agent-debug --help` pydantic itself too (typer loads pydantic to parse a command's options, so a command's own
`--help` may). Targets:

  - `agent-debug --help` <= 8x `python -c pass` (issue 13);
  - every command's `--help`, `traces` and `tree` on a small store import none of those.

Run:  .venv/bin/python scripts/bench_start.py [--repeat N]
The last line is always

    start_ratio help=H cmd_help=C traces=T tree=R (x python -c pass, medians) PASS|FAIL
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("agent_debug.sdk", "agent_debug.schema", "agent_debug.eval", "networkx", "google.genai")
TARGET = 8.0


def _time(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def _imported(argv: list[str], env: dict[str, str], heavy: tuple[str, ...]) -> list[str]:
    """The heavy modules a command imports (its `-X importtime` report)."""
    py = sys.executable
    cmd = [py, "-X", "importtime", *(argv[1:] if argv[0] == py else argv)]  # a script runs under python too
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    names = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    return sorted(h for h in heavy if h in names)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=15, help="samples of each (interleaved); the median counts")
    args = p.parse_args()
    py = sys.executable
    env = dict(os.environ, COLUMNS="120", NO_COLOR="1")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "traces.db")
        fixture = str(ROOT / "fixtures" / "faulty_trace.jsonl")
        subprocess.run([py, "-m", "agent_debug.cli.main", "ingest", fixture, "--db", db], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        script = Path(py).with_name("agent-debug")
        cli = [str(script)] if script.exists() else [py, "-m", "agent_debug.cli.main"]
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "agent-debug --help": [*cli, "--help"],
            "agent-debug tree --help": [*cli, "tree", "--help"],
            "agent-debug traces": [*cli, "traces", "--db", db],
            "agent-debug tree": [*cli, "tree", "--last", "--db", db],
        }
        for argv in cases.values():  # warm the file cache
            _time(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, argv in cases.items():
                samples[name].append(_time(argv, env))
        base = statistics.median(samples["python -c pass"])
        print(f"{'command':28} {'median ms':>10} {'min ms':>8} {'x pass':>7}  heavy imports")
        ratios: dict[str, float] = {}
        heavy_seen: dict[str, list[str]] = {}
        for name, argv in cases.items():
            med = statistics.median(samples[name])
            ratios[name] = med / base
            heavy = (*HEAVY, "pydantic") if name == "agent-debug --help" else HEAVY
            heavy_seen[name] = _imported(argv, env, heavy) if name != "python -c pass" else []
            print(f"{name:28} {med * 1000:10.1f} {min(samples[name]) * 1000:8.1f} {ratios[name]:7.1f}  "
                  f"{', '.join(heavy_seen[name]) or '-'}")
        every_help = subprocess.run(
            [py, "-c", _EVERY_HELP], env=env, capture_output=True, text=True, check=False).stdout.strip()
        print(f"every command's --help, heavy imports: {every_help or 'none'}")
    ok = ratios["agent-debug --help"] <= TARGET and not any(heavy_seen.values()) and not every_help
    print(f"target: agent-debug --help <= {TARGET:g}x python -c pass: {ratios['agent-debug --help']:.1f}x; no "
          f"heavy import in --help, traces, tree: {'yes' if not any(heavy_seen.values()) and not every_help else 'no'}")
    print(f"start_ratio help={ratios['agent-debug --help']:.2f} cmd_help={ratios['agent-debug tree --help']:.2f} "
          f"traces={ratios['agent-debug traces']:.2f} tree={ratios['agent-debug tree']:.2f} (x python -c pass, "
          f"medians) {'PASS' if ok else 'FAIL'}")


# every command's --help in one process each would take a while: run them in one process, fresh imports checked
# per command by the modules that appear (`--help` of every command and group, then which heavy modules loaded)
_EVERY_HELP = f"""
import subprocess, sys
import typer.main
from agent_debug.cli.main import app
group = typer.main.get_command(app)
names = []
for name, cmd in group.commands.items():
    names.append([name])
    for sub in getattr(cmd, "commands", {{}}):
        names.append([name, sub])
bad = []
for argv in names:
    code = ("import sys; sys.argv=['agent-debug', *%r, '--help']\\nfrom agent_debug.cli.main import main\\n"
            "try:\\n    main()\\nexcept SystemExit:\\n    pass\\n"
            "print([m for m in {HEAVY!r} if m in sys.modules])") % (argv,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip().splitlines()
    if out and out[-1] != "[]":
        bad.append(" ".join(argv) + ": " + out[-1])
print("; ".join(bad))
"""


if __name__ == "__main__":
    main()
