"""The demo's batch: which tasks run in which world, and what each run is known to be (the labels).

The demo knows what it injected, so every failed run comes with the bucket it belongs in and a selector for
its root-cause span. Tests measure bucketing and root-cause analysis against these labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TASKS: list[dict[str, Any]] = [
    {"task": "fix flaky S3 backfill job", "query": "backfill retries s3", "target": "src/jobs/s3.py"},
    {"task": "speed up search ranking", "query": "search ranker latency", "target": "src/search/ranker.py"},
    {"task": "fix CSV export quoting", "query": "export csv quoting", "target": "src/export/csv.py"},
    {"task": "rotate auth session keys", "query": "auth session rotation", "target": "src/auth/session.py"},
    {"task": "correct billing invoice rounding", "query": "billing invoice rounding",
     "target": "src/billing/invoice.py"},
]
RISKY = [0, 3, 4]  # tasks the router must send to the strong lane


@dataclass(frozen=True)
class Scenario:
    """A kind of run: the world it meets, how the orchestrator is set up, and what should come of it."""

    name: str
    world: tuple[str, ...] = ()
    orchestrator: tuple[tuple[str, Any], ...] = ()
    bucket: str | None = None  # None: the run should pass (a failed run of the scenario belongs here)
    tasks: tuple[int, ...] = (0, 1, 2, 3, 4)
    extra: tuple[tuple[str, Any], ...] = ()  # more input fields (an attachment, ...)
    turns: tuple[tuple[tuple[str, Any], ...], ...] = ()  # a session: each turn's extra input, run in order


def _first(pred: Callable[[dict[str, Any]], bool]) -> Callable[[list[dict[str, Any]]], str | None]:
    def select(records: list[dict[str, Any]]) -> str | None:
        for rec in sorted(records, key=lambda r: r["timestamp"]):
            if pred(rec):
                return str(rec["span_id"])
        return None

    return select


def _attrs(rec: dict[str, Any]) -> dict[str, Any]:
    return rec.get("attributes") or {}


ROOT_CAUSE: dict[str, Callable[[list[dict[str, Any]]], str | None]] = {
    "retrieval_miss": _first(lambda r: r["event_type"] == "RETRIEVAL" and _attrs(r).get("retrieval.doc_count") == 0),
    "tool_execution": _first(lambda r: r["event_type"] == "TOOL_CALL" and r.get("status") == "error"),
    "planner_drift": _first(lambda r: r.get("name") == "rewrite_module"),
    "verifier_false_positive": _first(lambda r: r["event_type"] == "VERIFY"),
    "routing_mistake": _first(lambda r: r["event_type"] == "ROUTING_DECISION"),
    "disagreement": _first(lambda r: r["event_type"] == "LLM_CALL" and r["agent_name"] == "writer"),
}
# scenarios whose root cause is not the first span of their bucket's kind
SCENARIO_ROOT_CAUSE: dict[str, Callable[[list[dict[str, Any]]], str | None]] = {
    # the unreadable screenshot: OCR "succeeded" with nothing, before the retrieval it starved
    "screenshot": _first(lambda r: r.get("name") == "read_screenshot" and _attrs(r).get("tool.result_size") == 0),
    "screenshot_export": _first(lambda r: r.get("name") == "read_screenshot"
                                and _attrs(r).get("tool.result_size") == 0),
    # state corruption: the stale runbook retrieved in the session's first turn (labelled on that turn's records)
    "stale_memory": _first(lambda r: r["event_type"] == "RETRIEVAL"),
}

SCENARIOS: list[Scenario] = [
    Scenario("healthy"),
    Scenario("healthy_flaky_retry", world=("flaky_test",)),
    Scenario("retrieval_miss", world=("index_gap",), bucket="retrieval_miss"),
    Scenario("tool_execution", world=("tool_broken",), bucket="tool_execution"),
    Scenario("planner_drift", world=("scope_creep",), bucket="planner_drift"),
    Scenario("verifier_false_positive", world=("subtle_bug", "weak_verifier"), bucket="verifier_false_positive"),
    Scenario("routing_mistake", world=("no_strong_capacity",), bucket="routing_mistake", tasks=tuple(RISKY)),
    Scenario("healthy_leaky_env", world=("leaky_env",)),
    Scenario("healthy_flaky_leaky", world=("flaky_test", "leaky_env")),
    # emergent disagreement: two reviewers on parallel branches contradict each other; the writer merges
    Scenario("disagreement", world=("conflicting_review",), orchestrator=(("review", True),),
             bucket="disagreement"),
    Scenario("healthy_reviewed", orchestrator=(("review", True),)),
    # modality: the user sends a screenshot instead of words; OCR often reads nothing (failures by seed)
    Scenario("screenshot", world=("blurry_screenshot",), bucket="tool_execution", tasks=(0, 1, 2),
             extra=(("attachments", ["screenshot.png"]), ("query", ""))),
    Scenario("screenshot_export", world=("blurry_screenshot",), bucket="tool_execution", tasks=(2, 3, 4),
             extra=(("attachments", ["screenshot.png"]), ("query", ""))),
    # multi-turn state corruption: turn 1 retrieves a stale retry limit, turn 2 applies it, turn 3 fails on it
    Scenario("stale_memory", world=("stale_runbook", "throttled_store"), bucket="retrieval_miss", tasks=(0,),
             turns=((("ask", "retry_limit"),), (("apply", "retry_limit"),), (("run", "backfill"),))),
    Scenario("healthy_session", world=("throttled_store",), tasks=(0,),
             turns=((("ask", "retry_limit"),), (("apply", "retry_limit"),), (("run", "backfill"),))),
]
EXTRA: dict[str, Scenario] = {
    "skip_validation": Scenario("skip_validation", orchestrator=(("skip_validation", True),)),
    "serialized": Scenario("serialized", world=("slow_tests",), orchestrator=(("parallel", False),)),
    "healthy": SCENARIOS[0],
}


def make_input(scenario: Scenario, index: int, seed: int, time_scale: float = 1.0) -> dict[str, Any]:
    task = dict(TASKS[scenario.tasks[index % len(scenario.tasks)]])
    if scenario.extra:
        task["hint"] = task["query"]  # what the screenshot shows, when it can be read
    task.update(
        {
            "task_id": f"{scenario.name}-{index}",
            "seed": seed,
            "world": list(scenario.world),
            "orchestrator": dict(scenario.orchestrator),
            "time_scale": time_scale,
            **{k: v for k, v in scenario.extra},
        }
    )
    if scenario.turns:
        task["session_id"] = f"{scenario.name}-{index}-s{seed}"
        task["turns"] = [{**task, "task_id": f"{scenario.name}-{index}-t{n}", **dict(extra)}
                         for n, extra in enumerate(scenario.turns, 1)]
        for turn in task["turns"]:
            turn.pop("turns", None)
    return task


def batch(runs: int, seed: int = 0) -> list[tuple[Scenario, dict[str, Any]]]:
    """Inputs cycling through the scenarios, `runs` runs in all (a session counts its turns; one that would
    not fit is skipped), so every bucket appears once the batch has 9 runs."""
    out = []
    i = used = 0
    while used < runs:
        sc = SCENARIOS[i % len(SCENARIOS)]
        size = len(sc.turns) or 1
        if used + size <= runs:
            out.append((sc, make_input(sc, i // len(SCENARIOS), seed * 100_003 + i)))
            used += size
        i += 1
    return out
