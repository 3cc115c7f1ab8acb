"""The demo's fake outside world: a deterministic fake LLM and fake tools.

Faults are properties of the world a run meets (an index that does not cover the query, a broken test
runner, a model that wanders off the plan, a thin test suite, no strong-lane capacity), never special cases in
the agents' code. Every fake is a pure function of its request and the run's `World` (seeded), so a run can be
replayed from its recorded responses, and a counterfactual can call the fake again with a changed request.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any

# What each world flag does (the demo's faults and quirks):
FLAGS = {
    "index_gap": "the retriever's index has nothing for the query (retrieval returns 0 documents)",
    "tool_broken": "the test runner cannot authenticate to the artifact store (every run exits 2)",
    "flaky_test": "the test runner's first attempt times out softly (a retry succeeds)",
    "scope_creep": "the coder model proposes work outside the plan (a module rewrite)",
    "subtle_bug": "the patch breaks an invariant the thin test suite does not cover",
    "weak_verifier": "the verifier only checks that the answer is non-empty",
    "no_strong_capacity": "the strong model lane is unavailable, so the router falls back to the cheap lane",
    "skip_validation": "the orchestrator skips the verifier (as it does under load)",
    "serialized": "the orchestrator waits for research before starting the patch (latency stacking)",
    "slow_tests": "the test suite takes much longer than usual",
    "leaky_env": "the test runner prints credentials from the environment",
    "flaky_index": "the retriever's index is rebuilding: about 3 runs in 10 get nothing back (by seed)",
    "stale_runbook": "the retry runbook the retriever returns is an old revision (max_retries=3; the job needs 5)",
    "throttled_store": "the S3 store throttles: a backfill gets through only with max_retries >= 5",
    "conflicting_review": "the researcher reviews against a stale API doc and finds the change incompatible, while "
                          "the coder finds it compatible",
    "blurry_screenshot": "the attached screenshot is unreadable about 7 times in 10 (by seed): OCR returns nothing",
}
REQUIRED_RETRIES = 5

CORPUS: dict[str, list[str]] = {
    "backfill": ["docs/backfill.md", "src/jobs/s3.py", "runbooks/s3-retries.md"],
    "billing": ["docs/billing.md", "src/billing/invoice.py"],
    "search": ["docs/search.md", "src/search/ranker.py", "src/search/index.py"],
    "auth": ["docs/auth.md", "src/auth/session.py"],
    "export": ["docs/export.md", "src/export/csv.py"],
}

CHEAP_MODEL = "gemini-2.5-flash-lite"
STRONG_MODEL = "gemini-2.5-pro"


@dataclass
class World:
    """What one run meets outside the agents: its seed and its flags."""

    seed: int
    flags: frozenset[str] = field(default_factory=frozenset)
    time_scale: float = 1.0

    @classmethod
    def from_input(cls, inp: dict[str, Any]) -> World:
        return cls(
            seed=int(inp.get("seed", 0)),
            flags=frozenset(inp.get("world", [])),
            time_scale=float(inp.get("time_scale", 1.0)),
        )

    def rng(self, *salt: Any) -> random.Random:
        h = hashlib.sha256(repr((self.seed, *salt)).encode()).digest()
        return random.Random(int.from_bytes(h[:8], "big"))

    async def latency(self, base_ms: float, *salt: Any) -> None:
        jitter = self.rng("latency", *salt).uniform(0.8, 1.3)
        await asyncio.sleep(base_ms * jitter * self.time_scale / 1000.0)


def _usage(prompt: str, completion: str) -> dict[str, int]:
    return {"prompt_tokens": 40 + len(prompt) // 4, "completion_tokens": 8 + len(completion) // 4}


class FakeLLM:
    """A deterministic model: its answer depends on the request (and the world's seed), nothing else."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        role = request.get("role", "")
        handler = getattr(self, f"_{role}", self._generic)
        base = 30 if request.get("model") == STRONG_MODEL else 15
        await self.world.latency(base, "llm", role, request.get("attempt", 0))
        return handler(request)

    def _reply(self, request: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
        out = {"text": text, "model": request.get("model"), "finish_reason": "stop"}
        out.update(extra)
        out["usage"] = _usage(str(request), text)
        return out

    def _router(self, request: dict[str, Any]) -> dict[str, Any]:
        task = request["task"].lower()
        risky = any(w in task for w in ("migrate", "auth", "billing", "delete", "backfill"))
        risk = round(0.82 if risky else 0.25, 2)
        return self._reply(request, f"risk={risk}", risk=risk)

    def _planner(self, request: dict[str, Any]) -> dict[str, Any]:
        steps = ["research", "patch", "test", "write", "verify"]
        return self._reply(request, "plan: " + " -> ".join(steps), steps=steps)

    def _coder(self, request: dict[str, Any]) -> dict[str, Any]:
        actions = ["patch"]
        if "scope_creep" in self.world.flags:
            actions.append("rewrite_module")
        diff = f"--- a/{request['target']}\n+++ b/{request['target']}\n@@ retry with backoff @@"
        config = {}
        for line in request.get("history") or []:  # what earlier turns of the conversation settled
            m = re.search(r"max_retries=(\d+)", str(line))
            if m:
                config["max_retries"] = int(m.group(1))
        if config:
            diff += f"\n+MAX_RETRIES = {config['max_retries']}"
        return self._reply(request, diff, actions=actions, invariant_ok="subtle_bug" not in self.world.flags,
                           config=config)

    def _reviewer(self, request: dict[str, Any]) -> dict[str, Any]:
        stale = "conflicting_review" in self.world.flags and request.get("perspective") == "researcher"
        verdict = "no" if stale else "yes"
        return self._reply(request, f"backward compatible: {verdict}")

    def _writer(self, request: dict[str, Any]) -> dict[str, Any]:
        docs = request.get("documents") or []
        budget = int(request.get("max_tokens") or 0)
        if docs:
            text = f"Fixed: {request['task']}. Root cause and fix per " + ", ".join(docs) + "."
        else:
            # nothing retrieved: the model papers over the gap with a confident, unsupported answer
            text = f"Fixed: {request['task']}. The job now retries as the standard policy requires."
        for key, value in sorted((request.get("facts") or {}).items()):
            text += f" Use {key}={value} (per the runbook)."
        reviews = request.get("reviews") or []
        if reviews:  # the reviews are merged as they come: the last one wins, nothing reconciles them
            text += f" Compatibility: {reviews[-1]}."
        if float(request.get("risk") or 0) >= 0.7:
            text += (" Rollback plan: pause the job, restore the previous release, replay the affected window from"
                     " the checkpoint, and compare row counts before resuming the schedule.")
        needed = 8 + len(text) // 4
        if budget and needed > budget:
            cut = max(8, budget * 4 - 32)
            return self._reply(request, text[:cut], finish_reason="length", cited=[])
        return self._reply(request, text, cited=list(docs))

    def _generic(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._reply(request, "ok")


class FakeTools:
    """Deterministic tools: retriever, capacity, test runner, module rewriter, checks."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def retriever(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.world.latency(12, "retriever")
        query = str(args.get("query", "")).lower()
        docs: list[str] = []
        rebuilding = "flaky_index" in self.world.flags and self.world.rng("index").random() < 0.3
        if "index_gap" not in self.world.flags and not rebuilding:
            for topic, refs in CORPUS.items():
                if topic in query:
                    docs.extend(refs)
        out: dict[str, Any] = {"exit_code": 0, "documents": docs, "output": docs}
        if args.get("ask") == "retry_limit" and docs:
            out["facts"] = {"max_retries": 3 if "stale_runbook" in self.world.flags else REQUIRED_RETRIES}
        return out

    async def ocr(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.world.latency(25, "ocr")
        unreadable = "blurry_screenshot" in self.world.flags and self.world.rng("ocr").random() < 0.7
        text = "" if unreadable else str(args.get("hint", ""))
        return {"exit_code": 0, "output": text}

    async def capacity(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.world.latency(3, "capacity")
        return {"exit_code": 0, "output": {"strong_available": "no_strong_capacity" not in self.world.flags}}

    async def pytest(self, args: dict[str, Any]) -> dict[str, Any]:
        attempt = int(args.get("attempt", 0))
        base = 160 if "slow_tests" in self.world.flags else 40
        await self.world.latency(base, "pytest", attempt)
        if "tool_broken" in self.world.flags:
            return {
                "exit_code": 2,
                "output": "ERROR: 401 Unauthorized fetching test fixtures from artifact store "
                          "(sent Authorization: Bearer "
                          "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ)",
                "timeout_class": "none",
            }
        retries = (args.get("config") or {}).get("max_retries")
        if "throttled_store" in self.world.flags and retries is not None and retries < REQUIRED_RETRIES:
            return {"exit_code": 1, "timeout_class": "none",
                    "output": f"ERROR: backfill throttled by S3, max_retries={retries} exhausted"}
        if "flaky_test" in self.world.flags and attempt == 0:
            return {"exit_code": 1, "output": "ERROR: connection reset by peer", "timeout_class": "soft"}
        out = "12 passed in 0.41s"
        if "leaky_env" in self.world.flags:
            out += "\nenv: AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY GITHUB_TOKEN=" + (
                "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
            )
        return {"exit_code": 0, "output": out, "timeout_class": "none"}

    async def rewrite_module(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.world.latency(20, "rewrite")
        return {"exit_code": 0, "output": f"rewrote {args.get('module')} (412 lines changed)"}

    async def checks(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.world.latency(8, "checks")
        draft = args.get("draft", {})
        if "weak_verifier" in self.world.flags:
            ok = bool(draft.get("text"))
            return {"exit_code": 0, "passed": ok, "reason": "answer present" if ok else "empty answer",
                    "output": "format check only"}
        problems = []
        if not draft.get("cited"):
            problems.append("answer cites no retrieved source")
        if draft.get("finish_reason") == "length":
            problems.append("answer truncated at the token budget")
        if not args.get("tests_passed"):
            problems.append("tests did not pass")
        if args.get("unplanned"):
            problems.append("changes outside the plan: " + ", ".join(args["unplanned"]))
        if not args.get("invariant_ok", True):
            problems.append("regression in retry path invariant")
        return {"exit_code": 0, "passed": not problems, "reason": "; ".join(problems) or "all checks passed",
                "output": "full invariant suite"}


def oracle(inp: dict[str, Any], draft: dict[str, Any], patch: dict[str, Any],
           reviews: list[str] | None = None) -> tuple[bool, str]:
    """The downstream judgement of a run (hidden acceptance tests): did it really do the task?"""
    if reviews and len(set(reviews)) > 1:
        return False, "the answer states a compatibility verdict its own reviews contradict"
    if not draft.get("cited"):
        return False, "answer is not grounded in any retrieved source"
    if draft.get("finish_reason") == "length":
        return False, "answer truncated"
    if patch.get("unplanned"):
        return False, "unreviewed changes outside the plan"
    if not patch.get("invariant_ok", True):
        return False, "hidden acceptance test failed: retry path invariant"
    if not patch.get("tests_passed"):
        return False, "tests did not pass"
    return True, "acceptance tests passed"
