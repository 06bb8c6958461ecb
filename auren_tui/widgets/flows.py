"""Pane 7: flows (CrewAI Flows) running now, waiting for a human, or ended in the window.

One line per flow: status mark, flow name, current step (the waiting one while a human
is asked; for an ended flow its last step, or its error), steps completed/failed, and how
long it has run or took (for a waiting flow, in yellow: how long the human has been
asked). A waiting flow gets a second line with what it asked, when there is room.
Names, methods and messages come from events: shown inert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from rich.console import Group, RenderableType
from rich.text import Text

from ..sanitize import clean
from .base import Pane
from .format import fmt_count, fmt_dur

if TYPE_CHECKING:
    from auren_core.state import DashboardState, FlowView

__all__ = ["WAIT_STYLE", "FlowsPane", "waiting_summary"]

WAIT_STYLE: Final = "bold black on yellow"
_MARK: Final = {
    "waiting_human": ("⚑", WAIT_STYLE),
    "running": ("▶", "bold green"),
    "completed": ("✓", "green"),
    "failed": ("✗", "bold red"),
}


def waiting_summary(state: DashboardState) -> str:
    """``"1 flow, 2 agents"`` waiting for a human (empty when nobody waits)."""
    nf = sum(1 for f in state.flows if f.status == "waiting_human")
    na = sum(1 for a in state.agents if a.status == "waiting_human")
    parts = []
    if nf:
        parts.append(f"{nf} flow{'s' if nf != 1 else ''}")
    if na:
        parts.append(f"{na} agent{'s' if na != 1 else ''}")
    return ", ".join(parts)


_TAIL_W: Final = 1 + 7 + 1 + 6  # steps, time


def _name_width(flows: tuple[FlowView, ...], width: int) -> int:
    """As wide as the longest name (up to 24), leaving the step at least 10 columns."""
    free = max(12, width - 2 - _TAIL_W)
    longest = max((len(clean(f.flow or f.run, 24)) for f in flows), default=8)
    return max(8, min(24, longest, free - 11))


def _row(f: FlowView, now: float, width: int, name_w: int) -> Text:
    mark, style = _MARK.get(f.status, ("?", "bold red"))
    active = f.ended is None
    waiting = f.status == "waiting_human" and f.waiting_since is not None
    steps = f"{f.steps_completed}✓" + (f" {f.steps_failed}✗" if f.steps_failed else "")
    if waiting and f.waiting_since is not None:
        when = fmt_dur(now - f.waiting_since)  # how long the human has been asked
    else:
        when = fmt_dur(None if f.duration_ms is None else f.duration_ms / 1000.0)
    free = max(12, width - 2 - _TAIL_W)
    step_w = max(4, free - name_w - 1)
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(mark + " ", style=style)
    t.append(clean(f.flow or f.run, name_w).ljust(name_w) + " ", style="bold" if active else "")
    if active:
        step = clean(f.current_step or "—", step_w)
        t.append(step, style=WAIT_STYLE if waiting else "")
        t.append(" " * (step_w - len(step)))
    elif f.status == "failed":
        t.append(clean(f.error or f.last_step or "failed", step_w).ljust(step_w), style="red")
    else:
        t.append(clean(f.last_step or "—", step_w).ljust(step_w), style="dim")
    t.append(" " + steps.rjust(7), style="red" if f.steps_failed else "dim")
    t.append(" " + when.rjust(6), style="bold yellow" if waiting else "dim")
    return t


def _wait_line(f: FlowView, now: float) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("  ⚑ waiting for a human", style="yellow")
    if f.waiting_since is not None:
        t.append(f" {fmt_dur(now - f.waiting_since)}", style="bold yellow")
    if f.waiting_message:
        t.append(": ")
        t.append(clean(f.waiting_message, 200), style="italic")
    return t


class FlowsPane(Pane):
    """Waiting flows first, then running ones (newest first), then those that ended."""

    def depends(self, state: DashboardState) -> Any:
        running = any(f.ended is None for f in state.flows)
        # durations and waits run on with the clock while a flow is active
        return state.flows, int(state.generated_at) if running else None

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        flows = state.flows
        counts: dict[str, int] = {}
        for f in flows:
            counts[f.status] = counts.get(f.status, 0) + 1
        sub = " · ".join(
            f"{fmt_count(counts[k])} {label}"
            for k, label in (
                ("waiting_human", "waiting"),
                ("running", "running"),
                ("completed", "done"),
                ("failed", "failed"),
            )
            if counts.get(k)
        )
        self.border_subtitle = Text(sub)  # a Text: border titles would parse markup
        if not flows:
            return Text("no flows in the window", style="dim")
        now = state.generated_at
        lines: list[Text] = []
        room = max(1, height)
        # one line per flow first; the waiting ones get their message line if it still fits
        spare = room - len(flows)
        name_w = _name_width(flows, width)
        for f in flows:
            if len(lines) >= room:
                break
            lines.append(_row(f, now, width, name_w))
            if f.status == "waiting_human" and spare > 0 and len(lines) < room:
                lines.append(_wait_line(f, now))
                spare -= 1
        shown = sum(1 for t in lines if not t.plain.startswith("  ⚑"))
        if shown < len(flows) and lines:
            lines[-1] = Text(f"… {len(flows) - shown + 1} more flows", style="dim")
        return Group(*lines)
