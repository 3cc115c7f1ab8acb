"""Suspects: the spans of one run most likely to hold its mistake, ranked, for every run (failed, passed or
never marked).

Three sources, one list:

- agent traces (any format): every model call and tool call is scored by the span signals (`span_signals.py`)
  weighed by the blame model (`blame_model.py`); the bucket rules of `rules.toml` that read our attribute
  conventions (an empty retrieval, a route below its lane, an off-plan step, ...) count as signals too, and the
  run's shape (`run_shape`: one agent did all the work) qualifies the spans that carry a signal;
- chat transcripts (`source.format = transcript`): the messages the transcript signals of `blame.py` name,
  in the order of the model's policy, scored by how often that signal named the right agent when fitted;
- emergent disagreement (`disagreement.py`): a merge of parallel branches that contradict each other.

A suspect is `{span_id, agent_name, name, event_type, signal, bucket, evidence, score}` (transcript messages
add `step`). `suspects` are those scoring at least the model's threshold, best first; `weaker` are the next
few below it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import contains
from typing import Any

from agent_debug.analysis.blame import TranscriptModel, blame_transcript, default_transcript_model
from agent_debug.analysis.blame_model import (
    EVIDENCE,
    PRIOR_WEIGHTS,
    RUN_SHAPE,
    SpanModel,
    default_span_model,
    select,
)
from agent_debug.analysis.buckets import Rules, find_suspects
from agent_debug.analysis.disagreement import blamed_span, find_disagreements
from agent_debug.analysis.findings import Suspect
from agent_debug.analysis.span_context import CANDIDATE_TYPES, SpanContext
from agent_debug.analysis.span_signals import Hit, span_hits
from agent_debug.analysis.tree import Tree, build_tree
from agent_debug.columns import TraceSpans

# bucket rules that restate a span signal under the other convention (blame the tool, not the call that chose it):
# the span signals cover them, so they add no feature
GENERIC_RULES = frozenset({"unrecovered_tool_failure", "unrecovered_error", "unreconciled_disagreement"})
WEAKER_SHOWN = 5
# features that say where a span sits, not what went wrong: no hit behind them, so never a suspect's signal
RUN_SHAPE_FEATURES = tuple(sorted(RUN_SHAPE))  # what `run_shape` can give
WORK_TYPES = frozenset({"TOOL_CALL", "RETRIEVAL"})  # spans whose agent did work, decided by a model or not
CONTEXT_FEATURES = frozenset({"is_tool", *RUN_SHAPE_FEATURES})


@dataclass
class SpanSuspect:
    span_id: str
    agent_name: str
    name: str
    event_type: str
    signal: str
    bucket: str
    evidence: list[str]
    score: float
    strong: bool = True
    step: int | None = None
    related: list[str] = field(default_factory=list)  # other spans the evidence names (a disagreement's branches)
    index: int = field(default=-1, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("index", "step", "related")}
        d["score"] = round(self.score, 4)
        if self.step is not None:
            d["step"] = self.step
        if self.related:
            d["related_spans"] = self.related
        return d


@dataclass
class SuspectList:
    """Suspects at or above the threshold (best first), the next few below it, and the threshold used."""

    suspects: list[SpanSuspect]
    weaker: list[SpanSuspect]
    threshold: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {"suspects": [s.as_dict() for s in self.suspects], "weaker_suspects": [s.as_dict() for s in self.weaker],
                "threshold": self.threshold, "method": self.method}


# -- agent traces -----------------------------------------------------------------------------------------------------


def candidate_features(ts: TraceSpans, hits: list[Hit], rule_hits: list[Suspect], off: Collection[str] = ()
                       ) -> tuple[dict[int, dict[str, float]], dict[int, list[Hit]]]:
    """The feature vector of every candidate span (model calls, tool calls, spans a bucket rule names), and the
    hits behind it; `off`: features the model left out, taken out before the run shape is read. The
    labelled-data fit and the live scoring both read features from here."""
    feats: dict[int, dict[str, float]] = {}
    why: dict[int, list[Hit]] = {}
    for i in range(len(ts)):
        if ts.event_type[i] in CANDIDATE_TYPES:
            feats[i] = {"is_tool": 1.0} if ts.event_type[i] != "LLM_CALL" else {}
    for h in hits:
        if h.signal in off:
            continue
        f = feats.setdefault(h.index, {})
        f[h.signal] = max(f.get(h.signal, 0.0), h.value)
        why.setdefault(h.index, []).append(h)
    for s in rule_hits:
        if s.rule in GENERIC_RULES or s.index < 0:
            continue
        key = "rule_strong" if s.strength == "strong" else "rule_weak"
        f = feats.setdefault(s.index, {})
        f[key] = 1.0
        why.setdefault(s.index, []).append(Hit(s.index, s.rule, s.bucket, s.reason, feature=key))
    shape = {f: v for f, v in run_shape(ts, feats).items() if f not in off}
    for x in feats.values():
        x.update(shaped(x, shape))
    return feats, why


def run_shape(ts: TraceSpans, candidates: Mapping[int, Collection[str]]) -> dict[str, float]:
    """The run-shape features of a run, from its candidates (span index -> feature names): `single_agent` when
    one model-driven agent did all the work: its model calls decided actions (each acting agent has exactly one
    `first_action` call) and no other agent decided one or ran a tool call or a retrieval. Both paths read it off
    the same features. One agent doing all the work puts each of its failure signals on the path to the answer;
    where a manager delegates, a helper's failed search is often worked around by another. A run no model call
    acted in (a scripted pipeline) has no such agent."""
    et, agent = ts.event_type, ts.agent_name
    # (C-level passes: a big run has 500k candidates)
    acting = set(map(agent.__getitem__, compress(candidates, map(contains, candidates.values(),
                                                                  repeat("first_action")))))
    workers = acting | set(map(agent.__getitem__, compress(candidates, map(WORK_TYPES.__contains__,
                                                                           map(et.__getitem__, candidates)))))
    return {"single_agent": 1.0} if len(workers) == 1 and workers == acting else {}


def shaped(names: Collection[str], shape: dict[str, float]) -> dict[str, float]:
    """The run-shape features one candidate takes: all of them beside a failure signal (`EVIDENCE`), none on a
    span without one, so the run's shape never makes a suspect of a clean span."""
    return shape if shape and not EVIDENCE.isdisjoint(names) else {}


