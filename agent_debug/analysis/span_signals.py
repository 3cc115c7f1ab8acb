"""Span signals: the silent failure modes of agent runs, read off the spans of one trace (any source: our SDK,
OpenInference, OTLP, Langfuse, LangSmith), never off labels.

A *signal* is one small function over a span's fields (event type, status, output text, the outputs of the
actions it decided, the calls before it by the same agent) that either fires (a `Hit`, with the bucket it
suggests and a line of evidence) or does not. `suspects.py` weighs the hits into one score per span. Signals
only look; they never decide alone.

Vocabulary. A *model call* is an LLM_CALL span. The model call that *decided* a span (its `decider`) is the one
that chose that action: the only model call inside it (a step that runs the code a model wrote), else the
latest model call beside it (a sibling started before it), else the decider of its parent. A model call's
*result* is what its actions returned: their outputs, as the next model call of the same agent reads them.

The failure modes, each with a reason to generalize (the seeds: a trace-debugging post, a production-debugging
guide, the L59 lesson):

- `action_failed`: an action this call decided failed (error status, an exception event, a non-zero exit code,
  a hard timeout), and no retry recovered it: the call chose a bad action or bad arguments;
- `reacts_to_failure`: the next call of the same agent after a failed action: it reads the error and decides
  what to do about it (improvising, retrying blindly, or carrying on as if nothing happened);
- `empty_result` / `after_empty_result`: an action that succeeded but returned nothing ("no results", an empty
  list), the most dangerous silent failure: the call that asked, and the call that went on without it;
- `error_in_result`: an action that "succeeded" while its output says error / traceback / not found;
- `repeated_action`: the same action (tool and arguments, or code) as an earlier call of the same agent: a loop;
- `self_correction`: the call says the previous step went wrong ("let me try again", "I see the error", "it
  seems", "a different approach"): the agent's own account of a failure;
- `fabrication`: the call admits working from invented or assumed data ("I will simulate ...");
- `unsupported_answer`: a final answer with no successful tool call behind it in the same agent run;
- `large_result`: the action's result floods the context (value: log10 of its size in characters, from 4 up);
- `ignores_result`: the call acts after a usable result that held checkable facts (numbers, links, names), and
  what it says and does uses none of them: it went on as if the result were not there (TRAIL's tool output
  misinterpretation and goal deviation; the seeds' "the agent ignored what the tool returned");
- `intent_not_acted`: the call announces that it will call a named tool or team member ("I will ask our
  search_agent", "let me call `web_search`") and the action it wrote calls nothing of that name (code that only
  prints the task it meant to send): the call went on as if the delegation happened; TRAIL's task
  orchestration and tool selection errors;
- `no_action`, `final_answer`: what kind of call it is (plans and summaries; the answer): structural priors;
- on tool spans themselves: `tool_failed`, `tool_repeated`, `tool_empty_result`.

Texts are read by `span_context.span_io` (our SDK's `payload.request` / `response`, importers' `payload.input` /
`output`, OpenInference's `input.value` / `output.value`), at most the first `TEXT_CAP` characters; a model
output that is a chat message (`{"role", "content", "tool_calls"}`) is read as its content and tool calls.
`SpanContext` (span_context.py) holds what the signals share; each signal is a function `(context, span index)
-> Hit | None`, so a port onto stored columns can replace them one at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from agent_debug.analysis.span_context import (
    CANDIDATE_TYPES,
    TEXT_CAP,
    SpanContext,
    is_empty_text,
    jaccard,
    raw_output,
    words,
)
from agent_debug.columns import TraceSpans

REPEAT_JACCARD = 0.8  # fixed a priori (never tuned): near-identical actions
REPEAT_WINDOW = 50  # an action is compared with the agent's last 50 calls (bounded work on huge runs)
LARGE_RESULT_CHARS = 10_000  # fixed a priori: a result this large floods a model's context
IGNORED_MIN_FACTS = 3  # fixed a priori: a result needs this many checkable facts before ignoring it can be told

FABRICATION = re.compile(
    r"\bi (?:cannot|can't|can not|am unable to|am not able to) (?:access|browse|open|retrieve)|unable to access|"
    r"(?:don't|do not) have (?:direct )?access|without (?:direct )?access|hypothetical|"
    r"\bassum(?:e|ed|es|ing|ptions?)\b|placeholder|example data|sample (?:data|dataset)|"
    r"simulat(?:e|ed|es|ing|ion)\b|\bmock(?:ed)?\b|\bdummy\b|"
    r"for (?:demonstration|illustration)(?: purposes)?|fictional|made[- ]up|pretend",
    re.IGNORECASE,
)
SELF_CORRECTION = re.compile(
    r"\bit (?:seems|appears)\b|\bseems (?:like|that)\b|(?:doesn't|does not|don't|do not|didn't|did not) "
    r"(?:seem|appear|show|see|contain|work|match|find|return|exist|help)|i (?:don't|do not|can't|cannot) see|"
    r"(?:isn't|aren't|wasn't|weren't|is not|are not|was not) (?:working|found|picking|showing|there|available|"
    r"properly|displayed|helpful|correct)|no (?:matches|results|luck)|unable to|failed to|having (?:difficulty|trouble)"
    r"|still (?:no|not|can't|cannot|unable)|(?:couldn't|could not|can't|cannot) (?:find|locate|access|get)|try again|"
    r"different approach|another approach|\bi apologi[sz]e\b|i see (?:the|an|that|there)|"
    r"(?:the|an?) (?:error|issue|problem) (?:is|was|occurred|with)|let me (?:fix|correct|retry)|instead,? (?:i|let)",
    re.IGNORECASE,
)
PROGRESS = re.compile(
    r"\bsuccessfully\b|\bnow i (?:have|know|understand|see (?:how|where|what))|\bi(?:'ve| have) (?:found|identified|"
    r"located|confirmed|created|fixed)|^(?:excellent|great|perfect)\b|\bthat works\b|\bconfirms?\b",
    re.IGNORECASE | re.MULTILINE,
)
NO_RESULTS = re.compile(
    r"no (?:results?|matches|documents|information|data|entries|records)(?: (?:were|was))? (?:found|returned|available)"
    r"|\bno results\b|\bnot found\b|returned (?:nothing|no )|\b0 (?:results|documents|matches)\b|could not find|"
    r"couldn't find|nothing (?:was )?found|does not exist|doesn't exist|\b404\b",
    re.IGNORECASE,
)
ERROR_TEXT = re.compile(
    r"traceback \(most recent call last\)|\b\w*(?:Error|Exception)\b:|^#* *error\b|\berror:|\bfailed\b|exit code [1-9]|"
    r"\b(?:error|status|http)[ :]*[45]\d\d\b|\b(?:403 forbidden|access denied|captcha)|title: error",
    re.IGNORECASE | re.MULTILINE,
)
_FINAL = re.compile(r"final_answer|final answer\s*:", re.IGNORECASE)
# "I will use search_agent", "let me call `web_search`", "# Now I will send this task to our search_agent": an
# announced call of a named tool or team member (a snake_case or backticked name). Every optional word brings its
# own leading whitespace, so no run of spaces can be split several ways (linear time on hostile text).
INTENT = re.compile(
    r"\b(?:i(?:'ll| will| am going to| am now going to)|let me|let's|we(?:'ll| will))\s+(?:now\s+|first\s+|then\s+)?"
    r"(?:call|use|invoke|query|ask|run|send(?:\s+(?:this|the|a|my))?(?:\s+(?:task|request|query|question))?\s+to|"
    r"delegate(?:\s+(?:this|the))?(?:\s+task)?\s+to)\s+(?:the\s+|our\s+|my\s+)?(?:team member\s+|tool\s+)?"
    r"(`[A-Za-z_][A-Za-z0-9_]*`|[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Hit:
    """One signal firing on one span: the bucket it suggests, a line of evidence, a value (1 for a yes/no)."""

    index: int
    signal: str
    bucket: str
    evidence: str
    value: float = 1.0
    related: tuple[str, ...] = ()  # other span ids the evidence names
    feature: str | None = None  # the model feature it counts as, when not its signal (a bucket rule: rule_strong)

    @property
    def key(self) -> str:
        return self.feature or self.signal


# -- signals on model calls -----------------------------------------------------------------------------------------


def _hit(c: SpanContext, k: int, signal: str, bucket: str, evidence: str, value: float = 1.0) -> Hit:
    return Hit(k, signal, bucket, evidence, value)


def sig_action_failed(c: SpanContext, k: int) -> Hit | None:
    i = c.action_failed(k)
    if i is None:
        return None
    err = (c.ts.record(i).get("error") or {}) if c.ts.records is not None else {}
    what = err.get("type") or c.ts.status[i]
    return _hit(c, k, "action_failed", "tool_execution",
                f"{c.ts.name[i]} failed ({what})" + ("" if i == k else ", an action this call chose"))


def sig_reacts_to_failure(c: SpanContext, k: int) -> Hit | None:
    p = c.prev_acting(k) if c.acted(k) else None
    if p is None or c.action_failed(p) is None:
        return None
    return _hit(c, k, "reacts_to_failure", "tool_execution",
                f"first call after {c.ts.name[c.action_failed(p) or p]} failed")


def sig_empty_result(c: SpanContext, k: int) -> Hit | None:
    res = c.result(k)
    if res is None or c.action_failed(k) is not None:
        return None
    head = res[:TEXT_CAP]
    if is_empty_text(head):
        return _hit(c, k, "empty_result", "retrieval_miss", "its action returned nothing")
    m = NO_RESULTS.search(head[:2000])
    if m:
        return _hit(c, k, "empty_result", "retrieval_miss", f"its action returned {m.group(0)!r}")
    return None


def sig_after_empty_result(c: SpanContext, k: int) -> Hit | None:
    p = c.prev_acting(k) if c.acted(k) else None
    if p is None or sig_empty_result(c, p) is None:
        return None
    return _hit(c, k, "after_empty_result", "retrieval_miss", "went on after an action that returned nothing")


def sig_error_in_result(c: SpanContext, k: int) -> Hit | None:
    res = c.result(k)
    if res is None or c.action_failed(k) is not None:
        return None
    m = ERROR_TEXT.search(res[:TEXT_CAP])
    if not m:
        return None
    return _hit(c, k, "error_in_result", "tool_execution", f"its action succeeded but says {m.group(0).strip()!r}")


def sig_after_error_in_result(c: SpanContext, k: int) -> Hit | None:
    p = c.prev_acting(k) if c.acted(k) else None
    if p is None or sig_error_in_result(c, p) is None:
        return None
    return _hit(c, k, "after_error_in_result", "tool_execution", "first call after a result that reports an error")


def sig_repeated_action(c: SpanContext, k: int) -> Hit | None:
    act = c.output(k).action
    if not act:
        return None
    mine = words(act)
    for p in c.earlier_calls(k, REPEAT_WINDOW):
        other = c.output(p).action
        if other and (other == act or jaccard(mine, words(other)) >= REPEAT_JACCARD):
            return _hit(c, k, "repeated_action", "planner_drift",
                        f"repeats the action of an earlier call ({c.ts.span_id[p]})")
    return None


def sig_self_correction(c: SpanContext, k: int) -> Hit | None:
    m = SELF_CORRECTION.search(c.output(k).content[:2000])
    if not m:
        return None
    return _hit(c, k, "self_correction", "unclassified", f"says {m.group(0)!r}")


def sig_progress_claim(c: SpanContext, k: int) -> Hit | None:
    head = c.output(k).content[:600]
    m = PROGRESS.search(head)
    if not m or SELF_CORRECTION.search(head):
        return None
    return _hit(c, k, "progress_claim", "unclassified", f"reports progress ({m.group(0)!r})")


def sig_fabrication(c: SpanContext, k: int) -> Hit | None:
    if not c.acted(k):  # a plan that lists assumptions admits nothing; a call that acts on them does
        return None
    m = FABRICATION.search(c.output(k).content)
    if not m:
        return None
    return _hit(c, k, "fabrication", "retrieval_miss", f"works from invented or assumed data ({m.group(0)!r})")


def _is_final(c: SpanContext, k: int) -> bool:
    """Does call k act by giving the final answer (a final-answer tool call or code)? A call that only restates
    an answer in text ("FINAL ANSWER: 12") decides nothing: it is no action."""
    return bool(_FINAL.search(c.output(k).action))


def _evidence_before(c: SpanContext, k: int) -> bool:
    """Did anything bring evidence before call k: an earlier call of the same agent whose action returned a
    usable result (code that ran and printed something, a tool that answered), or a successful tool call other
    than a final answer within the agent run that holds k?"""
    for p in c.earlier_calls(k):
        res = c.result(p)
        if res is not None and c.action_failed(p) is None and not is_empty_text(res) \
                and not NO_RESULTS.search(res[:2000]) and not ERROR_TEXT.search(res[:2000]):
            return True
    ts = c.ts
    run: int = k
    for _ in range(10_000):
        up = c.parent[run]
        if up is None:
            break
        run = up
        if ts.attributes(run).get("openinference.span.kind") == "AGENT" or ts.name[run].endswith(".run"):
            break
    stack, seen = [run], set()
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(c.children[i])
        if ts.event_type[i] in ("TOOL_CALL", "RETRIEVAL") and ts.start_ns[i] < ts.start_ns[k] and not c.failed[i] \
                and "final" not in ts.name[i].lower() and ts.attributes(i).get("tool.name") != "final_answer":
            return True
    return False


def sig_unsupported_answer(c: SpanContext, k: int) -> Hit | None:
    if not _is_final(c, k) or _evidence_before(c, k):
        return None
    return _hit(c, k, "unsupported_answer", "retrieval_miss", "final answer without a successful tool call before it")


_ANSWER_AT = re.compile(r"final_answer", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_PROPER = re.compile(r"\b[A-Z][a-z]{3,}\b")
_COMMON = frozenset({"task", "outcome", "result", "final", "answer", "short", "version", "detailed", "extremely",
                     "additional", "context", "none", "true", "false", "based", "unable", "this", "that", "there",
                     "from", "with", "what", "when", "which"})


def answer_tokens(action: str) -> set[str]:
    """The checkable content of a final answer: its numbers and proper names (lowercased), read from the action
    after `final_answer`."""
    m = _ANSWER_AT.search(action)
    text = action[m.end():] if m else action
    text = text[:4000]
    nums = {n.replace(",", "") for n in _NUMBER.findall(text)}
    nums = {n for n in nums if len(n.replace(".", "")) >= 2}
    names = {w.lower() for w in _PROPER.findall(text)} - _COMMON
    return nums | names


def observed_text(c: SpanContext, k: int) -> str:
    """Everything the run observed before call k: the outputs of its tool calls and steps (not of model calls,
    and not of the spans that hold k, whose output is k's own answer), lowercased, digits' commas dropped."""
    ts = c.ts
    holders, p = set(), c.parent[k]
    while p is not None and p not in holders:
        holders.add(p)
        p = c.parent[p]
    parts = []
    for i in c.order:
        if ts.start_ns[i] >= ts.start_ns[k]:
            break
        if not c.is_llm[i] and i not in holders:
            parts.append(raw_output(ts.record(i))[:TEXT_CAP])
    return re.sub(r"(?<=\d),(?=\d)", "", "\n".join(parts).lower())


def sig_ungrounded_answer(c: SpanContext, k: int) -> Hit | None:
    if not _is_final(c, k):
        return None
    tokens = answer_tokens(c.output(k).action)
    if not tokens:
        return None
    seen = observed_text(c, k)
    found = sum(1 for t in tokens if t in seen)
    if found * 2 >= len(tokens):
        return None
    missing = sorted(t for t in tokens if t not in seen)[:4]
    return _hit(c, k, "ungrounded_answer", "retrieval_miss",
                f"{len(tokens) - found} of {len(tokens)} facts of the answer appear in no tool output ({missing})")


_URL = re.compile(r"https?://[^\s'\"<>)\]]+")


def result_facts(text: str) -> set[str]:
    """The checkable facts of an action's result (lowercased): its numbers of two or more digits, its links and
    its proper names, read as `answer_tokens` reads an answer."""
    text = text[:TEXT_CAP]
    nums = {n.replace(",", "") for n in _NUMBER.findall(text)}
    nums = {n for n in nums if len(n.replace(".", "")) >= 2}
    links = {u.rstrip(".,;:").lower() for u in _URL.findall(text)}
    names = {w.lower() for w in _PROPER.findall(text)} - _COMMON
    return nums | links | names


def usable(text: str | None) -> bool:
    """A result the next call can work from: not empty, not "no results", no error wording in its head."""
    if text is None or is_empty_text(text[:TEXT_CAP]):
        return False
    head = text[:2000]
    return not NO_RESULTS.search(head) and not ERROR_TEXT.search(head)


def sig_ignores_result(c: SpanContext, k: int) -> Hit | None:
    out = c.output(k)
    if not out.action:
        return None
    p = c.prev_acting(k)
    if p is None or c.action_failed(p) is not None:
        return None
    res = c.result_text(p)
    if res is None or not usable(res):
        return None
    facts = result_facts(res)
    if len(facts) < IGNORED_MIN_FACTS:
        return None
    said = re.sub(r"(?<=\d),(?=\d)", "", f"{out.content}\n{out.action}".lower())
    if any(f in said for f in facts):
        return None
    return _hit(c, k, "ignores_result", "planner_drift",
                f"uses none of the {len(facts)} facts the previous result ({c.ts.span_id[p]}) returned")


def sig_intent_not_acted(c: SpanContext, k: int) -> Hit | None:
    out = c.output(k)
    if not out.action:
        return None
    names = {m.group(1).strip("`") for m in INTENT.finditer(out.content[:4000])}
    if not names or any(re.search(rf"\b{re.escape(n)}\s*(?:\.\s*\w+\s*)?\(", out.action) for n in names):
        return None
    return _hit(c, k, "intent_not_acted", "planner_drift", f"says it will call {min(names)} but its action does not")


def sig_large_result(c: SpanContext, k: int) -> Hit | None:
    size = len(c.result(k) or "")
    if size < LARGE_RESULT_CHARS:
        return None
    return _hit(c, k, "large_result", "planner_drift", f"its action returned {size} characters",
                round(math.log10(size) - 3, 3))


def sig_first_action(c: SpanContext, k: int) -> Hit | None:
    if not c.acted(k) or c.prev_acting(k) is not None:
        return None
    return _hit(c, k, "first_action", "planner_drift", "the agent's first action (nothing yet to react to)")


def sig_no_action(c: SpanContext, k: int) -> Hit | None:
    if c.acted(k) or _is_final(c, k):
        return None
    return _hit(c, k, "no_action", "planner_drift", "a plan or summary: no action")


def sig_final_answer(c: SpanContext, k: int) -> Hit | None:
    if not _is_final(c, k):
        return None
    return _hit(c, k, "final_answer", "unclassified", "gives the final answer")


MODEL_SIGNALS: dict[str, Callable[[SpanContext, int], Hit | None]] = {
    "action_failed": sig_action_failed,
    "reacts_to_failure": sig_reacts_to_failure,
    "empty_result": sig_empty_result,
    "after_empty_result": sig_after_empty_result,
    "error_in_result": sig_error_in_result,
    "after_error_in_result": sig_after_error_in_result,
    "repeated_action": sig_repeated_action,
    "self_correction": sig_self_correction,
    "progress_claim": sig_progress_claim,
    "fabrication": sig_fabrication,
    "unsupported_answer": sig_unsupported_answer,
    "ungrounded_answer": sig_ungrounded_answer,
    "large_result": sig_large_result,
    "ignores_result": sig_ignores_result,
    "intent_not_acted": sig_intent_not_acted,
    "first_action": sig_first_action,
    "no_action": sig_no_action,
    "final_answer": sig_final_answer,
}


# -- signals on tool calls ------------------------------------------------------------------------------------------


def sig_tool_failed(c: SpanContext, i: int) -> Hit | None:
    if i not in c.origin_set:
        return None
    return _hit(c, i, "tool_failed", "tool_execution", f"{c.ts.name[i]} failed and nothing recovered it")


def sig_tool_repeated(c: SpanContext, i: int) -> Hit | None:
    first = c.first_same_call(i)
    if first is None:
        return None
    return _hit(c, i, "tool_repeated", "planner_drift", f"same call as {c.ts.span_id[first]}")


def sig_tool_error_text(c: SpanContext, i: int) -> Hit | None:
    if c.failed[i]:
        return None
    out = raw_output(c.ts.record(i))[:2000] if c.ts.records is not None else ""
    m = ERROR_TEXT.search(out)
    if not m:
        return None
    return _hit(c, i, "tool_error_text", "tool_execution", f"succeeded but says {m.group(0).strip()!r}")


def sig_tool_empty_result(c: SpanContext, i: int) -> Hit | None:
    if c.failed[i]:
        return None
    attrs = c.ts.attributes(i)
    if attrs.get("retrieval.doc_count") == 0 or attrs.get("tool.result_size") == 0:
        return _hit(c, i, "tool_empty_result", "retrieval_miss", "returned nothing")
    out = raw_output(c.ts.record(i)) if c.ts.records is not None else ""
    if out and NO_RESULTS.search(out[:2000]):
        return _hit(c, i, "tool_empty_result", "retrieval_miss", "says it found nothing")
    return None


TOOL_SIGNALS: dict[str, Callable[[SpanContext, int], Hit | None]] = {
    "tool_failed": sig_tool_failed,
    "tool_repeated": sig_tool_repeated,
    "tool_empty_result": sig_tool_empty_result,
    "tool_error_text": sig_tool_error_text,
}


def span_hits(ts: TraceSpans, ctx: SpanContext | None = None, off: Collection[str] = ()
              ) -> tuple[SpanContext, list[Hit]]:
    """Every signal on every model call and tool call of a trace (with its records loaded), but those in `off`
    (the model leaves them out: not worked out)."""
    c = ctx or SpanContext(ts)
    hits: list[Hit] = []
    tables = {"LLM_CALL": [fn for name, fn in MODEL_SIGNALS.items() if name not in off]}
    tools = [fn for name, fn in TOOL_SIGNALS.items() if name not in off]
    for i in c.order:
        et = ts.event_type[i]
        table = tables.get(et) or (tools if et in CANDIDATE_TYPES and et != "LLM_CALL" else None)
        if table is None:
            continue
        for fn in table:
            try:
                h = fn(c, i)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                h = None  # an unexpected field shape never stops the others
            if h is not None:
                hits.append(h)
    return c, hits
