"""Emission-order tap on CrewAI's event bus (CrewAI 1.6.x).

CrewAI runs sync handlers in a thread pool, so they see events out of order
and CrewAI 1.6 events carry no sequence number, parent id, per-call token
usage or call latency. This tap runs *in the emitting thread, in emission
order*, just before the bus dispatches an event, and records those facts in a
small :class:`Meta` the handler picks up later:

- ``seq``: a process-wide emission counter;
- ``eid``/``parent``: our event id, and the id of the enclosing crew, task,
  agent execution or tool call (a per-context stack, copied into worker
  threads by ``contextvars``);
- ``run``: the crew kickoff id;
- durations (start/end pairs) and LLM call latency;
- per-call usage: the LLM's own ``_track_token_usage_internal`` (native
  providers and ScriptedLLM) or litellm's ``log_success_event`` report it in
  the emitting thread right before ``LLMCallCompletedEvent``.

The tap only does dictionary and counter work (no encoding, no I/O).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import crewai.events as et

from ..events import new_event_id

__all__ = ["KINDS", "Meta", "Tap"]

# event class -> kind; only kinds listed here are tapped (others cost one dict miss)
KINDS: dict[type[Any], str] = {
    et.CrewKickoffStartedEvent: "crew_start",
    et.CrewKickoffCompletedEvent: "crew_end",
    et.CrewKickoffFailedEvent: "crew_end",
    et.TaskStartedEvent: "task_start",
    et.TaskCompletedEvent: "task_end",
    et.TaskFailedEvent: "task_end",
    et.AgentExecutionStartedEvent: "agent_start",
    et.AgentExecutionCompletedEvent: "agent_end",
    et.AgentExecutionErrorEvent: "agent_end",
    et.LLMCallStartedEvent: "llm_start",
    et.LLMCallCompletedEvent: "llm_end",
    et.LLMCallFailedEvent: "llm_end",
    et.ToolUsageStartedEvent: "tool_start",
    et.ToolUsageFinishedEvent: "tool_end",
    et.ToolUsageErrorEvent: "tool_end",
    et.ToolSelectionErrorEvent: "tool_error",
    et.ToolValidateInputErrorEvent: "tool_error",
    et.KnowledgeRetrievalCompletedEvent: "other",
    et.KnowledgeQueryFailedEvent: "other",
    et.KnowledgeSearchQueryFailedEvent: "other",
    et.MemoryQueryCompletedEvent: "other",
    et.MemoryQueryFailedEvent: "other",
    et.MemoryRetrievalCompletedEvent: "other",
}
MAX_PENDING = 50_000
MAX_MAPPED = 20_000  # ids remembered for run look-ups (a long-running process forgets old ones)

Frame = tuple[str, Any, str, float, str | None]  # kind, key, event id, start time, parent
_STACK: ContextVar[tuple[Frame, ...]] = ContextVar("auren_crewai_stack", default=())
_RUN: ContextVar[str | None] = ContextVar("auren_crewai_run", default=None)
_USAGE: ContextVar[tuple[int, int, int] | None] = ContextVar("auren_crewai_usage", default=None)
_LLM_T0: ContextVar[float | None] = ContextVar("auren_crewai_llm_t0", default=None)


@dataclass(slots=True)
class Meta:
    seq: int | None
    eid: str
    ts: float
    parent: str | None = None
    run: str | None = None
    duration_ms: float | None = None
    usage: tuple[int, int, int] | None = None  # input, output, cached
    start_eid: str | None = None  # end events: the start event's id and parent
    start_parent: str | None = None


def new_run_id() -> str:
    return os.urandom(8).hex()


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def record_usage(usage: Any) -> None:
    """Remember one call's usage (dict or object) for the next LLMCallCompletedEvent."""

    def get(k: str) -> Any:
        return usage.get(k) if isinstance(usage, dict) else getattr(usage, k, None)

    inp = _int(get("prompt_tokens") or get("prompt_token_count") or get("input_tokens"))
    out = _int(get("completion_tokens") or get("candidates_token_count") or get("output_tokens"))
    cached = _int(get("cached_tokens") or get("cached_prompt_tokens"))
    if not cached:
        details = get("prompt_tokens_details")
        if details is not None:
            cached = _int(
                details.get("cached_tokens")
                if isinstance(details, dict)
                else getattr(details, "cached_tokens", 0)
            )
    _USAGE.set((inp, out, cached))


