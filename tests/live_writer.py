"""One writer process of the live-load test (tests/test_live_ingest.py): emits SPANS spans through the SDK into
DIRECTORY, in runs of RUN_SPANS spans (a root, agent turns under it, steps under the turns), with 256 KB
rotation, and writes what it emitted to MANIFEST (trace ids with their span names, and `ad.shutdown()`'s
counters) once every record is flushed.

    python tests/live_writer.py DIRECTORY FORMAT WRITER_NO SPANS MANIFEST [PAUSE_EVERY_RUN_S]

Trace ids are `w<no>-<format>-<run>`, span names unique in their trace, so the test can check exactly which
spans the store shows."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import agent_debug as ad

RUN_SPANS = 50


def main() -> None:
    directory, fmt, no, total, manifest = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    ad.configure(directory=directory, format=fmt, rotation="256 KB", raise_internal_errors=False)
    traces: dict[str, list[str]] = {}
    emitted = 0
    r = 0
    while emitted < total:
        n = min(RUN_SPANS, total - emitted)
        tid = f"w{no}-{fmt}-{r:05d}"
        names = ["live"]  # the root span is named after the workflow
        with ad.run(workflow="live", actor=f"writer{no}", trace_id=tid, input={"run": r}) as run:
            left = n - 1
            turn = 0
            while left > 0:
                with ad.span(f"turn{turn}", agent=f"agent{turn % 3}") as s:
                    names.append(f"turn{turn}")
                    left -= 1
                    for k in range(min(4, left)):
                        with ad.span(f"turn{turn}-step{k}", event_type="TOOL_CALL") as step:
                            step.set_attribute("step.k", k)
                            step.add_tokens(prompt=10 * k, completion=k)
                        names.append(f"turn{turn}-step{k}")
                    left -= min(4, left)
                    s.set_attribute("turn", turn)
                turn += 1
            run.set_outcome(passed=r % 7 != 3)
        traces[tid] = names
        emitted += n
        r += 1
        if pause:
            time.sleep(pause)
    counters = ad.shutdown(timeout=300)
    Path(manifest).write_text(json.dumps({"traces": traces, "emitted": emitted, "stats": counters}))


if __name__ == "__main__":
    main()
