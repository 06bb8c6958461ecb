"""A real chart (plotext, through Textualize's textual-plotext) where block characters are too
coarse: an agent's cost per minute over the window, with axes and a scale.

Imported only when the agent screen opens (plotext costs ~130 ms to import), so ``auren top``
starts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual_plotext import PlotextPlot

if TYPE_CHECKING:
    from auren_core.state import DashboardState

__all__ = ["AgentCostChart"]


class AgentCostChart(PlotextPlot):
    """Cost per minute of one agent (USD), oldest left, the minute now in progress at 0."""

    def __init__(self, agent_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.agent_id = agent_id
        self.border_title = "Cost per minute ($), last hour"
        self._shown: tuple[float, ...] | None = None

    def set_state(self, state: DashboardState) -> None:
        a = state.agent(self.agent_id)
        data = a.cost_per_minute if a is not None else ()
        if data == self._shown:
            return  # unchanged: no redraw
        self._shown = data
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if not data:
            plt.title("no LLM or tool cost in the window")
        else:
            n = len(data)
            xs = list(range(-(n - 1), 1))  # minutes ago: the current minute is 0
            plt.bar(xs, list(data), marker="hd", color="green")
            ticks: list[float] = [x for x in xs if x % 10 == 0]
            plt.xticks(ticks, [str(-int(x)) for x in ticks])
            plt.xlabel("minutes ago")
            plt.ylim(0, max(max(data) * 1.1, 1e-6))
        self.refresh()
