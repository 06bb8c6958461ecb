"""Emission-order tap on CrewAI's event bus (every release from 1.6.1 to the newest).

CrewAI runs sync handlers in a thread pool, so they see events out of order.
This tap runs *in the emitting thread, in emission order* and records, in a
small :class:`Meta`, what the conversion needs later:

- ``seq`` / ``eid`` / ``parent``: on CrewAI 1.9+ the release's own
  ``emission_sequence``, ``event_id`` and ``parent_event_id`` /
  ``started_event_id``, read *after* CrewAI fills them in (the tap wraps the
  bus's ``_prepare_event``, which ``emit`` and ``aemit`` both call and
  ``replay`` does not, so events replayed from a checkpoint are never seen
  twice). A parent that we do not publish (an LLM call start, a memory query
  start, ...) is resolved to its nearest published ancestor. On 1.6-1.8 the tap
  wraps ``emit`` and keeps its own counter and a per-context stack;
- ``run``: the crew kickoff, flow run or stand-alone agent run this event
  belongs to (a per-context variable, restored when a nested run ends);
- durations (start/end pairs) and LLM call latency, by CrewAI's ``call_id``
  (1.10+) or per context;
- per-call usage: ``LLMCallCompletedEvent.usage`` (1.13+) is read by the
  converter; otherwise the LLM's own ``_track_token_usage_internal`` (native
  providers, ScriptedLLM) or litellm's ``log_success_event`` report it in the
  emitting thread right before ``LLMCallCompletedEvent``;
- de-duplication: one ``call_id`` completes once (a second completion of the
  same call, from a stacked instrumentor or a retry path, is counted, not sent).

Event classes are looked up by name (:func:`resolve`): a class the installed
release lacks is skipped. The tap only does dictionary and counter work (no
encoding, no I/O).
"""

from __future__ import annotations

import importlib
import itertools
import os
import pkgutil
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ...events import new_event_id

__all__ = ["KINDS", "KIND_NAMES", "Meta", "Tap", "record_usage", "resolve"]

# CrewAI event class name -> tap kind. Classes missing from a release are skipped.
KIND_NAMES: dict[str, str] = {
    "CrewKickoffStartedEvent": "crew_start",
    "CrewKickoffCompletedEvent": "crew_end",
    "CrewKickoffFailedEvent": "crew_end",
    "TaskStartedEvent": "task_start",
    "TaskCompletedEvent": "task_end",
    "TaskFailedEvent": "task_end",
    "AgentExecutionStartedEvent": "agent_start",
    "AgentExecutionCompletedEvent": "agent_end",
    "AgentExecutionErrorEvent": "agent_end",
    "LiteAgentExecutionStartedEvent": "lite_start",
    "LiteAgentExecutionCompletedEvent": "lite_end",
    "LiteAgentExecutionErrorEvent": "lite_end",
    "LLMCallStartedEvent": "llm_start",
    "LLMCallCompletedEvent": "llm_end",
    "LLMCallFailedEvent": "llm_end",
    "ToolUsageStartedEvent": "tool_start",
    "ToolUsageFinishedEvent": "tool_end",
    "ToolUsageErrorEvent": "tool_end",
    "ToolSelectionErrorEvent": "tool_error",
    "ToolValidateInputErrorEvent": "tool_error",
    "KnowledgeRetrievalCompletedEvent": "other",
    "KnowledgeQueryFailedEvent": "other",
    "KnowledgeSearchQueryFailedEvent": "other",
    "MemoryQueryCompletedEvent": "other",
    "MemoryQueryFailedEvent": "other",
    "MemoryRetrievalCompletedEvent": "other",
    "MemoryRetrievalFailedEvent": "other",
    "FlowStartedEvent": "flow_start",
    "FlowFinishedEvent": "flow_end",
    "FlowFailedEvent": "flow_end",
    "MethodExecutionStartedEvent": "method_start",
    "MethodExecutionFinishedEvent": "method_end",
    "MethodExecutionFailedEvent": "method_end",
    "MethodExecutionPausedEvent": "method_pause",
    "HumanFeedbackRequestedEvent": "human_req",
    "FlowInputRequestedEvent": "human_req",
    "HumanFeedbackReceivedEvent": "human_recv",
    "FlowInputReceivedEvent": "human_recv",
    "A2ADelegationStartedEvent": "a2a",
}
MAX_PENDING = 50_000
MAX_MAPPED = 20_000  # ids remembered for run look-ups (a long-running process forgets old ones)
MAX_CALLS = 4096  # completed LLM call ids remembered for de-duplication
MAX_HOPS = 64  # parent resolution: at most this many unpublished ancestors


