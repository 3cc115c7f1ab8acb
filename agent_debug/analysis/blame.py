"""Blame for runs that carry no rich attributes: chat transcripts of multi-agent teams (Who&When) and agent
traces whose spans are model and tool calls (TRAIL). Everything here reads only what the run itself recorded
(who spoke, what they said, exit codes, span status, errors, model outputs), never `label.*` attributes or a
ground-truth answer, so it works the same on a user's unlabelled run.

Transcripts (`blame_transcript`): a few *signals*, each naming one message and its author, and a *fallback*
used when no signal fires. A `BlamePolicy` orders them. Signals:

- `fabrication`: the first message that admits to inventing or assuming data ("sample dataset", "simulate",
  "hypothetical", "assume", "placeholder", "I cannot access", ...): the agent went on without what it needed;
- `coordinator_stall`: the first progress ledger of a coordinator (Magentic-One's Orchestrator) that says no
  progress is being made or the team is in a loop: blamed on the worker who spoke last before it;
- `repeated_instruction`: a coordinator sends a worker nearly the same instruction again: the worker's answer to
  the first one did not deliver;
- `failed_execution`: the first code execution with a non-zero exit code (or a traceback), blamed on the agent
  who wrote the code (the message before the terminal's);
- `error_wording`: the first message saying error / failed / not found / unable to (a terminal's blamed on its
  author);
- `web_failure`: the first message of a web/search agent reporting no results, not found, access denied, a
  captcha or an error.

Fallbacks: `most_active_worker` (the speaker with the most messages, leaving out users, terminals and
coordinators, i.e. agents that address others with "-> X"), `first_speaker`, `most_frequent_speaker`,
`final_answer_agent`. `DEFAULT_POLICY` and `APRIORI_POLICY` say which; docs/blame-measurements.md says how each
was chosen and what it measures on Who&When.

`TranscriptModel` is a policy with, for ranking, each signal's fitted precision; `fit_transcript_model` is the
selection recipe, run inside each cross-validation fold by scripts/measure_blame.py and once on all the shared
data for the shipped model. Agent traces made of model and tool calls are blamed by `span_signals.py` and
`suspects.py` instead.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_debug.analysis.findings import Suspect
from agent_debug.columns import TraceSpans

USER_AGENTS = frozenset({"human", "user", "admin", "user_proxy", "userproxy"})

FABRICATION = re.compile(
    r"\bi (?:cannot|can't|can not|am unable to|am not able to) (?:access|browse|open|retrieve)|unable to access|"
    r"(?:don't|do not) have (?:direct )?access|without (?:direct )?access|hypothetical|"
    r"\bassum(?:e|ed|es|ing|ptions?)\b|placeholder|example data|sample (?:data|dataset)|"
    r"simulat(?:e|ed|es|ing|ion)\b|\bmock(?:ed)?\b|\bdummy\b|"
    r"for (?:demonstration|illustration)(?: purposes)?|fictional|made[- ]up|pretend",
    re.IGNORECASE,
)
ERROR_WORDING = re.compile(
    r"traceback|\berror\b|exception|\bfailed\b|not found|no results|could not|couldn't|unable to", re.IGNORECASE
)
_LEDGER_STALL = re.compile(
    r'"is_progress_being_made"\s*:\s*\{[^{}]*"answer"\s*:\s*false|"is_in_loop"\s*:\s*\{[^{}]*"answer"\s*:\s*true',
    re.IGNORECASE,
)
_WEB_AGENT = re.compile(r"surf|search|web|brows", re.IGNORECASE)
_WEB_FAILURE = re.compile(r"no results|not found|\b404\b|access denied|couldn't|could not|unable to|\berror\b|captcha|"
                          r"blocked", re.IGNORECASE)
_TRACEBACK = re.compile(r"traceback \(most recent call last\)", re.IGNORECASE)
_WORDS = re.compile(r"[a-z0-9]+")

_ROLE_BUCKETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"surf|search|web|brows|retriev", re.I), "retrieval_miss"),
    (re.compile(r"terminal|executor|coder|python|debug", re.I), "tool_execution"),
    (re.compile(r"orchestrat|planner|manager|coordinat", re.I), "planner_drift"),
    (re.compile(r"verif|valid|check|critic|review", re.I), "verifier_false_positive"),
)


# -- results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One message (or span) a signal blames, with the bucket that signal implies."""

    span_id: str
    agent: str
    step_index: int | None
    signal: str
    bucket: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BlameResult:
    """The agent and message blamed for a failed transcript, and every other candidate in policy order."""

    agent: str | None
    step_index: int | None
    span_id: str | None
    reason: str
    signal: str
    bucket: str
    candidates: list[Candidate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "candidates"}
        d["candidates"] = [c.as_dict() for c in self.candidates]
        return d


