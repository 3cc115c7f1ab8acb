"""Analysis over traces: trees, critical paths, hotspots, buckets, clusters, sessions."""
