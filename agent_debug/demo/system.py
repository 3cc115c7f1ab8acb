"""The demo multi-agent system: orchestrator, router, planner, researcher (with a retriever), coder (with
tools), writer and verifier, async, instrumented only through the public SDK (`import agent_debug as ad`).

`run_workflow(input)` is the entrypoint replay re-executes: the agents' behaviour depends only on the input and
on what their model and tool calls return, so recorded responses reproduce a run exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import agent_debug as ad
from agent_debug.demo.world import CHEAP_MODEL, STRONG_MODEL, FakeLLM, FakeTools, World, oracle

WORKFLOW = "repo-fix-agent"
ENTRYPOINT = "agent_debug.demo.system:run_workflow"
BUDGETS = {"strong": 2000, "cheap": 48}
RISK_THRESHOLD = 0.7


class ToolError(RuntimeError):
    """A tool failed and retrying did not help."""


class Agents:
    """The team. `llm` and `tools` are the outside world (fakes in the demo, real clients in production)."""

    def __init__(self, llm: Any, tools: Any) -> None:
        self.llm = llm
        self.tools = tools

    async def route(self, task: dict[str, Any]) -> dict[str, Any]:
        async with ad.span("route", agent="router", event_type="ROUTING_DECISION") as s:
            risk = await ad.allm_call(self.llm, {"role": "router", "task": task["task"], "model": CHEAP_MODEL},
                                      model=CHEAP_MODEL, name="classify-risk")
            cap = await ad.atool_call(self.tools.capacity, {"lane": "strong"}, tool="capacity")
            required = "strong" if risk["risk"] >= RISK_THRESHOLD else "cheap"
            lane = required if required == "cheap" or cap["output"]["strong_available"] else "cheap"
            model = STRONG_MODEL if lane == "strong" else CHEAP_MODEL
            route = {"lane": lane, "model": model, "risk": risk["risk"], "required_lane": required,
                     "budget": BUDGETS[lane]}
            s.set_attributes({"route.lane": lane, "route.model": model, "route.risk": risk["risk"],
                              "route.required_lane": required, "token.budget": BUDGETS[lane]})
            return route

    async def plan(self, task: dict[str, Any], route: dict[str, Any]) -> list[str]:
        msg = ad.send("planner", {"task": task["task"], "model": route["model"]})
        async with ad.receive(msg), ad.span("plan", event_type="PLAN") as s:
            reply = await ad.allm_call(self.llm, {"role": "planner", "task": task["task"], "model": route["model"]},
                                       model=route["model"])
            s.set_attribute("plan.steps", reply["steps"])
            return list(reply["steps"])

    async def research(self, task: dict[str, Any]) -> dict[str, Any]:
        msg = ad.send("researcher", {"query": task["query"], "attachments": task.get("attachments", [])})
        async with ad.receive(msg), ad.span("research"):
            query = task["query"]
            for image in task.get("attachments", []):  # the user sent a screenshot of the failure: read it

                def seen(span: ad.Span, resp: dict[str, Any]) -> None:
                    span.set_attribute("modality", "image")

                ocr = await ad.atool_call(self.tools.ocr, {"image": image, "hint": task.get("hint", "")},
                                          tool="ocr", name="read_screenshot", annotate=seen)
                query = (query + " " + str(ocr["output"])).strip()

            def annotate(span: ad.Span, resp: dict[str, Any]) -> None:
                span.set_attributes({"retrieval.query": query, "retrieval.doc_count": len(resp["documents"]),
                                     "retrieval.refs": resp["documents"]})

            args = {"query": query, **({"ask": task["ask"]} if task.get("ask") else {})}
            resp = await ad.atool_call(self.tools.retriever, args, tool="retriever",
                                       name="retrieve", event_type="RETRIEVAL", annotate=annotate)
            return {"documents": list(resp["documents"]), "facts": dict(resp.get("facts") or {})}

    async def review(self, task: dict[str, Any], route: dict[str, Any], who: str) -> str:
        """One agent's review of whether the change stays backward compatible (run on parallel branches)."""
        msg = ad.send(who, {"review": task["target"]})
        async with ad.receive(msg), ad.span("review"):
            reply = await ad.allm_call(self.llm, {"role": "reviewer", "perspective": who, "target": task["target"],
                                                  "model": route["model"]}, model=route["model"], name="review")
            return str(reply["text"])

    async def patch(self, task: dict[str, Any], route: dict[str, Any], plan: list[str]) -> dict[str, Any]:
        msg = ad.send("coder", {"target": task["target"], "plan": plan, "model": route["model"]})
        async with ad.receive(msg), ad.span("patch"):
            request = {"role": "coder", "task": task["task"], "target": task["target"], "plan": plan,
                       "model": route["model"]}
            if task.get("history"):
                request["history"] = list(task["history"])
            reply = await ad.allm_call(self.llm, request, model=route["model"])
            unplanned = [a for a in reply["actions"] if a not in plan]
            for action in unplanned:
                await ad.atool_call(self.tools.rewrite_module, {"module": task["target"]}, tool="rewrite",
                                    name=action)
            tests_passed = await self.test(task, reply.get("config") or {})
            return {"diff": reply["text"], "unplanned": unplanned, "invariant_ok": reply["invariant_ok"],
                    "tests_passed": tests_passed}

    async def test(self, task: dict[str, Any], config: dict[str, Any] | None = None) -> bool:
        previous: str | None = None
        for attempt in range(2):
            def annotate(span: ad.Span, resp: dict[str, Any], attempt: int = attempt,
                         previous: str | None = previous) -> None:
                span.set_attribute("retry.count", attempt)
                if previous is not None:
                    span.set_attribute("retry.of", previous)

            args: dict[str, Any] = {"target": task["target"], "attempt": attempt}
            if config and task.get("run") == "backfill":  # the integration run uses the configured limits
                args["config"] = config
            result = await ad.atool_call(self.tools.pytest, args, tool="pytest", name="test", annotate=annotate)
            if result["exit_code"] == 0:
                return True
            span_id = _last_call_span()
            if result.get("timeout_class") != "soft":
                raise ToolError(f"pytest exited {result['exit_code']}: {result['output'][:120]}")
            previous = span_id
        raise ToolError("pytest failed after a retry")

    async def write(self, task: dict[str, Any], route: dict[str, Any], docs: list[str],
                    facts: dict[str, Any] | None = None, reviews: list[str] | None = None) -> dict[str, Any]:
        msg = ad.send("writer", {"documents": docs, "model": route["model"], "budget": route["budget"]})
        async with ad.receive(msg), ad.span("write"):
            request = {"role": "writer", "task": task["task"], "documents": docs, "risk": route["risk"],
                       "model": route["model"], "max_tokens": route["budget"]}
            if facts:
                request["facts"] = facts
            if reviews:
                request["reviews"] = reviews
            reply = await ad.allm_call(self.llm, request, model=route["model"], budget=route["budget"])
            return {"text": reply["text"], "cited": reply.get("cited", []), "finish_reason": reply["finish_reason"]}

    async def verify(self, draft: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        msg = ad.send("verifier", {"draft": draft["text"]})
        async with ad.receive(msg), ad.span("verify", event_type="VERIFY") as s:
            verdict: dict[str, Any] = await ad.atool_call(
                self.tools.checks, {"draft": draft, "tests_passed": patch["tests_passed"],
                                    "unplanned": patch["unplanned"], "invariant_ok": patch["invariant_ok"]},
                tool="checks")
            s.set_attributes({"verifier.passed": verdict["passed"], "verifier.reason": verdict["reason"]})
            return verdict


def _last_call_span() -> str | None:
    run = ad.current_run()
    if run is None or not run.calls:
        return None
    return run.calls[-1].get("span_id")


async def orchestrate(agents: Agents, task: dict[str, Any], run: ad.Run) -> dict[str, Any]:
    config = task.get("orchestrator", {})
    route = await agents.route(task)
    plan = await agents.plan(task, route)
    research: dict[str, Any] | BaseException
    patch: dict[str, Any] | BaseException
    if config.get("parallel", True):
        research, patch = await asyncio.gather(agents.research(task), agents.patch(task, route, plan),
                                               return_exceptions=True)
    else:  # a serialized dependency that need not exist: the patch does not use the research
        research = await agents.research(task)
        patch = await agents.patch(task, route, plan)
    if isinstance(research, BaseException):
        raise research
    if isinstance(patch, BaseException):
        raise patch
    reviews: list[str] = []
    if config.get("review", False):  # two agents review compatibility on parallel branches
        reviews = list(await asyncio.gather(agents.review(task, route, "researcher"),
                                            agents.review(task, route, "coder")))
    draft = await agents.write(task, route, research["documents"], research.get("facts"), reviews)
    verdict = None
    if not config.get("skip_validation", False):
        verdict = await agents.verify(draft, patch)
    passed, reason = oracle(task, draft, patch, reviews)
    run.set_outcome(passed, output=draft["text"], reason=reason)
    return {"output": draft["text"], "passed": passed, "reason": reason,
            "verifier": verdict and {"passed": verdict["passed"], "reason": verdict["reason"]}}


async def run_workflow(task: dict[str, Any]) -> dict[str, Any]:
    """Run one task through the team. Raises what the team raises (an unrecovered tool failure)."""
    world = World.from_input(task)
    agents = Agents(FakeLLM(world), FakeTools(world))
    async with ad.run(WORKFLOW, actor=task.get("actor", "demo"), agent="orchestrator", input=task,
                      session_id=task.get("session_id")) as run:
        run.set_entrypoint(ENTRYPOINT)
        run.set_attribute("task.summary", task["task"])
        return await orchestrate(agents, task, run)