@dataclass(frozen=True)
class BlamePolicy:
    """Which signals count, in which order (`priority`: the first that fires; `earliest`: the one that fires on the
    earliest message), and the fallback when none fires."""

    signals: tuple[str, ...]
    fallback: str
    mode: str = "priority"

    def describe(self) -> str:
        joined = ", ".join(self.signals) or "no signal"
        return f"{self.mode}({joined}) else {self.fallback}"


# -- transcript messages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One message of a transcript, as the transcript importer recorded it."""

    step: int
    span_id: str
    agent: str
    text: str
    is_tool: bool
    exit_code: int | None
    to: str | None

    @property
    def is_user(self) -> bool:
        return self.agent.strip().lower() in USER_AGENTS


def transcript_messages(ts: TraceSpans) -> list[Message]:
    """The messages of a transcript-format trace in order (spans with `transcript.step`)."""
    out = []
    for i in range(len(ts)):
        attrs = ts.attributes(i)
        step = attrs.get("transcript.step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        content = (ts.record(i).get("payload") or {}).get("content") if ts.records is not None else None
        text = content if isinstance(content, str) else ("" if content is None else str(content))
        code = attrs.get("tool.exit_code")
        to = attrs.get("transcript.to")
        out.append(Message(step, ts.span_id[i], ts.agent_name[i], text, ts.event_type[i] == "TOOL_CALL",
                           code if isinstance(code, int) and not isinstance(code, bool) else None,
                           to if isinstance(to, str) else None))
    return sorted(out, key=lambda m: m.step)


def _speakers(ms: list[Message]) -> list[Message]:
    return [m for m in ms if not m.is_tool and not m.is_user]


def _author_before(ms: list[Message], k: int) -> Message | None:
    """Who wrote what message k (a terminal's output) ran: the nearest earlier agent message."""
    for j in range(k - 1, -1, -1):
        if not ms[j].is_tool and not ms[j].is_user:
            return ms[j]
    return None


def role_bucket(agent: str, default: str = "unclassified") -> str:
    """The subsystem an agent's name suggests (a web surfer misses retrievals, an orchestrator drifts, ...)."""
    for pattern, bucket in _ROLE_BUCKETS:
        if pattern.search(agent):
            return bucket
    return default


def _cand(m: Message, signal: str, bucket: str, reason: str) -> Candidate:
    return Candidate(m.span_id, m.agent, m.step, signal, bucket, reason)


# -- transcript signals ------------------------------------------------------------------------------------------


def _fabrication(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    for m in _speakers(ms):
        hit = FABRICATION.search(m.text)
        if hit:
            return _cand(m, "fabrication", "retrieval_miss", f"works from invented or assumed data ({hit.group(0)!r})")
    return None


def _coordinator_stall(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    for k, m in enumerate(ms):
        if m.is_tool or not _LEDGER_STALL.search(m.text):
            continue
        for j in range(k - 1, -1, -1):
            w = ms[j]
            if w.agent != m.agent and not w.is_user and w.agent not in coordinators:
                return _cand(w, "coordinator_stall", role_bucket(w.agent),
                             f"{m.agent} reported no progress / a loop right after this message (step {m.step})")
        return None
    return None


def _repeated_instruction(ms: list[Message], coordinators: set[str], threshold: float = 0.5) -> Candidate | None:
    last: dict[str, tuple[int, set[str]]] = {}
    for k, m in enumerate(ms):
        if m.to is None:
            continue
        words = set(_WORDS.findall(m.text.lower()))
        if m.to in last:
            pk, prev = last[m.to]
            if prev and len(words & prev) / len(words | prev) >= threshold:
                answer = next((x for x in ms[pk + 1:k] if x.agent == m.to), None)
                if answer is not None:
                    return _cand(answer, "repeated_instruction", role_bucket(answer.agent),
                                 f"{m.agent} had to repeat its instruction to {m.to} (step {m.step})")
        last[m.to] = (k, words)
    return None


def _failed_execution(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    for k, m in enumerate(ms):
        if m.is_tool and ((m.exit_code is not None and m.exit_code != 0) or _TRACEBACK.search(m.text)):
            author = _author_before(ms, k)
            if author is not None:
                code = f"exit code {m.exit_code}" if m.exit_code else "a traceback"
                return _cand(author, "failed_execution", "tool_execution",
                             f"code it wrote failed at step {m.step} ({code})")
    return None


def _error_wording(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    for k, m in enumerate(ms):
        if m.is_user:
            continue
        hit = ERROR_WORDING.search(m.text)
        if not hit:
            continue
        who = _author_before(ms, k) if m.is_tool else m
        if who is not None:
            return _cand(who, "error_wording", "tool_execution",
                         f"first failure wording ({hit.group(0)!r}) at step {m.step}")
    return None


def _web_failure(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    for m in _speakers(ms):
        if _WEB_AGENT.search(m.agent):
            hit = _WEB_FAILURE.search(m.text[:600])
            if hit:
                return _cand(m, "web_failure", "retrieval_miss", f"web agent reports {hit.group(0)!r}")
    return None


TRANSCRIPT_SIGNALS: dict[str, Callable[[list[Message], set[str]], Candidate | None]] = {
    "fabrication": _fabrication,
    "coordinator_stall": _coordinator_stall,
    "repeated_instruction": _repeated_instruction,
    "failed_execution": _failed_execution,
    "error_wording": _error_wording,
    "web_failure": _web_failure,
}


# -- fallbacks ----------------------------------------------------------------------------------------------------


def _first_of(ms: list[Message], agent: str, signal: str, reason: str) -> Candidate:
    first = next(m for m in ms if m.agent == agent)
    return _cand(first, signal, role_bucket(agent), reason)


def _most_of(speakers: list[Message]) -> str | None:
    if not speakers:
        return None
    counts = Counter(m.agent for m in speakers)
    first_step: dict[str, int] = {}
    for m in speakers:
        first_step.setdefault(m.agent, m.step)
    return max(counts, key=lambda a: (counts[a], -first_step[a]))


def _first_speaker(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    sp = _speakers(ms)
    return _cand(sp[0], "first_speaker", role_bucket(sp[0].agent), "first agent to speak") if sp else None


def _most_frequent_speaker(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    sp = _speakers(ms)
    top = _most_of(sp)
    return _first_of(sp, top, "most_frequent_speaker", "spoke most often") if top else None


def _most_active_worker(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    sp = _speakers(ms)
    top = _most_of([m for m in sp if m.agent not in coordinators]) or _most_of(sp)
    return _first_of(sp, top, "most_active_worker", "did most of the work (most messages, coordinators aside)") \
        if top else None


def _final_answer_agent(ms: list[Message], coordinators: set[str]) -> Candidate | None:
    sp = [m for m in _speakers(ms) if m.text.strip().strip(".").upper() != "TERMINATE"]
    if not sp:
        return None
    return _first_of(sp, sp[-1].agent, "final_answer_agent", "gave the final answer")


FALLBACKS: dict[str, Callable[[list[Message], set[str]], Candidate | None]] = {
    "most_active_worker": _most_active_worker,
    "first_speaker": _first_speaker,
    "most_frequent_speaker": _most_frequent_speaker,
    "final_answer_agent": _final_answer_agent,
}

# Chosen by the procedure in scripts/measure_blame.py on both Who&When splits together (see the docs for the
# held-out numbers of that procedure); the other signals still rank as candidates.
DEFAULT_POLICY = BlamePolicy(("fabrication", "coordinator_stall", "repeated_instruction"), "most_active_worker")
# Written down before anything was measured: the earliest anomaly, as buckets.py picks root causes.
APRIORI_POLICY = BlamePolicy(("failed_execution", "fabrication", "error_wording"), "first_speaker", mode="earliest")


@dataclass(frozen=True)
class TranscriptModel:
    """A policy and, for ranking suspects, how often each signal named the right agent when it fired (fitted
    precision; the fallback's is its accuracy)."""

    policy: BlamePolicy
    precision: dict[str, float] = field(default_factory=dict)
    fitted_on: str = "a priori"

    def score(self, signal: str) -> float:
        return self.precision.get(signal, 0.3)

    def as_dict(self) -> dict[str, Any]:
        return {"signals": list(self.policy.signals), "fallback": self.policy.fallback, "mode": self.policy.mode,
                "precision": {k: round(v, 4) for k, v in self.precision.items()}, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TranscriptModel:
        policy = BlamePolicy(tuple(d["signals"]), str(d["fallback"]), str(d.get("mode", "priority")))
        return cls(policy, {str(k): float(v) for k, v in (d.get("precision") or {}).items()},
                   str(d.get("fitted_on", "")))


def _same_agent(a: str | None, b: str) -> bool:
    return a is not None and a.strip().lower() == b.strip().lower()


def fit_transcript_model(examples: list[tuple[dict[str, Candidate | None], str]],
                         fallback_order: tuple[str, ...] | None = None, fitted_on: str = "") -> TranscriptModel:
    """The selection recipe, with no free threshold: the fallback with the best agent accuracy on `examples`
    ((candidates, labelled agent) pairs; ties: `fallback_order`), then every signal whose agent precision when
    it fires beats that accuracy, most precise first (ties: the order of TRANSCRIPT_SIGNALS)."""
    order = fallback_order or tuple(FALLBACKS)
    n = max(1, len(examples))

    def right(name: str) -> tuple[int, int]:
        fired = [(c, label) for found, label in examples if (c := found.get(name)) is not None]
        return sum(_same_agent(c.agent, label) for c, label in fired), len(fired)

    fb_hits = {f: right(f)[0] for f in order}
    fb = max(order, key=lambda f: (fb_hits[f], -order.index(f)))
    base = fb_hits[fb] / n
    names = list(TRANSCRIPT_SIGNALS)
    prec = {}
    for s in names:
        hit, fired = right(s)
        prec[s] = hit / fired if fired else 0.0
    keep = [s for s in names if right(s)[1] and prec[s] > base]
    keep.sort(key=lambda s: (-prec[s], names.index(s)))
    precision = {**{s: prec[s] for s in names}, **{f: fb_hits[f] / n for f in order}}
    return TranscriptModel(BlamePolicy(tuple(keep), fb), precision, fitted_on or f"{len(examples)} transcripts")


def default_transcript_model() -> TranscriptModel:
    """The shipped transcript model (blame_model.json), else DEFAULT_POLICY with no fitted precision."""
    from agent_debug.analysis.blame_model import load_default_model

    d = load_default_model().get("transcripts")
    if isinstance(d, dict):
        try:
            return TranscriptModel.from_dict(d)
        except (KeyError, TypeError, ValueError):
            pass
    return TranscriptModel(DEFAULT_POLICY)


def coordinators_of(ms: list[Message]) -> set[str]:
    """Agents that address other agents ("Orchestrator (-> WebSurfer)"): they route work, others do it."""
    return {m.agent for m in ms if m.to is not None}


def transcript_candidates(ts: TraceSpans) -> dict[str, Candidate | None]:
    """What every signal and fallback blames in this transcript (None: it did not fire)."""
    ms = transcript_messages(ts)
    coord = coordinators_of(ms)
    out: dict[str, Candidate | None] = {}
    for name, fn in {**TRANSCRIPT_SIGNALS, **FALLBACKS}.items():
        out[name] = fn(ms, coord)
    return out


def apply_policy(found: dict[str, Candidate | None], policy: BlamePolicy) -> Candidate | None:
    """The candidate a policy picks from precomputed `transcript_candidates`."""
    fired = [c for c in (found.get(s) for s in policy.signals) if c is not None]
    if fired:
        if policy.mode == "earliest":
            return min(fired, key=lambda c: c.step_index if c.step_index is not None else 1 << 30)
        return fired[0]
    return found.get(policy.fallback)


def blame_transcript(ts: TraceSpans, policy: BlamePolicy | None = None) -> BlameResult:
    """The agent and message most likely decisive for a failed transcript, from the messages alone."""
    policy = policy or default_transcript_model().policy
    for name in (*policy.signals, policy.fallback):
        if name not in TRANSCRIPT_SIGNALS and name not in FALLBACKS:
            raise ValueError(f"unknown blame signal {name!r}")
    found = transcript_candidates(ts)
    chosen = apply_policy(found, policy)
    ranked: list[Candidate] = []
    for name in (*policy.signals, *TRANSCRIPT_SIGNALS, policy.fallback, *FALLBACKS):
        c = found.get(name)
        if c is not None and c not in ranked:
            ranked.append(c)
    if chosen is None:
        return BlameResult(None, None, None, "no agent message to blame", "none", "unclassified", ranked)
    ranked.remove(chosen)
    return BlameResult(chosen.agent, chosen.step_index, chosen.span_id, chosen.reason, chosen.signal, chosen.bucket,
                       [chosen, *ranked])


def transcript_suspect(ts: TraceSpans) -> Suspect | None:
    """The blamed message of a transcript-format trace as a strong `Suspect`, or None when there is no message to
    blame: the hook `buckets.diagnose` calls for `source.format == "transcript"`."""
    if ts.records is None:
        return None
    result = blame_transcript(ts)
    if result.span_id is None:
        return None
    i = ts.span_id.index(result.span_id)
    return Suspect(ts.span_id[i], ts.agent_name[i], ts.name[i], ts.event_type[i], result.bucket,
                   f"transcript_{result.signal}", result.reason, "strong", ts.start_ns[i], i)
