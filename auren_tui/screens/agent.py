"""The agent screen: one agent's costs, tools, collaborators, hypotheses and events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer

from ..sanitize import clean, safe_text
from ..widgets import EventLog, HealthLine, Pane
from ..widgets.collab import names_for
from ..widgets.format import (
    fmt_ago,
    fmt_count,
    fmt_dur,
    fmt_pct,
    fmt_usd,
    minute_columns,
    sparkline,
)

if TYPE_CHECKING:
    from auren_core.state import AgentView, DashboardState

__all__ = ["AgentScreen"]

_STATUS_STYLE = {
    "running": "bold green",
    "idle": "dim",
    "failed": "bold red",
    "waiting_human": "bold black on yellow",
}


def _gone(agent_id: str) -> Text:
    return Text(f"{clean(agent_id, 60)} is not active in the window any more", style="dim")


def _process_line(state: DashboardState, agent_id: str) -> Text:
    """The RSS and CPU of the process that publishes this agent's events."""
    t = Text("process ", style="dim", no_wrap=True, overflow="ellipsis")
    p = state.process_of(agent_id)
    if p is None:
        t.append("— (its publisher reports no RSS / CPU yet)")
        return t
    rss = "—" if p.rss_bytes is None else f"{p.rss_bytes / 2**20:,.0f} MiB"
    cpu = "—" if p.cpu_seconds is None else f"{p.cpu_seconds:,.1f}s"
    t.append(f"RSS {rss}  CPU {cpu}", style="bold")
    t.append(f"  {clean(p.publisher, 60)}", style="dim")
    if len(p.agents) > 1:
        t.append(f"  shared by {len(p.agents)} agents", style="dim")
    return t


def _learning_line(analytics: Any, agent_id: str) -> Text:
    """This agent's learning velocity (from the newest analysis)."""
    t = Text("learning ", style="dim", no_wrap=True, overflow="ellipsis")
    result = getattr(analytics, "result", None)
    if not isinstance(result, dict):
        t.append("— (analysing…; a opens the analytics)")
        return t
    row = next((r for r in result["learning"]["agents"] if r["agent"] == agent_id), None)
    if row is None:
        t.append("no hypotheses in the analysed history")
        return t
    t.append(
        f"{row['formed_per_hour']:.1f} formed/h  {row['validated_per_hour']:.1f} validated/h  "
        f"{row['rejected_per_hour']:.1f} rejected/h  validation {fmt_pct(row['validation_rate'])}"
    )
    return t


class _AgentPane(Pane):
    """A pane about one agent (the one the screen was opened for)."""

    def __init__(self, agent_id: str, **kw: str) -> None:
        super().__init__(**kw)
        self.agent_id = agent_id


class AgentSummary(_AgentPane):
    """Identity, status, tokens and cost with the per-minute sparkline."""

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        a = state.agent(self.agent_id)
        if a is None:
            return _gone(self.agent_id)
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append_text(safe_text(a.role or a.id, 60, "bold"))
        head.append(f"  {a.status}", style=_STATUS_STYLE.get(a.status, ""))
        head.append(f"  load {a.current_load}  last {fmt_ago(a.last_activity, state.generated_at)}")
        lines: list[RenderableType] = [head]
        if a.waiting_since is not None:
            wait = Text(no_wrap=True, overflow="ellipsis")
            wait.append(
                f"⚑ waiting for a human {fmt_dur(state.generated_at - a.waiting_since)}",
                style="bold yellow",
            )
            if a.waiting_message:
                wait.append(": ")
                wait.append(clean(a.waiting_message, width * 2), style="italic")
            lines.append(wait)
        lines.append(safe_text(f"id {a.id}  model {a.model or '—'}", width * 2, "dim"))
        if a.goal:
            lines.append(safe_text(f"goal: {a.goal}", width * 2, "italic"))
        caps = ", ".join(clean(c, 30) for c in a.capabilities) or "—"
        lines.append(safe_text(f"capabilities: {caps}", width * 2))
        money = Text(no_wrap=True, overflow="ellipsis")
        money.append(f"tokens {fmt_count(a.input_tokens)} in / {fmt_count(a.output_tokens)} out")
        money.append(f" ({fmt_count(a.cached_tokens)} cached)  ", style="dim")
        money.append(f"cost {fmt_usd(a.cost_usd)}  ", style="bold")
        money.append(f"{fmt_usd(a.usd_per_hour, per='/h')}  {a.llm_calls} LLM calls")
        if a.unpriced_llm_calls:
            money.append(f"  {a.unpriced_llm_calls} unpriced", style="yellow")
        lines.append(money)
        cols, caption = minute_columns(a.cost_per_minute, max(10, width - 10))
        spark = Text("cost/min ", style="dim", no_wrap=True, overflow="ellipsis")
        spark.append(sparkline(cols, len(cols)), style="green")
        spark.append(f" {caption}", style="dim")
        lines.append(spark)
        lines.append(_process_line(state, a.id))
        lines.append(_learning_line(getattr(self.app, "analytics", None), a.id))
        if a.last_error:
            lines.append(safe_text(f"last error: {a.last_error}", width * 2, "bold red"))
        return Group(*lines)


