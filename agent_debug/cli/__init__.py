"""The `agent-debug` command line: the only place that prints, and that imports typer and rich."""
