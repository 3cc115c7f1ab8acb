# The compiled span core (agent_debug/sdk/_cspan.c); tracer.py holds the same in Python.
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType, TracebackType
from typing import Any

ABI: int

class SpanCore:
    def __enter__(self) -> Any: ...
    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def set_payload(self, payload: dict[str, Any]) -> Any: ...

def span(
    name: str,
    *,
    agent: str | None = None,
    event_type: str = "AGENT",
    attributes: dict[str, Any] | None = None,
    retry_of: Any = None,
) -> Any: ...
def bind(
    *,
    current: ContextVar[Any],
    id_pool: list[str],
    new_span_id: Callable[[], str],
    perf_ns: Callable[[], int],
    time: Callable[[], float],
    dumps: Callable[[Any], bytes],
    dumps_record: Callable[[dict[str, Any]], tuple[bytes, BaseException | None]],
    runtime: ModuleType,
    format_version: int,
    sleep: Callable[[float], None],
    yield_mask: int,
    wake_at: int,
    span_type: type,
    copy_attributes: Callable[[Any], dict[str, Any]],
) -> None: ...
