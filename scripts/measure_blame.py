"""Measure blame against labelled runs, cross-validated: the demo's injected faults, TRAIL and Who&When.

    .venv/bin/python scripts/measure_blame.py [--data PATH] [--folds 5] [--repeats 3] [--no-demo]
                                              [--demo-runs 90] [--demo-seed 2027] [--write-model]
                                              [--no-variants]
                                              [--judge | --judge-only] [--judge-model M]

Every figure for TRAIL and Who&When is a held-out figure: the runs are dealt into k folds (stratified by
benchmark / split, `--repeats` different shuffles), the whole fitting procedure (span-model weights and threshold;
transcript policy) runs on the other folds, and the held-out fold is scored through `explain_trace`, the function
`agent-debug why --json` prints, with that fold's model. Reported: the mean and standard deviation over all
folds, and the figure pooled over every held-out prediction. The procedure (`blame_model.fit_selected_model`)
includes its choices: which of the features added last (`blame_model.OPTIONAL_FEATURES`: the run shape and two
signals) are in is decided by an inner cross-validation of the training folds, so the held-out figure pays for
the selection. The trivial baselines are scored on the same folds, and so are the variants (each optional feature
always in or out, the prior's sigma chosen too), with the per-fold differences they make.

`--write-model` runs the same procedure once on all the data and writes the shipped model
(agent_debug/analysis/blame_model.json): its in-sample figures are never reported as results.

`--judge` (needs GEMINI_API_KEY or GOOGLE_API_KEY) asks the Gemini judge to blame every labelled run too.

Labels are read here, for fitting and scoring only; the analysis never reads `label.*` attributes or the
ground truth. Exits 0 with a message when the data folder is absent (a fresh clone has none).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent_debug.analysis.blame import (  # noqa: E402
    Candidate,
    TranscriptModel,
    fit_transcript_model,
    transcript_candidates,
)
from agent_debug.analysis.blame_model import (  # noqa: E402
    OPTIONAL_FEATURES,
    PRIOR_MODEL,
    SIGMAS,
    Candidate as SpanCandidate,
    LabelledRun,
    SpanModel,
    fit_selected_model,
    fit_span_model,
    folds,
    location_f1,
    without,
)
from agent_debug.analysis.buckets import load_rules  # noqa: E402
from agent_debug.analysis.explain import explain_trace  # noqa: E402
from agent_debug.analysis.source import FileSource  # noqa: E402
from agent_debug.analysis.suspects import RUN_SHAPE_FEATURES, trace_features  # noqa: E402
from agent_debug.columns import TraceSpans, TraceSummary  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
SPLITS = {"algorithm-generated": "Algorithm-Generated", "hand-crafted": "Hand-Crafted"}
PUBLISHED_WW = {  # Who&When (ICML 2025), best LLM method without ground truth
    "algorithm-generated": {"agent": 0.511, "step": 0.166},
    "hand-crafted": {"agent": 0.534, "step": 0.088},
}
PUBLISHED_TRAIL = {"location": 0.546, "joint": 0.183}  # TRAIL, Gemini 2.5 Pro on GAIA (recall-only)
MODEL_PATH = ROOT / "agent_debug" / "analysis" / "blame_model.json"

# TRAIL's categories (three branches) onto our buckets. Reasoning and output errors our buckets do not name go to
# `unclassified`.
TRAIL_TO_BUCKET: dict[str, str] = {
    "tool definition issues": "tool_execution", "environment setup errors": "tool_execution",
    "rate limiting": "tool_execution", "authentication errors": "tool_execution", "service errors": "tool_execution",
    "resource not found": "tool_execution", "resource exhaustion": "tool_execution",
    "timeout issues": "tool_execution",
    "poor information retrieval": "retrieval_miss", "tool output misinterpretation": "unclassified",
    "incorrect problem identification": "planner_drift", "tool selection errors": "planner_drift",
    "context handling failures": "planner_drift", "resource abuse": "planner_drift",
    "goal deviation": "planner_drift", "task orchestration": "planner_drift",
    "language-only": "unclassified", "tool-related": "unclassified", "formatting errors": "unclassified",
    "instruction non-compliance": "unclassified",
}


def norm_category(raw: str) -> str:
    """TRAIL spells categories inconsistently ("Context Handling Failure(s)", case, hyphens): one key per label."""
    s = re.sub(r"[\s_]+", " ", str(raw).strip().lower())
    s = s.replace("language only", "language-only").replace("tool related", "tool-related")
    s = s.replace("non compliance", "non-compliance")
    for key in TRAIL_TO_BUCKET:
        if s == key or s.rstrip("s") == key.rstrip("s"):
            return key
    return s


def category_bucket(raw: str) -> str:
    return TRAIL_TO_BUCKET.get(norm_category(raw), "unclassified")


def load_tolerant_json(path: Path) -> Any:
    """JSON with trailing commas (one TRAIL annotation file has them)."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(re.sub(r",(\s*[\]}])", r"\1", text))


