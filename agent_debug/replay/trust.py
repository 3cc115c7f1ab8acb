"""Which recorded entrypoints replay and eval may run.

A packet's `entrypoint` and a run's `run.entrypoint` attribute are data: whoever wrote the file chose them, and
`replay` (and `eval` re-running recorded runs) calls them with an input from the same file. `os:system` with the
input `"curl ... | sh"` is a well-formed `module:function`. So an entrypoint read from a packet or a trace runs
only when its module is the code of the project being debugged:

- its top-level package is found (located, not imported: nothing of it runs before the check) under the
  current directory, an entry of `PYTHONPATH`, or a directory listed in `AGENT_DEBUG_TRUSTED_PATHS`
  (separated like `PATH`);
- and not in the Python installation (the standard library, built-in and frozen modules, site-packages, even
  a virtual environment inside the project), unless a directory of `AGENT_DEBUG_TRUSTED_PATHS` holds it (how a
  project installed into site-packages is trusted).

The demo's workflow is trusted by name. An entrypoint the user wrote (an eval case file) is their own choice and
is not checked.
"""

from __future__ import annotations

import importlib.util
import os
import site
import sys
import sysconfig
from pathlib import Path

TRUSTED_PATHS_ENV = "AGENT_DEBUG_TRUSTED_PATHS"
# the demo's recorded workflow (agent_debug.demo.system.ENTRYPOINT; a test keeps the two equal)
BUILT_IN = frozenset({"agent_debug.demo.system:run_workflow"})
REMEDY = (f"run from the project's directory, put it on PYTHONPATH, or list it in {TRUSTED_PATHS_ENV} to trust it")


def _paths(value: str | None) -> list[Path]:
    return [Path(p).resolve() for p in (value or "").split(os.pathsep) if p.strip()]


def _installation() -> list[Path]:
    """Where Python and installed packages live."""
    paths = sysconfig.get_paths()
    found = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(key)}
    try:
        found.update(site.getsitepackages())
    except AttributeError:  # an old virtualenv's site module
        pass
    found.add(site.getusersitepackages())
    return [Path(p).resolve() for p in found]


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(r) for r in roots)


def refusal(entrypoint: str) -> str | None:
    """Why the recorded `module:function` must not run here, or None when it may (or when its module is not
    found at all: importing it then fails with its own error)."""
    if entrypoint in BUILT_IN:
        return None
    top = entrypoint.partition(":")[0].split(".")[0]
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return f"module {top!r} is part of Python's standard library, not this project's code"
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: located by the path finders, not executed
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    where = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
    if not where or spec.origin in ("built-in", "frozen"):
        return f"module {top!r} is not a file of this project ({spec.origin or 'no location'})"
    explicit = _paths(os.environ.get(TRUSTED_PATHS_ENV))
    roots = [Path.cwd().resolve(), *_paths(os.environ.get("PYTHONPATH")), *explicit]
    installed = _installation()
    for location in where:
        path = Path(location).resolve()
        if _within(path, explicit):
            continue
        if _within(path, installed):
            return f"module {top!r} is installed in the Python environment ({path}), not this project's code"
        if not _within(path, roots):
            return f"module {top!r} is at {path}, outside the current directory and PYTHONPATH"
    return None
