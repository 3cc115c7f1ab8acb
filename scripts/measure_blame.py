"""Measure blame against labelled runs: the demo's injected faults, Who&When and TRAIL (../shared/data).

    .venv/bin/python scripts/measure_blame.py [--data PATH] [--no-demo] [--demo-runs 45] [--demo-seed 2027]

What it measures (docs/blame-measurements.md explains every row):

- demo: a fresh demo batch (its own seed), bucketed by `bucket_runs`: bucket accuracy, root-cause span accuracy,
  passing runs bucketed;
- Who&When, each split on its own: agent-level and step-level (exact `mistake_step`) accuracy of
  `blame_transcript` under the default policy and the a-priori policy, of every signal alone, of trivial
  baselines, and of the policy-selection procedure evaluated on data it did not see (chosen on the other split;
  leave-one-out within the split). Labels are read from the root's `label.*` attributes here, for scoring only;
  the analysis never sees them;
- TRAIL: error-location recall (TRAIL's "location accuracy"), precision and F1 of `blame_spans` against the
  annotated `location` span ids, and joint location+category accuracy through the mapping below, for the GAIA
  and SWE-bench traces apart.

Exits 0 with a message when the data folder is absent (a fresh clone has none).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent_debug.analysis.blame import (  # noqa: E402
    APRIORI_POLICY,
    DEFAULT_POLICY,
    DEFAULT_SPAN_SIGNALS,
    FALLBACKS,
    SPAN_SIGNALS,
    TRANSCRIPT_SIGNALS,
    BlamePolicy,
    Candidate,
    apply_policy,
    blame_span_candidates,
    transcript_candidates,
)
from agent_debug.analysis.source import FileSource  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
SPLITS = {"algorithm-generated": "Algorithm-Generated", "hand-crafted": "Hand-Crafted"}
PUBLISHED_WW = {  # Who&When (ICML 2025), best LLM method without ground truth
    "algorithm-generated": {"agent": 0.511, "step": 0.166},
    "hand-crafted": {"agent": 0.534, "step": 0.088},
}
PUBLISHED_TRAIL = {"location": 0.546, "joint": 0.183}  # TRAIL, Gemini 2.5 Pro on GAIA (recall-only)

# TRAIL's 21 categories (three branches) onto our buckets. Reasoning and output errors our buckets do not name
# (hallucinations, misreading tool output, formatting, instruction non-compliance) go to `unclassified`.
TRAIL_TO_BUCKET: dict[str, str] = {
    # System execution errors: configuration, API issues, resource management
    "tool definition issues": "tool_execution",
    "environment setup errors": "tool_execution",
    "rate limiting": "tool_execution",
    "authentication errors": "tool_execution",
    "service errors": "tool_execution",
    "resource not found": "tool_execution",
    "resource exhaustion": "tool_execution",
    "timeout issues": "tool_execution",
    # Information processing
    "poor information retrieval": "retrieval_miss",
    "tool output misinterpretation": "unclassified",
    # Decision making
    "incorrect problem identification": "planner_drift",
    "tool selection errors": "planner_drift",
    # Planning and coordination
    "context handling failures": "planner_drift",
    "resource abuse": "planner_drift",
    "goal deviation": "planner_drift",
    "task orchestration": "planner_drift",
    # Hallucinations and output generation
    "language-only": "unclassified",
    "tool-related": "unclassified",
    "formatting errors": "unclassified",
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


# -- demo -----------------------------------------------------------------------------------------------------------


def measure_demo(runs: int, seed: int) -> dict[str, Any]:
    from agent_debug.analysis.buckets import bucket_runs, load_rules
    from agent_debug.demo.runner import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(tmp, runs, seed=seed, packets=False)
        report = bucket_runs(FileSource([result.trace_dir]), None, load_rules())
    by_trace = {d.trace_id: d for d in report.runs}
    failed = [lab for lab in result.runs if not lab.passed]
    bucket_ok = sum(1 for lab in failed if lab.trace_id in by_trace and by_trace[lab.trace_id].bucket == lab.bucket)
    rc_ok = sum(1 for lab in failed if lab.trace_id in by_trace
                and by_trace[lab.trace_id].root_cause["span_id"] == lab.root_cause_span_id)
    passing_bucketed = sum(1 for lab in result.runs if lab.passed and lab.trace_id in by_trace)
    return {"runs": runs, "seed": seed, "failed": len(failed), "bucket_accuracy": bucket_ok / max(1, len(failed)),
            "root_cause_accuracy": rc_ok / max(1, len(failed)), "passing_bucketed": passing_bucketed}


# -- Who&When -------------------------------------------------------------------------------------------------------


@dataclass
class LabelledTranscript:
    """One failed transcript: what each signal blames, and (for scoring only) the label."""

    source_file: str
    found: dict[str, Candidate | None]
    speakers: dict[int, str]  # step -> agent, for the "always step k" baselines
    label_agent: str
    label_step: int


def load_who_and_when(split_dir: Path) -> list[LabelledTranscript]:
    src = FileSource([split_dir])
    out = []
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
        out.append(LabelledTranscript(s.source_file or s.trace_id, transcript_candidates(ts), speakers, agent, step))
    return sorted(out, key=lambda r: (len(r.source_file), r.source_file))


def same_agent(a: str | None, b: str) -> bool:
    return a is not None and a.strip().lower() == b.strip().lower()


@dataclass
class Score:
    n: int = 0
    fired: int = 0
    agent: int = 0
    step: int = 0
    agent_when_fired: int = 0

    @property
    def agent_acc(self) -> float:
        return self.agent / self.n if self.n else 0.0

    @property
    def step_acc(self) -> float:
        return self.step / self.n if self.n else 0.0

    @property
    def precision(self) -> float:
        return self.agent_when_fired / self.fired if self.fired else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "fired": self.fired, "agent": round(self.agent_acc, 4), "step": round(self.step_acc, 4),
                "agent_precision_when_fired": round(self.precision, 4)}


def score(rows: Iterable[LabelledTranscript], pick: Callable[[LabelledTranscript], tuple[str | None, int | None]]
          ) -> Score:
    sc = Score()
    for r in rows:
        sc.n += 1
        agent, step = pick(r)
        if agent is None:
            continue
        sc.fired += 1
        hit = same_agent(agent, r.label_agent)
        sc.agent += hit
        sc.agent_when_fired += hit
        sc.step += step == r.label_step
    return sc


def by_candidate(name: str) -> Callable[[LabelledTranscript], tuple[str | None, int | None]]:
    def pick(r: LabelledTranscript) -> tuple[str | None, int | None]:
        c = r.found.get(name)
        return (c.agent, c.step_index) if c else (None, None)

    return pick


def by_policy(policy: BlamePolicy) -> Callable[[LabelledTranscript], tuple[str | None, int | None]]:
    def pick(r: LabelledTranscript) -> tuple[str | None, int | None]:
        c = apply_policy(r.found, policy)
        return (c.agent, c.step_index) if c else (None, None)

    return pick


def by_step(k: int) -> Callable[[LabelledTranscript], tuple[str | None, int | None]]:
    return lambda r: (r.speakers.get(k), k if k in r.speakers else None)


def select_policy(rows: list[LabelledTranscript], fallback_order: tuple[str, ...] | None = None) -> BlamePolicy:
    """The selection procedure, a fixed recipe with no free threshold: the fallback with the best agent accuracy
    on `rows` (ties: `fallback_order`), then every signal whose agent precision when it fires beats that fallback's
    accuracy, highest precision first (ties: the order of TRANSCRIPT_SIGNALS)."""
    order = fallback_order or tuple(FALLBACKS)
    fb = max(order, key=lambda f: (score(rows, by_candidate(f)).agent, -order.index(f)))
    base = score(rows, by_candidate(fb)).agent_acc
    names = list(TRANSCRIPT_SIGNALS)
    prec = {s: score(rows, by_candidate(s)) for s in names}
    keep = [s for s in names if prec[s].fired and prec[s].precision > base]
    keep.sort(key=lambda s: (-prec[s].precision, names.index(s)))
    return BlamePolicy(tuple(keep), fb)


def leave_one_out(rows: list[LabelledTranscript], fallback_order: tuple[str, ...] | None = None
                  ) -> tuple[Score, Counter[str]]:
    sc, chosen = Score(), Counter()
    for i, r in enumerate(rows):
        policy = select_policy(rows[:i] + rows[i + 1:], fallback_order)
        chosen[policy.describe()] += 1
        one = score([r], by_policy(policy))
        sc.n += 1
        sc.fired += one.fired
        sc.agent += one.agent
        sc.step += one.step
        sc.agent_when_fired += one.agent_when_fired
    return sc, chosen


def engine_score(split_dir: Path) -> Score:
    """What `agent-debug bucket` names as root cause today (buckets.diagnose, with or without the blame hook)."""
    from agent_debug.analysis.buckets import bucket_runs, load_rules

    src = FileSource([split_dir])
    sc = Score()
    for d in bucket_runs(src, None, load_rules()).runs:
        ts = src.load(d.trace_id, records=True)
        labels = ts.attributes(ts.span_id.index("run")) if "run" in ts.span_id else {}
        if not isinstance(labels.get("label.mistake_agent"), str):
            continue
        sc.n += 1
        sc.fired += 1
        hit = same_agent(d.root_cause["agent_name"], labels["label.mistake_agent"])
        sc.agent += hit
        sc.agent_when_fired += hit
        sc.step += d.root_cause["attributes"].get("transcript.step") == labels.get("label.mistake_step")
    return sc


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (small samples: these intervals are wide)."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def measure_who_and_when(data: Path) -> dict[str, Any]:
    splits = {name: load_who_and_when(data / "who_and_when" / folder) for name, folder in SPLITS.items()}
    out: dict[str, Any] = {"splits": {}}
    for name, rows in splits.items():
        mode = Counter(r.label_agent.lower() for r in rows).most_common(1)[0][0] if rows else ""
        baselines = {
            "first speaker": score(rows, by_candidate("first_speaker")),
            "most frequent speaker": score(rows, by_candidate("most_frequent_speaker")),
            "agent giving the final answer": score(rows, by_candidate("final_answer_agent")),
            "always step 0": score(rows, by_step(0)),
            "always step 1": score(rows, by_step(1)),
            f"label mode '{mode}' (uses labels)": score(rows, lambda r: (mode, None)),
        }
        signals = {s: score(rows, by_candidate(s)) for s in (*TRANSCRIPT_SIGNALS, "most_active_worker")}
        loo, loo_chosen = leave_one_out(rows)
        out["splits"][name] = {
            "n": len(rows),
            "default": score(rows, by_policy(DEFAULT_POLICY)),
            "apriori": score(rows, by_policy(APRIORI_POLICY)),
            "baselines": baselines,
            "trivial_best_agent": max(baselines["first speaker"].agent_acc,
                                      baselines["most frequent speaker"].agent_acc),
            "signals": signals,
            "loo": loo,
            "loo_policies": dict(loo_chosen),
            "engine": engine_score(data / "who_and_when" / SPLITS[name]),
        }
    names = list(splits)
    for a, b in ((names[0], names[1]), (names[1], names[0])):
        policy = select_policy(splits[a])
        out["splits"][b]["cross"] = (policy, score(splits[b], by_policy(policy)))
        # the other tie-break: most_frequent_speaker before most_active_worker (they tie wherever no agent
        # addresses another, e.g. every AG2 group chat)
        alt_order = ("most_frequent_speaker", "most_active_worker", "first_speaker", "final_answer_agent")
        alt = select_policy(splits[a], alt_order)
        out["splits"][b]["cross_alt"] = (alt, score(splits[b], by_policy(alt)))
    union = select_policy(splits[names[0]] + splits[names[1]])
    out["union_policy"] = union
    return out


# -- TRAIL ----------------------------------------------------------------------------------------------------------


@dataclass
class TrailTrace:
    trace_id: str
    benchmark: str  # gaia | swe
    llm_spans: list[str]
    error_spans: list[str]
    candidates: list[Any]
    errors: list[tuple[str, str]] = field(default_factory=list)  # (location, raw category)


def load_trail(data: Path) -> list[TrailTrace]:
    folder = data / "trail"
    src = FileSource([folder / "traces"])
    by_file: dict[str, str] = {}
    for s in src.list():
        by_file[Path(s.source_file or s.trace_id).stem] = s.trace_id
    out = []
    for ann_path in sorted((folder / "annotations").glob("*.json")):
        tid = by_file.get(ann_path.stem)
        if tid is None:
            continue
        ts = src.load(tid, records=True)
        apps = " ".join(str(ts.attributes(i).get("pat.app", "")) for i in range(len(ts))).lower()
        ann = load_tolerant_json(ann_path)
        errors = [(str(e.get("location")), str(e.get("category", ""))) for e in ann.get("errors", [])
                  if isinstance(e, dict)]
        out.append(TrailTrace(
            tid, "swe" if "swe" in apps else "gaia",
            [ts.span_id[i] for i in range(len(ts)) if ts.event_type[i] == "LLM_CALL"],
            [ts.span_id[i] for i in range(len(ts)) if ts.status[i] == "error"],
            blame_span_candidates(ts), errors))
    return out


def trail_scores(traces: list[TrailTrace], predict: Callable[[TrailTrace], list[tuple[str, str]]]) -> dict[str, Any]:
    errors = hits = joint = named = named_joint = predicted = correct_pred = 0
    for t in traces:
        pred = dict(predict(t))
        locs = {loc for loc, _ in t.errors}
        predicted += len(pred)
        correct_pred += sum(1 for sid in pred if sid in locs)
        for loc, cat in t.errors:
            errors += 1
            bucket = category_bucket(cat)
            hit = loc in pred
            hits += hit
            joint += hit and pred[loc] == bucket
            if bucket != "unclassified":
                named += 1
                named_joint += hit and pred[loc] == bucket
    recall = hits / errors if errors else 0.0
    precision = correct_pred / predicted if predicted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"errors": errors, "predicted": predicted, "recall": recall, "precision": precision, "f1": f1,
            "joint": joint / errors if errors else 0.0, "named_errors": named,
            "joint_named": named_joint / named if named else 0.0}


def spans_with(signals: tuple[str, ...]) -> Callable[[TrailTrace], list[tuple[str, str]]]:
    def predict(t: TrailTrace) -> list[tuple[str, str]]:
        out: dict[str, str] = {}
        for b in t.candidates:
            if b.signal in signals:
                out.setdefault(b.span_id, b.category)
        return list(out.items())

    return predict


def measure_trail(data: Path) -> dict[str, Any]:
    traces = load_trail(data)
    groups = {"gaia": [t for t in traces if t.benchmark == "gaia"], "swe": [t for t in traces if t.benchmark == "swe"],
              "all": traces}
    rows: dict[str, Callable[[TrailTrace], list[tuple[str, str]]]] = {
        "blame_spans (default signals)": spans_with(DEFAULT_SPAN_SIGNALS),
        "all signals": spans_with(SPAN_SIGNALS),
        **{f"signal {s} alone": spans_with((s,)) for s in SPAN_SIGNALS},
        "baseline: every LLM span": lambda t: [(s, "unclassified") for s in t.llm_spans],
        "baseline: every error-status span": lambda t: [(s, "tool_execution") for s in t.error_spans],
        "baseline: the last LLM span": lambda t: [(t.llm_spans[-1], "unclassified")] if t.llm_spans else [],
    }
    cats = Counter(norm_category(c) for t in traces for _, c in t.errors)
    return {"traces": {g: len(v) for g, v in groups.items()},
            "errors": {g: sum(len(t.errors) for t in v) for g, v in groups.items()},
            "categories": {c: (n, TRAIL_TO_BUCKET.get(c, "unclassified")) for c, n in cats.most_common()},
            "rows": {name: {g: trail_scores(v, fn) for g, v in groups.items()} for name, fn in rows.items()}}


# -- output ---------------------------------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_demo(demo: dict[str, Any]) -> str:
    return "\n".join([
        f"### Demo labelled set (seed {demo['seed']}, {demo['runs']} runs, {demo['failed']} failed)\n",
        "| measure | value | target |\n| --- | --- | --- |",
        f"| bucket accuracy | {pct(demo['bucket_accuracy'])} | >= 95% |",
        f"| root-cause span accuracy | {pct(demo['root_cause_accuracy'])} | >= 90% |",
        f"| passing runs bucketed | {demo['passing_bucketed']} | 0 |\n",
    ])


def render_real(ww: dict[str, Any], trail: dict[str, Any]) -> str:
    """Markdown tables (readable as plain text too)."""
    lines: list[str] = []
    add = lines.append
    add("### Who&When: agent-level and step-level accuracy (exact step), each split on its own\n")
    add("| method | Algorithm-Generated agent | step | Hand-Crafted agent | step |\n| --- | --- | --- | --- | --- |")
    s = ww["splits"]
    a, h = s["algorithm-generated"], s["hand-crafted"]

    def row(label: str, x: Score | None, y: Score | None) -> None:
        def cell(v: Score | None, field_: str) -> str:
            if v is None:
                return "-"
            return pct(getattr(v, field_)) + (f" ({v.agent}/{v.n})" if field_ == "agent_acc" else f" ({v.step}/{v.n})")
        add(f"| {label} | {cell(x, 'agent_acc')} | {cell(x, 'step_acc')} | {cell(y, 'agent_acc')} "
            f"| {cell(y, 'step_acc')} |")

    add(f"| published: best LLM method, no ground truth | 51.1% | 16.6% | 53.4% | 8.8% |")
    row("**held out**: policy chosen on the other split", a["cross"][1], h["cross"][1])
    row("**held out**: leave-one-out within the split", a["loo"], h["loo"])
    row("a-priori policy (fixed before measuring)", a["apriori"], h["apriori"])
    row("shipped default policy (chosen on both splits: in-sample)", a["default"], h["default"])
    row("`agent-debug bucket` root cause, as buckets.py is now", a["engine"], h["engine"])
    for name in a["baselines"]:
        row(f"trivial: {name}", a["baselines"][name], h["baselines"].get(name))
    for name in h["baselines"]:
        if name not in a["baselines"]:
            row(f"trivial: {name}", None, h["baselines"][name])
    add("")
    add(f"- policy chosen on Hand-Crafted, scored on Algorithm-Generated: `{a['cross'][0].describe()}`")
    add(f"- policy chosen on Algorithm-Generated, scored on Hand-Crafted: `{h['cross'][0].describe()}`; with the "
        f"fallback tie broken the other way (`{h['cross_alt'][0].describe()}`): "
        f"agent {pct(h['cross_alt'][1].agent_acc)}, "
        f"step {pct(h['cross_alt'][1].step_acc)}")
    for label, key in (("chosen on the other split", "cross"), ("leave-one-out", "loo")):
        xa = a[key][1] if key == "cross" else a[key]
        xh = h[key][1] if key == "cross" else h[key]
        ci = [wilson(v.agent, v.n) for v in (xa, xh)] + [wilson(v.step, v.n) for v in (xa, xh)]
        add(f"- 95% Wilson intervals, held out ({label}): agent AG {pct(ci[0][0])}-{pct(ci[0][1])}, "
            f"HC {pct(ci[1][0])}-{pct(ci[1][1])}; step AG {pct(ci[2][0])}-{pct(ci[2][1])}, "
            f"HC {pct(ci[3][0])}-{pct(ci[3][1])}")
    add(f"- leave-one-out picks, Algorithm-Generated: {a['loo_policies']}")
    add(f"- leave-one-out picks, Hand-Crafted: {h['loo_policies']}")
    add(f"- the procedure on both splits together picks `{ww['union_policy'].describe()}` "
        f"(shipped default: `{DEFAULT_POLICY.describe()}`)\n")
    add("#### Each signal alone (fired = runs where it names someone; precision = agent right when it fires)\n")
    add("| signal | AG fired | AG precision | AG agent | AG step | HC fired | HC precision | HC agent | HC step |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in a["signals"]:
        x, y = a["signals"][name], h["signals"][name]
        add(f"| {name} | {x.fired}/{x.n} | {pct(x.precision)} | {pct(x.agent_acc)} | {pct(x.step_acc)} | "
            f"{y.fired}/{y.n} | {pct(y.precision)} | {pct(y.agent_acc)} | {pct(y.step_acc)} |")
    add("")
    add(f"### TRAIL: error location and category ({trail['traces']['gaia']} GAIA traces, {trail['errors']['gaia']} "
        f"errors; {trail['traces']['swe']} SWE-bench traces, {trail['errors']['swe']} errors)\n")
    g0 = trail["rows"]["blame_spans (default signals)"]
    add(f"Joint (named) = joint accuracy over the errors whose category maps to a named bucket, not `unclassified` "
        f"(GAIA {g0['gaia']['named_errors']}, SWE {g0['swe']['named_errors']}).\n")
    add("| method | GAIA location recall | precision | F1 | joint loc+cat | joint (named) "
        "| SWE recall | precision | F1 | joint | joint (named) |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    add(f"| published: Gemini 2.5 Pro (GAIA, recall-only) | {PUBLISHED_TRAIL['location']:.3f} | - | - | "
        f"{PUBLISHED_TRAIL['joint']:.3f} | - | - | - | - | - | - |")
    for name, g in trail["rows"].items():
        x, y = g["gaia"], g["swe"]
        add(f"| {name} | {x['recall']:.3f} | {x['precision']:.3f} | {x['f1']:.3f} | {x['joint']:.3f} | "
            f"{x['joint_named']:.3f} | {y['recall']:.3f} | {y['precision']:.3f} | {y['f1']:.3f} | {y['joint']:.3f} | "
            f"{y['joint_named']:.3f} |")
    add("")
    add("- categories seen: " + ", ".join(f"{c} x{n} -> {b}" for c, (n, b) in trail["categories"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--demo-runs", type=int, default=45)
    parser.add_argument("--demo-seed", type=int, default=2027)
    parser.add_argument("--no-demo", action="store_true", help="skip the demo labelled set")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not args.no_demo:
        print(render_demo(measure_demo(args.demo_runs, args.demo_seed)))
    if not (args.data / "who_and_when").is_dir() or not (args.data / "trail").is_dir():
        print(f"no labelled real data at {args.data} (needs who_and_when/ and trail/): skipped Who&When and TRAIL")
        return 0
    print(render_real(measure_who_and_when(args.data), measure_trail(args.data)))
    print(f"\n(measured in {time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
