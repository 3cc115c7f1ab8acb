"""Moved: the column model is `agent_debug.columns` (below the store). Re-exported here until every importer
uses the new home."""

from agent_debug.columns import (  # noqa: F401
    COLUMNS,
    ENVELOPE_KEYS,
    TraceSpans,
    TraceSummary,
    columns_of,
    cost_value,
    cost_values,
    envelope_of,
    saturated,
    start_ns_of,
    summarize,
    text_of,
    token_columns,
    token_count,
    token_counts,
)
