"""A separate process that traces runs with the real OpenTelemetry SDK and exports them with its OTLP/HTTP
exporter (protobuf) and a BatchSpanProcessor, as an instrumented agent would. Prints one JSON line: what it sent.

    python tests/otel_sender.py ENDPOINT --spans N --per-run K [--error-every E] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("--spans", type=int, required=True)
    ap.add_argument("--per-run", type=int, default=20)
    ap.add_argument("--error-every", type=int, default=0, help="every Nth run ends in an error (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--token", default=None)
    args = ap.parse_args()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    provider = TracerProvider(resource=Resource.create({"service.name": f"sender-{args.seed}"}))
    exporter = OTLPSpanExporter(endpoint=args.endpoint.rstrip("/") + "/v1/traces", headers=headers)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100, max_queue_size=100_000,
                                                   max_export_batch_size=512))
    tracer = provider.get_tracer("agent-debug-tests")
    runs = args.spans // args.per_run
    failing_step = max([i for i in range(args.per_run - 1) if i % 3 == 2], default=0)  # the run's last tool call
    failed: list[str] = []
    trace_ids: list[str] = []
    for r in range(runs):
        bad = bool(args.error_every) and r % args.error_every == 0
        with tracer.start_as_current_span(
            "invoke_agent planner",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
                        "run.index": r, "sender": args.seed},
        ) as root:
            tid = format(root.get_span_context().trace_id, "032x")
            trace_ids.append(tid)
            for i in range(args.per_run - 1):
                kind = "execute_tool" if i % 3 == 2 else "chat"
                attrs: dict[str, object] = {"gen_ai.operation.name": kind}
                if kind == "chat":
                    attrs.update({"gen_ai.request.model": "model-a", "gen_ai.usage.input_tokens": 100 + i,
                                  "gen_ai.usage.output_tokens": 10})
                else:
                    attrs["gen_ai.tool.name"] = "search"
                with tracer.start_as_current_span(f"{kind} {i}", attributes=attrs) as span:
                    if bad and i == failing_step:
                        span.set_status(Status(StatusCode.ERROR, "TimeoutError: the tool did not answer"))
            if bad:
                root.set_status(Status(StatusCode.ERROR, "the run failed"))
                failed.append(tid)
    ok = provider.force_flush(120_000)
    provider.shutdown()
    json.dump({"spans": runs * args.per_run, "runs": runs, "failed": failed, "trace_ids": trace_ids,
               "flushed": ok}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
