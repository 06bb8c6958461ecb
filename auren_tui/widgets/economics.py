"""Pane 3: token economics: burn rate, projections, budget, cost per query, sparklines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text

from ..sanitize import clean
from .base import Pane
from .format import bar, fmt_count, fmt_usd, minute_columns, sparkline

if TYPE_CHECKING:
    from auren_core.state import DashboardState

__all__ = ["Economics"]

_BUDGET_STYLE = {"ok": "green", "warning": "bold yellow", "alert": "bold white on red"}


def top_tip(analytics: Any) -> str:
    """The line for the top recommendation: ``recommendations[0]`` of the newest analysis
    (an :class:`~auren_tui.messages.AnalyticsUpdated`), else why there is none."""
    result = getattr(analytics, "result", None)
    if not isinstance(result, dict):
        return "tip: press a for analytics" if analytics is None else "tip: analytics failed"
    recs = result.get("recommendations") or []
    if not recs:
        return "tip: no recommendation on this data"
    first = recs[0]
    text = str(first.get("text") or first.get("kind") or "?")
    usd = (first.get("estimated_saving") or {}).get("usd")
    more = (result.get("counts") or {}).get("recommendations", len(recs)) - 1
    tail = f" (saves ~{fmt_usd(usd)})" if isinstance(usd, int | float) and usd > 0 else ""
    return f"tip: {text}{tail}" + (f" [+{more} more: a]" if more > 0 else "")


class Economics(Pane):
    """Cost figures from the reducer; one sparkline per agent (one column per minute, up
    to the last hour), the newest user queries with their cost, the top recommendation."""

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        c = state.costs
        lines: list[RenderableType] = []
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append("burn ")
        head.append(fmt_usd(c.burn_usd_per_hour, per="/h"), style="bold")
        head.append("  day ")
        head.append(fmt_usd(c.projected_day_usd), style="bold")
        head.append("  month ")
        head.append(fmt_usd(c.projected_month_usd), style="bold")
        lines.append(head)

        budget = Text(no_wrap=True, overflow="ellipsis")
        if c.budget_usd_per_hour is None or c.budget_used is None:
            budget.append("budget not set (--budget-usd-per-hour)", style="dim")
        else:
            style = _BUDGET_STYLE.get(c.budget_status, "")
            budget.append(f"budget {fmt_usd(c.budget_usd_per_hour, per='/h')} ")
            budget.append(bar(c.budget_used, max(4, min(20, width - 36))), style=style)
            budget.append(f" {c.budget_used * 100:.0f}% ")
            label = {"warning": "WARNING ≥80%", "alert": "ALERT ≥100%"}.get(
                c.budget_status, c.budget_status
            )
            budget.append(label, style=style)
        lines.append(budget)

        per_run = Text(no_wrap=True, overflow="ellipsis")
        per_run.append("per query ")
        per_run.append(fmt_usd(c.cost_per_run_usd), style="bold")
        per_run.append(f" over {len(c.runs)} runs", style="dim")
        lines.append(per_run)
        tip = Text(top_tip(getattr(self.app, "analytics", None)), no_wrap=True)
        tip.overflow = "ellipsis"
        tip.stylize("magenta")
        lines.append(tip)
        if c.unpriced_llm_calls:
            lines.append(
                Text(
                    f"* {fmt_count(c.unpriced_llm_calls)} LLM calls with unknown price "
                    "(not counted as $0)",
                    style="yellow",
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )

        name_w = max(6, min(16, width // 5))
        money_w = 9
        spark_w = max(5, width - name_w - 2 * money_w - 3)
        cols, caption = minute_columns(c.cost_per_minute, spark_w)
        self.border_subtitle = f"sparklines: {caption}"
        spark_w = max(len(cols), 1)
        room = height - len(lines) - 1
        # the newest user queries (crew kickoffs), each with its question and cost, in
        # the rows the agents leave free (at most 3)
        queries = list(reversed(c.runs))[: max(1, min(3, room - 1 - len(state.agents)))]
        for x in queries:
            row = Text(no_wrap=True, overflow="ellipsis")
            row.append(fmt_usd(x.cost_usd).rjust(money_w - 1))
            st = "red" if x.status == "failed" else "dim"
            row.append(f" {x.status[:4]:<4} ", style=st)
            row.append(clean(x.query, width) if x.query else f"run {clean(x.run, 12)}")
            lines.append(row)
        room -= len(queries)
        total = Text(no_wrap=True)
        total.append("all".ljust(name_w), style="bold")
        total.append(" ")
        total.append(sparkline(cols, spark_w).ljust(spark_w), style="cyan")
        total.append(f" {fmt_usd(c.window_cost_usd):>{money_w}}")
        lines.append(total)
        agents = sorted(state.agents, key=lambda a: (-a.cost_usd, a.id))
        shown = agents[: max(0, room)]
        for a in shown:
            row = Text(no_wrap=True, overflow="ellipsis")
            row.append(clean(a.role or a.id, name_w).ljust(name_w))
            row.append(" ")
            a_cols, _ = minute_columns(a.cost_per_minute, spark_w)
            row.append(sparkline(a_cols, spark_w).ljust(spark_w), style="green")
            row.append(f" {fmt_usd(a.cost_usd):>{money_w}}")
            row.append(f" {fmt_usd(a.usd_per_hour, per='/h'):>{money_w}}", style="dim")
            lines.append(row)
        if len(agents) > len(shown) and shown:
            lines[-1] = Text(f"… {len(agents) - len(shown) + 1} more agents", style="dim")
        return Group(*lines)
