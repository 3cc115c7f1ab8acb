"""Debug sessions: one per run that `serve` (or `tail`) sees arriving, and its state.

    IDLE       a run in the store that nothing is arriving for (stored before serve started, or forgotten)
    ATTACHED   serve has found the run in a source it follows (its first stored spans); it moves on at once to
    RECORDING  while its spans arrive
    ANALYZING  its root span has ended (and `settle` seconds passed without a span), or `idle` seconds passed
               without one: bucket/why, the critical path and the matching eval cases run on it
    DONE       with those results; a late span reopens it (back to RECORDING, analyzed again later)

Every change is announced through `emit(kind, data)` as a `state` event, with the trace id. Thread-safe: the
writer thread reports spans, the analysis thread results, and the web app reads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from agent_debug.columns import TraceSummary

DEFAULT_IDLE = 30.0
SETTLE = 0.2  # after the root span, wait this long for its last siblings (exporters send in batches)
MAX_SESSIONS = 5_000  # sessions remembered (oldest finished ones are forgotten first: they go back to IDLE)
MAX_RESULTS = 1_000  # finished sessions that keep their analysis results in memory


class State(str, Enum):
    IDLE = "idle"
    ATTACHED = "attached"
    RECORDING = "recording"
    ANALYZING = "analyzing"
    DONE = "done"


Emit = Callable[[str, dict[str, Any]], None]


@dataclass
class Session:
    trace_id: str
    state: State = State.ATTACHED
    spans: int = 0  # spans announced to this session
    root_seen: bool = False
    first_wall: float = field(default_factory=time.time)
    last_span: float = 0.0  # monotonic time of the last span
    reopened: int = 0
    history: list[tuple[str, float]] = field(default_factory=list)  # (state, wall time)
    results: dict[str, Any] | None = None
    workflow: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "state": self.state.value, "spans": self.spans,
                "root_seen": self.root_seen, "reopened": self.reopened, "started_at": self.first_wall,
                "history": [{"state": s, "at": t} for s, t in self.history], "results": self.results}


class SessionManager:
    def __init__(self, emit: Emit, *, idle: float = DEFAULT_IDLE, settle: float = SETTLE) -> None:
        self.emit = emit
        self.idle = idle
        self.settle = settle
        self.sessions: OrderedDict[str, Session] = OrderedDict()  # least recently active first
        self._lock = threading.RLock()
        self._with_results: OrderedDict[str, None] = OrderedDict()
        self._recording: dict[str, Session] = {}  # the sessions `due` looks at

    # -- reads ------------------------------------------------------------------------------------------------

    def state_of(self, trace_id: str) -> State:
        with self._lock:
            s = self.sessions.get(trace_id)
            return s.state if s is not None else State.IDLE

    def get(self, trace_id: str) -> dict[str, Any] | None:
        with self._lock:
            s = self.sessions.get(trace_id)
            return s.as_dict() if s is not None else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {st.value: 0 for st in State if st is not State.IDLE}
            for s in self.sessions.values():
                out[s.state.value] += 1
            return out

    def live(self) -> list[Session]:
        """Sessions not DONE, oldest first (what `tail` shows as in flight)."""
        with self._lock:
            return [s for s in self.sessions.values() if s.state is not State.DONE]

    # -- changes ----------------------------------------------------------------------------------------------

    def spans_arrived(self, spans: Iterable[dict[str, Any]], runs: dict[str, TraceSummary],
                      now: float | None = None) -> None:
        """Spans the store gained (as `span` events carry them): open, record or reopen their sessions."""
        counts: dict[str, list[Any]] = {}
        for sp in spans:
            c = counts.setdefault(sp["trace_id"], [0, False])
            c[0] += 1
            c[1] = c[1] or sp["parent_id"] is None
        self.counts_arrived({tid: (n, root) for tid, (n, root) in counts.items()}, runs, now)

    def counts_arrived(self, counts: dict[str, tuple[int, bool]], runs: dict[str, TraceSummary],
                       now: float | None = None) -> None:
        """Spans the store gained, per trace: how many, and whether a root is among them (`follow.Gained`)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for tid, (n, root) in counts.items():
                s = self.sessions.get(tid)
                if s is None:
                    s = self.sessions[tid] = Session(tid, State.IDLE)
                    self._announce(s, State.ATTACHED)
                else:
                    self.sessions.move_to_end(tid)
                s.spans += n
                s.last_span = now
                if root:
                    s.root_seen = True
                if s.state is not State.RECORDING:
                    if s.state in (State.ANALYZING, State.DONE):
                        s.reopened += 1
                    self._announce(s, State.RECORDING)
            for tid, summary in runs.items():
                s = self.sessions.get(tid)
                if s is not None:
                    s.workflow = summary.workflow
            self._trim()

    def due(self, now: float | None = None) -> list[str]:
        """Sessions to analyze now (moved to ANALYZING): root ended and settled, or idle."""
        now = time.monotonic() if now is None else now
        out = []
        with self._lock:
            for s in list(self._recording.values()):  # not every session: there are thousands
                quiet = now - s.last_span
                if (s.root_seen and quiet >= self.settle) or quiet >= self.idle:
                    self._announce(s, State.ANALYZING)
                    out.append(s.trace_id)
        return out

    def analyzed(self, trace_id: str, results: dict[str, Any]) -> bool:
        """The results of an analysis. Ignored (False) when spans arrived meanwhile: the session was reopened
        and will be analyzed again."""
        with self._lock:
            s = self.sessions.get(trace_id)
            if s is None or s.state is not State.ANALYZING:
                return False
            s.results = results
            self._with_results[trace_id] = None
            self._with_results.move_to_end(trace_id)
            while len(self._with_results) > MAX_RESULTS:
                old, _ = self._with_results.popitem(last=False)
                if old in self.sessions:
                    self.sessions[old].results = None
            self._announce(s, State.DONE, results=results)
            return True

    def _announce(self, s: Session, state: State, **extra: Any) -> None:
        previous = s.state
        s.state = state
        if state is State.RECORDING:
            self._recording[s.trace_id] = s
        else:
            self._recording.pop(s.trace_id, None)
        s.history.append((state.value, time.time()))
        if len(s.history) > 50:
            del s.history[1:-40]
        data = {"trace_id": s.trace_id, "state": state.value, "previous": previous.value, "spans": s.spans}
        data.update(extra)
        self.emit("state", data)

    def _trim(self) -> None:
        if len(self.sessions) <= MAX_SESSIONS:
            return
        for tid in [t for t, s in self.sessions.items() if s.state is State.DONE][: len(self.sessions) - MAX_SESSIONS]:
            del self.sessions[tid]
            self._with_results.pop(tid, None)
