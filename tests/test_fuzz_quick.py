"""The reader fuzzer's short run: thousands of generated and mutated inputs through every reader and importer,
no crash, none over a second (the full run, >= 1,000,000 inputs, is `scripts/fuzz_readers.py`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_quick_fuzz_finds_no_crash(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz_readers.py"), "--quick", "--crash-dir",
                          str(tmp_path / "crashes")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line and not line.startswith(" "))
    assert lines["inputs"].startswith("1,500 ")
    assert lines["crashes"] == "0"
    readers = dict(part.rsplit(" ", 1) for part in lines["per reader"].split(", "))
    # our own formats and every foreign importer were fuzzed
    assert {"jsonl", "jsonl.gz", "envelope", "msgpack", "msgpack.gz", "otlp", "openinference", "langfuse",
            "langsmith", "transcript"} <= set(readers)
    assert lines["slowest input"].endswith("over 1 s: 0")