def trace_features(ts: TraceSpans, rules: Rules, tree: Tree | None = None, failed: bool = False,
                   off: Collection[str] = ()) -> tuple[dict[int, dict[str, float]], dict[int, list[Hit]]]:
    """Signals and rule hits of one trace (records loaded) as candidate features (`off`: left out)."""
    _, hits = span_hits(ts, SpanContext(ts), off)
    hits.extend(disagreement_hits(ts))
    rule_hits = find_suspects(ts, tree or build_tree(ts), rules, failed=failed)
    return candidate_features(ts, hits, rule_hits, off)


def disagreement_hits(ts: TraceSpans) -> list[Hit]:
    """An unreconciled merge of contradictory parallel branches, as a hit on the merge (`disagreement.py`)."""
    return [Hit(blamed_span(d), "disagreement", "disagreement", d.evidence(ts),
                related=(ts.span_id[d.a], ts.span_id[d.b])) for d in find_disagreements(ts)]


def _suspect(ts: TraceSpans, i: int, x: dict[str, float], hits: list[Hit], model: SpanModel,
             scored: tuple[float, list[tuple[str, float]]] | None = None) -> SpanSuspect:
    """One reported span; `scored`: its vector's score and contributions, when the caller has them already."""
    score, contributions = scored if scored is not None else (model.score(x), model.contributions(x))
    hits = [h for h in hits if h.key not in model.off]
    by_feature = {h.key: h for h in hits}
    top = next((h for f, c in contributions if c > 0 and (h := by_feature.get(f)) is not None), None)

    def weight(h: Hit) -> float:
        return model.weights.get(h.key, PRIOR_WEIGHTS.get(h.key, 0.0)) * h.value

    ordered = sorted((h for h in hits if weight(h) > 0), key=lambda h: -weight(h))  # evidence: what raised it
    if top is None:
        signal, bucket = "none", "unclassified"
    else:
        signal, bucket = top.signal, top.bucket
    related = sorted({sid for h in hits for sid in h.related if sid != ts.span_id[i]})
    return SpanSuspect(ts.span_id[i], ts.agent_name[i], ts.name[i], ts.event_type[i], signal, bucket,
                       [f"{h.signal}: {h.evidence}" for h in ordered], score, related=related, index=i)


