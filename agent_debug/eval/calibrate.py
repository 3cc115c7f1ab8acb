"""How far to trust the judge: run it on human-labelled outputs and measure agreement (Cohen's kappa).

The labels file is JSONL, one case a line: `{"task", "expected"?, "actual", "label": "pass"|"fail"}`, or
`"human_score": 1-5` instead of a label (pass iff >= threshold; a label wins when both are given). The human
label is the truth and "pass" is the positive class. Unscored judgements are counted but left out of the
agreement numbers: they are missing data, not disagreements.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent_debug.errors import CaseFileError, UsageError
from agent_debug.eval.judge import PROMPT_VERSION, GeminiJudge, JudgeScore


class LabelledCase(BaseModel):
    """One human-labelled output, with the line it came from for error messages and reports."""

    line: int
    task: str
    expected: str | None = None
    actual: str
    human_pass: bool


class CalibrationItem(BaseModel):
    """One case's human label next to the judge's verdict, so disagreements can be listed."""

    line: int
    human_pass: bool
    judge_pass: bool | None = Field(description="score >= threshold; None when unscored.")
    score: JudgeScore


class CalibrationResult(BaseModel):
    """Agreement between judge and humans; ratios are None when undefined (nothing to divide by)."""

    model: str
    prompt_version: str
    threshold: int
    n: int
    scored: int
    unscored: int
    agreement: float | None = Field(description="Share of scored cases where judge and human agree.")
    kappa: float | None = Field(description="Cohen's kappa; None when chance agreement is total.")
    confusion: dict[str, int] = Field(description="tp, fp, tn, fn; human label is the truth, pass is positive.")
    tpr: float | None = Field(description="Human passes the judge also passes (sensitivity).")
    tnr: float | None = Field(description="Human fails the judge also fails (specificity).")
    items: list[CalibrationItem]


def confusion_matrix(pairs: Iterable[tuple[bool, bool]]) -> dict[str, int]:
    """Counts of (human_pass, judge_pass) pairs; the human is the truth and pass is positive."""
    out = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for human, judge in pairs:
        if judge:
            out["tp" if human else "fp"] += 1
        else:
            out["fn" if human else "tn"] += 1
    return out


def agreement(confusion: dict[str, int]) -> float | None:
    n = sum(confusion.values())
    return (confusion["tp"] + confusion["tn"]) / n if n else None


def cohens_kappa(confusion: dict[str, int]) -> float | None:
    """(p_o - p_e) / (1 - p_e); None when p_e == 1 (both raters used one class only), where kappa is undefined."""
    tp, fp, tn, fn = confusion["tp"], confusion["fp"], confusion["tn"], confusion["fn"]
    n = tp + fp + tn + fn
    if n == 0:
        return None
    observed = (tp + tn) / n
    human_pos, judge_pos = tp + fn, tp + fp
    expected = (human_pos * judge_pos + (n - human_pos) * (n - judge_pos)) / (n * n)
    if expected >= 1:
        return None
    return (observed - expected) / (1 - expected)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def read_labels(path: Path, *, threshold: int = 3) -> list[LabelledCase]:
    """Parse the labels file; the first bad line raises CaseFileError naming its number."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"labels file {path} cannot be read: {exc}") from None
    cases = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cases.append(_parse_line(line, number, threshold))
        except ValueError as exc:
            raise CaseFileError(f"{path}:{number}: {exc}") from None
    if not cases:
        raise CaseFileError(f"{path}: no labelled cases")
    return cases


def _parse_line(line: str, number: int, threshold: int) -> LabelledCase:
    try:
        data: Any = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    for field in ("task", "actual"):
        if not isinstance(data.get(field), str):
            raise ValueError(f"'{field}' must be a string")
    expected = data.get("expected")
    if expected is not None and not isinstance(expected, str):
        raise ValueError("'expected' must be a string when given")
    return LabelledCase(line=number, task=data["task"], expected=expected, actual=data["actual"],
                        human_pass=_human_pass(data, threshold))


def _human_pass(data: dict[str, Any], threshold: int) -> bool:
    label = data.get("label")
    if label is not None:
        if not isinstance(label, str) or label.lower() not in ("pass", "fail"):
            raise ValueError(f"'label' must be \"pass\" or \"fail\", not {label!r}")
        return label.lower() == "pass"
    score = data.get("human_score")
    if score is None:
        raise ValueError("needs 'label' (pass/fail) or 'human_score' (1-5)")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"'human_score' must be an integer 1-5, not {score!r}")
    return score >= threshold


async def acalibrate(labels_path: Path, judge: GeminiJudge, *, threshold: int = 3) -> CalibrationResult:
    """Judge every labelled case concurrently (the judge bounds concurrency) and compare with the labels."""
    cases = read_labels(labels_path, threshold=threshold)
    scores = await asyncio.gather(*(judge.score(c.task, c.expected, c.actual) for c in cases))
    items = [
        CalibrationItem(line=c.line, human_pass=c.human_pass, score=s,
                        judge_pass=None if s.score is None else s.score >= threshold)
        for c, s in zip(cases, scores, strict=True)
    ]
    return summarize(items, model=judge.model, threshold=threshold)


def calibrate(labels_path: Path, judge: GeminiJudge, *, threshold: int = 3) -> CalibrationResult:
    """Synchronous entry point for the CLI; use `acalibrate` from inside a running event loop."""

    async def run() -> CalibrationResult:
        try:
            return await acalibrate(labels_path, judge, threshold=threshold)
        finally:
            await judge.aclose()  # its connections belong to this loop, which ends here

    return asyncio.run(run())


def summarize(items: list[CalibrationItem], *, model: str, threshold: int) -> CalibrationResult:
    """The agreement numbers over the scored items; pure, so tests can check it without a judge."""
    pairs = [(i.human_pass, i.judge_pass) for i in items if i.judge_pass is not None]
    conf = confusion_matrix(pairs)
    return CalibrationResult(
        model=model,
        prompt_version=PROMPT_VERSION,
        threshold=threshold,
        n=len(items),
        scored=len(pairs),
        unscored=len(items) - len(pairs),
        agreement=agreement(conf),
        kappa=cohens_kappa(conf),
        confusion=conf,
        tpr=_ratio(conf["tp"], conf["tp"] + conf["fn"]),
        tnr=_ratio(conf["tn"], conf["tn"] + conf["fp"]),
        items=items,
    )
