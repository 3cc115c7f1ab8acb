"""Foreign-format importers: how the readers recognise a document written by another tool and convert it.

An importer is a module-level object with:

- `name`: the value `--format` accepts and `source.format` records;
- `sniff(obj) -> bool`: does this parsed JSON value (a whole `.json` document, or one line of a `.jsonl` file)
  look like this format? Must be cheap and must never raise;
- `convert(objs, source_file) -> Iterator[dict]`: turn every object of this format found in one file into
  records of our format (spec version 1), keeping the source's trace ids and original attributes.

Importers are loaded lazily: reading our own format never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Protocol


class NotThisFormat(ValueError):
    """An importer was given (under `--format`) a file with nothing of its format in it."""


class Importer(Protocol):
    name: str

    def sniff(self, obj: Any) -> bool: ...

    def convert(self, objs: list[Any], source_file: str) -> Iterator[dict[str, Any]]: ...


# module path, attribute; order matters: the first importer whose sniff() says yes wins.
_IMPORTERS: tuple[tuple[str, str], ...] = (
    ("agent_debug.formats.otlp", "IMPORTER"),
    ("agent_debug.formats.openinference", "IMPORTER"),
    ("agent_debug.formats.langfuse", "IMPORTER"),
    ("agent_debug.formats.langsmith", "IMPORTER"),
    ("agent_debug.formats.transcript", "IMPORTER"),
)

_loaded: list[Importer] | None = None


def importers() -> list[Importer]:
    """Every importer that is installed, in sniffing order."""
    global _loaded
    if _loaded is None:
        found: list[Importer] = []
        for module, attr in _IMPORTERS:
            try:
                found.append(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError):
                continue
        _loaded = found
    return _loaded


def format_names() -> list[str]:
    return ["agent-debug", *(imp.name for imp in importers())]


def by_name(name: str) -> Importer | None:
    for imp in importers():
        if imp.name == name:
            return imp
    return None


def sniff(obj: Any) -> Importer | None:
    for imp in importers():
        try:
            if imp.sniff(obj):
                return imp
        except Exception:  # a sniffer must never break reading
            continue
    return None
