"""Packets written by the SDK itself for every failed or escalated run (`configure(packets=True)`), so a packet
exists even when traces are sampled. Built on a background thread from the run's own records and its call log
(full responses, before the writer truncates anything), then redacted like traces."""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

import orjson

from agent_debug.sdk import runtime

if TYPE_CHECKING:
    from agent_debug.sdk.runtime import Config
    from agent_debug.sdk.tracer import Run

_threads: list[threading.Thread] = []
_lock = threading.Lock()


@functools.wraps(runtime.configure)
def configure(*args: Any, **kwargs: Any) -> Config:
    """`agent_debug.configure`: the SDK's `configure`, and with `packets=True` the packet writer hooked in."""
    cfg = runtime.configure(*args, **kwargs)
    if cfg.packets:
        enable()
    return cfg


def enable() -> None:
    """Write a packet for every failed or escalated run from now on (when the configuration asks for packets),
    and let `shutdown` wait for the packets being written."""
    runtime.add_run_listener(on_run_finished)
    runtime.add_shutdown_hook(wait)


def on_run_finished(run: Run, root_record: dict[str, Any]) -> None:
    """Called in the agent's thread as a run's root span ends: copies what the packet needs (cheap) and builds
    and writes it on a background thread. Never raises: faults are counted in `stats()["internal_errors"]`."""
    try:
        cfg = runtime.config()
        if cfg is None or not cfg.packets:
            return
        escalated = bool((root_record.get("attributes") or {}).get("run.escalated"))
        if not (run.failed() or escalated):
            return
        records = list(run.records or ())  # None when packets were switched on while the run was open
        calls = [dict(c) for c in run.calls]
        t = threading.Thread(target=_write, args=(records, calls, cfg), name="agent-debug-packet", daemon=True)
        with _lock:
            _threads[:] = [x for x in _threads if x.is_alive()] + [t]
        t.start()
    except Exception as exc:
        runtime.internal_error(exc)


def _write(records: list[bytes], calls: list[dict[str, Any]], cfg: Config) -> None:
    from agent_debug.replay.packet import build_packet_from_records, write_packet

    try:
        parsed = [orjson.loads(r) for r in records]
        for c in calls:
            c.setdefault("event_type", "LLM_CALL" if c.get("kind") == "llm" else _event_type(parsed, c))
        packet = build_packet_from_records(parsed, calls, redactor=runtime.make_redactor(cfg))
        write_packet(packet, cfg.packet_dir)
    except Exception as exc:  # never break the host; count it
        runtime.internal_error_quiet(exc)


def _event_type(records: list[dict[str, Any]], call: dict[str, Any]) -> str:
    for r in records:
        if r["span_id"] == call.get("span_id"):
            return str(r["event_type"])
    return "TOOL_CALL"


def wait(timeout: float = 10.0) -> None:
    with _lock:
        threads = list(_threads)
    for t in threads:
        t.join(timeout)
