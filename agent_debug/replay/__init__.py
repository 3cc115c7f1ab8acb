"""Replay packets, matchers, the replay engine, counterfactuals."""
