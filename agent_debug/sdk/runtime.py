"""Process-wide SDK state: the configuration, the writer, internal-error accounting, and the hooks called when a
run finishes and at shutdown (replay's packets hook in there: `replay.autopacket`). `configure` and `shutdown`
are the public entry points (`agent_debug.configure` adds the packets)."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_debug.sdk.redact import Redactor
from agent_debug.sdk.writer import Writer

if TYPE_CHECKING:
    from agent_debug.sdk.tracer import Run


@dataclass
class Config:
    """What `configure` set. Every field has a sane default: `configure`'s defaults are these."""

    directory: str = "logs"
    format: str = "jsonl"
    prefix: str = "traces"
    rotation: str | int = "20 MB"
    retention: str | int | None = "14 days"
    compression: str | Callable[[str], None] | None = "gz"
    buffer_size: int = 100_000
    flush_interval: float = 0.1
    sample_rate: float = 1.0
    slow_threshold_s: float = 30.0
    redact: bool = True
    redact_keys: tuple[str, ...] = ()
    redact_patterns: tuple[str, ...] = ()
    allow_keys: tuple[str, ...] = ()
    max_string_chars: int = 4096
    max_payload_bytes: int = 16384
    packets: bool = False
    packet_dir: str = "packets"
    raise_internal_errors: bool | None = None  # None: re-raise only under pytest
    extra: dict[str, Any] = field(default_factory=dict)


_lock = threading.Lock()
_config: Config | None = None
_writer: Writer | None = None
_internal_errors = 0
_unconfigured_warned = False
_run_listeners: list[Callable[[Run, dict[str, Any]], None]] = []
_shutdown_hooks: list[Callable[[float], None]] = []


def configure(
    directory: str | os.PathLike[str] = Config.directory,
    format: str = Config.format,
    *,
    prefix: str = Config.prefix,
    rotation: str | int = Config.rotation,
    retention: str | int | None = Config.retention,
    compression: str | Callable[[str], None] | None = Config.compression,
    buffer_size: int = Config.buffer_size,
    flush_interval: float = Config.flush_interval,
    sample_rate: float = Config.sample_rate,
    slow_threshold_s: float = Config.slow_threshold_s,
    redact: bool = Config.redact,
    redact_keys: tuple[str, ...] | list[str] = Config.redact_keys,
    redact_patterns: tuple[str, ...] | list[str] = Config.redact_patterns,
    allow_keys: tuple[str, ...] | list[str] = Config.allow_keys,
    max_string_chars: int = Config.max_string_chars,
    max_payload_bytes: int = Config.max_payload_bytes,
    packets: bool = Config.packets,
    packet_dir: str | os.PathLike[str] = Config.packet_dir,
    raise_internal_errors: bool | None = Config.raise_internal_errors,
) -> Config:
    """Start (or restart) writing traces. Safe to call again: the previous writer is flushed and closed.

    - `format`: `jsonl` (default) or `msgpack`; `rotation`/`retention` as loguru takes them; `compression`
      `"gz"` (fast gzip on a background thread), None, or a callable taking the rotated file's path.
    - `sample_rate`: share of healthy runs kept, whole or not at all. A run that failed, had an error span,
      or took longer than `slow_threshold_s` is always kept.
    - `redact_keys` / `redact_patterns` add to the default secret key names and value patterns; `allow_keys`
      are never redacted by name. Strings over `max_string_chars` and payloads over `max_payload_bytes` are
      truncated (with a hash) after redaction.
    - `packets`: write a replay packet for every failed run to `packet_dir/YYYY-MM-DD/<trace_id>.json` (the
      packet writer is replay's: `agent_debug.configure` hooks it in, `agent_debug.sdk.runtime.configure` alone
      does not).
    """
    global _config, _writer
    if format not in ("jsonl", "msgpack"):
        raise ValueError(f"format must be 'jsonl' or 'msgpack', not {format!r}")
    if not 0.0 <= sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be between 0 and 1, not {sample_rate}")
    cfg = Config(
        directory=str(directory),
        format=format,
        prefix=prefix,
        rotation=rotation,
        retention=retention,
        compression=compression,
        buffer_size=buffer_size,
        flush_interval=flush_interval,
        sample_rate=sample_rate,
        slow_threshold_s=slow_threshold_s,
        redact=redact,
        redact_keys=tuple(redact_keys),
        redact_patterns=tuple(redact_patterns),
        allow_keys=tuple(allow_keys),
        max_string_chars=max_string_chars,
        max_payload_bytes=max_payload_bytes,
        packets=packets,
        packet_dir=str(packet_dir),
        raise_internal_errors=raise_internal_errors,
    )
    with _lock:
        old = _writer
        _writer = None
        if old is not None:
            old.close()
        Path(cfg.directory).mkdir(parents=True, exist_ok=True)
        _writer = Writer(
            cfg.directory,
            format=cfg.format,
            prefix=cfg.prefix,
            rotation=cfg.rotation,
            retention=cfg.retention,
            compression=cfg.compression,
            buffer_size=cfg.buffer_size,
            flush_interval=cfg.flush_interval,
            sample_rate=cfg.sample_rate,
            redactor=make_redactor(cfg),
            on_error=_log_internal,
        )
        _config = cfg
    return cfg