def mean_sd(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return 0.0, 0.0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- demo -----------------------------------------------------------------------------------------------------------


def measure_demo(runs: int, seed: int) -> dict[str, Any]:
    """The generated runs: bucket and root-cause accuracy of `bucket`, passing runs bucketed (plain and with
    `--suspects`)."""
    from agent_debug.analysis.batch import bucket_runs
    from agent_debug.demo.runner import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(tmp, runs, seed=seed, packets=False)
        src = FileSource([result.trace_dir])
        report = bucket_runs(src, None, load_rules())
        flagged = bucket_runs(src, None, load_rules(), suspects=True)
        from agent_debug.analysis.patterns import failure_patterns

        rows = failure_patterns(src, None).as_dict()["patterns"]
        patterns = rows[:3] + [r for r in rows[3:] if r["dimension"] == "modality"][:1]
    by_trace = {d.trace_id: d for d in report.runs}
    failed = [lab for lab in result.runs if not lab.passed]
    bucket_ok = sum(1 for lab in failed if lab.trace_id in by_trace and by_trace[lab.trace_id].bucket == lab.bucket)
    rc_ok = sum(1 for lab in failed if lab.trace_id in by_trace
                and by_trace[lab.trace_id].root_cause["span_id"] == lab.root_cause_span_id)
    passing = [lab for lab in result.runs if lab.passed]
    flagged_ids = {d.trace_id for d in flagged.runs if d.flag}
    return {"runs": runs, "seed": seed, "failed": len(failed), "bucket_ok": bucket_ok, "rc_ok": rc_ok,
            "bucket_accuracy": bucket_ok / max(1, len(failed)), "root_cause_accuracy": rc_ok / max(1, len(failed)),
            "passing": len(passing), "passing_bucketed": sum(1 for lab in passing if lab.trace_id in by_trace),
            "passing_flagged": sum(1 for lab in passing if lab.trace_id in flagged_ids),
            "scenarios": dict(Counter(lab.scenario for lab in failed)), "patterns": patterns,
            "misses": [(lab.scenario, by_trace[lab.trace_id].bucket if lab.trace_id in by_trace else None)
                       for lab in failed if lab.trace_id not in by_trace
                       or by_trace[lab.trace_id].bucket != lab.bucket
                       or by_trace[lab.trace_id].root_cause["span_id"] != lab.root_cause_span_id]}


# -- TRAIL ----------------------------------------------------------------------------------------------------------


@dataclass
class TrailTrace:
    ts: TraceSpans
    summary: TraceSummary
    run: LabelledRun  # candidates with features and error counts
    errors: list[tuple[str, str]]  # (location span id, raw category)
    dropped: int  # annotated errors whose location names no span of the trace (a note, not an id)

    @property
    def llm_spans(self) -> list[str]:
        ts = self.ts
        return [ts.span_id[i] for i in sorted(range(len(ts)), key=lambda i: ts.start_ns[i])
                if ts.event_type[i] == "LLM_CALL"]


def load_trail(data: Path) -> list[TrailTrace]:
    folder = data / "trail"
    src = FileSource([folder / "traces"])
    rules = load_rules()
    by_file = {Path(s.source_file or s.trace_id).stem: s.trace_id for s in src.list()}
    out = []
    for ann_path in sorted((folder / "annotations").glob("*.json")):
        tid = by_file.get(ann_path.stem)
        if tid is None:
            continue
        ts = src.load(tid, records=True)
        summary = src.summary(tid)
        apps = " ".join(str(ts.attributes(i).get("pat.app", "")) for i in range(len(ts))).lower()
        ann = load_tolerant_json(ann_path)
        ids = set(ts.span_id)
        raw = [(str(e.get("location")), str(e.get("category", ""))) for e in ann.get("errors", [])
               if isinstance(e, dict)]
        errors = [(loc, cat) for loc, cat in raw if loc in ids]
        per_span = Counter(loc for loc, _ in errors)
        feats, _ = trace_features(ts, rules, failed=summary.failed)
        cands = [SpanCandidate(ts.span_id[i], x, per_span.get(ts.span_id[i], 0)) for i, x in feats.items()]
        run = LabelledRun(tid, "swe" if "swe" in apps else "gaia", cands, len(errors))
        out.append(TrailTrace(ts, summary, run, errors, len(raw) - len(errors)))
    return out


def _scores(trs: list[TrailTrace], chosen: dict[str, list[tuple[str, str]]]) -> dict[str, float]:
    """Location recall/precision/F1 plus joint location+bucket accuracy of a prediction (span id, bucket) list."""
    base = location_f1([t.run for t in trs], {k: {s for s, _ in v} for k, v in chosen.items()})
    errors = joint = named = named_joint = 0
    for t in trs:
        pred = dict(chosen.get(t.run.run_id, []))
        for loc, cat in t.errors:
            b = category_bucket(cat)
            ok = loc in pred and pred[loc] == b
            errors += 1
            joint += ok
            if b != "unclassified":
                named += 1
                named_joint += ok
    return {**base, "joint": joint / errors if errors else 0.0, "joint_named": named_joint / named if named else 0.0}


IGNORES = "ignores_result"  # the signal defined after the run shape
INTENT = "intent_not_acted"  # the signal defined last
SHAPE = frozenset(RUN_SHAPE_FEATURES)


@dataclass
class FoldModels:
    """The span models one fold's training runs give, one per procedure compared (`TRAIL_ROWS`)."""

    by_row: dict[str, SpanModel]


Predictor = Callable[[TrailTrace, FoldModels], list[tuple[str, str]]]


def predict_why(t: TrailTrace, model: SpanModel) -> list[tuple[str, str]]:
    doc = explain_trace(t.ts, t.summary, load_rules(), span_model=model).as_dict()
    return [(s["span_id"], s["bucket"]) for s in doc["suspects"]]


def fit_without(train: list[LabelledRun], off: frozenset[str], seed: int) -> SpanModel:
    """`fit_span_model` as if the features `off` did not exist (scored through `why` the same way)."""
    model = fit_span_model(without(train, off), seed=seed)
    model.off = off
    return model


def fit_selected_without(train: list[LabelledRun], off: frozenset[str], seed: int) -> SpanModel:
    """`fit_selected_model` over the optional features not in `off`, as if those did not exist."""
    model = fit_selected_model(without(train, off), optional=tuple(f for f in OPTIONAL_FEATURES if f not in off),
                               seed=seed)
    model.off = model.off | off
    return model


OURS = ("ours: `why --json` suspects, fitted in each fold, the optional features (`single_agent`, "
        "`ignores_result`, `intent_not_acted`) chosen by an inner cross-validation of the training folds")
SIGMA_CHOSEN = "the same, the prior's sigma (0.5, 1, 2) chosen by the inner cross-validation too"
ALL_IN = "the three optional features always in (no selection)"
BEFORE = "no `intent_not_acted`, the other two chosen by the inner cross-validation (the procedure shipped before)"
SHAPE_CHOSEN = "no `ignores_result` or `intent_not_acted`, `single_agent` chosen by the inner cross-validation"
PREVIOUS = "no `ignores_result` or `intent_not_acted`, `single_agent` always in"
FLAT = "none of the three (the procedure before the run shape)"
LATE = frozenset({IGNORES, INTENT})
FITTERS: dict[str, Callable[[list[LabelledRun], int], SpanModel]] = {
    OURS: lambda train, seed: fit_selected_model(train, seed=seed),
    SIGMA_CHOSEN: lambda train, seed: fit_selected_model(train, sigmas=SIGMAS, seed=seed),
    ALL_IN: lambda train, seed: fit_span_model(train, seed=seed),
    BEFORE: lambda train, seed: fit_selected_without(train, frozenset({INTENT}), seed),
    SHAPE_CHOSEN: lambda train, seed: fit_selected_without(train, LATE, seed),
    PREVIOUS: lambda train, seed: fit_without(train, LATE, seed),
    FLAT: lambda train, seed: fit_without(train, LATE | SHAPE, seed),
}
# The GAIA runs whose annotations a signal was defined from (trace id prefixes): the script also scores GAIA
# without them, so what a signal gains on runs that did not inspire it is on the record.
MOTIVATING = {INTENT: ("1dd91d38", "5dc4cf8d", "88e4ce6a", "a7017f40", "d7f2f823")}
# fold-by-fold differences reported: (name, row, the row it is compared with)
DIFFS = (("`intent_not_acted` (ours vs the procedure shipped before)", OURS, BEFORE),
         ("the run shape (always in vs out, neither late signal)", PREVIOUS, FLAT),
         ("the run shape chosen by inner CV vs always in", SHAPE_CHOSEN, PREVIOUS),
         ("the three optional features always in vs ours", ALL_IN, OURS),
         ("sigma chosen too vs ours", SIGMA_CHOSEN, OURS))


def _fitted(row: str) -> Predictor:
    return lambda t, m: predict_why(t, m.by_row[row])


TRAIL_ROWS: dict[str, tuple[Predictor, bool]] = {  # name -> (predictor, fitted in each fold?)
    **{row: (_fitted(row), True) for row in FITTERS},
    "ours with the a-priori weights (no fitting, threshold 0.5)": (lambda t, m: predict_why(t, PRIOR_MODEL), False),
    "baseline: every LLM span": (lambda t, m: [(s, "unclassified") for s in t.llm_spans], False),
    "baseline: the last LLM span": (lambda t, m: [(t.llm_spans[-1], "unclassified")] if t.llm_spans else [],
                                    False),
}


def cross_validate_trail(traces: list[TrailTrace], k: int, repeats: int, variants: bool = True) -> dict[str, Any]:
    """Per row and benchmark: per-fold scores and pooled held-out scores; the models each fold chose. Without
    `variants`, only ours, the a-priori weights and the baselines (a quicker run)."""
    groups = sorted({t.run.group for t in traces})
    fitters = FITTERS if variants else {OURS: FITTERS[OURS]}
    rows = {r: v for r, v in TRAIL_ROWS.items() if variants or not v[1] or r == OURS}
    per_fold: dict[str, dict[str, list[dict[str, float]]]] = {r: {g: [] for g in groups} for r in rows}
    pooled: dict[str, dict[str, dict[str, list[tuple[str, str]]]]] = {r: {g: {} for g in groups} for r in rows}
    thresholds: list[float] = []
    chosen_sets: Counter[str] = Counter()
    shape_chosen: Counter[str] = Counter()
    sigmas: Counter[str] = Counter()
    by_id = {t.run.run_id: t for t in traces}
    # GAIA F1 without the runs MOTIVATING names, for ours and (with the variants) the procedure shipped before
    others: dict[str, list[float]] = {row: [] for row in (OURS, BEFORE) if row in rows}
    for rep in range(repeats):
        for i, held in enumerate(parts := folds([t.run for t in traces], k, seed=rep)):
            train = [r for j, p in enumerate(parts) if j != i for r in p]
            model = FoldModels({row: fit(train, rep) for row, fit in fitters.items()})
            ours = model.by_row[OURS]
            thresholds.append(ours.threshold)
            chosen_sets["+".join(f for f in OPTIONAL_FEATURES if f not in ours.off) or "neither"] += 1
            if variants:
                shape_chosen["in" if "single_agent" not in model.by_row[SHAPE_CHOSEN].off else "out"] += 1
                sigmas[str(model.by_row[SIGMA_CHOSEN].details.get("sigma"))] += 1
            for row, (fn, _) in rows.items():
                for g in groups:
                    trs = [by_id[r.run_id] for r in held if r.group == g]
                    if not trs:
                        continue
                    chosen = {t.run.run_id: fn(t, model) for t in trs}
                    per_fold[row][g].append(_scores(trs, chosen))
                    if g == "gaia" and row in others:
                        rest = [t for t in trs if not t.run.run_id.startswith(MOTIVATING[INTENT])]
                        others[row].append(_scores(rest, chosen)["f1"])
                    if rep == 0:
                        pooled[row][g].update(chosen)
    out: dict[str, Any] = {"rows": {}, "thresholds": Counter(thresholds), "folds": k, "repeats": repeats,
                           "chosen": chosen_sets, "shape_chosen": shape_chosen, "sigmas": sigmas,
                           "others": others}
    for row in rows:
        out["rows"][row] = {}
        for g in groups:
            trs = [t for t in traces if t.run.group == g]
            folds_ = per_fold[row][g]
            out["rows"][row][g] = {
                **{m: mean_sd([f[m] for f in folds_]) for m in ("recall", "precision", "f1", "joint", "joint_named")},
                "pooled": _scores(trs, pooled[row][g]), "n_folds": len(folds_)}
    out["diffs"] = {name: {g: [a["f1"] - b["f1"] for a, b in zip(per_fold[hi][g], per_fold[lo][g], strict=True)]
                           for g in groups} for name, hi, lo in DIFFS if hi in rows and lo in rows}
    return out


def describe_signals(traces: list[TrailTrace]) -> dict[str, dict[str, dict[str, float]]]:
    """Descriptive, in-sample: how often each feature fires and how often a span it fires on is annotated."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for t in traces:
        for c in t.run.candidates:
            for f in c.features:
                d = out.setdefault(f, {}).setdefault(t.run.group, {"fired": 0, "located": 0})
                d["fired"] += 1
                d["located"] += bool(c.errors)
    return out


def measure_trail(data: Path, k: int, repeats: int, variants: bool = True) -> dict[str, Any]:
    traces = load_trail(data)
    cats = Counter(norm_category(c) for t in traces for _, c in t.errors)
    return {"traces": Counter(t.run.group for t in traces),
            "errors": Counter({g: sum(len(t.errors) for t in traces if t.run.group == g) for g in ("gaia", "swe")}),
            "dropped": sum(t.dropped for t in traces),
            "categories": {c: (n, TRAIL_TO_BUCKET.get(c, "unclassified")) for c, n in cats.most_common()},
            "cv": cross_validate_trail(traces, k, repeats, variants), "signals": describe_signals(traces),
            "_traces": traces}


# -- Who&When -------------------------------------------------------------------------------------------------------


@dataclass
class LabelledTranscript:
    """One failed transcript: what each signal blames, the run itself (for `explain_trace`), and the label."""

    source_file: str
    split: str
    ts: TraceSpans
    summary: TraceSummary
    found: dict[str, Candidate | None]
    speakers: dict[int, str]  # step -> agent
    label_agent: str
    label_step: int


def load_who_and_when(data: Path) -> list[LabelledTranscript]:
    out = []
    for split, folder in SPLITS.items():
        src = FileSource([data / "who_and_when" / folder])
        for s in src.list():
            if not s.failed or s.root_span_id is None:
                continue
            ts = src.load(s.trace_id, records=True)
            root = ts.attributes(ts.span_id.index(s.root_span_id))
            agent, step = root.get("label.mistake_agent"), root.get("label.mistake_step")
            if not isinstance(agent, str) or not isinstance(step, int):
                continue
            speakers = {a["transcript.step"]: ts.agent_name[i] for i in range(len(ts))
                        if isinstance((a := ts.attributes(i)).get("transcript.step"), int)}
            out.append(LabelledTranscript(s.source_file or s.trace_id, split, ts, s, transcript_candidates(ts),
                                          speakers, agent, step))
    return sorted(out, key=lambda r: (r.split, len(r.source_file), r.source_file))


def same_agent(a: str | None, b: str) -> bool:
    return a is not None and a.strip().lower() == b.strip().lower()


def why_pick(r: LabelledTranscript, model: TranscriptModel) -> tuple[str | None, int | None]:
    doc = explain_trace(r.ts, r.summary, load_rules(), transcript_model=model).as_dict()
    top = doc["suspects"][0] if doc["suspects"] else None
    return (top["agent_name"], top.get("step")) if top else (None, None)


def _speaker_rule(pick: Callable[[LabelledTranscript], int | None]) -> Callable[[LabelledTranscript, Any], Any]:
    def rule(r: LabelledTranscript, model: Any) -> tuple[str | None, int | None]:
        step = pick(r)
        return (r.speakers.get(step), step) if step is not None else (None, None)

    return rule


def _candidate_rule(name: str) -> Callable[[LabelledTranscript, Any], tuple[str | None, int | None]]:
    def rule(r: LabelledTranscript, model: Any) -> tuple[str | None, int | None]:
        c = r.found.get(name)
        return (c.agent, c.step_index) if c else (None, None)

    return rule


def _agent_steps(r: LabelledTranscript) -> list[int]:
    return sorted(s for s, a in r.speakers.items() if a.strip().lower() not in ("human", "user", "admin"))


WW_ROWS: dict[str, Callable[[LabelledTranscript, Any], tuple[str | None, int | None]]] = {
    "ours: `why --json` top suspect, policy fitted in each fold": why_pick,
    "trivial: most frequent speaker (its first message)": _candidate_rule("most_frequent_speaker"),
    "trivial: last speaker (its last message)": _speaker_rule(lambda r: max(_agent_steps(r), default=None)),
    "trivial: step 1 (and its speaker)": _speaker_rule(lambda r: 1 if 1 in r.speakers else None),
    "trivial: first speaker / step 0": _speaker_rule(lambda r: 0 if 0 in r.speakers else None),
    "near-trivial: most active worker, coordinators aside": _candidate_rule("most_active_worker"),
}


class _Grouped:
    """Who&When transcripts as LabelledRuns for `folds` (stratified by split)."""

    def __init__(self, rows: list[LabelledTranscript]) -> None:
        self.runs = [LabelledRun(r.source_file + "@" + r.split, r.split, [], 0) for r in rows]
        self.by_id = {run.run_id: r for run, r in zip(self.runs, rows, strict=True)}


def cross_validate_ww(rows: list[LabelledTranscript], k: int, repeats: int) -> dict[str, Any]:
    g = _Grouped(rows)
    splits = list(SPLITS)
    fold_acc: dict[str, dict[str, list[tuple[float, float]]]] = {w: {s: [] for s in splits} for w in WW_ROWS}
    pooled: dict[str, dict[str, list[tuple[bool, bool]]]] = {w: {s: [] for s in splits} for w in WW_ROWS}
    policies: Counter[str] = Counter()
    for rep in range(repeats):
        for i, held in enumerate(parts := folds(g.runs, k, seed=rep)):
            train = [g.by_id[r.run_id] for j, p in enumerate(parts) if j != i for r in p]
            model = fit_transcript_model([(t.found, t.label_agent) for t in train])
            policies[model.policy.describe()] += 1
            for name, fn in WW_ROWS.items():
                for s in splits:
                    test = [g.by_id[r.run_id] for r in held if r.group == s]
                    if not test:
                        continue
                    res = []
                    for t in test:
                        agent, step = fn(t, model)
                        res.append((same_agent(agent, t.label_agent), step == t.label_step))
                    fold_acc[name][s].append((sum(a for a, _ in res) / len(res), sum(b for _, b in res) / len(res)))
                    if rep == 0:
                        pooled[name][s].extend(res)
    out: dict[str, Any] = {"rows": {}, "policies": policies, "n": Counter(r.split for r in rows)}
    for name in WW_ROWS:
        out["rows"][name] = {}
        for s in splits:
            acc = fold_acc[name][s]
            p = pooled[name][s]
            out["rows"][name][s] = {"agent": mean_sd([a for a, _ in acc]), "step": mean_sd([b for _, b in acc]),
                                    "pooled_agent": (sum(a for a, _ in p), len(p)),
                                    "pooled_step": (sum(b for _, b in p), len(p))}
    return out


def measure_who_and_when(data: Path, k: int, repeats: int) -> dict[str, Any]:
    rows = load_who_and_when(data)
    return {"cv": cross_validate_ww(rows, k, repeats), "_rows": rows}


# -- the Gemini judge ------------------------------------------------------------------------------------------------


def measure_judge(trail: list[TrailTrace], ww: list[LabelledTranscript], model: str) -> dict[str, Any]:
    """`why --judge` on every labelled run (no fitting involved: nothing to cross-validate): Who&When agent and
    step accuracy; TRAIL location recall and precision of the one step it names."""
    import asyncio

    from agent_debug.eval.blame_judge import BlameJudge, condense
    from agent_debug.eval.judge_cache import JudgeCache

    judge = BlameJudge(model=model, base_url=os.environ.get("AGENT_DEBUG_JUDGE_BASE_URL") or None,
                       cache=JudgeCache())

    async def ask_all() -> tuple[list[Any], list[Any]]:
        try:
            a = await asyncio.gather(*(judge.blame(condense(r.ts, True)) for r in ww))
            b = await asyncio.gather(*(judge.blame(condense(t.ts, t.summary.failed or None)) for t in trail))
            return list(a), list(b)
        finally:
            await judge.aclose()

    ww_ans, trail_ans = asyncio.run(ask_all())
    out: dict[str, Any] = {"model": model, "ww": {}, "trail": {}}
    for split in SPLITS:
        rows = [(r, a) for r, a in zip(ww, ww_ans, strict=True) if r.split == split]
        out["ww"][split] = {"n": len(rows), "answered": sum(a.status == "answered" for _, a in rows),
                            "agent": sum(same_agent(a.agent, r.label_agent) for r, a in rows),
                            "step": sum(a.step == r.label_step for r, a in rows)}
    for g in ("gaia", "swe"):
        pairs = [(t, a) for t, a in zip(trail, trail_ans, strict=True) if t.run.group == g]
        chosen = {t.run.run_id: ({a.span_id} if a.span_id else set()) for t, a in pairs}
        out["trail"][g] = {**location_f1([t.run for t, _ in pairs], chosen),
                           "answered": sum(a.status == "answered" for _, a in pairs), "n": len(pairs)}
    return out


def render_judge(j: dict[str, Any]) -> str:
    lines = [f"### `why --judge` ({j['model']}) on every labelled run: no fitting, so no folds\n",
             "| data | answered | agent | step | location recall | precision | F1 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for split, x in j["ww"].items():
        lines.append(f"| Who&When {split} | {x['answered']}/{x['n']} | {pct(x['agent'] / max(1, x['n']))} | "
                     f"{pct(x['step'] / max(1, x['n']))} | - | - | - |")
    for g, x in j["trail"].items():
        lines.append(f"| TRAIL {g} | {x['answered']}/{x['n']} | - | - | {x['recall']:.3f} | {x['precision']:.3f} | "
                     f"{x['f1']:.3f} |")
    return "\n".join(lines) + "\n"


# -- the shipped model -------------------------------------------------------------------------------------------------


def write_model(trail: list[TrailTrace], ww: list[LabelledTranscript]) -> dict[str, Any]:
    spans = fit_selected_model([t.run for t in trail],
                               fitted_on=f"all {len(trail)} shared TRAIL traces (in-sample)")
    tm = fit_transcript_model([(t.found, t.label_agent) for t in ww],
                              fitted_on=f"all {len(ww)} shared Who&When logs (in-sample)")
    doc = {"about": "written by scripts/measure_blame.py --write-model; the procedure's held-out figures are in "
                    "docs/blame-measurements.md", "spans": spans.as_dict(), "transcripts": tm.as_dict()}
    MODEL_PATH.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


# -- output ---------------------------------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def ms(pair: tuple[float, float], as_pct: bool = False) -> str:
    m, s = pair
    return f"{pct(m)} ± {pct(s)}" if as_pct else f"{m:.3f} ± {s:.3f}"


def render_demo(demo: dict[str, Any]) -> str:
    lines = [
        f"### Generated demo runs (seed {demo['seed']}, {demo['runs']} runs, {demo['failed']} failed, "
        f"{demo['passing']} passing)\n",
        "| measure | value | target |\n| --- | --- | --- |",
        f"| bucket accuracy | {pct(demo['bucket_accuracy'])} ({demo['bucket_ok']}/{demo['failed']}) | >= 98% |",
        f"| root-cause span accuracy | {pct(demo['root_cause_accuracy'])} ({demo['rc_ok']}/{demo['failed']}) "
        f"| >= 95% |",
        f"| passing runs bucketed (`bucket`) | {demo['passing_bucketed']} | 0 |",
        f"| passing runs flagged (`bucket --suspects`) | {demo['passing_flagged']} | - |\n",
        "- failed runs by scenario: " + ", ".join(f"{k} {v}" for k, v in sorted(demo["scenarios"].items())),
        "- `agent-debug patterns`, strongest first: " + "; ".join(
            f"{r['dimension']}={r['value']} fails {r['failed']}/{r['runs']} vs {r['rest_failed']}/{r['rest_runs']} "
            f"(p={r['p_value']:.2g}, Holm {r['p_adjusted']:.2g})" for r in demo["patterns"]),
    ]
    if demo["misses"]:
        lines.append(f"- misses: {demo['misses']}")
    return "\n".join(lines) + "\n"


def render_trail(trail: dict[str, Any]) -> str:
    cv = trail["cv"]
    lines = [f"### TRAIL: error location, {cv['folds']}-fold cross-validation x {cv['repeats']} shuffles "
             f"({trail['traces']['gaia']} GAIA traces, {trail['errors']['gaia']} located errors; "
             f"{trail['traces']['swe']} SWE-bench traces, {trail['errors']['swe']} located errors; "
             f"{trail['dropped']} errors whose location is a note, not a span, left out)\n",
             "Mean ± standard deviation over the held-out folds; `pooled` = every held-out prediction of the first "
             "shuffle scored together.\n",
             "| method | GAIA F1 | GAIA recall | GAIA precision | GAIA pooled F1 (R / P) | SWE F1 | SWE recall "
             "| SWE precision | SWE pooled F1 (R / P) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| published: Gemini 2.5 Pro, GAIA (recall-only) | - | {PUBLISHED_TRAIL['location']:.3f} | - | - "
             f"| - | - | - | - |"]
    for name, g in cv["rows"].items():
        x, y = g["gaia"], g["swe"]
        lines.append(f"| {name} | {ms(x['f1'])} | {ms(x['recall'])} | {ms(x['precision'])} | "
                     f"{x['pooled']['f1']:.3f} ({x['pooled']['recall']:.3f} / {x['pooled']['precision']:.3f}) | "
                     f"{ms(y['f1'])} | {ms(y['recall'])} | {ms(y['precision'])} | "
                     f"{y['pooled']['f1']:.3f} ({y['pooled']['recall']:.3f} / {y['pooled']['precision']:.3f}) |")
    ours = cv["rows"][OURS]

    def gain(diffs: list[float]) -> str:
        return (f"{ms(mean_sd(diffs))} (better in {sum(d > 1e-9 for d in diffs)} of {len(diffs)} folds, worse in "
                f"{sum(d < -1e-9 for d in diffs)})")

    lines += ["", f"- joint location + bucket (held out, mean over folds): GAIA {ms(ours['gaia']['joint'])}, "
                  f"over errors whose category maps to a named bucket {ms(ours['gaia']['joint_named'])}; "
                  f"SWE {ms(ours['swe']['joint'])} / {ms(ours['swe']['joint_named'])} "
                  f"(TRAIL's published joint accuracy {PUBLISHED_TRAIL['joint']} is a 21-way category match, "
                  f"not comparable)",
              *[f"- fold by fold, {name} (F1 difference on the same held-out fold): GAIA {gain(d['gaia'])}; "
                f"SWE {gain(d['swe'])}" for name, d in cv["diffs"].items()],
              *([f"- GAIA without the {len(MOTIVATING[INTENT])} runs whose annotations `intent_not_acted` was "
                 f"defined from: ours {ms(mean_sd(o[OURS]))}, the procedure shipped before {ms(mean_sd(o[BEFORE]))}; "
                 f"fold by fold {gain([a - b for a, b in zip(o[OURS], o[BEFORE], strict=True)])}"]
                if (o := cv.get("others")) and o.get(BEFORE) else []),
              f"- optional features the inner cross-validation put in (ours): {dict(cv['chosen'])}; "
              f"`single_agent` alone: {dict(cv['shape_chosen'])}; sigma, when chosen too: {dict(cv['sigmas'])}",
              f"- thresholds the folds chose (ours): {dict(sorted(cv['thresholds'].items()))}", "",
              "#### Each feature on all shared traces (descriptive, in-sample: not a result)\n",
              "| feature | GAIA fired | GAIA on an annotated span | SWE fired | SWE on an annotated span |",
              "| --- | --- | --- | --- | --- |"]
    for f, d in sorted(trail["signals"].items()):
        a, b = d.get("gaia", {"fired": 0, "located": 0}), d.get("swe", {"fired": 0, "located": 0})
        lines.append(f"| {f} | {a['fired']} | {pct(a['located'] / a['fired']) if a['fired'] else '-'} | "
                     f"{b['fired']} | {pct(b['located'] / b['fired']) if b['fired'] else '-'} |")
    lines.append("")
    lines.append("- categories: " + ", ".join(f"{c} x{n} -> {b}" for c, (n, b) in trail["categories"].items()))
    return "\n".join(lines) + "\n"


def render_ww(ww: dict[str, Any]) -> str:
    cv = ww["cv"]
    n = cv["n"]
    lines = [f"### Who&When: blamed agent and exact step, 5-fold cross-validation over both splits "
             f"({n['algorithm-generated']} Algorithm-Generated, {n['hand-crafted']} Hand-Crafted logs)\n",
             "Mean ± standard deviation over the held-out folds; `pooled` = the first shuffle's held-out "
             "predictions together, with a 95% Wilson interval.\n",
             "| method | AG agent | AG step | HC agent | HC step | AG pooled agent / step | HC pooled agent / step |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| published: best LLM method without ground truth | {pct(PUBLISHED_WW['algorithm-generated']['agent'])} "
             f"| {pct(PUBLISHED_WW['algorithm-generated']['step'])} | {pct(PUBLISHED_WW['hand-crafted']['agent'])} "
             f"| {pct(PUBLISHED_WW['hand-crafted']['step'])} | - | - |"]

    def pooled(x: dict[str, Any]) -> str:
        (ka, na), (ks, ns) = x["pooled_agent"], x["pooled_step"]
        la, ha = wilson(ka, na)
        ls, hs = wilson(ks, ns)
        return f"{ka}/{na} [{pct(la)}-{pct(ha)}] / {ks}/{ns} [{pct(ls)}-{pct(hs)}]"

    for name, s in cv["rows"].items():
        a, h = s["algorithm-generated"], s["hand-crafted"]
        lines.append(f"| {name} | {ms(a['agent'], True)} | {ms(a['step'], True)} | {ms(h['agent'], True)} | "
                     f"{ms(h['step'], True)} | {pooled(a)} | {pooled(h)} |")
    lines += ["", f"- policies the folds chose: {dict(cv['policies'])}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="shuffles of the fold assignment")
    parser.add_argument("--demo-runs", type=int, default=90)
    parser.add_argument("--demo-seed", type=int, default=2027)
    parser.add_argument("--no-demo", action="store_true", help="skip the generated demo runs")
    parser.add_argument("--no-variants", action="store_true",
                        help="TRAIL: only ours, the a-priori weights and the baselines (not the variants: quicker)")
    parser.add_argument("--write-model", action="store_true", help="fit on all data and write the shipped model")
    parser.add_argument("--judge", action="store_true", help="also ask the Gemini judge (needs an API key)")
    parser.add_argument("--judge-model", default="gemini-2.5-flash")
    parser.add_argument("--judge-only", action="store_true", help="only the judge's figures (no cross-validation)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not args.no_demo:
        print(render_demo(measure_demo(args.demo_runs, args.demo_seed)))
    if not (args.data / "who_and_when").is_dir() or not (args.data / "trail").is_dir():
        print(f"no labelled real data at {args.data} (needs who_and_when/ and trail/): skipped Who&When and TRAIL")
        return 0
    if args.judge_only:
        print(render_judge(measure_judge(load_trail(args.data), load_who_and_when(args.data), args.judge_model)))
        return 0
    trail = measure_trail(args.data, args.folds, args.repeats, not args.no_variants)
    print(render_trail(trail))
    ww = measure_who_and_when(args.data, args.folds, args.repeats)
    print(render_ww(ww))
    if args.write_model:
        write_model(trail["_traces"], ww["_rows"])
        print(f"wrote {MODEL_PATH.relative_to(ROOT)} (fitted on all shared data: in-sample, not a result)")
    if args.judge:
        print(render_judge(measure_judge(trail["_traces"], ww["_rows"], args.judge_model)))
    elif os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"):
        print("(an API key is set: add --judge to measure `why --judge` on the labelled runs too)")
    print(f"\n(measured in {time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
