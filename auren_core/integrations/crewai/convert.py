"""CrewAI event -> AUREN v1 event conversion (the handler body).

Runs in our conversion thread (``dispatch="tap"``) or on CrewAI's event-loop
thread (``dispatch="bus"``): builds the event's payload struct (one per type,
:data:`auren_core.events.PAYLOAD_TYPES`: a wrong field name or type is a mypy error here,
not a malformed entry downstream), encodes it and appends the bytes to the publisher's
buffer. Nothing here touches the network and nothing raises into CrewAI.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from ... import pricing
from ...events import (
    AgentEnded,
    AgentRegistered,
    AgentStarted,
    Collaboration,
    CrewCompleted,
    CrewStarted,
    Event,
    FlowEnded,
    FlowStarted,
    FlowStep,
    HumanInput,
    KnowledgeAccess,
    LlmCall,
    TaskEnded,
    TaskStarted,
    ToolUsed,
    encode,
    new_event_id,
)
from ...events.model import _Payload
from ...memory._events import redact
from ...rules import query_label
from ...streams.publisher import Publisher
from ..text import args_digest, args_of, jsonable, repair, sid, slug, text
from .tap import Meta, Tap, resolve, usage_of

__all__ = ["COLLABORATION_KINDS", "Converter"]

COLLABORATION_KINDS = {"delegate work to coworker": "delegate", "ask question to coworker": "ask"}


def collab_kind(tool_name: Any) -> str | None:
    """CrewAI's delegation tools, by either spelling ("Delegate work to coworker" in
    1.6, "delegate_work_to_coworker" in later releases)."""
    return COLLABORATION_KINDS.get(" ".join(str(tool_name).replace("_", " ").lower().split()))
REGISTER_EVERY_S = 900.0


class Converter:
    def __init__(
        self,
        publisher: Publisher,
        tap: Tap,
        *,
        tool_costs: Mapping[str, float] | None = None,
        redact_queries: bool = False,
    ) -> None:
        self.tap = tap
        self.publisher = publisher
        self.tool_costs: dict[str, float] = dict(tool_costs or {})
        self.redact_queries = redact_queries
        self.handled = 0
        self.errors = 0
        self.repaired = 0
        self.error_types: collections.Counter[str] = collections.Counter()
        self._registered: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()
        self.replayed = 0
        by_name: dict[str, Callable[[Any, Any, Meta], None]] = {
            "CrewKickoffStartedEvent": self._crew_started,
            "CrewKickoffCompletedEvent": self._crew_ended,
            "CrewKickoffFailedEvent": self._crew_ended,
            "TaskStartedEvent": self._task,
            "TaskCompletedEvent": self._task,
            "TaskFailedEvent": self._task,
            "AgentExecutionStartedEvent": self._agent,
            "AgentExecutionCompletedEvent": self._agent,
            "AgentExecutionErrorEvent": self._agent,
            "LiteAgentExecutionStartedEvent": self._lite_agent,
            "LiteAgentExecutionCompletedEvent": self._lite_agent,
            "LiteAgentExecutionErrorEvent": self._lite_agent,
            "LLMCallCompletedEvent": self._llm,
            "LLMCallFailedEvent": self._llm,
            "ToolUsageStartedEvent": self._tool_started,
            "ToolUsageFinishedEvent": self._tool_ended,
            "ToolUsageErrorEvent": self._tool_ended,
            "ToolSelectionErrorEvent": self._tool_ended,
            "ToolValidateInputErrorEvent": self._tool_ended,
            "KnowledgeRetrievalCompletedEvent": self._knowledge,
            "KnowledgeQueryFailedEvent": self._knowledge,
            "KnowledgeSearchQueryFailedEvent": self._knowledge,
            "MemoryQueryCompletedEvent": self._knowledge,
            "MemoryQueryFailedEvent": self._knowledge,
            "MemoryRetrievalCompletedEvent": self._knowledge,
            "MemoryRetrievalFailedEvent": self._knowledge,
            "FlowStartedEvent": self._flow_started,
            "FlowFinishedEvent": self._flow_ended,
            "FlowFailedEvent": self._flow_ended,
            "MethodExecutionStartedEvent": self._flow_step,
            "MethodExecutionFinishedEvent": self._flow_step,
            "MethodExecutionFailedEvent": self._flow_step,
            "MethodExecutionPausedEvent": self._flow_step,
            "HumanFeedbackRequestedEvent": self._human,
            "FlowInputRequestedEvent": self._human,
            "HumanFeedbackReceivedEvent": self._human,
            "FlowInputReceivedEvent": self._human,
            "A2ADelegationStartedEvent": self._a2a,
        }
        self._dispatch: dict[type[Any], Callable[[Any, Any, Meta], None]] = {
            cls: by_name[cls.__name__] for cls in resolve() if cls.__name__ in by_name
        }

    def reconfigure(
        self,
        publisher: Publisher,
        *,
        tool_costs: Mapping[str, float] | None = None,
        redact_queries: bool = False,
    ) -> None:
        with self._lock:
            self.publisher = publisher
            self.tool_costs = dict(tool_costs or {})
            self.redact_queries = redact_queries
            self._registered.clear()

    def counters(self) -> dict[str, int]:
        return {
            "handled": self.handled,
            "handler_errors": self.errors,
            "repaired": self.repaired,
            "replayed_skipped": self.replayed,
        }

    # ------------------------------------------------------------------ entry
    def handle(self, source: Any, event: Any) -> None:
        """The CrewAI bus handler ("bus" dispatch). Never raises."""
        meta = self.tap.take(event)
        if meta is None and self.tap.transparent(source, event):
            return  # one of CrewAI's own flows: not the user's
        if meta is None:  # emitted before the tap saw it: no order info
            meta = Meta(None, new_event_id(), time.time())
        self.convert(source, event, meta)

    def convert(self, source: Any, event: Any, meta: Meta) -> None:
        """Convert one tapped event and enqueue it. Never raises."""
        try:
            fn = self._dispatch.get(type(event))
            if fn is not None:
                fn(source, event, meta)
            self.handled += 1
        except Exception as exc:
            self.errors += 1
            self.error_types[type(exc).__name__] += 1

    def send(
        self,
        type: str,
        payload: _Payload,
        meta: Meta,
        *,
        agent: str | None = None,
        eid: str | None = None,
        parent: str | None = None,
        seq: bool = True,
    ) -> None:
        ev = Event(
            id=eid or meta.eid,
            ts=meta.ts,
            type=type,
            agent=agent,
            run=meta.run,
            payload=payload,
            seq=meta.seq if seq and meta.seq is not None else msgspec.UNSET,
            parent=parent if parent is not None else (meta.parent or msgspec.UNSET),
        )
        try:
            raw = encode(ev)
        except (UnicodeEncodeError, TypeError, ValueError, msgspec.EncodeError) as exc:
            self.repaired += 1
            self.error_types[exc.__class__.__name__] += 1
            plain = msgspec.to_builtins(payload)  # the struct's fields, repaired
            ev = msgspec.structs.replace(ev, payload=repair(plain), agent=repair(agent))
            raw = encode(ev)
        self.publisher.enqueue_raw(raw)  # encoded here so a failure is ours to count

    # ------------------------------------------------------------------ crew, task, agent
    def _crew_started(self, source: Any, event: Any, meta: Meta) -> None:
        agents = list(getattr(source, "agents", None) or ())
        for a in agents:
            self.register(a, meta)
        process = getattr(source, "process", None)
        # the user's question (per-query cost rows): the inputs, else the first task's
        # description; redacted to a stable stand-in like memory queries
        tasks = list(getattr(source, "tasks", None) or ())
        first = getattr(tasks[0], "description", None) if tasks else None
        label = query_label(event.inputs, first)
        if label and self.redact_queries:
            label = redact(label)
        payload = CrewStarted(
            crew=text(event.crew_name),
            process=getattr(process, "value", None) or text(process),
            agents=[slug(a.role) for a in agents],  # type: ignore[misc]
            inputs=(jsonable(event.inputs) if event.inputs and not self.redact_queries else None),
            flow_run=meta.flow_run,
            query=label or None,
        )
        self.send("crew_started", payload, meta)

    def _crew_ended(self, source: Any, event: Any, meta: Meta) -> None:
        err = getattr(event, "error", None)
        self.send(
            "crew_completed",
            CrewCompleted(
                crew=text(event.crew_name),
                duration_ms=meta.duration_ms,
                ok=err is None,
                error=text(err),
            ),
            meta,
        )

    def _task(self, source: Any, event: Any, meta: Meta) -> None:
        task = event.task
        agent = getattr(task, "agent", None)
        who = slug(getattr(agent, "role", None))
        task_id = sid(getattr(task, "id", event.task_id))
        tname = text(getattr(task, "name", None))
        name = type(event).__name__
        if name == "TaskStartedEvent":
            started = TaskStarted(
                task_id=task_id,
                name=tname,
                description=text(getattr(task, "description", None)),
            )
            self.send("task_started", started, meta, agent=who)
            return
        if name == "TaskFailedEvent":
            failed = TaskEnded(
                task_id=task_id, name=tname, duration_ms=meta.duration_ms, error=text(event.error)
            )
            self.send("task_failed", failed, meta, agent=who)
            return
        raw = getattr(event.output, "raw", None)
        done = TaskEnded(
            task_id=task_id,
            name=tname,
            duration_ms=meta.duration_ms,
            output_chars=len(raw) if isinstance(raw, str) else None,
        )
        self.send("task_completed", done, meta, agent=who)

    def _agent(self, source: Any, event: Any, meta: Meta) -> None:
        agent = event.agent
        who = slug(agent.role)
        task_id = sid(getattr(event.task, "id", "")) or None
        name = type(event).__name__
        if name == "AgentExecutionStartedEvent":
            self.register(agent, meta)
            self.send("agent_started", AgentStarted(task_id=task_id), meta, agent=who)
            return
        if name == "AgentExecutionErrorEvent":
            failed = AgentEnded(
                task_id=task_id, duration_ms=meta.duration_ms, error=text(event.error)
            )
            self.send("agent_failed", failed, meta, agent=who)
        else:
            done = AgentEnded(task_id=task_id, duration_ms=meta.duration_ms)
            self.send("agent_completed", done, meta, agent=who)

    def _lite_agent(self, source: Any, event: Any, meta: Meta) -> None:
        """An agent run outside a crew (``Agent.kickoff()``; a LiteAgent before 1.10)."""
        info = getattr(event, "agent_info", None) or {}
        role = getattr(source, "role", None) or info.get("role")
        who = slug(role if isinstance(role, str) else None)
        name = type(event).__name__
        if name == "LiteAgentExecutionStartedEvent":
            if getattr(source, "role", None) is not None:
                self.register(source, meta)
            self.send("agent_started", AgentStarted(task_id=None), meta, agent=who)
            return
        if name == "LiteAgentExecutionErrorEvent":
            failed = AgentEnded(
                task_id=None,
                duration_ms=meta.duration_ms,
                error=text(getattr(event, "error", None)),
            )
            self.send("agent_failed", failed, meta, agent=who)
        else:
            done = AgentEnded(task_id=None, duration_ms=meta.duration_ms)
            self.send("agent_completed", done, meta, agent=who)

    def register(self, agent: Any, meta: Meta) -> None:
        """``agent_registered`` once per agent (and again when it changes or every 15 min)."""
        llm = getattr(agent, "llm", None)
        model = getattr(llm, "model", None) if llm is not None else None
        model = model if isinstance(model, str) else (text(llm) if llm is not None else None)
        tools = [str(getattr(t, "name", t)) for t in (getattr(agent, "tools", None) or ())]
        deleg = bool(getattr(agent, "allow_delegation", False))
        who = slug(agent.role)
        key = (who, model, tuple(tools), deleg)
        now = time.monotonic()
        with self._lock:
            last = self._registered.get(key)
            if last is not None and now - last < REGISTER_EVERY_S:
                return
            self._registered[key] = now
        caps = list(tools)
        if deleg:
            caps.append("delegation")
        if getattr(agent, "knowledge_sources", None):
            caps.append("knowledge")
        if getattr(agent, "a2a", None):
            caps.append("a2a")
        payload = AgentRegistered(
            role=text(agent.role) or "",
            goal=text(getattr(agent, "goal", None)),
            tools=tools,
            model=model,
            capabilities=caps,
            allow_delegation=deleg,
        )
        self.send(
            "agent_registered",
            payload,
            meta,
            agent=who,
            eid=new_event_id(),
            parent=meta.eid,
            seq=False,
        )

    # ------------------------------------------------------------------ flows, humans, a2a
    @staticmethod
    def _flow_name(source: Any, event: Any) -> str | None:
        return text(getattr(event, "flow_name", None) or type(source).__name__)

    def _flow_started(self, source: Any, event: Any, meta: Meta) -> None:
        state = getattr(source, "state", None)
        fid = state.get("id") if isinstance(state, dict) else getattr(state, "id", None)
        inputs = getattr(event, "inputs", None)
        self.send(
            "flow_started",
            FlowStarted(
                flow=self._flow_name(source, event),
                flow_id=text(fid) if fid is not None else None,
                inputs=jsonable(inputs) if inputs and not self.redact_queries else None,
            ),
            meta,
        )

    def _flow_ended(self, source: Any, event: Any, meta: Meta) -> None:
        failed = type(event).__name__ == "FlowFailedEvent"
        self.send(
            "flow_failed" if failed else "flow_completed",
            FlowEnded(
                flow=self._flow_name(source, event),
                duration_ms=meta.duration_ms,
                ok=not failed,
                error=text(getattr(event, "error", None)) if failed else None,
            ),
            meta,
        )

    _PHASES: Final[dict[str, Literal["started", "completed", "failed", "paused"]]] = {
        "MethodExecutionStartedEvent": "started",
        "MethodExecutionFinishedEvent": "completed",
        "MethodExecutionFailedEvent": "failed",
        "MethodExecutionPausedEvent": "paused",
    }

    def _flow_step(self, source: Any, event: Any, meta: Meta) -> None:
        phase = self._PHASES[type(event).__name__]
        ended = phase in ("completed", "failed")
        self.send(
            "flow_step",
            FlowStep(
                method=text(getattr(event, "method_name", None), 200) or "?",
                flow=self._flow_name(source, event),
                phase=phase,
                duration_ms=meta.duration_ms if phase != "started" else None,
                ok=(phase == "completed") if ended else None,
                error=text(getattr(event, "error", None)) if phase == "failed" else None,
            ),
            meta,
        )

    def _human(self, source: Any, event: Any, meta: Meta) -> None:
        name = type(event).__name__
        received = name.endswith("ReceivedEvent")
        self.send(
            "human_input",
            HumanInput(
                state="received" if received else "requested",
                flow=self._flow_name(source, event),
                method=text(getattr(event, "method_name", None), 200),
                message=None if self.redact_queries else text(getattr(event, "message", None)),
                wait_ms=meta.duration_ms if received else None,
            ),
            meta,
            agent=slug(getattr(event, "agent_role", None)),
        )

    def _a2a(self, source: Any, event: Any, meta: Meta) -> None:
        """A2A delegation to a remote agent: a ``collaboration`` of kind ``a2a``."""
        to = getattr(event, "a2a_agent_name", None)  # the agent card's name (1.9+)
        if not to:  # else the remote host (``agent_id`` may be overwritten by CrewAI's own)
            endpoint = str(getattr(event, "endpoint", "") or "")
            to = urlsplit(endpoint).hostname or endpoint
        self.send(
            "collaboration",
            Collaboration(
                to_agent=slug(text(to, 200)) or "remote",
                kind="a2a",
                task=None if self.redact_queries else text(event.task_description),
            ),
            meta,
            agent=slug(getattr(event, "agent_role", None)),
        )

    # ------------------------------------------------------------------ llm, tools
    def _llm(self, source: Any, event: Any, meta: Meta) -> None:
        model = getattr(event, "model", None) or getattr(source, "model", None)
        model = model if isinstance(model, str) else None
        provider = getattr(source, "provider", None)
        provider = provider if isinstance(provider, str) else None
        ok = type(event).__name__ == "LLMCallCompletedEvent"
        usage = usage_of(getattr(event, "usage", None)) if ok else None  # 1.13+: exact, per call
        if usage is None:
            usage = meta.usage
        inp, out, cached, reasoning = usage or (0, 0, 0, 0)
        if usage is None:
            cost, source_ = None, "no-usage" if ok else pricing.UNKNOWN
        else:
            cost, source_ = pricing.price(model, provider, inp, out, cached)
        call_id = getattr(event, "call_id", None)
        self.send(
            "llm_call",
            LlmCall(
                model=model or "unknown",
                provider=provider,
                input_tokens=inp,
                output_tokens=out,
                cached_tokens=cached,
                reasoning_tokens=reasoning,
                call_id=call_id if isinstance(call_id, str) else None,
                cost_usd=cost,
                cost_source=source_,
                latency_ms=meta.duration_ms,
                ok=ok,
                error=None if ok else text(getattr(event, "error", None)),
            ),
            meta,
            agent=slug(event.agent_role),
        )

    def _tool_started(self, source: Any, event: Any, meta: Meta) -> None:
        kind = collab_kind(event.tool_name)
        if kind is None:
            return  # a plain tool is reported once, when it ends
        args = args_of(event.tool_args)
        to = slug(args.get("coworker")) or "unknown"
        what = args.get("task") if kind == "delegate" else args.get("question")
        self.send(
            "collaboration",
            Collaboration(to_agent=to, kind=kind, task=text(what)),  # type: ignore[arg-type]
            meta,
            agent=slug(event.agent_role),
        )

    def _tool_ended(self, source: Any, event: Any, meta: Meta) -> None:
        name = str(event.tool_name)
        finished = type(event).__name__ == "ToolUsageFinishedEvent"
        failure = getattr(event, "failure", None) if finished else None  # 1.15.9+
        ok = finished and failure is None
        duration = meta.duration_ms
        if finished and duration is None:
            duration = (event.finished_at - event.started_at).total_seconds() * 1000.0
        collab = collab_kind(name) is not None
        if collab or meta.start_eid is None:  # the start (collaboration) event keeps its id
            eid, parent = meta.eid, meta.parent
        else:  # a plain tool's single event takes the start's id: children point at it
            eid, parent = meta.start_eid, meta.start_parent
        cost = self.tool_costs.get(name)
        if failure is not None:
            error = text(getattr(failure, "message", None) or getattr(failure, "reason", failure))
        else:
            error = None if finished else text(getattr(event, "error", None))
        self.send(
            "tool_used",
            ToolUsed(
                tool=text(name, 200) or "",
                duration_ms=duration,
                ok=ok,
                cost_usd=float(cost) if cost is not None else None,
                from_cache=bool(getattr(event, "from_cache", False)),
                error=error,
                args_hash=args_digest(getattr(event, "tool_args", None)),
            ),
            meta,
            agent=slug(getattr(event, "agent_role", None)),
            eid=eid,
            parent=parent,
        )

    # ------------------------------------------------------------------ knowledge, memory
    def _knowledge(self, source: Any, event: Any, meta: Meta) -> None:
        name = type(event).__name__
        if name.startswith("Knowledge"):
            item, src = "crewai:knowledge", "crewai_knowledge"
            hit = name == "KnowledgeRetrievalCompletedEvent" and bool(
                str(getattr(event, "retrieved_knowledge", "") or "").strip()
            )
            latency = None
        else:
            kind = getattr(event, "source_type", None) or "memory"
            item, src = f"crewai:{kind}", f"crewai_{kind}"
            if name == "MemoryRetrievalCompletedEvent":
                hit = bool(str(event.memory_content or "").strip())
                latency = event.retrieval_time_ms
            elif name == "MemoryQueryCompletedEvent":
                hit = bool(event.results)
                latency = event.query_time_ms
            else:
                hit, latency = False, None
        query = getattr(event, "query", None)
        err = getattr(event, "error", None)
        payload = KnowledgeAccess(
            item=item,
            source=src,
            hit=hit,
            query=text(query, 200) if query is not None and not self.redact_queries else None,
            latency_ms=latency,
            error=text(err) if err is not None else None,
        )
        self.send("knowledge_access", payload, meta, agent=slug(getattr(event, "agent_role", None)))
