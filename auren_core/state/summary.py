"""One-line summaries of events for the live tail (internal).

Text is kept raw (untrusted): the renderer strips markup and control characters.
Summaries are capped in length so a hostile payload cannot blow up a frame.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..events import Event, Malformed

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
        p = ev.payload
        g = p.get
        if t == "llm_call":
            text = (
                f"{_s(g('model'), 40)} in={g('input_tokens', 0)} out={g('output_tokens', 0)}"
                f" cached={g('cached_tokens', 0)} {_cost(g('cost_usd'))}"
            )
            if g("reasoning_tokens"):
                text += f" reasoning={g('reasoning_tokens')}"
            if g("ok", True) is False:
                text += f" error={_s(g('error'))}"
        elif t == "tool_used":
            text = f"{_s(g('tool'), 60)} {_ms(g('duration_ms'))} ok={g('ok', True)}"
        elif t == "collaboration":
            text = f"{g('kind')} -> {_s(g('to_agent'), 60)}"
        elif t == "memory_tier_access":
            text = (
                f"{g('tier_accessed')} q={_s(g('query'))} items={g('items_retrieved', 0)}"
                f" lat={_s(g('latency_by_tier'), 80)}"
            )
        elif t == "knowledge_access":
            text = f"{_s(g('item'))} hit={g('hit', True)}"
        elif t == "hypothesis":
            text = f"{_s(g('hypothesis_id'), 40)} {g('status')} {_s(g('statement'))}"
        elif t in ("task_started", "task_completed", "task_failed"):
            text = f"{_s(g('name') or g('task_id'), 60)}"
            if g("error"):
                text += f" error={_s(g('error'))}"
        elif t in ("agent_completed", "agent_failed"):
            text = _ms(g("duration_ms")) + (f" error={_s(g('error'))}" if g("error") else "")
        elif t == "agent_registered":
            text = f"{_s(g('role'), 60)} tools={_s(g('tools'), 80)}"
        elif t in ("crew_started", "crew_completed"):
            text = _s(g("crew") or "crew", 60)
            if t == "crew_completed":
                text += f" {_ms(g('duration_ms'))} ok={g('ok', True)}"
                if g("error"):
                    text += f" error={_s(g('error'))}"
        elif t == "flow_step":
            phase = _s(g("phase", "completed"), 20)
            text = f"{_s(g('flow') or 'flow', 40)}.{_s(g('method'), 60)} {phase}"
            if g("duration_ms") is not None:
                text += f" {_ms(g('duration_ms'))}"
            if g("error"):
                text += f" error={_s(g('error'))}"
        elif t in ("flow_started", "flow_completed", "flow_failed"):
            text = _s(g("flow") or "flow", 60)
            if t != "flow_started":
                text += f" {_ms(g('duration_ms'))} ok={g('ok', t == 'flow_completed')}"
                if g("error"):
                    text += f" error={_s(g('error'))}"
            elif g("inputs"):
                text += f" inputs={_s(g('inputs'), 80)}"
        elif t == "human_input":
            where = ".".join(_s(x, 40) for x in (g("flow"), g("method")) if x)
            text = _s(g("state"), 20) + (f" {where}" if where else "")
            if g("state") == "received" and g("wait_ms") is not None:
                text += f" after {_ms(g('wait_ms'))}"
            if g("message"):
                text += f" {_s(g('message'))}"
        elif t == "publisher_stats":
            text = f"sent={g('sent')} dropped={g('dropped')} queued={g('queued')}"
        else:
            text = _s(p, 160)
    except Exception as exc:  # formatting of odd values: show that, never fail
        text = f"(unprintable payload: {type(exc).__name__})"
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


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
