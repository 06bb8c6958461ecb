"""A real chart (plotext, through Textualize's textual-plotext) where block characters are too
coarse: an agent's cost per minute over the window, with axes and a scale.

Imported only when the agent screen opens (plotext costs ~130 ms to import), so ``auren top``
starts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual_plotext import PlotextPlot

if TYPE_CHECKING:
    from typing import Any

    from auren_core.state import DashboardState

__all__ = ["AgentCostChart", "ForecastChart"]


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


class ForecastChart(PlotextPlot):
    """The next-hour cost forecast of each agent (and of the rest summed, ``others``) with
    its 95 % interval as an error bar, from an analytics result."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Next-hour cost forecast ($) with its 95% interval"
        self._shown: Any = None

    def set_result(self, result: dict[str, Any] | None) -> None:
        fc = (result or {}).get("forecast") or {}
        names = (result or {}).get("agent_names") or {}
        rows = [(names.get(a["agent"]) or a["agent"] or "(no agent)", a["cost_usd"])
                for a in fc.get("agents", [])]  # fmt: skip
        if fc.get("others"):
            rows.append((f"{fc['others']['agents']} others", fc["others"]["cost_usd"]))
        key = [(n, f["next"], f.get("high")) for n, f in rows]
        if key == self._shown:
            return
        self._shown = key
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if not rows:
            plt.title("no forecast yet: no complete minute of LLM calls")
            self.refresh()
            return
        xs: list[float] = [float(i) for i in range(1, len(rows) + 1)]
        ys = [float(f["next"]) for _, f in rows]
        half = [max(0.0, float(f["high"]) - float(f["next"])) if f.get("high") is not None
                else 0.0 for _, f in rows]  # fmt: skip
        plt.bar(xs, ys, marker="hd", color="green", width=0.4)
        plt.error(xs, ys, yerr=half, color="red")
        plt.xticks(xs, [str(n)[:14] for n, _ in rows])
        top = max(y + h for y, h in zip(ys, half, strict=True))
        plt.ylim(0, max(top * 1.1, 1e-6))
        self.refresh()
