"""Prebuilt dashboard states for the TUI tests, posted to the app as its worker's messages.

A test that only needs the recording's state does not wait for a worker thread to play
the recording into the app: the app's own reducer (built by the worker factory of
:func:`~auren_tui.app.make_app`, so the same window, budget and clock) is fed the
recording here, ``analyze()`` runs on it as the worker would run it, and a
:class:`PostingWorker` in place of the stream worker posts both to the app as
:class:`~auren_tui.messages.StateUpdated` / :class:`~auren_tui.messages.AnalyticsUpdated`.
The test then waits for the state to be painted (:func:`painted`), never for a while.

Tests of the worker itself (reading, pausing while it reads, analysing on request,
reconnecting) keep the real worker.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from recorded_events import frozen_clock, recorded
from textual.message import Message
from textual.pilot import Pilot
from waiting import await_until

from auren_core.state import DashboardState
from auren_core.streams.replay import RecordedSource
from auren_tui.agent_order import MAX_ROWS, trim_state
from auren_tui.app import TopApp, make_app
from auren_tui.messages import AnalyticsUpdated, StateUpdated, WorkerStats
from auren_tui.widgets import AgentsTable
from auren_tui.worker import StreamWorker, run_analysis

__all__ = [
    "PostingWorker",
    "painted",
    "post_state",
    "recorded_messages",
    "show_recorded",
    "state_app",
]


def _recorded_app(**kw: Any) -> TopApp:
    return make_app(
        redis_url="redis://unused",
        stream="auren:events",
        source=RecordedSource.of(recorded()),
        clock=frozen_clock,
        **kw,
    )


@functools.cache
def _recorded(**kw: Any) -> tuple[DashboardState, WorkerStats, AnalyticsUpdated]:
    worker = _recorded_app(**kw)._worker_factory(lambda _m: None)  # built, never started
    assert isinstance(worker, StreamWorker)
    reducer = worker._make_reducer()
    reducer.set_connection("live", "recorded events")  # RecordedSource says "connected"
    items = recorded()
    (batch, _end) = RecordedSource.of(items)._batches  # the recording, then end-of-backfill
    reducer.apply_batch(batch.items, last_id=batch.last_id, lag=None)
    state = trim_state(reducer.state())
    stats = WorkerStats(len(items), 2, True, time.monotonic(), "recorded")
    analytics = run_analysis(
        items,
        now=reducer.clock(),
        budget_usd_per_hour=reducer.budget_usd_per_hour,
        thresholds=worker.thresholds,
    )
    assert analytics.result is not None, analytics.error
    return state, stats, analytics


def recorded_messages(**kw: Any) -> tuple[DashboardState, WorkerStats, AnalyticsUpdated]:
    """The state, worker stats and first analytics result the worker of
    ``make_app(source=RecordedSource.of(recorded()), clock=frozen_clock, **kw)`` posts
    once it has read the recording (built once per ``kw``; states are frozen)."""
    return _recorded(**kw)


def _fresh(msg: AnalyticsUpdated) -> AnalyticsUpdated:
    return AnalyticsUpdated(msg.result, msg.took_s, msg.buffered, msg.error)


class PostingWorker:
    """Stands in for the app's stream worker: no thread, no source. :func:`show_recorded`
    posts through it what the worker would post once it has read the recording; whenever
    the app asks for analytics, it posts a fresh message with the same result."""

    def __init__(
        self,
        post: Callable[[Message], object],
        state: DashboardState,
        stats: WorkerStats,
        analytics: AnalyticsUpdated | None,
    ) -> None:
        self.post = post
        self.state, self.stats, self.analytics = state, stats, analytics
        self.analytics_on = False
        self.analytics_asked = 0
        self.view: tuple[str, bool, tuple[str, ...]] | None = None
        self.stopped = False

    def start(self) -> None:
        return None  # the test posts, once the screen is up (show_recorded)

    def post_recorded(self) -> None:
        """The analysis first, then the state: the state's first paint has every pane,
        token economics' top recommendation included."""
        if self.analytics is not None:
            self.post(_fresh(self.analytics))
        self.post(StateUpdated(self.state, self.stats))

    def stop(self, timeout: float = 3.0) -> None:
        self.stopped = True

    def set_view(self, sort: str, reverse: bool, pin: tuple[str, ...] = ()) -> None:
        self.view = (sort, reverse, tuple(pin))

    def set_analytics(self, active: bool) -> None:
        self.analytics_on = active
        if active and self.analytics is not None:
            self.analytics_asked += 1
            self.post(_fresh(self.analytics))

    def call(self, fn: Callable[[Any], None]) -> None:
        return None


