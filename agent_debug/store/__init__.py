"""The embedded store: SQLite (WAL), migrations, ingest, queries."""
