"""`agent-debug packet` and `agent-debug replay`: make the incident artifact, and reproduce it offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent_debug.cli.common import DbOption, FormatOption, FromOption, JsonOption, inputs, show

if TYPE_CHECKING:
    from rich.console import Console


def packet(
    trace: Annotated[str, typer.Argument(help="Trace id or a unique prefix of one.")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Packet file (default packets/YYYY-MM-DD/<trace_id>.json).")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Packets folder for the default path.")] = Path("packets"),
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """Write a replay packet for one run: small, redacted, mode 0600."""
    from agent_debug.cli.views import render_packet
    from agent_debug.replay.commands import write_packet_of

    info = write_packet_of(inputs(db, from_, format), trace, directory, output)
    show(info, json, lambda out: render_packet(out, info))


def replay(
    packet: Annotated[Path, typer.Argument(help="A packet file, or a folder of packets (with --check).")],
    mode: Annotated[str, typer.Option(
        "--mode", help="strict: any changed request is an error; lenient: it goes to the fallback.")] = "strict",
    fallback: Annotated[str, typer.Option(
        "--fallback", help="For calls with no matching recording: error, live (call the wrapped function, e.g. the "
                           "demo's fake model; network stays blocked) or recorded.")] = "error",
    inject: Annotated[list[str] | None, typer.Option(
        "--inject", help="Counterfactual: STEP=VALUE replaces one recorded response; STEP is a hop index or "
                         "agent:name#n, VALUE is JSON or @file.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Replay every packet in a folder; exit 1 if any no longer reproduces.")] = False,
    json: JsonOption = False,
) -> None:
    """Re-run a packet's failing path against deterministic stubs (no network, no API spend) and say whether
    it reproduced: same output, same path, same failure bucket."""
    from agent_debug.cli.views import render_replay
    from agent_debug.replay.commands import replay_of

    run = replay_of(packet, mode=mode, fallback=fallback, inject=inject, check=check)

    def render(out: Console) -> None:
        for r in run.results:
            render_replay(out, r, counterfactual=run.counterfactual, brief=check)

    show(run, json, render)
    if check and not run.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("packet")(packet)
    app.command("replay")(replay)
