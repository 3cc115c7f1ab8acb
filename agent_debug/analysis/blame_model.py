"""How span signals become one score per span, and how that scoring is fitted to labelled runs.

The score of a candidate span (a model call or a tool call) is a logistic function of its signals:
`score = 1 / (1 + exp(-(bias + sum(weight[f] * value[f]))))`, a probability-like number in (0, 1). Spans at or
above the model's `threshold` are the run's *suspects*; the rest are weaker ones.

Fitting (`fit_span_model`) is maximum a posteriori logistic regression with a Gaussian prior centred on
`PRIOR_WEIGHTS`, weights written down from the seeds' failure modes before anything was fitted: a signal the
labelled data never shows keeps its prior weight, and one the data contradicts moves only as far as the data
supports (`PRIOR_SIGMA`). The threshold is then the one that maximizes F1 of location prediction, chosen on
out-of-fold scores of the training runs (an inner cross-validation), never on the scores the model was fitted
to. `fit_selected_model` wraps that with the one choice of model made from data: which of the features added
last (`OPTIONAL_FEATURES`) are in, by an inner cross-validation of the same runs; a feature left out is in the
model's `off` set, and scoring, the signals and the run shape then behave as if it did not exist.
`scripts/measure_blame.py` runs this procedure inside every cross-validation fold and reports held-out figures;
the shipped `DEFAULT_MODEL` (blame_model.json) is the same procedure run once on all the shared data.

Nothing here reads labels at analysis time: labels enter only through `fit_span_model`'s examples.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

PRIOR_SIGMA = 1.0
WEIGHT_BY_ERRORS = False  # recall counts errors, not spans: a span holding three errors weighs three
PRIOR_BIAS = -2.0
# Written before fitting: failures and the reaction to them are strong; silent empties, errors hidden in a
# "successful" result, loops and admissions of fabrication are fairly strong; an agent's own "that did not work"
# is mild; plans and summaries (no action) are less likely places for an error; tool spans less likely than the
# model call that chose them (the error is usually in the choice).
PRIOR_WEIGHTS: dict[str, float] = {
    "is_tool": -1.0,
    "action_failed": 2.0,
    "reacts_to_failure": 2.0,
    "empty_result": 1.5,
    "after_empty_result": 1.5,
    "error_in_result": 1.5,
    "after_error_in_result": 1.5,
    "repeated_action": 1.5,
    "self_correction": 1.0,
    "progress_claim": -0.5,
    "fabrication": 1.5,
    "unsupported_answer": 2.0,
    "ungrounded_answer": 1.5,
    "large_result": 0.5,
    "intent_not_acted": 1.5,  # an announced call the action does not make: a concrete mismatch, like fabrication
    "ignores_result": 1.0,  # mild: moving on from a result can be right (it answered nothing asked)
    "no_action": -0.5,
    "first_action": 0.0,
    "final_answer": 0.0,
    "tool_failed": 2.0,
    "tool_repeated": 1.5,
    "tool_empty_result": 1.5,
    "tool_error_text": 1.5,
    "disagreement": 2.0,
    "rule_strong": 4.0,
    "rule_weak": 0.0,  # a weak rule names a symptom: a suspect only beside stronger evidence
    "single_agent": 0.0,  # run shape (`suspects.run_shape`): no opinion before fitting
}
# The failure signals: the features whose prior weight is positive (fixed with the priors, never by a fit). A
# run-shape feature only ever sits beside one of them.
EVIDENCE = frozenset(f for f, w in PRIOR_WEIGHTS.items() if w > 0)
# Features whose place in the model the fitting decides (`fit_selected_model`: an inner cross-validation of the
# training runs), because they were added after the others with the shared data in view: the run shape, and the
# two signals defined after it. The rest are always in.
OPTIONAL_FEATURES = ("single_agent", "ignores_result", "intent_not_acted")
SIGMAS = (0.5, 1.0, 2.0)  # the prior's widths an inner cross-validation may choose among (a variant, not shipped)
RUN_SHAPE = frozenset({"single_agent"})  # `suspects.RUN_SHAPE_FEATURES` (that module imports this one)
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # candidate thresholds: 0.05 .. 0.95


@dataclass
class SpanModel:
    """Weights, bias and threshold of the span score, and where they came from."""

    weights: dict[str, float]
    bias: float
    threshold: float
    fitted_on: str = "prior only"
    details: dict[str, Any] = field(default_factory=dict)
    off: frozenset[str] = frozenset()  # features the fitting left out (`OPTIONAL_FEATURES`): as if they did not exist

    def logit(self, x: dict[str, float]) -> float:
        return self.bias + sum(self.weights.get(f, PRIOR_WEIGHTS.get(f, 0.0)) * v for f, v in x.items()
                               if f not in self.off)

    def score(self, x: dict[str, float]) -> float:
        return _sigmoid(self.logit(x))

    def contributions(self, x: dict[str, float]) -> list[tuple[str, float]]:
        """Each feature's share of the logit, largest first (which signal made this span a suspect)."""
        out = [(f, self.weights.get(f, PRIOR_WEIGHTS.get(f, 0.0)) * v) for f, v in x.items() if f not in self.off]
        return sorted(out, key=lambda t: -t[1])

    def as_dict(self) -> dict[str, Any]:
        return {"weights": {k: round(v, 4) for k, v in sorted(self.weights.items())}, "bias": round(self.bias, 4),
                "threshold": self.threshold, "off": sorted(self.off), "fitted_on": self.fitted_on,
                "details": self.details}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpanModel:
        return cls({str(k): float(v) for k, v in d["weights"].items()}, float(d["bias"]), float(d["threshold"]),
                   str(d.get("fitted_on", "")), dict(d.get("details") or {}), frozenset(map(str, d.get("off") or ())))