class Tap:
    """Bookkeeping done at emission time; handlers collect it with :meth:`take`."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self.pending: dict[int, Meta] = {}
        self.open: dict[tuple[str, Any], Frame] = {}
        self.run_of_agent: dict[str, str] = {}
        self.run_of_task: dict[str, str] = {}
        self.errors = 0
        self._lock = threading.Lock()
        # Set in "tap" dispatch: every tapped event goes straight to this sink
        # (our own worker's queue) instead of waiting for a bus handler.
        self.sink: Callable[[Any, Any, Meta], None] | None = None

    def take(self, event: Any) -> Meta | None:
        return self.pending.pop(id(event), None)

    def on_emit(self, source: Any, event: Any) -> None:
        """Called by the wrapped ``emit`` in the emitting thread. Never raises."""
        kind = KINDS.get(type(event))
        if kind is None:
            return
        try:
            self._record(kind, source, event)
        except Exception:
            self.errors += 1

    def _record(self, kind: str, source: Any, event: Any) -> None:
        now = time.perf_counter()
        if kind == "llm_start":
            _LLM_T0.set(now)
            _USAGE.set(None)
            return
        stack = _STACK.get()
        meta = Meta(next(self._seq), new_event_id(), time.time())
        meta.parent = stack[-1][2] if stack else None
        run = _RUN.get()
        if kind == "crew_start":
            run = new_run_id()
            _RUN.set(run)
            self._open("crew", id(source), meta, now, stack)
            for a in getattr(source, "agents", None) or ():
                self.run_of_agent[str(a.id)] = run
            for t in getattr(source, "tasks", None) or ():
                self.run_of_task[str(t.id)] = run
        elif kind == "task_start":
            self._open("task", id(event.task), meta, now, stack)
        elif kind == "agent_start":
            self._open("agent", (id(event.agent), id(event.task)), meta, now, stack)
            if run is not None:
                self.run_of_agent[str(event.agent.id)] = run
        elif kind == "tool_start":
            self._open("tool", getattr(event, "tool_name", None), meta, now, stack)
        elif kind == "crew_end":
            self._close("crew", id(source), meta, now)
        elif kind == "task_end":
            self._close("task", id(event.task), meta, now)
        elif kind == "agent_end":
            self._close("agent", (id(event.agent), id(event.task)), meta, now)
        elif kind == "tool_end":
            self._close("tool", getattr(event, "tool_name", None), meta, now)
        elif kind == "llm_end":
            t0 = _LLM_T0.get()
            if t0 is not None:
                meta.duration_ms = (now - t0) * 1000.0
                _LLM_T0.set(None)
            meta.usage = _USAGE.get()
            _USAGE.set(None)
        if run is None:
            aid, tid = getattr(event, "agent_id", None), getattr(event, "task_id", None)
            agent = getattr(event, "agent", None)
            if agent is not None and aid is None:
                aid = str(getattr(agent, "id", "")) or None
            run = (
                (aid and self.run_of_agent.get(aid)) or (tid and self.run_of_task.get(tid)) or None
            )
        meta.run = run
        if len(self.run_of_task) > MAX_MAPPED or len(self.open) > MAX_MAPPED:
            self._trim()
        sink = self.sink
        if sink is not None:
            sink(source, event, meta)
            return
        pending = self.pending
        if len(pending) >= MAX_PENDING:  # handlers never ran (bus shut down, scoped handlers)
            with self._lock:
                for k in list(pending)[: MAX_PENDING // 10]:
                    pending.pop(k, None)
        pending[id(event)] = meta

    def _trim(self) -> None:
        """Forget the oldest half of the id maps (insertion-ordered dicts)."""
        with self._lock:
            maps: tuple[dict[Any, Any], ...] = (self.run_of_task, self.run_of_agent, self.open)
            for d in maps:
                for k in list(d)[: len(d) // 2]:
                    d.pop(k, None)

    def _open(self, kind: str, key: Any, meta: Meta, now: float, stack: tuple[Frame, ...]) -> None:
        frame: Frame = (kind, key, meta.eid, now, meta.parent)
        self.open[(kind, key)] = frame
        _STACK.set((*stack, frame))

    def _close(self, kind: str, key: Any, meta: Meta, now: float) -> None:
        frame = self.open.pop((kind, key), None)
        if frame is not None:
            meta.duration_ms = (now - frame[3]) * 1000.0
            meta.parent = meta.start_eid = frame[2]  # an end event's parent: its start
            meta.start_parent = frame[4]
        stack = _STACK.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == kind and stack[i][1] == key:
                _STACK.set(stack[:i])
                break
