"""`agent-debug packet` and `agent-debug replay`: make the incident artifact, and reproduce it offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agent_debug.cli.common import (
    DbOption,
    FormatOption,
    FromOption,
    JsonOption,
    db_path,
    print_result,
    stdout_console,
    warn,
)


def packet(
    trace: Annotated[str, typer.Argument(help="Trace id or a unique prefix of one.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Packet file (default packets/YYYY-MM-DD/<trace_id>.json).")] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Packets folder for the default path.")] = Path("packets"),
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """Write a replay packet for one run: small, redacted, mode 0600."""
    from agent_debug.analysis.source import open_source
    from agent_debug.replay.packet import build_packet, write_packet

    src = open_source(db_path(db), from_, format)
    warn(src.notices)
    pk = build_packet(src, trace)
    path = write_packet(pk, directory, output)
    info = {"packet": str(path), "trace_id": pk["trace_id"], "bytes": path.stat().st_size,
            "calls": len(pk["calls"]), "bucket": (pk.get("failure") or {}).get("bucket"),
            "entrypoint": pk.get("entrypoint"), "redactions": pk["sanitized"]["redactions"]}
    if json:
        print_result(info, src.notices)
    else:
        stdout_console().print(f"wrote {path} ({info['bytes']} bytes, {info['calls']} recorded calls, "
                               f"bucket {info['bucket']}, entrypoint {info['entrypoint'] or 'none'})", highlight=False)


def replay(
    packet: Annotated[Path, typer.Argument(help="A packet file, or a folder of packets (with --check).")],
    mode: Annotated[str, typer.Option("--mode", help="strict: any changed request is an error; lenient: it goes to the fallback.")] = "strict",
    fallback: Annotated[str, typer.Option("--fallback", help="For calls with no matching recording: error, live (call the wrapped function, e.g. the demo's fake model; network stays blocked) or recorded.")] = "error",
    inject: Annotated[list[str] | None, typer.Option("--inject", help="Counterfactual: STEP=VALUE replaces one recorded response; STEP is a hop index or agent:name#n, VALUE is JSON or @file.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Replay every packet in a folder; exit 1 if any no longer reproduces.")] = False,
    json: JsonOption = False,
) -> None:
    """Re-run a packet's failing path against deterministic stubs (no network, no API spend) and say whether
    it reproduced: same output, same path, same failure bucket."""
    from agent_debug.replay.engine import packets_in, replay_packet

    paths = packets_in(packet)
    if len(paths) > 1 and not check:
        raise typer.BadParameter("a folder of packets needs --check")
    if not paths:
        from agent_debug.errors import UsageError

        raise UsageError(f"no packets in {packet}")
    results = [replay_packet(p, mode=mode, fallback=fallback, inject=inject) for p in paths]
    counterfactual = bool(inject)
    notices = [n for r in results for n in r.notices]
    warn(notices)
    if json:
        print_result(results[0].as_dict() if not check else
                     {"packets": [r.as_dict() for r in results], "reproduced": sum(r.reproduced for r in results),
                      "total": len(results), "passed": all(r.reproduced for r in results)}, notices)
    else:
        for r in results:
            _render(r, counterfactual, brief=check)
    if check and not all(r.reproduced for r in results):
        raise typer.Exit(1)


def _render(r: Any, counterfactual: bool, brief: bool) -> None:
    out = stdout_console()
    if brief:
        mark = "[green]reproduced[/]" if r.reproduced else "[red]CHANGED[/]"
        out.print(f"{mark}  {r.packet}  {r.failure_bucket or r.outcome.get('status')}  ({r.seconds * 1000:.0f} ms)",
                  highlight=False)
        for d in r.diff:
            out.print(f"    {d['field']}: recorded {d['recorded']!r} -> replayed {d['replayed']!r}", highlight=False,
                      markup=False)
        return
    lines = [f"trace_id: {r.trace_id}", f"workflow: {r.workflow}", f"selected_model: {r.selected_model}",
             f"replayed_steps: {' -> '.join(r.replayed_steps)}", f"failure_bucket: {r.failure_bucket or 'none'}",
             f"next_action: {r.next_action or '-'}"]
    for line in lines:
        out.print(line, highlight=False, markup=False)
    if counterfactual:
        for inj in r.injected:
            out.print(f"injected at hop {inj['hop']} ({inj['agent']}:{inj['name']})", highlight=False, markup=False)
        o = r.original
        out.print(f"outcome: {o.get('status')} -> {r.outcome.get('status')}; bucket: {o.get('bucket')} -> "
                  f"{r.failure_bucket}", highlight=False, markup=False)
    if r.reproduced:
        out.print("reproduced: yes (same output, path and failure bucket)"
                  + ("" if r.executed else " [recorded steps walked: no entrypoint]"), style="green", highlight=False)
    else:
        out.print("changed by the injection:" if counterfactual else "reproduced: no",
                  style="red" if not counterfactual else "yellow")
        for d in r.diff:
            out.print(f"  {d['field']}: recorded {d['recorded']!r}", highlight=False, markup=False)
            out.print(f"  {' ' * len(d['field'])}  replayed {d['replayed']!r}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("packet")(packet)
    app.command("replay")(replay)
