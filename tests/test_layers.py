"""The package's layers import one way, and no import forms a cycle.

    cli -> (eval, replay, report, serve, demo) -> analysis -> store -> formats -> (model, schema, errors, columns,
    gcpause)
    sdk -> model, schema;  the package itself (`agent_debug/__init__.py`) -> sdk, model, replay (`configure`), lazily

Every `import` in every module is read with `ast`, including imports inside functions (lazy ones run too, just
later); imports under `if TYPE_CHECKING:` are left out (they never run). A module that imports a submodule also
runs its packages' `__init__`, so those count as imported too. The SDK is what an agent imports: it must not
pull in the store, the analyses or the CLI, and nothing below the replay/eval tier may reach into it (replay and
the CLI hook into the SDK through `sdk.runtime.add_run_listener`, not the reverse).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parents[1] / "agent_debug"

# what each unit (a subpackage or a top-level module of agent_debug) may import, besides itself
_GROUND = {"errors", "model", "schema", "columns", "gcpause", "digest"}
_LOW = _GROUND | {"formats", "store", "analysis"}
_TIER = {"eval", "replay", "report", "serve", "demo"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "model": set(),
    "schema": {"model"},
    "columns": set(),
    "gcpause": set(),
    "digest": set(),  # the per-span digests made at ingest and read by diagnosis (issue 13): imports nothing
    "formats": {"errors", "model", "columns"},
    "store": _GROUND | {"formats"},
    "analysis": _GROUND | {"formats", "store"},
    **{unit: _LOW | _TIER | {"sdk", "root"} for unit in _TIER},
    "cli": _LOW | _TIER | {"sdk", "root"},
    "sdk": {"model", "schema"},
    # the public names, resolved lazily (PEP 562): the SDK's, and `configure` from replay.autopacket (the SDK's
    # configure with the packet writer hooked in)
    "root": {"sdk", "model", "schema", "replay"},
}

# allowed exceptions: (importer, imported) -> why. Keep this empty if you can.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _resolve(name: str) -> str | None:
    """The module an imported name is: itself, or the package or module that defines it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, lazy) for every import of the package in `module`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    top_level = {id(node) for node in tree.body}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for name in names:
            if name == "agent_debug" or name.startswith("agent_debug."):
                target = _resolve(name)
                if target is not None and target != module:
                    out.append((target, node.lineno, id(node) not in top_level))
    return out


def graph() -> nx.DiGraph:
    """Modules and what they import; a module also runs the `__init__` of every package above what it imports."""
    g = nx.DiGraph()
    for module in MODULES:
        g.add_node(module)
        own = {".".join(module.split(".")[:k]) for k in range(1, module.count(".") + 1)}
        for target, line, lazy in imports_of(module):
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                step = ".".join(parts[:k])
                if step in MODULES and step not in own and step != module and not g.has_edge(module, step):
                    g.add_edge(module, step, line=line, lazy=lazy, via=target)
    return g


def test_every_import_runs_down_the_layers() -> None:
    upward = []
    for a, b, data in graph().edges(data=True):
        ua, ub = _unit(a), _unit(b)
        if ua == ub or ub in ALLOWED[ua] or (a, b) in EXCEPTIONS:
            continue
        if ub == "root" and b == "agent_debug" and data["via"] != "agent_debug":
            continue  # the package's own __init__, run on the way to a submodule: checked below
        upward.append(f"{MODULES[a].relative_to(PKG.parent)}:{data['line']}: {a} imports {data['via']}"
                      + (" (lazily)" if data["lazy"] else "") + f": {ua} may not import {ub}")
    assert upward == []


def test_no_import_cycle() -> None:
    g = graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cycles == []
    units = nx.DiGraph((_unit(a), _unit(b)) for a, b in g.edges if _unit(a) != _unit(b))
    assert [sorted(c) for c in nx.strongly_connected_components(units) if len(c) > 1] == []


def test_the_package_init_imports_nothing_eagerly() -> None:
    """Every `import agent_debug.x` runs `agent_debug/__init__.py` first: it must import nothing at once (the SDK
    names are resolved on first use), or the CLI and the store would pay for the SDK."""
    assert [t for t, _, lazy in imports_of("agent_debug") if not lazy] == []


def test_the_walker_sees_lazy_and_upward_imports() -> None:
    """The checks above can fail: the walker finds a lazy import inside a function, and ALLOWED refuses the
    store importing the analyses or the SDK importing the store."""
    assert any(lazy for m in MODULES for _, _, lazy in imports_of(m))
    assert "analysis" not in ALLOWED["store"] and "store" not in ALLOWED["sdk"]
    assert "sdk" not in ALLOWED["analysis"]


def test_a_one_shot_process_freezes_what_a_paused_pass_leaves_and_a_server_does_not() -> None:
    """The CLI (one command, then exit) freezes what a whole-trace pass leaves alive when the collector resumes,
    so no later collection traverses it; otherwise (`serve`, a library user) nothing is frozen. Run in a child: a
    freeze is process-wide."""
    code = """
import gc
from agent_debug.gcpause import gc_paused, one_shot_process
gc.enable()
with gc_paused():
    kept = [[i] for i in range(1000)]
assert gc.isenabled() and gc.get_freeze_count() == 0, gc.get_freeze_count()
one_shot_process()
with gc_paused():
    with gc_paused():  # nested: only the outer one resumes the collector
        more = [[i] for i in range(1000)]
    assert not gc.isenabled()
assert gc.isenabled() and gc.get_freeze_count() >= 2000, gc.get_freeze_count()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