PRIOR_MODEL = SpanModel(dict(PRIOR_WEIGHTS), PRIOR_BIAS, 0.5)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# -- fitting -------------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One candidate span of a labelled run: its features, and (for fitting and scoring only) how many annotated
    errors sit on it."""

    span_id: str
    features: dict[str, float]
    errors: int = 0


@dataclass
class LabelledRun:
    """A labelled run: its candidate spans and the number of annotated errors in all (some may sit on spans that
    are no candidate, and count as missed)."""

    run_id: str
    group: str
    candidates: list[Candidate]
    total_errors: int


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the systems are ~20x20)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[piv] = m[piv], m[col]
        if abs(m[col][col]) < 1e-12:
            continue
        for r in range(n):
            if r != col and m[r][col]:
                f = m[r][col] / m[col][col]
                for c in range(col, n + 1):
                    m[r][c] -= f * m[col][c]
    return [m[i][n] / m[i][i] if abs(m[i][i]) > 1e-12 else 0.0 for i in range(n)]


def fit_weights(runs: list[LabelledRun], sigma: float = PRIOR_SIGMA) -> tuple[dict[str, float], float]:
    """MAP logistic regression (Newton's method) of "is an annotated location" on the candidates' features, with
    a Gaussian prior N(PRIOR_WEIGHTS, sigma^2) on every weight and on the bias."""
    names = sorted({f for r in runs for c in r.candidates for f in c.features} | set(PRIOR_WEIGHTS))
    # identical feature vectors are pooled: a few hundred distinct rows instead of thousands of spans
    rows: dict[tuple[float, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in runs:
        for c in r.candidates:
            key = tuple(c.features.get(f, 0.0) for f in names)
            if c.errors:
                rows[key][0] += c.errors if WEIGHT_BY_ERRORS else 1
            else:
                rows[key][1] += 1
    prior = [PRIOR_BIAS] + [PRIOR_WEIGHTS.get(f, 0.0) for f in names]
    w = prior[:]
    d = len(w)
    lam = 1.0 / (sigma * sigma)
    data = [((1.0, *k), pos, neg) for k, (pos, neg) in rows.items()]
    for _ in range(50):
        grad = [-lam * (w[j] - prior[j]) for j in range(d)]
        hess = [[-lam if i == j else 0.0 for j in range(d)] for i in range(d)]
        for x, pos, neg in data:
            p = _sigmoid(sum(wj * xj for wj, xj in zip(w, x, strict=True)))
            g = pos - (pos + neg) * p
            h = (pos + neg) * p * (1 - p)
            nz = [j for j in range(d) if x[j]]
            for j in nz:
                grad[j] += g * x[j]
                hj = h * x[j]
                row = hess[j]
                for k in nz:
                    row[k] -= hj * x[k]
        step = _solve([[-v for v in row] for row in hess], grad)
        w = [wj + sj for wj, sj in zip(w, step, strict=True)]
        if max(abs(s) for s in step) < 1e-6:
            break
    return dict(zip(names, w[1:], strict=True)), w[0]


def location_f1(runs: list[LabelledRun], chosen: dict[str, set[str]]) -> dict[str, float]:
    """Pooled location recall (annotated errors whose span is chosen), precision (chosen spans that hold an
    annotated error) and F1 over `runs`; `chosen` maps run id to the chosen span ids."""
    errors = hits = predicted = correct = 0
    for r in runs:
        pick = chosen.get(r.run_id, set())
        errors += r.total_errors
        predicted += len(pick)
        for c in r.candidates:
            if c.span_id in pick and c.errors:
                hits += c.errors
                correct += 1
    recall = hits / errors if errors else 0.0
    precision = correct / predicted if predicted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall": recall, "precision": precision, "f1": f1, "errors": errors, "predicted": predicted}


def best_threshold(runs: list[LabelledRun], scores: dict[str, dict[str, float]]) -> float:
    """The threshold in THRESHOLDS with the best mean F1 over the groups of `runs` (each benchmark counts the same,
    however many runs it has), every run keeping at least its best-scored span; ties: the higher threshold."""
    groups = sorted({r.group for r in runs})
    best, best_f1 = 0.5, -1.0
    for t in THRESHOLDS:
        chosen = {r.run_id: select(scores[r.run_id], t) for r in runs}
        f1 = sum(location_f1([r for r in runs if r.group == g], chosen)["f1"] for g in groups) / len(groups)
        if f1 >= best_f1:
            best, best_f1 = t, f1
    return best


def select(scores: dict[str, float], threshold: float) -> set[str]:
    """The suspects among scored spans: every one at or above the threshold, else the best one alone (a run
    under investigation always gets its most suspect span)."""
    chosen = {s for s, v in scores.items() if v >= threshold}
    if not chosen and scores:
        chosen = {max(scores, key=lambda s: (scores[s], s))}
    return chosen


def folds(runs: list[LabelledRun], k: int, seed: int) -> list[list[LabelledRun]]:
    """k folds, stratified by `group` (each group dealt round-robin after a seeded shuffle)."""
    rng = random.Random(seed)
    out: list[list[LabelledRun]] = [[] for _ in range(k)]
    by_group: dict[str, list[LabelledRun]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r.run_id):
        by_group[r.group].append(r)
    n = 0
    for g in sorted(by_group):
        members = by_group[g]
        rng.shuffle(members)
        for r in members:
            out[n % k].append(r)
            n += 1
    return out


def fit_span_model(runs: list[LabelledRun], *, inner_folds: int = 4, seed: int = 0,
                   sigma: float = PRIOR_SIGMA, fitted_on: str = "") -> SpanModel:
    """The whole procedure on `runs`: weights by MAP fit, threshold by the best F1 of inner out-of-fold scores."""
    weights, bias = fit_weights(runs, sigma)
    scores: dict[str, dict[str, float]] = {}
    parts = folds(runs, min(inner_folds, max(2, len(runs))), seed)
    for i, held in enumerate(parts):
        train = [r for j, p in enumerate(parts) if j != i for r in p]
        w, b = fit_weights(train, sigma) if train else (weights, bias)
        m = SpanModel(w, b, 0.5)
        for r in held:
            scores[r.run_id] = {c.span_id: m.score(c.features) for c in r.candidates}
    threshold = best_threshold(runs, scores)
    return SpanModel(weights, bias, threshold, fitted_on or f"{len(runs)} labelled runs",
                     {"sigma": sigma, "inner_folds": inner_folds})


def without(runs: list[LabelledRun], off: frozenset[str]) -> list[LabelledRun]:
    """The runs as if the features `off` did not exist: taken out of every candidate, and the run shape taken
    off a candidate left with no failure signal (`suspects.shaped`), as `suspects.candidate_features` does."""
    if not off:
        return runs

    def strip(x: dict[str, float]) -> dict[str, float]:
        y = {f: v for f, v in x.items() if f not in off}
        if EVIDENCE.isdisjoint(y):
            y = {f: v for f, v in y.items() if f not in RUN_SHAPE}
        return y

    return [LabelledRun(r.run_id, r.group, [Candidate(c.span_id, strip(c.features), c.errors) for c in r.candidates],
                        r.total_errors) for r in runs]


def inner_f1(runs: list[LabelledRun], *, inner_folds: int, seed: int, sigma: float) -> float:
    """The procedure's (`fit_span_model`) held-out F1 on `runs` alone: an inner k-fold split, every fold's
    suspects chosen by the model fitted on the others, pooled, F1 averaged over the groups."""
    parts = folds(runs, min(inner_folds, max(2, len(runs))), seed)
    chosen: dict[str, set[str]] = {}
    for i, held in enumerate(parts):
        train = [r for j, p in enumerate(parts) if j != i for r in p]
        m = fit_span_model(train, seed=seed, sigma=sigma)
        for r in held:
            chosen[r.run_id] = select({c.span_id: m.score(c.features) for c in r.candidates}, m.threshold)
    groups = sorted({r.group for r in runs})
    return sum(location_f1([r for r in runs if r.group == g], chosen)["f1"] for g in groups) / len(groups)


def fit_selected_model(runs: list[LabelledRun], *, optional: tuple[str, ...] = OPTIONAL_FEATURES,
                       sigmas: tuple[float, ...] = (PRIOR_SIGMA,), inner_folds: int = 4, seed: int = 0,
                       fitted_on: str = "") -> SpanModel:
    """`fit_span_model` with the choices made on the training runs too: which `optional` features are in, and
    (when several are offered) the prior's sigma, each candidate judged by `inner_f1` on an inner split (seeded
    apart from the threshold's). Candidates are tried smallest first (fewest features, then the given sigma
    order) and a later one must do strictly better: a tie keeps the simpler model."""
    subsets: list[frozenset[str]] = [frozenset()]
    for f in optional:
        subsets += [s | {f} for s in subsets]
    subsets.sort(key=len)
    best: tuple[float, frozenset[str], float] | None = None
    tried: dict[str, float] = {}
    for on in subsets:
        off = frozenset(optional) - on
        for sigma in sigmas:
            f1 = inner_f1(without(runs, off), inner_folds=inner_folds, seed=seed + 7919, sigma=sigma)
            tried[f"{'+'.join(sorted(on)) or 'none'} sigma {sigma}"] = round(f1, 4)
            if best is None or f1 > best[0] + 1e-12:
                best = (f1, on, sigma)
    assert best is not None
    _, on, sigma = best
    off = frozenset(optional) - on
    model = fit_span_model(without(runs, off), seed=seed, sigma=sigma, fitted_on=fitted_on)
    model.off = off
    model.details.update({"optional": list(optional), "inner_f1": tried})
    return model


# -- the shipped model ---------------------------------------------------------------------------------------------

MODEL_FILE = "blame_model.json"


def load_default_model() -> dict[str, Any]:
    """The packaged blame model (`{"spans": SpanModel, "transcripts": {...}}`), or the priors when absent."""
    try:
        raw = resources.files("agent_debug.analysis").joinpath(MODEL_FILE).read_bytes()
        return dict(orjson.loads(raw))
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}


def default_span_model() -> SpanModel:
    d = load_default_model().get("spans")
    return SpanModel.from_dict(d) if isinstance(d, dict) else PRIOR_MODEL
