"""The analytics screen: forecast, alerts, loops and stalls, gaps, collaboration, advice.

Everything on it is one ``analyze()`` result computed by the stream worker over the
events it has read (see :mod:`auren_tui.worker`): the screen asks for a fresh one when
it opens (and with ``r``), the worker repeats it every few seconds while the screen is
shown and stops when it closes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..sanitize import clean
from ..widgets import HealthLine
from ..widgets.analytics import (
    AlertsSection,
    CollabSection,
    ForecastSection,
    GapsSection,
    KnowledgeHoursSection,
    LearningSection,
    LoopsSection,
    RecommendationsSection,
    Section,
)
from ..widgets.format import fmt_count

if TYPE_CHECKING:
    from auren_core.state import DashboardState

    from ..messages import AnalyticsUpdated

__all__ = ["AnalyticsScreen"]


def _status(msg: AnalyticsUpdated | None, every: float) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(" Analytics ", style="bold reverse")
    if msg is None:
        t.append("  analysing the events read so far…", style="dim")
        return t
    if msg.error:
        t.append("  analysis failed: ", style="bold red")
        t.append(clean(msg.error, 200))
        return t
    r = msg.result or {}
    at = time.strftime("%H:%M:%S", time.gmtime(r.get("generated_at", 0.0)))
    since = r.get("since")
    span = "" if since is None else " since " + time.strftime("%d %b %H:%M", time.gmtime(since))
    t.append(f"  {fmt_count(r.get('events', 0))} events{span} · as of {at} UTC")
    t.append(f" · every {every:g}s while open", style="dim")
    return t


class AnalyticsScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "app.pop_screen", "Back", show=False),
        Binding("r", "app.refresh_analytics", "Refresh"),
        Binding("f", "forecast_chart", "Forecast chart"),
    ]

    def __init__(self, *, every: float = 5.0) -> None:
        super().__init__()
        self.every = every
        self.message: AnalyticsUpdated | None = None

    def compose(self) -> ComposeResult:
        yield Static(_status(None, self.every), id="analytics-status", markup=False)
        with VerticalScroll(id="analytics-body"):
            yield ForecastSection(title="Next-hour forecast", id="an-forecast")
            yield AlertsSection(title="Alerts", id="an-alerts")
            yield LoopsSection(title="Loops and stalls", id="an-loops")
            yield GapsSection(title="Knowledge gaps", id="an-gaps")
            yield CollabSection(title="Collaboration patterns", id="an-collab")
            yield RecommendationsSection(title="Recommendations", id="an-recs")
            yield LearningSection(title="Learning velocity", id="an-learning")
            yield KnowledgeHoursSection(title="Knowledge by hour of day", id="an-hours")
        yield HealthLine(id="health")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#analytics-body", VerticalScroll).focus()
        if self.message is not None:
            self.show_analytics(self.message)

    def action_forecast_chart(self) -> None:
        self.app.push_screen(ForecastChartScreen(self.message))

    def on_unmount(self) -> None:
        closed = getattr(self.app, "analytics_closed", None)
        if closed is not None:
            closed()

    def show_analytics(self, msg: AnalyticsUpdated) -> None:
        self.message = msg
        for status in self.query("#analytics-status").results(Static):
            status.update(_status(msg, self.every))
        if msg.result is None:
            return
        for section in self.query(Section):
            section.set_result(msg.result)

    def show_state(self, state: DashboardState, *, paused: bool = False, behind: int = 0) -> None:
        for line in self.query(HealthLine):  # empty until the screen has composed
            line.show(state, paused=paused, behind=behind)


class ForecastChartScreen(Screen[None]):
    """The forecast as a chart (plotext): each agent's next-hour cost and its interval."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("f", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self, message: AnalyticsUpdated | None) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        from ..widgets.chart import ForecastChart  # plotext: only when the chart opens

        yield ForecastChart(id="forecast-chart")
        yield Footer()

    def on_mount(self) -> None:
        self.show_analytics(self.message)

    def show_analytics(self, msg: AnalyticsUpdated | None) -> None:
        self.message = msg
        for chart in self.query("#forecast-chart"):
            chart.set_result(msg.result if msg is not None else None)  # type: ignore[attr-defined]

    def show_state(self, state: DashboardState, *, paused: bool = False, behind: int = 0) -> None:
        return None  # the chart follows the analytics, not every frame
