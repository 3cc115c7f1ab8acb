"""The HTML report (`agent-debug report`) and the page the live view of `serve` reuses.

The page is a static HTML + plain-JS app (`static/`) that renders from one JSON document: the run list and,
per run, the spans with their tree, the critical path, hotspots, latency stacking, the message-flow graph and
the diagnosis (`why`). The report embeds that document inline; a server can hand the same page a document and
stream updates to it (`AgentDebugReport.render(doc)` / `.applyUpdate(update)`). Shape and hooks:
docs/report.md. Modules: `document` builds the document, `flow` the message-flow graph, `details` the
compressed per-span detail blocks, `page` the HTML file.
"""
