"""Spans leaving the buffer -> v1 events (the table in docs/otlp.md).

Every event's ``run`` is the span's trace id (hex) and ``agent`` the agent the span is
attributed to (its nearest agent ancestor). Event times are the span's own times:
starts at ``start_time_unix_nano``, everything else at ``end_time_unix_nano``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

from .. import pricing
from ..events import (
    AgentEnded,
    AgentRegistered,
    AgentStarted,
    Collaboration,
    CrewCompleted,
    CrewStarted,
    KnowledgeAccess,
    LlmCall,
    ToolUsed,
)
from ..events.model import _Payload
from ..integrations.text import slug, text
from .buffer import Ready
from .spans import (
    AGENT_IMPLICIT,
    CREATE_AGENT,
    EMBEDDING,
    HANDOFF,
    LLM,
    RETRIEVER,
    TOOL,
    SpanRec,
)

__all__ = ["Mapper", "OtlpEvent"]

REGISTER_EVERY_S: Final = 900.0
_MAX_AGENTS: Final = 10_000
_MAX_TOOLS: Final = 64
_NS: Final = 1e-9

# (ts, type, agent, run, payload): the payload as its struct (events.PAYLOAD_TYPES[type])
OtlpEvent = tuple[float, str, str | None, str | None, _Payload]


def _int(v: Any) -> int:
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v if 0 <= v < 1 << 53 else 0
    if isinstance(v, float) and 0 <= v < 1e15:
        return int(v)
    if isinstance(v, str) and v.isdigit() and len(v) < 16:
        return int(v)
    return 0


def _first(a: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        v = a.get(k)
        if v is not None and v != "":
            return v
    return None


def _str(v: Any, limit: int = 200) -> str | None:
    if v is None:
        return None
    return text(v if isinstance(v, str) else str(v), limit)


class Mapper:
    """Stateful only for registrations: which agents were announced, with what."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._registered: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._tools: dict[str, list[str]] = {}
        self._models: dict[str, str] = {}

    def _note(self, rs: Iterable[Ready]) -> None:
        """Tools and models seen under each agent (its capabilities), before its span."""
        for r in rs:
            if r.agent is None:
                continue
            s = r.span
            if s.role == TOOL:
                name = _str(_first(s.attrs, "gen_ai.tool.name", "tool.name") or s.name, 100)
                tools = self._tools.setdefault(r.agent, [])
                if name and name not in tools and len(tools) < _MAX_TOOLS:
                    tools.append(name)
            elif s.role == LLM:
                model = self._model(s.attrs)
                if model:
                    self._models[r.agent] = model
        if len(self._tools) > _MAX_AGENTS:
            self._tools.clear()
        if len(self._models) > _MAX_AGENTS:
            self._models.clear()

    @staticmethod
    def _model(a: dict[str, Any]) -> str | None:
        g = a.get
        v = g("gen_ai.response.model") or g("gen_ai.request.model") or g("llm.model_name")
        if type(v) is str and len(v) <= 120:
            return v
        return _str(v, 120) if v else None

    def events(self, ready: list[Ready]) -> list[OtlpEvent]:
        self._note(ready)
        out: list[OtlpEvent] = []
        for r in ready:
            self._span(r, out)
        out.sort(key=lambda e: e[0])
        return out

    # ------------------------------------------------------------------ per span
    def _span(self, r: Ready, out: list[OtlpEvent]) -> None:
        s = r.span
        run = s.trace
        start, end = s.start * _NS, s.end * _NS
        dur = round((s.end - s.start) / 1e6, 3)
        ok = not s.error
        err = _str(s.message or s.attrs.get("error.type"), 500) if s.error else None
        if r.self_agent is not None:
            me = r.self_agent
            self._register(me, s, run, start, out)
            if r.agent is not None and r.agent != me:
                collab = Collaboration(to_agent=me, kind="delegate")
                out.append((start, "collaboration", r.agent, run, collab))
            out.append((start, "agent_started", me, run, AgentStarted()))
            ended = AgentEnded(duration_ms=dur, error=err)
            out.append((end, "agent_completed" if ok else "agent_failed", me, run, ended))
            return
        if r.workflow:
            crew = _str(
                _first(s.attrs, "gen_ai.workflow.name") or s.name or s.service or "workflow"
            )
            out.append((start, "crew_started", None, run, CrewStarted(crew=crew, process="otlp")))
            done = CrewCompleted(crew=crew, duration_ms=dur, ok=ok, error=err)
            out.append((end, "crew_completed", None, run, done))
            return
        role = s.role
        a = s.attrs
        agent = r.agent
        if role in (LLM, EMBEDDING):
            self._llm(s, agent, run, end, dur, ok, err, out)
        elif role == TOOL:
            tool = _str(_first(a, "gen_ai.tool.name", "tool.name") or s.name, 100) or "tool"
            used = ToolUsed(tool=tool, duration_ms=dur, ok=ok, error=err)
            out.append((end, "tool_used", agent, run, used))
        elif role == HANDOFF:
            target = self._handoff_target(s)
            src = agent
            if src is None:
                frm = a.get("input.value")
                src = slug(frm) if isinstance(frm, str) and len(frm) <= 200 else None
            if target:
                handoff = Collaboration(to_agent=target, kind="delegate", ok=ok)
                out.append((end, "collaboration", src, run, handoff))
        elif role == RETRIEVER:
            item = _str(_first(a, "gen_ai.data_source.id") or s.name, 200) or "retrieval"
            found = KnowledgeAccess(item=item, source="otlp", hit=ok, latency_ms=dur, error=err)
            out.append((end, "knowledge_access", agent, run, found))
        elif role == CREATE_AGENT and s.agent_name:
            self._register(slug(s.agent_name) or "agent", s, run, end, out)
        # CHAIN and other spans: ancestry only, no event of their own
        del role

    @staticmethod
    def _handoff_target(s: SpanRec) -> str | None:
        """``handoff to X`` (OpenAI Agents SDK), a ``transfer_to_X`` tool (LangGraph, the
        Agents SDK), else the target OpenInference records as ``output.value``."""
        if s.name.startswith("handoff to "):
            return slug(s.name.removeprefix("handoff to "))
        tool = str(_first(s.attrs, "gen_ai.tool.name", "tool.name") or s.name)
        if tool.startswith("transfer_to_"):
            return slug(tool.removeprefix("transfer_to_"))
        out_v = s.attrs.get("output.value")
        if isinstance(out_v, str) and 0 < len(out_v) <= 200:
            return slug(out_v)
        return None

    def _llm(
        self,
        s: SpanRec,
        agent: str | None,
        run: str,
        end: float,
        dur: float,
        ok: bool,
        err: str | None,
        out: list[OtlpEvent],
    ) -> None:
        a = s.attrs
        g = a.get
        model = self._model(a) or "unknown"
        prov = (
            g("gen_ai.provider.name") or g("gen_ai.system") or g("llm.provider") or g("llm.system")
        )
        provider = prov if type(prov) is str and len(prov) <= 60 else _str(prov, 60)
        inp = _int(
            g("gen_ai.usage.input_tokens")
            or g("gen_ai.usage.prompt_tokens")
            or g("llm.token_count.prompt")
        )
        outp = _int(
            g("gen_ai.usage.output_tokens")
            or g("gen_ai.usage.completion_tokens")
            or g("llm.token_count.completion")
        )
        cached = min(
            inp,
            _int(
                g("gen_ai.usage.cache_read.input_tokens")
                or g("llm.token_count.prompt_details.cache_read")
            ),
        )
        reasoning = min(
            outp,
            _int(
                g("gen_ai.usage.reasoning.output_tokens")
                or g("llm.token_count.completion_details.reasoning")
            ),
        )
        span_cost = g("llm.cost.total")
        if span_cost is None:
            span_cost = g("operation.cost")
        cost: float | None
        if isinstance(span_cost, int | float) and not isinstance(span_cost, bool) and (
            0 <= span_cost < 1e6
        ):
            cost, source = float(span_cost), "span"
        elif model == "unknown":
            cost, source = None, pricing.UNKNOWN
        else:
            cost, source = pricing.price(model, provider, inp, outp, cached)
        call = LlmCall(
            model=model,
            provider=provider,
            input_tokens=inp,
            output_tokens=outp,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            call_id=s.sid,
            cost_usd=cost,
            cost_source=source,
            latency_ms=dur,
            ok=ok,
            error=err,
        )
        out.append((end, "llm_call", agent, run, call))

    def _register(
        self, me: str, s: SpanRec, run: str, ts: float, out: list[OtlpEvent]
    ) -> None:
        tools = list(self._tools.get(me, ()))
        model = self._models.get(me)
        role = _str(s.agent_name or s.name, 120) or me
        if s.role == AGENT_IMPLICIT or not s.agent_name:
            role = _str(s.name, 120) or me
        key = (role, model, tuple(tools))
        now = self._clock()
        last = self._registered.get(me)
        if last is not None and last[0] == key and now - last[1] < REGISTER_EVERY_S:
            return
        if len(self._registered) > _MAX_AGENTS:
            self._registered.clear()
        self._registered[me] = (key, now)
        caps = list(tools)
        if model:
            caps.append(f"llm:{model}")
        reg = AgentRegistered(
            role=role,
            goal=_str(s.attrs.get("gen_ai.agent.description"), 300),
            tools=tools,
            model=model,
            capabilities=caps,
            allow_delegation=False,
        )
        out.append((ts, "agent_registered", me, run, reg))
