"""``auren top``: the Textual app (built by :func:`auren_tui.app.make_app`, the one factory
for CLI, demo, tests).

The app owns no data logic. One :class:`~auren_tui.worker.StreamWorker` thread reads
the stream into the reducer and posts frozen states; a 20 Hz timer hands the newest
state to the visible screen (never once per event). Pausing freezes the panes while
the worker keeps reading; resuming shows the caught-up state at once. The analytics
screen (``a``) gets its results from the same worker, computed only while it is open.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Input

from .messages import AnalyticsUpdated, StateUpdated, WorkerFailed
from .screens.main import MainScreen
from .widgets import AgentsTable, Economics

if TYPE_CHECKING:
    from auren_core.state import DashboardState

    from .screens.agent import AgentScreen
    from .screens.analytics import AnalyticsScreen


def _agent_screen() -> type[AgentScreen]:
    """The drill-down screen's class, imported when first needed (not before the first
    paint); none of its instances can exist before."""
    from .screens.agent import AgentScreen

    return AgentScreen


def _analytics_screen() -> type[AnalyticsScreen]:
    from .screens.analytics import AnalyticsScreen

    return AnalyticsScreen


def _loaded(module: str, name: str) -> type[Any] | None:
    """``module.name`` if that module has been imported, else None (then no instance of
    it can exist: a cheap isinstance guard on the per-frame path)."""
    import sys

    mod = sys.modules.get(module)
    return None if mod is None else getattr(mod, name, None)


__all__ = ["FrameHook", "TopApp"]

FrameHook = Callable[[float, "DashboardState"], None]


class TopApp(App[None]):
    CSS_PATH = "top.tcss"
    TITLE = "AUREN top"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("p", "toggle_pause", "Pause"),
        # priority: handled as the key reaches the app, before keys typed after it are
        # passed on, so they land in the filter even when the UI is behind
        Binding("slash", "filter", "Filter", priority=True),
        Binding("s", "sort", "Sort"),
        Binding("d", "drill", "Drill"),
        Binding("c", "clear", "Clear"),
    ]

    def __init__(
        self,
        *,
        worker_factory: Callable[[Callable[[Any], object]], Any],
        stream: str,
        backends_line: str = "",
        mode: str = "live",
        fps: float = 20.0,
    ) -> None:
        super().__init__()
        self._worker_factory = worker_factory
        self.stream_name = stream
        self.backends_line = backends_line
        self.mode = mode
        self.fps = fps
        self.worker: Any = None  # StreamWorker (thread) or ProcessWorker
        self.latest: DashboardState | None = None  # newest state from the worker
        self.shown: DashboardState | None = None  # what the panes display
        self.stats: Any = None
        self.paused = False
        self.failure: str | None = None
        self.worker_dead = False  # the worker has gone; its last state is shown as dead
        self._view: tuple[str, bool, tuple[str, ...]] | None = None  # sent to the worker
        self.frames = 0
        # benchmarks: called with (wall time, state) once each frame has been painted
        self.on_frame: FrameHook | None = None
        self._drawn: DashboardState | None = None
        self._last_draw = 0.0
        self._frame_cost = 0.0
        self._slot_pending = False  # a one-shot timer will draw the waiting state
        self._main = MainScreen(stream=stream, backends=backends_line, mode=mode)
        self.analytics: AnalyticsUpdated | None = None  # newest analyze() result
        self.analytics_every = 5.0

    # ------------------------------------------------------------------ lifecycle
    def get_default_screen(self) -> Screen[Any]:
        return self._main

    def on_mount(self) -> None:
        _calm_gc()
        self.worker = self._worker_factory(self.post_message)
        self.worker.start()
        self.set_interval(1.0 / self.fps, self._tick, name="refresh")

    def on_unmount(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def on_state_updated(self, message: StateUpdated) -> None:
        self.worker_dead = False  # a (restarted) worker is sending again
        self.latest = message.state
        self.stats = message.stats
        self._tick()  # draw now if the frame budget allows (the timer catches the rest)

    def on_analytics_updated(self, message: AnalyticsUpdated) -> None:
        self.analytics = message
        if not self.paused:
            self._show_analytics()

    def _show_analytics(self) -> None:
        if self.analytics is not None:
            for screen in self._visible_screens():
                show = getattr(screen, "show_analytics", None)  # analytics, forecast chart
                if show is not None:
                    show(self.analytics)
                for pane in screen.query(Economics):  # its top recommendation line
                    pane._rebuild(force=True)

    def on_worker_failed(self, message: WorkerFailed) -> None:
        self.failure = message.error
        self.worker_dead = True
        restart = "" if message.restart_in is None else f"restarting in {message.restart_in:.1f}s"
        if self.latest is not None:  # the status line must not go on saying "live"
            h = self.latest.health
            detail = restart or message.error
            dead = dataclasses.replace(h, connection="dead", connection_detail=detail)
            self.latest = dataclasses.replace(self.latest, health=dead)
            self._drawn = None
            self._tick()
        note = f"stream worker failed: {message.error}" + (f"; {restart}" if restart else "")
        self.notify(note, severity="error", timeout=30, markup=False)

    # ------------------------------------------------------------------ refresh
    def _visible_screens(self) -> list[Screen[Any]]:
        out: list[Screen[Any]] = []
        for screen in reversed(self.screen_stack):
            out.append(screen)
            if not isinstance(screen, ModalScreen):
                break
        return out

    def _tick(self) -> None:
        state = self.latest
        if state is None or state is self._drawn:
            return
        now = time.monotonic()
        # the one throttle: up to 2x fps while a frame is cheap; down to 10 Hz when
        # painting gets expensive, so the UI never eats the core the stream needs (cost:
        # time until the frame is painted). A state that must wait is drawn the moment
        # its slot comes (a one-shot timer), not at the next tick of the periodic timer.
        gap = min(0.1, max(0.5 / self.fps, 1.5 * self._frame_cost))
        if now - self._last_draw < gap and self._drawn is not None:
            if not self._slot_pending:
                self._slot_pending = True
                self.set_timer(self._last_draw + gap - now, self._slot)
            return
        self._last_draw = now
        self._drawn = state
        if not self.paused:
            self.shown = state
        behind = state.health.events_total - (self.shown.health.events_total if self.shown else 0)
        for screen in self._visible_screens():
            if isinstance(screen, self._state_screens()):
                screen.show_state(state, paused=self.paused, behind=behind)
        self.frames += 1
        self.call_after_refresh(self._painted, now, state)

    def _state_screens(self) -> tuple[type[Any], ...]:
        """The screens that show states: the main one, and the agent and analytics screens
        once their modules are loaded (before that none of them can be on the stack)."""
        kinds: tuple[type[Any], ...] = (MainScreen,)
        for module, name in (
            ("auren_tui.screens.agent", "AgentScreen"),
            ("auren_tui.screens.analytics", "AnalyticsScreen"),
        ):
            kind = _loaded(module, name)
            if kind is not None:
                kinds += (kind,)
        return kinds

    def _slot(self) -> None:
        self._slot_pending = False
        self._tick()

    def _painted(self, started: float, state: DashboardState) -> None:
        self._frame_cost = 0.7 * self._frame_cost + 0.3 * (time.monotonic() - started)
        if self.on_frame is not None:
            self.on_frame(time.time(), state)

    def _redraw(self) -> None:
        """Show ``latest`` now (after resume, screen changes)."""
        self._send_view()
        self._drawn = None
        self._tick()
        if not self.paused:
            self._show_analytics()

    def on_screen_resume(self) -> None:
        self._redraw()

    # ------------------------------------------------------------------ actions
    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._redraw()

    def action_filter(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):  # typing in an input (the filter, the palette): a "/"
            focused.insert_text_at_cursor("/")
            return
        if self.screen is not self._main:
            self.pop_screen()
        self._main.open_filter()

    def action_sort(self) -> None:
        self._main.agents.sort_by(None)

    def _send_view(self) -> None:
        """Tell the worker which agents to ship: the table's first rows in its order,
        plus those an agent screen shows."""
        # query, not query_one: while the app shuts down the screen is still mounted but
        # its table may be gone (a sort change handled then raised NoMatches)
        tables = list(self._main.query(AgentsTable)) if self._main.is_mounted else []
        table = tables[0] if tables else None
        if table is None or self.worker is None or not hasattr(self.worker, "set_view"):
            return
        agent = _loaded("auren_tui.screens.agent", "AgentScreen")
        pins = tuple(
            s.agent_id for s in self.screen_stack if agent is not None and isinstance(s, agent)
        )
        view = (table.sort_key, table.sort_reverse, pins)
        if view != self._view:
            self._view = view
            self.worker.set_view(*view)

    def on_agents_table_sort_changed(self, message: AgentsTable.SortChanged) -> None:
        self._send_view()

    def action_drill(self, agent_id: str | None = None) -> None:
        agent_id = agent_id or self._main.agents.selected_agent
        if agent_id is None:
            self.notify("no agent selected", severity="warning")
            return
        self.push_screen(_agent_screen()(agent_id))
        self._send_view()
        self.call_after_refresh(self._redraw)

    def on_agents_table_open(self, message: AgentsTable.Open) -> None:
        self.action_drill(message.agent_id)

    def action_clear(self) -> None:
        self._main.log_pane.clear()
        self._main.apply_filter("")

    def action_analytics(self) -> None:
        """Open the analytics screen; the worker analyses while it is open."""
        analytics = _analytics_screen()
        if isinstance(self.screen, analytics):
            return
        screen = analytics(every=self.analytics_every)
        screen.message = self.analytics  # the last result at once, a fresh one follows
        self.push_screen(screen)
        self._set_analytics(True)
        self.call_after_refresh(self._redraw)

    def analytics_closed(self) -> None:
        """The analytics screen has gone (popped): stop analysing."""
        if not any(isinstance(s, _analytics_screen()) for s in self.screen_stack):
            self._set_analytics(False)

    def action_refresh_analytics(self) -> None:
        self._set_analytics(True)

    def _set_analytics(self, active: bool) -> None:
        if self.worker is not None:
            self.worker.set_analytics(active)

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        pause = "Resume display" if self.paused else "Pause display"
        yield SystemCommand(pause, "Freeze the panes; reading continues", self.action_toggle_pause)
        yield SystemCommand("Filter event log", "type:NAME agent:NAME text", self.action_filter)
        yield SystemCommand("Sort agents", "Sort by the next column", self.action_sort)
        yield SystemCommand("Open selected agent", "Drill down into one agent", self.action_drill)
        yield SystemCommand("Clear event log", "Hide the current log lines", self.action_clear)
        yield SystemCommand(
            "Analytics",
            "Forecast, alerts, loops, gaps, collaboration, recommendations",
            self.action_analytics,
        )
        yield SystemCommand("Help", "Keys and panes", self.action_help)


def _calm_gc() -> None:
    """Fewer, cheaper garbage collections: a full collection over Textual's widget tree
    and the frozen states stalled frames (and keypresses) for 150-400 ms. States are
    freed by reference counting; cycles are rare, so collect them rarely."""
    gc.freeze()  # what exists after start-up is long-lived: never scan it again
    gc.set_threshold(50_000, 20, 100)