def _all_event_classes() -> dict[str, type[Any]]:
    """Every BaseEvent subclass the installed CrewAI defines, by class name."""
    out: dict[str, type[Any]] = {}
    try:
        import crewai.events as ev
        import crewai.events.types as types_pkg
    except Exception:  # pragma: no cover - CrewAI not importable
        return out
    for name in KIND_NAMES:
        try:
            cls = getattr(ev, name, None)  # 1.9+: lazy exports by name
        except Exception:
            cls = None
        if isinstance(cls, type):
            out[name] = cls
    if len(out) < len(KIND_NAMES):  # older releases: look through the types modules
        for mod in pkgutil.iter_modules(types_pkg.__path__):
            try:
                m = importlib.import_module(f"{types_pkg.__name__}.{mod.name}")
            except Exception:  # noqa: S112 - a module this release cannot import
                continue
            for name in KIND_NAMES:
                cls = getattr(m, name, None)
                if name not in out and isinstance(cls, type):
                    out[name] = cls
    return out


_RESOLVED: dict[type[Any], str] | None = None


def resolve() -> dict[type[Any], str]:
    """Event class -> kind, for the classes this CrewAI release has."""
    global _RESOLVED
    if _RESOLVED is None:
        _RESOLVED = {cls: KIND_NAMES[name] for name, cls in _all_event_classes().items()}
    return _RESOLVED


KINDS = resolve()


def _scope_starts() -> frozenset[str]:
    """Event ``type`` strings that open a scope (CrewAI 1.9+; empty before)."""
    try:
        from crewai.events import event_context
    except Exception:
        return frozenset()
    return frozenset(getattr(event_context, "SCOPE_STARTING_EVENTS", ()))

Frame = tuple[str, Any, str, float, str | None, str | None]  # kind, key, eid, t0, parent, prev run
_STACK: ContextVar[tuple[Frame, ...]] = ContextVar("auren_crewai_stack", default=())
_RUN: ContextVar[str | None] = ContextVar("auren_crewai_run", default=None)
_USAGE: ContextVar[tuple[int, int, int, int] | None] = ContextVar(
    "auren_crewai_usage", default=None
)
_LLM_T0: ContextVar[float | None] = ContextVar("auren_crewai_llm_t0", default=None)


@dataclass(slots=True)
class Meta:
    seq: int | None
    eid: str
    ts: float
    parent: str | None = None
    run: str | None = None
    duration_ms: float | None = None
    usage: tuple[int, int, int, int] | None = None  # input, output, cached, reasoning
    start_eid: str | None = None  # end events: the start event's id and parent
    start_parent: str | None = None
    flow_run: str | None = None  # crew_start inside a flow: the flow's run


def new_run_id() -> str:
    return os.urandom(8).hex()


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def usage_of(usage: Any) -> tuple[int, int, int, int] | None:
    """(input, output, cached, reasoning) from a provider's usage dict or object."""
    if usage is None:
        return None

    def get(obj: Any, k: str) -> Any:
        return obj.get(k) if isinstance(obj, dict) else getattr(obj, k, None)

    inp = _int(
        get(usage, "prompt_tokens")
        or get(usage, "prompt_token_count")
        or get(usage, "input_tokens")
    )
    out = _int(
        get(usage, "completion_tokens")
        or get(usage, "candidates_token_count")
        or get(usage, "output_tokens")
    )
    cached = _int(
        get(usage, "cached_tokens")
        or get(usage, "cached_prompt_tokens")
        or get(usage, "cache_read_input_tokens")
    )
    if not cached:
        details = get(usage, "prompt_tokens_details") or get(usage, "input_tokens_details")
        if details is not None:
            cached = _int(get(details, "cached_tokens"))
    reasoning = _int(get(usage, "reasoning_tokens") or get(usage, "thoughts_token_count"))
    if not reasoning:
        details = get(usage, "completion_tokens_details") or get(usage, "output_tokens_details")
        if details is not None:
            reasoning = _int(get(details, "reasoning_tokens"))
    return (inp, out, cached, reasoning)


def record_usage(usage: Any) -> None:
    """Remember one call's usage (dict or object) for the next LLMCallCompletedEvent."""
    _USAGE.set(usage_of(usage))


_INTERNAL: dict[type[Any], bool] = {}


