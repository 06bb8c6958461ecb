"""One-line summaries of events for the live tail (internal).

Text is kept raw (untrusted): the renderer strips markup and control characters.
Summaries are capped in length so a hostile payload cannot blow up a frame.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..events import (
    AgentEnded,
    AgentRegistered,
    Collaboration,
    CrewCompleted,
    CrewStarted,
    Event,
    FlowEnded,
    FlowStarted,
    FlowStep,
    HumanInput,
    Hypothesis,
    KnowledgeAccess,
    LlmCall,
    Malformed,
    MemoryTierAccess,
    PublisherStats,
    TaskEnded,
    TaskStarted,
    ToolUsed,
)
from ..events.codec import typed_event
from ..events.model import _Payload

__all__ = ["MAX_SUMMARY", "LogEntry", "log_entry", "summarize"]

MAX_SUMMARY = 300


def _s(v: Any, n: int = 80) -> str:
    text = v if isinstance(v, str) else repr(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def _cost(v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f"${v:.6f}"
    return "$?"


def _ms(v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f"{v:.1f}ms" if v < 100 else f"{v:,.0f}ms"
    return "?ms"


def summarize(ev: Event) -> str:
    t = ev.type
    try:
        p = typed_event(ev).payload  # a known type's struct (a dict of an unknown type)
        text = _summary(t, p)
    except Exception as exc:  # formatting of odd values: show that, never fail
        text = f"(unprintable payload: {type(exc).__name__})"
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def _summary(t: str, p: Any) -> str:
    if isinstance(p, LlmCall):
        text = (
            f"{_s(p.model, 40)} in={p.input_tokens} out={p.output_tokens}"
            f" cached={p.cached_tokens} {_cost(p.cost_usd)}"
        )
        if p.reasoning_tokens:
            text += f" reasoning={p.reasoning_tokens}"
        if p.ok is False:
            text += f" error={_s(p.error)}"
        return text
    if isinstance(p, ToolUsed):
        return f"{_s(p.tool, 60)} {_ms(p.duration_ms)} ok={p.ok}"
    if isinstance(p, Collaboration):
        return f"{p.kind} -> {_s(p.to_agent, 60)}"
    if isinstance(p, MemoryTierAccess):
        return (
            f"{p.tier_accessed} q={_s(p.query)} items={p.items_retrieved}"
            f" lat={_s(p.latency_by_tier, 80)}"
        )
    if isinstance(p, KnowledgeAccess):
        return f"{_s(p.item)} hit={p.hit}"
    if isinstance(p, Hypothesis):
        return f"{_s(p.hypothesis_id, 40)} {p.status} {_s(p.statement)}"
    if isinstance(p, TaskStarted | TaskEnded):
        text = f"{_s(p.name or p.task_id, 60)}"
        if isinstance(p, TaskEnded) and p.error:
            text += f" error={_s(p.error)}"
        return text
    if isinstance(p, AgentEnded):
        return _ms(p.duration_ms) + (f" error={_s(p.error)}" if p.error else "")
    if isinstance(p, AgentRegistered):
        return f"{_s(p.role, 60)} tools={_s(p.tools, 80)}"
    if isinstance(p, CrewStarted):
        return _s(p.crew or "crew", 60)
    if isinstance(p, CrewCompleted):
        text = _s(p.crew or "crew", 60) + f" {_ms(p.duration_ms)} ok={p.ok}"
        if p.error:
            text += f" error={_s(p.error)}"
        return text
    if isinstance(p, FlowStep):
        text = f"{_s(p.flow or 'flow', 40)}.{_s(p.method, 60)} {_s(p.phase, 20)}"
        if p.duration_ms is not None:
            text += f" {_ms(p.duration_ms)}"
        if p.error:
            text += f" error={_s(p.error)}"
        return text
    if isinstance(p, FlowStarted):
        text = _s(p.flow or "flow", 60)
        if p.inputs:
            text += f" inputs={_s(p.inputs, 80)}"
        return text
    if isinstance(p, FlowEnded):
        text = _s(p.flow or "flow", 60) + f" {_ms(p.duration_ms)} ok={p.ok}"
        if p.error:
            text += f" error={_s(p.error)}"
        return text
    if isinstance(p, HumanInput):
        where = ".".join(_s(x, 40) for x in (p.flow, p.method) if x)
        text = _s(p.state, 20) + (f" {where}" if where else "")
        if p.state == "received" and p.wait_ms is not None:
            text += f" after {_ms(p.wait_ms)}"
        if p.message:
            text += f" {_s(p.message)}"
        return text
    if isinstance(p, PublisherStats):
        return f"sent={p.sent} dropped={p.dropped} queued={p.queued}"
    return _s(p.to_dict() if isinstance(p, _Payload) else p, 160)


class LogEntry(NamedTuple):
    """One line of the live tail. Text fields are raw (untrusted).

    A NamedTuple (immutable, built in ~1 us) rather than a frozen dataclass: at
    50k events/s the whole tail is replaced every frame. ``summary`` is computed
    on access, so only the lines actually shown or filtered pay for it.
    """

    sid: str
    id: str
    ts: float | None
    type: str
    agent: str | None
    run: str | None
    malformed: bool = False
    source: Event | Malformed | None = None

    @property
    def summary(self) -> str:
        src = self.source
        if src is None:
            return ""
        if isinstance(src, Malformed):
            return _s(src.reason, MAX_SUMMARY)
        return summarize(src)


def log_entry(item: Event | Malformed) -> LogEntry:
    if isinstance(item, Malformed):
        return LogEntry(item.sid, "", None, "malformed", None, None, True, item)
    sid = item.sid
    return LogEntry(
        sid if type(sid) is str else "",
        item.id,
        item.ts,
        item.type,
        item.agent,
        item.run,
        False,
        item,
    )