def state_app(*, analytics: bool = True, backends_line: str = "", **kw: Any) -> TopApp:
    """The app of ``make_app(source=RecordedSource.of(recorded()), clock=frozen_clock,
    **kw)`` with a :class:`PostingWorker` that posts the recording's state (and, with
    ``analytics``, its analysis: :func:`show_recorded`) instead of a worker thread
    playing it. Every state the app paints is appended to ``app.painted`` (the app's
    frame hook)."""
    state, stats, result = recorded_messages(**kw)
    like = _recorded_app(backends_line=backends_line, **kw)  # never run: its settings only

    def factory(post: Callable[[Message], object]) -> PostingWorker:
        return PostingWorker(post, state, stats, result if analytics else None)

    app = TopApp(
        worker_factory=factory,
        stream=like.stream_name,
        backends_line=like.backends_line,
        mode=like.mode,
        fps=like.fps,
    )
    shown: list[DashboardState] = []
    app.painted = shown  # type: ignore[attr-defined]
    app.on_frame = lambda _t, s: shown.append(s)
    return app


def _tables_show(app: TopApp, state: DashboardState) -> bool:
    """Every agents table on screen holds ``state``'s rows (a table that got its first
    state before it was laid out fills itself on its first resize)."""
    rows = min(len(state.agents), MAX_ROWS)
    return all(t.state is state and len(t.order) == rows for t in app.screen.query(AgentsTable))


async def painted(
    pilot: Pilot[None], state: DashboardState | None = None, *, after: int = 0
) -> DashboardState:
    """Wait until ``state`` (default: the prebuilt one) is painted in a frame counted
    after the first ``after`` frames and the agents table shows it; returns it."""
    app = pilot.app
    assert isinstance(app, TopApp)
    want = state if state is not None else app.worker.state
    frames: list[DashboardState] = app.painted  # type: ignore[attr-defined]
    await await_until(
        lambda: any(s is want for s in frames[after:]) and _tables_show(app, want),
        "the posted state to be painted",
        pause=pilot.pause,
    )
    await pilot.pause()  # the table's own repaint, if it filled itself after the frame
    return want


async def show_recorded(pilot: Pilot[None]) -> DashboardState:
    """Post the recording's analysis and state as the worker's messages; wait for the paint."""
    app = pilot.app
    worker = app.worker
    assert isinstance(app, TopApp) and isinstance(worker, PostingWorker)
    # a state that comes before the panes exist is drawn into nothing (the real worker
    # posts again within a second; this one does not): wait for the main screen
    await await_until(
        lambda: app._main.is_mounted and app._main.query(AgentsTable),
        "the main screen to be composed",
        pause=pilot.pause,
    )
    before = len(app.painted)  # type: ignore[attr-defined]
    worker.post_recorded()
    return await painted(pilot, after=before)


async def post_state(pilot: Pilot[None], state: DashboardState) -> None:
    """Post ``state`` as the worker's next message and wait until it is painted."""
    app = pilot.app
    assert isinstance(app, TopApp)
    before = len(app.painted)  # type: ignore[attr-defined]
    app.post_message(StateUpdated(state, app.worker.stats))
    await painted(pilot, state, after=before)
