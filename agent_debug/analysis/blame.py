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

Agent traces (`blame_spans`): the spans likely to hold an error, each with a bucket. A failure is blamed on the
model call that decided the failing action, not on the tool that carried it out; a model call that reacts to a
failure, that admits to fabricating, or that gives a final answer with no successful tool call behind it is
also a suspect.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_debug.analysis.spans import TraceSpans

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
STRUGGLE = re.compile(
    r"\bit seems\b|doesn't seem|does not seem|didn't (?:match|work|find)|did not (?:match|work|find)|"
    r"wasn't (?:properly|found)|not (?:properly )?displayed|no (?:matches|results)|unable to|failed to",
    re.IGNORECASE,
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
_FINAL_ANSWER = re.compile(r"final_answer\s*\(|\"name\"\s*:\s*\"final_answer\"", re.IGNORECASE)

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
    first_step = {}
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
    policy = policy or DEFAULT_POLICY
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


def transcript_suspect(ts: TraceSpans) -> Any:
    """The blamed message of a transcript-format trace as a strong `buckets.Suspect`, or None when there is no
    message to blame: the hook `diagnose()` calls for `source.format == "transcript"`."""
    from agent_debug.analysis.buckets import Suspect

    if ts.records is None:
        return None
    result = blame_transcript(ts)
    if result.span_id is None:
        return None
    i = ts.span_id.index(result.span_id)
    return Suspect(ts.span_id[i], ts.agent_name[i], ts.name[i], ts.event_type[i], result.bucket,
                   f"transcript_{result.signal}", result.reason, "strong", ts.start_ns[i], i)


# -- agent traces (spans) -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanBlame:
    """A span likely to hold an error, the bucket it suggests, and which signal said so."""

    span_id: str
    category: str
    signal: str
    reason: str


def _text(rec: dict[str, Any], key: str) -> str:
    payload = rec.get("payload") or {}
    value = payload.get(key)
    if value is None:
        value = (rec.get("attributes") or {}).get(f"{key}.value")
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _failed(ts: TraceSpans, i: int) -> bool:
    rec = ts.record(i)
    code = ts.attributes(i).get("tool.exit_code")
    events = rec.get("events")
    has_exception = isinstance(events, list) and any(
        isinstance(e, dict) and str(e.get("name", "")).lower() == "exception" for e in events)
    return ts.status[i] == "error" or has_exception or (
        isinstance(code, int) and not isinstance(code, bool) and code != 0)


def blame_span_candidates(ts: TraceSpans) -> list[SpanBlame]:
    """Every (span, signal) pair a signal suspects, strongest signal first; a span may appear more than once."""
    n = len(ts)
    order = sorted(range(n), key=lambda i: (ts.start_ns[i], ts.span_id[i]))
    by_id = {sid: i for i, sid in enumerate(ts.span_id)}
    children: dict[int, list[int]] = {}
    for i in range(n):
        p = by_id.get(ts.parent_id[i]) if ts.parent_id[i] is not None else None
        if p is not None and p != i:
            children.setdefault(p, []).append(i)
    llm = [i for i in order if ts.event_type[i] == "LLM_CALL"]
    failed = [i for i in order if _failed(ts, i)]
    origins = [i for i in failed if not any(k in failed for k in children.get(i, []))]
    found: list[SpanBlame] = []

    def decider(i: int) -> int | None:
        """The model call that chose the action span i carried out: the latest one started before it, a sibling
        first, else any."""
        before = [k for k in llm if ts.start_ns[k] <= ts.start_ns[i] and k != i]
        siblings = [k for k in before if ts.parent_id[k] == ts.parent_id[i]]
        pick = siblings or before
        return pick[-1] if pick else None

    # 1. failures, blamed on the decision that led to them
    for i in origins:
        k = i if ts.event_type[i] == "LLM_CALL" else decider(i)
        if k is not None:
            err = (ts.record(i).get("error") or {}).get("type") or ts.status[i]
            found.append(SpanBlame(ts.span_id[k], "tool_execution", "failed_call",
                                   f"{ts.name[i]} failed ({err})" + ("" if k == i else f", decided by {ts.name[k]}")))
    # 2. model output that admits fabricating
    for i in llm:
        hit = FABRICATION.search(_text(ts.record(i), "output"))
        if hit:
            found.append(SpanBlame(ts.span_id[i], "unclassified", "fabrication", f"output says {hit.group(0)!r}"))
    # 3. a final answer with no successful tool call behind it in the same agent run
    for i in llm:
        if _FINAL_ANSWER.search(_text(ts.record(i), "output")) and not _evidence_before(ts, i, by_id, children):
            found.append(SpanBlame(ts.span_id[i], "unclassified", "unsupported_answer",
                                   "final answer without a successful tool call before it"))
    # 4. the first model call after each failure: it decides what to do about it
    for i in origins:
        end = ts.start_ns[i] + ts.duration_ns[i]
        nxt = next((k for k in llm if ts.start_ns[k] >= end and k != i), None)
        if nxt is not None:
            found.append(SpanBlame(ts.span_id[nxt], "tool_execution", "reaction",
                                   f"first model call after {ts.name[i]} failed"))
    # 5. model output that says something did not work
    for i in llm:
        hit = STRUGGLE.search(_text(ts.record(i), "output")[:2000])
        if hit:
            found.append(SpanBlame(ts.span_id[i], "unclassified", "struggle", f"output says {hit.group(0)!r}"))
    # 6. empty model output
    for i in llm:
        out = _text(ts.record(i), "output").strip()
        if ts.status[i] != "error" and (not out or out in ("null", "{}", '""')):
            found.append(SpanBlame(ts.span_id[i], "unclassified", "empty_output", "model call returned nothing"))
    return found


SPAN_SIGNALS = ("failed_call", "fabrication", "unsupported_answer", "reaction", "struggle", "empty_output")
DEFAULT_SPAN_SIGNALS = ("failed_call", "fabrication", "unsupported_answer", "reaction")


def _evidence_before(ts: TraceSpans, i: int, by_id: dict[str, int], children: dict[int, list[int]]) -> bool:
    """Did a tool call other than final_answer succeed before span i, within the agent run that holds i?"""
    run = i
    for _ in range(10_000):
        p = by_id.get(ts.parent_id[run]) if ts.parent_id[run] is not None else None
        if p is None:
            break
        run = p
        if (ts.attributes(run).get("openinference.span.kind") == "AGENT") or ts.name[run].endswith(".run"):
            break
    stack, seen = [run], set()
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        stack.extend(children.get(k, []))
        if ts.event_type[k] in ("TOOL_CALL", "RETRIEVAL") and ts.start_ns[k] < ts.start_ns[i] and not _failed(ts, k) \
                and "final" not in ts.name[k].lower() and ts.attributes(k).get("tool.name") != "final_answer":
            return True
    return False


def blame_spans(ts: TraceSpans, signals: tuple[str, ...] = DEFAULT_SPAN_SIGNALS) -> list[tuple[str, str]]:
    """(span_id, bucket) of the spans likely to hold an error, strongest first, each span once (with the bucket of
    the strongest signal that named it)."""
    out: dict[str, str] = {}
    for b in blame_span_candidates(ts):
        if b.signal in signals:
            out.setdefault(b.span_id, b.category)
    return list(out.items())