class AgentRelations(_AgentPane):
    """Tools used, collaborators and hypotheses of one agent."""

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        a = state.agent(self.agent_id)
        if a is None:
            return _gone(self.agent_id)
        names = names_for(state)
        lines: list[RenderableType] = [Text("tools", style="bold underline")]
        used = dict(a.tools_used)
        for tool in sorted(set(a.tools) | set(used), key=lambda t: (-used.get(t, 0), t)):
            lines.append(safe_text(f"  {tool}  x{used.get(tool, 0)}", width))
        if not a.tools and not used:
            lines.append(Text("  none", style="dim"))
        lines.append(Text("collaborators", style="bold underline"))
        for c in a.collaborators or ():
            lines.append(safe_text(f"  {names.get(c, c)}", width))
        if not a.collaborators:
            lines.append(Text("  none", style="dim"))
        lines.append(Text("hypotheses", style="bold underline"))
        hyps = [h for h in state.hypotheses if h.agent == a.id]
        for h in hyps[-max(1, height - len(lines)) :]:
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append(f"  {clean(h.status, 10):<10}", style=_hyp_style(h.status))
            conf = "" if h.confidence is None else f"{h.confidence:.2f} "
            t.append(conf, style="dim")
            t.append(clean(h.statement or h.id, width))
            lines.append(t)
        if not hyps:
            lines.append(Text("  none", style="dim"))
        return Group(*lines)


def _hyp_style(status: str) -> str:
    return {"validated": "green", "rejected": "red", "updated": "yellow"}.get(status, "cyan")


class AgentScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("backspace", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self, agent_id: str) -> None:
        super().__init__()
        self.agent_id = agent_id

    def compose(self) -> ComposeResult:
        with Vertical(id="agent-body"):
            yield AgentSummary(self.agent_id, title="Agent", id="agent-summary")
            from ..widgets.chart import AgentCostChart  # plotext: only when the screen opens

            yield AgentCostChart(self.agent_id, id="agent-chart")
            with Horizontal(id="agent-lower"):
                yield AgentRelations(
                    self.agent_id, title="Tools · collaborators · hypotheses", id="agent-relations"
                )
                log = EventLog(title="Recent events", id="agent-log")
                log.agent = self.agent_id
                yield log
        yield HealthLine(id="health")
        yield Footer()

    def show_state(self, state: DashboardState, *, paused: bool = False, behind: int = 0) -> None:
        for line in self.query(HealthLine):  # empty until the screen has composed
            line.show(state, paused=paused, behind=behind)
        if paused:
            return
        for pane in self.query(Pane):
            pane.set_state(state)
        for chart in self.query("#agent-chart"):
            set_state = getattr(chart, "set_state", None)
            if set_state is not None:
                set_state(state)

    def agent_view(self, state: DashboardState) -> AgentView | None:
        return state.agent(self.agent_id)
