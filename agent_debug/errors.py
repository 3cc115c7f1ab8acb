"""Domain exceptions. The CLI turns each into `Error: <what> <which>` and a distinct exit code."""

from __future__ import annotations

import errno


class AgentDebugError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 2


class UsageError(AgentDebugError):
    """The arguments do not make sense (a missing path, an unknown format, a bad option value)."""

    exit_code = 2


class NothingReadable(AgentDebugError):
    """None of the given inputs held a single readable record."""

    exit_code = 3


class TraceNotFound(AgentDebugError):
    """No trace matches the id or prefix given."""

    exit_code = 4


class AmbiguousTrace(AgentDebugError):
    """A trace-id prefix matches more than one trace."""

    exit_code = 4


class StoreError(AgentDebugError):
    """The store could not be opened or is of a newer schema than this version understands."""

    exit_code = 5


class PacketError(AgentDebugError):
    """A replay packet is missing, malformed, of an unknown version, or holds nothing to replay."""

    exit_code = 6


class ReplayMiss(AgentDebugError):
    """Strict replay met a call it has no recording for."""

    exit_code = 7


class OutputError(AgentDebugError):
    """A file the command was asked to write (packet, export, JUnit report, dataset) could not be written."""

    exit_code = 8

    @classmethod
    def from_os(cls, path: object, exc: OSError) -> OutputError:
        """`cannot write PATH: <reason>` from the OSError that stopped the write (permission, missing, full)."""
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir or open met a file where a folder must be
            return cls(f"cannot write {path}: a part of the path is a file, not a folder")
        return cls(f"cannot write {path}: {exc.strerror or type(exc).__name__}")


class CaseFileError(AgentDebugError):
    """An eval case file is not valid TOML or does not match the case schema."""

    exit_code = 2


class CouldNotRun(AgentDebugError):
    """An evaluation could not run at all (for example the judge is needed but no API key is set)."""

    exit_code = 3