def score_spans(ts: TraceSpans, rules: Rules, model: SpanModel | None = None, *, tree: Tree | None = None,
                failed: bool = False) -> list[SpanSuspect]:
    """Every candidate span of an agent trace with its score, best first (ties: earlier first)."""
    model = model or default_span_model()
    feats, why = trace_features(ts, rules, tree, failed, model.off)
    out = [_suspect(ts, i, x, why.get(i, []), model) for i, x in feats.items()]
    return sorted(out, key=lambda s: (-s.score, ts.start_ns[s.index], s.index))


def split(scored: list[SpanSuspect], threshold: float, method: str) -> SuspectList:
    """Suspects as `blame_model.select` picks them (at or above the threshold, else the best one alone, then
    marked not strong), and the next few below."""
    picked = select({s.span_id: s.score for s in scored}, threshold)
    chosen = [s for s in scored if s.span_id in picked]
    for s in chosen:
        s.strong = s.score >= threshold
    weaker = [s for s in scored if s.span_id not in picked and s.signal != "none"][:WEAKER_SHOWN]
    return SuspectList(chosen, weaker, threshold, method)


# -- transcripts ------------------------------------------------------------------------------------------------------


def transcript_suspects(ts: TraceSpans, model: TranscriptModel | None = None) -> SuspectList:
    """The messages the transcript signals name, in the policy's order (the first is the blamed one)."""
    tm = model or default_transcript_model()
    result = blame_transcript(ts, tm.policy)
    by_id = {sid: i for i, sid in enumerate(ts.span_id)}
    out: list[SpanSuspect] = []
    seen: dict[str, SpanSuspect] = {}
    for c in result.candidates:
        i = by_id.get(c.span_id)
        if i is None:
            continue
        if (same := seen.get(c.span_id)) is not None:  # one suspect per message: its first signal ranks it
            same.evidence.append(c.reason)
            continue
        out.append(SpanSuspect(c.span_id, c.agent, ts.name[i], ts.event_type[i], c.signal, c.bucket, [c.reason],
                               tm.score(c.signal), c.signal in tm.policy.signals or not out,  # (the blamed one)
                               step=c.step_index, index=i))
        seen[c.span_id] = out[-1]
    for rank, s in enumerate(out):  # the policy's order is the ranking: scores never invert it
        if rank and s.score > out[rank - 1].score:
            s.score = out[rank - 1].score
    return SuspectList(out, [], 0.0, f"transcript policy {tm.policy.describe()}")


def is_transcript(ts: TraceSpans) -> bool:
    return any("transcript.step" in ts.attributes(i) for i in range(min(len(ts), 5)))


def run_suspects(ts: TraceSpans, rules: Rules, *, failed: bool = False, span_model: SpanModel | None = None,
                 transcript_model: TranscriptModel | None = None, tree: Tree | None = None) -> SuspectList:
    """The ranked suspects of one run (records loaded), whatever wrote it. From stored columns and digests:
    `column_path.run_suspects_from`."""
    if ts.records is not None and is_transcript(ts):
        return transcript_suspects(ts, transcript_model)
    model = span_model or default_span_model()
    return split(score_spans(ts, rules, model, tree=tree, failed=failed), model.threshold,
                 f"span signals, threshold {model.threshold}")