def make_redactor(cfg: Config) -> Redactor:
    return Redactor(
        extra_keys=cfg.redact_keys,
        extra_patterns=cfg.redact_patterns,
        allow_keys=cfg.allow_keys,
        max_string_chars=cfg.max_string_chars,
        max_payload_bytes=cfg.max_payload_bytes,
        enabled=cfg.redact,
    )


def config() -> Config | None:
    return _config


def writer() -> Writer | None:
    return _writer


_collectors: list[list[bytes]] = []
_silent = 0


class collect:
    """Context manager: also keep every record emitted meanwhile, in memory (replay and multi-run evaluation
    read the runs they re-ran from here). `silent=True` keeps those records off disk. Inside it, an
    unconfigured SDK does not warn."""

    def __init__(self, silent: bool = False) -> None:
        self.records: list[bytes] = []
        self.silent = silent

    def __enter__(self) -> list[bytes]:
        global _silent
        _collectors.append(self.records)
        _silent += self.silent
        return self.records

    def __exit__(self, *exc: object) -> None:
        global _silent
        _collectors.remove(self.records)
        _silent -= self.silent


def emit(trace_id: str, flags: int, data: bytes) -> None:
    if _collectors:
        for c in _collectors:
            c.append(data)
        if _silent:
            return
    w = _writer
    if w is None:
        if _collectors:
            return
        _unconfigured()
        return
    w.emit(trace_id, flags, data)


def dropped() -> int:
    w = _writer
    return w.stats.dropped if w is not None else 0


def _unconfigured() -> None:
    global _unconfigured_warned
    if not _unconfigured_warned:
        _unconfigured_warned = True
        _log("agent_debug: spans are recorded but not written: call agent_debug.configure() first")


def flush(timeout: float = 10.0) -> bool:
    w = _writer
    return w.flush(timeout) if w is not None else True


def shutdown(timeout: float = 10.0) -> dict[str, Any]:
    """Flush and close the writer (also registered at exit). Returns the final counters."""
    global _writer
    for hook in list(_shutdown_hooks):
        try:
            hook(timeout)
        except Exception as exc:
            internal_error_quiet(exc)
    with _lock:
        w = _writer
        _writer = None
    if w is None:
        return stats()
    w.close(timeout)
    final = w.stats.as_dict() | {"internal_errors": w.stats.internal_errors + _internal_errors}
    if w.stats.dropped:
        _log(f"agent_debug: {w.stats.dropped} trace records were dropped because the buffer was full")
    return final


def stats() -> dict[str, Any]:
    """Counters: emitted, written, dropped, sampled_out, redacted, internal_errors, ...; and `span_core`: whether
    spans run the compiled hot path ("compiled") or the Python one ("python": not built, or turned off)."""
    w = _writer
    base: dict[str, Any] = w.stats.as_dict() if w is not None else {"emitted": 0, "written": 0, "dropped": 0}
    base["internal_errors"] = base.get("internal_errors", 0) + _internal_errors
    tracer = sys.modules.get("agent_debug.sdk.tracer")  # imports this module: looked up, not imported
    base["span_core"] = "compiled" if getattr(tracer, "COMPILED", False) else "python"
    return base


def _should_raise() -> bool:
    cfg = _config
    if cfg is not None and cfg.raise_internal_errors is not None:
        return cfg.raise_internal_errors
    return "PYTEST_CURRENT_TEST" in os.environ


def internal_error(exc: BaseException) -> None:
    """An SDK fault: count it, log it, and (only under pytest, unless configured) re-raise it."""
    global _internal_errors
    _internal_errors += 1
    _log_internal(exc)
    if _should_raise():
        raise exc


def internal_error_quiet(exc: BaseException) -> None:
    """An SDK fault on a background thread: counted and logged, never raised (there is no caller to raise to)."""
    global _internal_errors
    _internal_errors += 1
    _log_internal(exc)


def _log_internal(exc: BaseException) -> None:
    if _internal_errors <= 10 or _internal_errors % 1000 == 0:
        _log(f"agent_debug internal error ({_internal_errors} so far): {type(exc).__name__}: {exc}")


def _log(message: str) -> None:
    try:
        from loguru import logger

        logger.opt(depth=1).warning(message)
    except Exception:
        pass


def add_run_listener(fn: Callable[[Run, dict[str, Any]], None]) -> None:
    """Called with (run, root record) when a run's root span ends (packets hook in here)."""
    if fn not in _run_listeners:
        _run_listeners.append(fn)


def add_shutdown_hook(fn: Callable[[float], None]) -> None:
    """Called with the timeout by `shutdown`, before the writer closes (packets being written finish here).
    Parts above the SDK (replay) hook in through this and `add_run_listener`: the SDK imports none of them."""
    if fn not in _shutdown_hooks:
        _shutdown_hooks.append(fn)


def run_finished(run: Run, root_record: dict[str, Any]) -> None:
    for fn in list(_run_listeners):
        try:
            fn(run, root_record)
        except Exception as exc:
            internal_error(exc)


def _reset_after_fork() -> None:
    """The writer thread does not survive fork: the child starts its own writer (its own file) lazily."""
    global _writer, _lock
    _lock = threading.Lock()
    cfg = _config
    _writer = None
    if cfg is not None:
        try:
            configure(**{k: v for k, v in cfg.__dict__.items() if k != "extra"})
        except Exception:
            pass


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(shutdown)
