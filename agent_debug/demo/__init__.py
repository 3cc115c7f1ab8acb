"""The demo multi-agent system (fake model, fake tools), instrumented only through the public SDK."""
