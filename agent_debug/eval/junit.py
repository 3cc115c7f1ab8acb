"""An eval result as JUnit XML, for CI systems that show test reports: a testsuite per case, a testcase per run.

A run that counts against its case's gate is a `<failure>` (its reasons are the message); a run that raised is
an `<error>`; an unscored run is `<skipped>`. A case pinned to a recorded run labelled `fail` expects that run to
fail, so a failing verdict there is a passing testcase. A case with no runs is one `<error>` testcase.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from agent_debug.errors import OutputError
from agent_debug.eval.harness import CaseResult, EvalResult, RunResult
from agent_debug.model import escaped


def to_junit(result: EvalResult) -> ET.ElementTree:
    suites = ET.Element("testsuites", name="agent-debug eval")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for case in result.cases:
        suite = _suite(case)
        suites.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        suites.set(key, str(value))
    return ET.ElementTree(suites)


# what XML 1.0 cannot hold at all (C0 controls but tab, newline and return; lone surrogates; U+FFFE, U+FFFF): trace
# ids, run errors and reasons are data, and one such character makes the whole report unreadable to a CI system
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def write_junit(result: EvalResult, path: Path) -> Path:
    tree = to_junit(result)
    for el in tree.iter():
        el.text = None if el.text is None else escaped(el.text, _NOT_XML)
        el.attrib = {k: escaped(v, _NOT_XML) for k, v in el.attrib.items()}
    ET.indent(tree)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tree.write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise OutputError.from_os(path, exc) from None
    return path


def _suite(case: CaseResult) -> ET.Element:
    suite = ET.Element("testsuite", name=case.name, file=case.file)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    props = ET.SubElement(suite, "properties")
    for key, value in (("status", case.status), ("pass_rate", case.pass_rate), ("pass_at_k", case.pass_at_k),
                       ("pass_pow_k", case.pass_pow_k), ("k", case.k), ("label", case.label)):
        if value is not None:
            ET.SubElement(props, "property", name=key, value=str(value))
    if not case.runs:
        counts["tests"] = counts["errors"] = 1
        tc = ET.SubElement(suite, "testcase", classname=case.name, name="no runs")
        ET.SubElement(tc, "error", message=case.reason or "no runs", type="no_runs")
    total_s = 0.0
    for i, run in enumerate(case.runs):
        counts["tests"] += 1
        seconds = run.checks.efficiency.latency_ms / 1000
        total_s += seconds
        tc = ET.SubElement(suite, "testcase", classname=case.name, name=_run_name(run, i), time=f"{seconds:.3f}")
        expected = case.label if case.origin == "recorded" and case.label else "pass"
        if run.verdict == "unscored":
            counts["skipped"] += 1
            ET.SubElement(tc, "skipped", message="; ".join(run.reasons) or "unscored")
        elif run.error and expected == "pass":
            counts["errors"] += 1
            el = ET.SubElement(tc, "error", message=run.error, type="run_error")
            el.text = "\n".join(run.reasons)
        elif run.verdict != expected:
            counts["failures"] += 1
            message = "; ".join(run.reasons) if run.reasons else f"expected {expected}, the checks passed"
            el = ET.SubElement(tc, "failure", message=message, type="check_failed")
            el.text = "\n".join(run.reasons)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total_s:.3f}")
    return suite


def _run_name(run: RunResult, index: int) -> str:
    name = run.trace_id or f"run {index}"
    return f"{name} (seed {run.seed})" if run.seed is not None else name
