"""Live debugging: `agent-debug serve` (an OTLP/HTTP endpoint and watched trace directories feeding debug
sessions) and `agent-debug tail`.

Data flows as everywhere else in the package: sources (OTLP requests, watched files) are ingested into the store
through the store's own ingest path; a follower reads what the store gained and announces it; sessions track
each run's state and analyze it when it ends. Only `app` needs the `serve` extra (starlette, uvicorn); the rest
is plain Python, so `tail` works without it.
"""
