"""The runtime SDK: what an agent imports. See `agent_debug` for the public names."""
