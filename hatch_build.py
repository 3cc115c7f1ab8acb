"""Build hook: compile the span's hot path (`agent_debug/sdk/_cspan.c`) into the package.

The SDK works without it: when there is no C compiler, or `AGENT_DEBUG_NO_COMPILE=1` is set, the build warns
and the package is pure Python (`agent_debug.sdk.tracer` then runs the same hot path in Python, about 1.5x slower
per span). An editable install builds the module in place, next to its source; a wheel carries it and is tagged
for the interpreter and platform it was built on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MODULE = "agent_debug.sdk._cspan"
SOURCE = "agent_debug/sdk/_cspan.c"


def compile_in_place(root: Path) -> Path:
    """Compile the module next to its source with the interpreter's own compiler settings (setuptools'
    build_ext, which knows them on every platform); returns the module's path. Raises when it cannot."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    dist = Distribution({"name": "agent-debug", "ext_modules": [Extension(MODULE, [SOURCE])]})
    cmd = build_ext(dist)
    cmd.inplace = True
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        cmd.build_temp = tmp
        os.chdir(root)
        try:
            cmd.ensure_finalized()
            cmd.run()
        finally:
            os.chdir(here)
    return root / cmd.get_ext_filename(MODULE)


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("AGENT_DEBUG_NO_COMPILE"):
            self.app.display_warning("AGENT_DEBUG_NO_COMPILE is set: the span's hot path stays pure Python")
            return
        root = Path(self.root)
        try:
            built = compile_in_place(root)
        except Exception as exc:  # no compiler, no headers, no setuptools: the SDK runs its Python path
            self.app.display_warning(
                f"could not compile {SOURCE} ({type(exc).__name__}: {exc}); the span's hot path stays pure Python")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from the source tree
            build_data["force_include"][str(built)] = built.relative_to(root).as_posix()
