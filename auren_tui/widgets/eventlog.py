"""Pane 6: the event log, a live tail filterable by type, agent and text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text

from ..sanitize import clean
from .base import Pane
from .collab import names_for, names_key

if TYPE_CHECKING:
    from auren_core.state import DashboardState, LogEntry

__all__ = ["EventLog", "LogFilter"]

_TYPE_STYLE = {
    "llm_call": "cyan",
    "tool_used": "magenta",
    "collaboration": "yellow",
    "hypothesis": "bold green",
    "memory_tier_access": "blue",
    "knowledge_access": "blue",
    "task_failed": "bold red",
    "agent_failed": "bold red",
    "crew_started": "bold",
    "crew_completed": "bold",
    "publisher_stats": "dim",
    "flow_started": "bold magenta",
    "flow_step": "magenta",
    "flow_completed": "bold magenta",
    "flow_failed": "bold red",
    "human_input": "bold yellow",
}


@dataclass(frozen=True, slots=True)
class LogFilter:
    """``type:llm_call agent:neuro some text``: every part must match (case-insensitive).

    Several ``type:`` (or ``agent:``) terms match any of them; ``type:`` and ``agent:``
    match by substring, so ``type:fail`` shows every failure type.
    """

    types: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    text: str = ""
    source: str = field(default="", compare=False)

    @classmethod
    def parse(cls, spec: str) -> LogFilter:
        types: list[str] = []
        agents: list[str] = []
        words: list[str] = []
        for word in clean(spec, 500).split():
            key, sep, value = word.partition(":")
            if sep and value and key.lower() in ("type", "t"):
                types.append(value.casefold())
            elif sep and value and key.lower() in ("agent", "a"):
                agents.append(value.casefold())
            else:
                words.append(word)
        return cls(tuple(types), tuple(agents), " ".join(words).casefold(), spec.strip())

    @property
    def active(self) -> bool:
        return bool(self.types or self.agents or self.text)

    def matches(self, e: LogEntry, role: str = "") -> bool:
        if self.types and not any(t in e.type.casefold() for t in self.types):
            return False
        if self.agents:
            who = f"{e.agent or ''} {role}".casefold()
            if not any(a in who for a in self.agents):
                return False
        if self.text:
            hay = f"{e.type} {e.agent or ''} {role} {e.summary}".casefold()
            if self.text not in hay:
                return False
        return True


def format_entry(e: LogEntry, name: str, width: int) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    stamp = time.strftime("%H:%M:%S", time.localtime(e.ts)) if e.ts else "--:--:--"
    t.append(stamp + " ", style="dim")
    if e.malformed:
        t.append("MALFORMED ", style="bold white on red")
        t.append(clean(e.summary, width))
        return t
    type_w, name_w = (18, 16) if width >= 100 else (12, 12)
    t.append(clean(e.type, type_w).ljust(type_w) + " ", style=_TYPE_STYLE.get(e.type, "italic"))
    t.append(clean(name or "-", name_w).ljust(name_w) + " ", style="bold")
    t.append(clean(e.summary, max(20, width)))
    return t


class EventLog(Pane):
    """Shows the newest matching entries that fit; ``clear`` hides what is there now."""

    def __init__(self, *, title: str = "", id: str | None = None, classes: str | None = None):
        super().__init__(title=title, id=id, classes=classes)
        self.filter = LogFilter()
        self._clear_mark: tuple[str, str] | None = None
        self.agent: str | None = None  # restrict to one agent (the agent screen)
        self.shown: list[LogEntry] = []

    def set_filter(self, f: LogFilter) -> None:
        self.filter = f
        # a Text, not a str: border titles are parsed as markup, the filter is typed text
        self.border_subtitle = Text(f"filter: {clean(f.source, 40)}" if f.active else "/ to filter")
        self._rebuild()

    def clear(self) -> None:
        if self.state is not None and self.state.log:
            last = self.state.log[-1]
            self._clear_mark = (last.sid, last.id)
        self._rebuild()

    def _visible(self, log: tuple[LogEntry, ...]) -> tuple[LogEntry, ...]:
        if self._clear_mark is None:
            return log
        for i in range(len(log) - 1, -1, -1):
            if (log[i].sid, log[i].id) == self._clear_mark:
                return log[i + 1 :]
        return log  # the mark has scrolled out: everything left is newer

    def depends(self, state: DashboardState) -> Any:
        last = state.log[-1] if state.log else None
        names = names_key(state)
        return (
            (last.sid, last.id) if last else None,
            len(state.log),
            names,
            self.filter,
            self._clear_mark,
            self.agent,
        )

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        names = names_for(state)
        out: list[LogEntry] = []
        for e in reversed(self._visible(state.log)):
            if self.agent is not None and e.agent != self.agent:
                continue
            if self.filter.active and not self.filter.matches(e, names.get(e.agent or "", "")):
                continue
            out.append(e)
            if len(out) >= height:
                break
        out.reverse()
        self.shown = out
        if not out:
            msg = "no events match the filter" if self.filter.active else "waiting for events…"
            return Text(msg, style="dim")
        return Group(
            *(format_entry(e, names.get(e.agent or "", e.agent or ""), width) for e in out)
        )
