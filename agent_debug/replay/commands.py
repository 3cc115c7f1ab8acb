"""The library call behind `agent-debug packet` and `agent-debug replay`: plain arguments in, one typed result
out (rendered by the CLI, or printed as JSON from `as_dict()`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_debug.analysis.commands import Inputs
from agent_debug.errors import UsageError
from agent_debug.replay.engine import ReplayResult, packets_in, replay_packet
from agent_debug.replay.packet import write_packet
from agent_debug.replay.skeleton import build_packet


@dataclass
class PacketWritten:
    """A replay packet written for one run."""

    packet: str  # its path
    trace_id: str
    bytes: int
    calls: int  # recorded model and tool calls
    bucket: str | None
    entrypoint: str | None
    redactions: int
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "notices"}


def write_packet_of(inputs: Inputs, trace: str, directory: Path = Path("packets"),
                    output: Path | None = None) -> PacketWritten:
    """Build, redact and write the packet of one run (default path: DIRECTORY/YYYY-MM-DD/<trace_id>.json)."""
    src = inputs.open()
    pk = build_packet(src, trace)
    path = write_packet(pk, directory, output)
    return PacketWritten(str(path), pk["trace_id"], path.stat().st_size, len(pk["calls"]),
                         (pk.get("failure") or {}).get("bucket"), pk.get("entrypoint"),
                         pk["sanitized"]["redactions"], list(src.notices))


@dataclass
class ReplayRun:
    """Packets replayed: one (its `as_dict` is that replay's), or a folder checked (`check`)."""

    results: list[ReplayResult]
    check: bool = False
    counterfactual: bool = False  # responses were injected

    @property
    def passed(self) -> bool:
        return all(r.reproduced for r in self.results)

    @property
    def notices(self) -> list[str]:
        return [n for r in self.results for n in r.notices]

    def as_dict(self) -> dict[str, Any]:
        if not self.check:
            return self.results[0].as_dict()
        return {"packets": [r.as_dict() for r in self.results], "reproduced": sum(r.reproduced for r in self.results),
                "total": len(self.results), "passed": self.passed}


def replay_of(packet: Path, *, mode: str = "strict", fallback: str = "error", inject: list[str] | None = None,
              check: bool = False) -> ReplayRun:
    """Replay a packet (or, with `check`, every packet in a folder) against deterministic stubs."""
    paths = packets_in(packet)
    if len(paths) > 1 and not check:
        raise UsageError("Invalid value: a folder of packets needs --check")
    if not paths:
        raise UsageError(f"no packets in {packet}")
    return ReplayRun([replay_packet(p, mode=mode, fallback=fallback, inject=inject) for p in paths], check,
                     bool(inject))
