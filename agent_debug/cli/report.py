"""`agent-debug report`: one self-contained HTML file to look at a run (waterfall, message flow, why)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent_debug.cli.common import (
    DbOption,
    FormatOption,
    FromOption,
    JsonOption,
    RulesOption,
    db_path,
    print_json,
    warn,
)
from agent_debug.model import file_stem

DEFAULT_LIMIT = 50


def default_output(trace_ids: list[str]) -> Path:
    name = f"agent-debug-report-{file_stem(trace_ids[0][:12])}"
    if len(trace_ids) > 1:
        name += f"-and-{len(trace_ids) - 1}-more"
    return Path(name + ".html")


def report(
    traces: Annotated[list[str] | None, typer.Argument(
        help="Trace ids or unique prefixes (default: the newest runs of the source, see --limit).",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="The HTML file to write (default agent-debug-report-<id>.html).",
        show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="With no TRACE named: how many of the newest runs.")]
    = DEFAULT_LIMIT,
    rules: RulesOption = None,
    db: DbOption = None,
    from_: FromOption = None,
    format: FormatOption = None,
    json: JsonOption = False,
) -> None:
    """Write one self-contained HTML file (opens from disk, offline): the waterfall with the critical path,
    errors and latency stacking, the message flow between agents, and why the run failed; with several runs,
    a run list to switch between them."""
    from agent_debug.analysis.buckets import load_rules
    from agent_debug.analysis.source import open_source
    from agent_debug.errors import NothingReadable, OutputError
    from agent_debug.report.document import build_document
    from agent_debug.report.page import write_page

    rules_ = load_rules(rules)
    src = open_source(db_path(db), from_, format)
    notices: list[str] = []
    if traces:
        ids = list(dict.fromkeys(src.resolve(t) for t in traces))
    else:
        runs = sorted(src.list(), key=lambda s: -s.start_ns)
        if not runs:
            why = "; ".join(getattr(src, "notices", []))
            raise NothingReadable("no runs to report: the source holds no trace" + (f" ({why})" if why else ""))
        if len(runs) > limit:
            notices.append(f"{len(runs) - limit} older runs left out (name them, or raise --limit)")
        ids = [r.trace_id for r in runs[:limit]]
    result = build_document(src, ids, rules_)
    result.doc["notices"] = result.doc["notices"] + notices
    result.notices.extend(notices)
    path = output or default_output(ids)
    try:
        size = write_page(result.doc, path)
    except OSError as exc:
        raise OutputError.from_os(path, exc) from None
    warn(result.notices)
    if json:
        print_json({"output": str(path), "bytes": size, **result.summary()})
        return
    spans = sum(r["span_count"] for r in result.doc["runs"])
    typer.echo(f"wrote {path} ({len(ids)} run{'s' if len(ids) > 1 else ''}, {spans} spans, "
               f"{size / 1e6:.1f} MB): open it in a browser")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
