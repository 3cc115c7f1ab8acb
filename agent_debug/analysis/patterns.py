"""Failure patterns: which modalities, agents, models, tools and routes failing runs have in common.

For every value of every dimension (a run may have several: the agents it involved, the tools it called), the
runs are split into those with the value and the rest, and the 2x2 table (with/without x failed/not) gives:

- the failure rate with the value, with a 95% Wilson score interval (sound at small counts and at 0% / 100%);
- the failure rate of the rest, and the odds ratio (with 0.5 added to every cell when one is empty);
- Fisher's exact test of independence (two-sided, from the hypergeometric distribution; no scipy needed: the
  tables are small), and the p-value adjusted across every row tested (Holm's step-down method, which controls
  the family-wise error rate with no assumption about how the rows depend on each other).

Rows come strongest association first (adjusted p, then p, then how far the rate is from the rest). Values seen
in fewer than `min_runs` runs, or in every run, are left out: nothing can be said about them; of two values that
split the runs in two (image / text), only the more failing one is a row (the other is the same test).

Dimensions, read from the spans (the spec's field first, then the conventions importers map to):
- `modality`: the record field `modality` (or attribute `modality`) of any span; a run is `text` unless a span
  says otherwise, `multimodal` when spans say two or more of image / audio / multimodal;
- `agent`: the agents that did a step (the transcript importer's synthetic root agent left out);
- `model`: `route.model`, `gen_ai.request.model`, `llm.model_name` on model calls;
- `tool`: `tool.name` of tool calls and retrievals, else their span name;
- `route`: `route.lane` of routing decisions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from agent_debug.analysis.source import Source
from agent_debug.columns import TraceSpans
from agent_debug.store.query import TraceFilter

DIMENSIONS: tuple[str, ...] = ("modality", "agent", "model", "tool", "route")
ALPHA = 0.05
_MODEL_KEYS = ("route.model", "gen_ai.request.model", "llm.model_name")


# -- statistics ----------------------------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test for the table [[a, b], [c, d]]: the probability, under
    independence with the margins fixed, of a table at most as likely as the one observed."""
    row1, col1, n = a + b, a + c, a + b + c + d
    lo, hi = max(0, col1 - (n - row1)), min(row1, col1)

    def logp(x: int) -> float:
        return _log_choose(col1, x) + _log_choose(n - col1, row1 - x) - _log_choose(n, row1)

    observed = logp(a)
    total = sum(math.exp(lp) for x in range(lo, hi + 1) if (lp := logp(x)) <= observed + 1e-7)
    return min(1.0, total)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [0.0] * len(pvalues)
    running = 0.0
    m = len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


# -- what a run has ---------------------------------------------------------------------------------------------------


def run_values(ts: TraceSpans) -> dict[str, set[str]]:
    """The values of every dimension one run has (records loaded)."""
    out: dict[str, set[str]] = {d: set() for d in DIMENSIONS}
    media: set[str] = set()
    for i in range(len(ts)):
        rec = ts.record(i) if ts.records is not None else {}
        attrs = ts.attributes(i)
        mod = rec.get("modality") or attrs.get("modality")
        if isinstance(mod, str) and mod and mod != "text":
            media.add(mod)
        if ts.agent_name[i] != "transcript" or ts.parent_id[i] is not None:
            out["agent"].add(ts.agent_name[i])
        if ts.event_type[i] == "LLM_CALL":
            for key in _MODEL_KEYS:
                if isinstance(attrs.get(key), str):
                    out["model"].add(attrs[key])
                    break
        if ts.event_type[i] in ("TOOL_CALL", "RETRIEVAL"):
            tool = attrs.get("tool.name")
            out["tool"].add(tool if isinstance(tool, str) else ts.name[i])
        lane = attrs.get("route.lane")
        if isinstance(lane, str):
            out["route"].add(lane)
    out["modality"] = {"multimodal" if len(media) > 1 else next(iter(media))} if media else {"text"}
    return out


# -- the report -------------------------------------------------------------------------------------------------------


@dataclass
class PatternRow:
    """One value of one dimension: its runs and failures against the rest, the interval and the test."""

    dimension: str
    value: str
    runs: int
    failed: int
    failure_rate: float
    ci95: list[float]
    rest_runs: int
    rest_failed: int
    rest_failure_rate: float
    odds_ratio: float
    p_value: float
    p_adjusted: float
    significant: bool


@dataclass
class PatternReport:
    """`agent-debug patterns`: failure rates by value, the strongest association first. `as_dict` is its JSON."""

    runs: int
    failed: int
    failure_rate: float
    dimensions: list[str]
    min_runs: int
    test: str
    patterns: list[PatternRow]
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notices": list(self.notices)}


def failure_patterns(source: Source, flt: TraceFilter | None, dimensions: tuple[str, ...] = DIMENSIONS, *,
                     min_runs: int = 3) -> PatternReport:
    """Failure rate by value of each dimension over the runs a filter selects, with intervals and tests."""
    summaries = source.list(flt)
    failed_runs = {s.trace_id for s in summaries if s.failed}
    has: dict[tuple[str, str], set[str]] = defaultdict(set)
    # a store that can say what each run has in one query (ClickHouse: `run_values` in SQL) spares loading them
    in_bulk = getattr(source, "run_values", None)
    bulk = in_bulk([s.trace_id for s in summaries]) if in_bulk is not None else None
    for s in summaries:
        values = bulk[s.trace_id] if bulk is not None else run_values(source.load(s.trace_id, records=True))
        for dim in dimensions:
            for v in values[dim]:
                has[(dim, v)].add(s.trace_id)
    n, f = len(summaries), len(failed_runs)
    rows: list[dict[str, Any]] = []
    tested: set[tuple[str, frozenset[str]]] = set()
    everyone = frozenset(s.trace_id for s in summaries)
    # of two values that split the runs in two (image / text), one row says it all: the more failing one
    ranked = sorted(has.items(), key=lambda kv: (-len(kv[1] & failed_runs) / max(1, len(kv[1])), kv[0]))
    for (dim, value), runs in ranked:
        k = len(runs)
        if k < min_runs or k == n or (dim, everyone - frozenset(runs)) in tested:
            continue
        tested.add((dim, frozenset(runs)))
        a = len(runs & failed_runs)
        b, c = k - a, f - a
        d = (n - k) - c
        lo, hi = wilson(a, k)
        odds = ((a + 0.5) * (d + 0.5)) / ((b + 0.5) * (c + 0.5)) if 0 in (a, b, c, d) else (a * d) / (b * c)
        rows.append({"dimension": dim, "value": value, "runs": k, "failed": a, "failure_rate": round(a / k, 4),
                     "ci95": [round(lo, 4), round(hi, 4)], "rest_runs": n - k, "rest_failed": c,
                     "rest_failure_rate": round(c / (n - k), 4), "odds_ratio": round(odds, 3),
                     "p_value": fisher_exact(a, b, c, d)})
    for row, adj in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row["p_adjusted"] = adj
        row["significant"] = adj < ALPHA
    rows.sort(key=lambda r: (r["p_adjusted"], r["p_value"], -abs(r["failure_rate"] - r["rest_failure_rate"]),
                             r["dimension"], str(r["value"])))
    for r in rows:
        r["p_value"] = float(f"{r['p_value']:.4g}")
        r["p_adjusted"] = float(f"{r['p_adjusted']:.4g}")
    return PatternReport(n, f, round(f / n, 4) if n else 0.0, list(dimensions), min_runs,
                         "Fisher's exact test, two-sided; Holm-adjusted across rows",
                         [PatternRow(**r) for r in rows], list(source.notices))
