"""pytest plugin: a folder of replay packets becomes parametrized regression tests.

Installed with agent-debug (entry point `pytest11`); inert unless a test asks for the `agent_debug_packet`
fixture. Packets come from `--agent-debug-packets DIR` (or the ini option `agent_debug_packets`, default
`packets`), one test per packet:

    def test_packet_reproduces(agent_debug_packet):
        result = agent_debug_packet.replay()
        assert result.reproduced, result.diff
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class PacketCase:
    """One packet, ready to replay."""

    path: Path

    def replay(self, **kwargs: Any) -> Any:
        from agent_debug.replay.engine import replay_packet

        return replay_packet(self.path, **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agent-debug")
    group.addoption("--agent-debug-packets", action="store", default=None,
                    help="folder of replay packets to turn into tests (default: ini agent_debug_packets or packets)")
    parser.addini("agent_debug_packets", "folder of replay packets for the agent_debug_packet fixture",
                  default="packets")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "agent_debug_packet" not in metafunc.fixturenames:
        return
    folder = metafunc.config.getoption("--agent-debug-packets") or metafunc.config.getini("agent_debug_packets")
    root = Path(folder)
    if not root.is_absolute():
        root = Path(metafunc.config.rootpath) / root
    paths = sorted(root.rglob("*.json")) if root.is_dir() else []
    if not paths:
        metafunc.parametrize("agent_debug_packet", [pytest.param(None, marks=pytest.mark.skip(
            reason=f"no replay packets in {root}"))], ids=["no-packets"])
        return
    metafunc.parametrize("agent_debug_packet", [PacketCase(p) for p in paths],
                         ids=[str(p.relative_to(root)) for p in paths])
