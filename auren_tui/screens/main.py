"""The main screen: the panes, a filter input and the footer.

Narrow or short terminals (80x24) get one scrolling column with the number keys
jumping between panes; wide and tall ones (>=120x36) get a grid with every pane
on screen at once. The layout lives in ``top.tcss``. The flows pane (7) is shown once
the window holds a flow (the screen gets the ``-flows`` class): crews without flows
keep the six-pane layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input

from ..widgets import (
    AgentsTable,
    CollabMatrix,
    Economics,
    EventLog,
    FlowsPane,
    HealthLine,
    KnowledgeHeatmap,
    LogFilter,
    Pane,
    TierFlow,
    TitleBar,
)

if TYPE_CHECKING:
    from auren_core.state import DashboardState

__all__ = ["PANES", "MainScreen"]

PANES = ("tiers", "agents", "economics", "collab", "knowledge", "log", "flows")


class MainScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [
        *(
            Binding(str(i), f"jump('{name}')", f"pane {i}", show=False)
            for i, name in enumerate(PANES, 1)
        ),
        Binding("escape", "close_filter", "close filter", show=False),
        Binding("a", "app.analytics", "Analytics"),
    ]

    def __init__(self, *, stream: str, backends: str, mode: str) -> None:
        super().__init__()
        self._stream, self._backends, self._mode = stream, backends, mode

    def compose(self) -> ComposeResult:
        yield TitleBar(stream=self._stream, backends=self._backends, mode=self._mode, id="title")
        with VerticalScroll(id="body"):
            yield TierFlow(title="1 Memory tiers", id="tiers")
            yield AgentsTable(id="agents")
            yield Economics(title="3 Token economics", id="economics")
            yield CollabMatrix(title="4 Collaboration", id="collab")
            yield KnowledgeHeatmap(title="5 Knowledge", id="knowledge")
            yield FlowsPane(title="7 Flows", id="flows")
            yield EventLog(title="6 Event log", id="log")
        yield Input(
            placeholder="filter the log: type:llm_call agent:neuro text  (Enter apply, Esc cancel)",
            id="filter",
        )
        yield HealthLine(id="health")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).cursor_blink = False
        self.query_one(EventLog).border_subtitle = "/ to filter"
        self.query_one(AgentsTable).focus()

    # ------------------------------------------------------------------ state
    def show_state(self, state: DashboardState, *, paused: bool = False, behind: int = 0) -> None:
        """Render ``state`` in every pane (``paused``: only the title and health line)."""
        for line in self.query(HealthLine):  # empty until the screen has composed
            line.show(state, paused=paused, behind=behind)
        if paused:
            return
        self.set_class(bool(state.flows), "-flows")
        for title in self.query(TitleBar):
            title.show(state)
        for pane in self.query(Pane):
            pane.set_state(state)
        for table in self.query(AgentsTable):
            table.set_state(state)

    @property
    def agents(self) -> AgentsTable:
        return self.query_one(AgentsTable)

    @property
    def log_pane(self) -> EventLog:
        return self.query_one(EventLog)

    # ------------------------------------------------------------------ actions
    def action_jump(self, name: str) -> None:
        widget = self.query_one(f"#{name}")
        if not widget.display:
            self.notify(f"no {name} in the window", severity="information", timeout=3)
            return
        self.query_one("#body", VerticalScroll).scroll_to_widget(widget, animate=False, top=True)
        if widget.can_focus:
            widget.focus()

    def open_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = self.log_pane.filter.source
        box.add_class("-open")
        # focus now, not on the next idle (``focus()`` defers it): keys typed right after
        # "/" are already queued and must reach the filter, never run as shortcuts
        self.set_focus(box)

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-open"):
            box.remove_class("-open")
            self.agents.focus()

    @on(Input.Submitted, "#filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        self.apply_filter(event.value)
        self.action_close_filter()

    def apply_filter(self, spec: str) -> None:
        self.log_pane.set_filter(LogFilter.parse(spec))