def _internal(source: Any) -> bool:
    """A flow defined inside CrewAI itself, not by the user."""
    t = type(source)
    hit = _INTERNAL.get(t)
    if hit is None:
        hit = _INTERNAL[t] = str(getattr(t, "__module__", "")).startswith("crewai.")
    return hit


class Tap:
    """Bookkeeping done at emission time; handlers collect it with :meth:`take`."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self.pending: dict[int, Meta] = {}
        self.open: dict[Any, Frame] = {}
        self.run_of_agent: dict[str, str] = {}
        self.run_of_task: dict[str, str] = {}
        self.skipped: dict[str, str | None] = {}  # unpublished scope start -> its parent
        self.llm_t0: dict[str, float] = {}  # call_id -> start (1.10+)
        self.calls_done: dict[str, None] = {}  # completed call ids (insertion-ordered)
        self.flow_runs: dict[str, None] = {}
        self.human_t0: dict[tuple[str | None, str | None], float] = {}
        self.duplicates = 0
        self.errors = 0
        self.kinds = resolve()
        self.scope_starts = _scope_starts()
        self._lock = threading.Lock()
        # Set in "tap" dispatch: every tapped event goes straight to this sink
        # (our own worker's queue) instead of waiting for a bus handler.
        self.sink: Callable[[Any, Any, Meta], None] | None = None

    def transparent(self, source: Any, event: Any) -> bool:
        """Events of CrewAI's own flows, which the tap treats as plain scopes."""
        kind = self.kinds.get(type(event))
        return kind is not None and kind[0] in "fm" and _internal(source)

    def take(self, event: Any) -> Meta | None:
        return self.pending.pop(id(event), None)

    def on_emit(self, source: Any, event: Any) -> None:
        """Called in the emitting thread (after CrewAI's own bookkeeping on 1.9+). Never raises."""
        kind = self.kinds.get(type(event))
        try:
            if kind is not None and kind[0] in "fm" and _internal(source):
                kind = None  # CrewAI's own flows (1.1x's AgentExecutor is a Flow): transparent
            if kind is None:
                # an unpublished scope start (memory query, reasoning, MCP, ...): remember
                # its parent so the events inside it point at a published ancestor
                if getattr(event, "type", None) in self.scope_starts:
                    skipped = self.skipped
                    skipped[event.event_id] = event.parent_event_id
                    if len(skipped) > MAX_MAPPED:
                        with self._lock:
                            for k in list(skipped)[: len(skipped) // 2]:
                                skipped.pop(k, None)
                return
            self._record(kind, source, event)
        except Exception:
            self.errors += 1

    # ------------------------------------------------------------------ helpers
    def _resolve(self, parent: str | None) -> str | None:
        skipped = self.skipped
        for _ in range(MAX_HOPS):
            if parent is None or parent not in skipped:
                return parent
            parent = skipped[parent]
        return parent

    def _record(self, kind: str, source: Any, event: Any) -> None:
        now = time.perf_counter()
        ceid = getattr(event, "event_id", None)  # 1.9+: CrewAI's own ids
        if kind == "llm_start":
            call_id = getattr(event, "call_id", None)
            if call_id is not None:
                self.llm_t0[call_id] = now
                if len(self.llm_t0) > MAX_CALLS:
                    for k in list(self.llm_t0)[: MAX_CALLS // 2]:
                        self.llm_t0.pop(k, None)
            _LLM_T0.set(now)
            _USAGE.set(None)
            if ceid is not None:
                self.skipped[ceid] = getattr(event, "parent_event_id", None)
            return
        if kind == "llm_end":
            call_id = getattr(event, "call_id", None)
            if call_id is not None:
                if call_id in self.calls_done:
                    self.duplicates += 1
                    return
                self.calls_done[call_id] = None
                if len(self.calls_done) > MAX_CALLS:
                    for k in list(self.calls_done)[: MAX_CALLS // 2]:
                        self.calls_done.pop(k, None)
        meta = self._meta(event, ceid)
        self._timing_and_run(kind, source, event, meta, now, ceid is not None)
        if len(self.run_of_task) > MAX_MAPPED or len(self.open) > MAX_MAPPED:
            self._trim()
        sink = self.sink
        if sink is not None:
            sink(source, event, meta)
            return
        pending = self.pending
        if len(pending) >= MAX_PENDING:  # handlers never ran (bus shut down, scoped handlers)
            with self._lock:
                for pk in list(pending)[: MAX_PENDING // 10]:
                    pending.pop(pk, None)
        pending[id(event)] = meta

    def _meta(self, event: Any, ceid: str | None) -> Meta:
        """Ids, sequence and parent: CrewAI's own where the release sets them (1.9+; some
        releases leave ``parent_event_id`` unset on some events), else ours (a process
        counter and a per-context stack of open scopes)."""
        stack = _STACK.get()
        own_parent = stack[-1][2] if stack else None
        if ceid is None:
            meta = Meta(next(self._seq), new_event_id(), time.time())
            meta.parent = own_parent
            return meta
        seq = getattr(event, "emission_sequence", None)
        meta = Meta(seq if isinstance(seq, int) else next(self._seq), ceid, time.time())
        parent = getattr(event, "parent_event_id", None)
        meta.parent = self._resolve(parent) if parent is not None else own_parent
        return meta

    @staticmethod
    def _key(kind: str, source: Any, event: Any) -> Any:
        """The key pairing a start with its end (CrewAI < 1.9, no started_event_id)."""
        k = kind.split("_", 1)[0]
        if k == "crew" or k == "flow" or k == "lite":
            return (k, id(source))
        if k == "task":
            return (k, id(event.task))
        if k == "agent":
            return (k, id(event.agent), id(event.task))
        if k == "tool":
            return (k, getattr(event, "tool_name", None))
        if k == "method":
            return (k, id(source), getattr(event, "method_name", None))
        return None

    def _timing_and_run(
        self, kind: str, source: Any, event: Any, meta: Meta, now: float, ids: bool
    ) -> None:
        run = _RUN.get()
        if kind.endswith("_start"):
            prev = run
            if kind in ("crew_start", "flow_start") or (kind == "lite_start" and run is None):
                if prev is not None and prev in self.flow_runs:
                    meta.flow_run = prev
                run = meta.eid if ids else new_run_id()
                _RUN.set(run)
                if kind == "flow_start":
                    self.flow_runs[run] = None
            if kind == "crew_start":
                for a in getattr(source, "agents", None) or ():
                    self.run_of_agent[str(a.id)] = run  # type: ignore[assignment]
                for t in getattr(source, "tasks", None) or ():
                    self.run_of_task[str(t.id)] = run  # type: ignore[assignment]
            elif kind == "agent_start" and run is not None:
                self.run_of_agent[str(event.agent.id)] = run
            key = self._key(kind, source, event)
            if key is not None:
                frame: Frame = (kind, key, meta.eid, now, meta.parent, prev)
                self.open[key] = frame
                _STACK.set((*_STACK.get(), frame))
        elif (kind.endswith("_end") and kind != "llm_end") or kind == "method_pause":
            key = self._key(kind, source, event)
            frame_ = self.open.pop(key, None) if key is not None else None
            started = getattr(event, "started_event_id", None) if ids else None
            if frame_ is not None:
                meta.duration_ms = (now - frame_[3]) * 1000.0
                if kind in ("crew_end", "flow_end", "lite_end"):
                    meta.run = run
                    _RUN.set(frame_[5])  # back to the enclosing run (a flow, or none)
            if started is not None:  # CrewAI's pairing (1.9+ where set)
                meta.start_eid = started
                meta.start_parent = meta.parent  # CrewAI: an end's parent is its scope's
                meta.parent = self._resolve(started)
            elif frame_ is not None:  # ours: an end event's parent is its start
                meta.parent = meta.start_eid = frame_[2]
                meta.start_parent = frame_[4]
            stack = _STACK.get()
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][1] == key:
                    _STACK.set(stack[:i])
                    break
        elif kind == "llm_end":
            call_id = getattr(event, "call_id", None)
            t0 = self.llm_t0.pop(call_id, None) if call_id is not None else None
            if t0 is None:
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
        if meta.run is None:
            meta.run = run
        if kind == "human_req" or kind == "human_recv":
            hkey = (meta.run, getattr(event, "method_name", None))
            if kind == "human_req":
                self.human_t0[hkey] = now
                if len(self.human_t0) > MAX_CALLS:
                    self.human_t0.pop(next(iter(self.human_t0)), None)
            else:
                t0 = self.human_t0.pop(hkey, None)
                if t0 is not None:
                    meta.duration_ms = (now - t0) * 1000.0

    def _trim(self) -> None:
        """Forget the oldest half of the id maps (insertion-ordered dicts)."""
        with self._lock:
            maps: tuple[dict[Any, Any], ...] = (
                self.run_of_task,
                self.run_of_agent,
                self.open,
                self.flow_runs,
            )
            for d in maps:
                for k in list(d)[: len(d) // 2]:
                    d.pop(k, None)
