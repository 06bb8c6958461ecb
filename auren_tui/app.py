"""``auren top``: :func:`make_app`, the one factory for CLI, demo, tests; the Textual app
itself is :class:`auren_tui.top_app.TopApp` (also importable from here).

Start-up order (issue 14): this module imports next to nothing, so that ``make_app``
spawns the stream worker process *before* this process imports Textual and the panes
(~0.25 s); the worker's imports, connection and first read then overlap the UI's start
instead of following it. Nothing here (nor in the app before its first paint) imports
analytics, PostgreSQL, charts or the reader's redis client: see
``tests/unit/test_import_hygiene.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auren_core.streams.replay import ReplaySpec, Source

    from .top_app import FrameHook, TopApp

__all__ = ["FrameHook", "TopApp", "make_app"]


def __getattr__(name: str) -> Any:
    """``TopApp`` and ``FrameHook`` on first use (they import Textual)."""
    if name in ("TopApp", "FrameHook"):
        from . import top_app

        return getattr(top_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_app(
    *,
    redis_url: str,
    stream: str,
    since_s: float = 3600.0,
    budget_usd_per_hour: float | None = None,
    active_window_s: float = 300.0,
    backends_line: str = "",
    replay: ReplaySpec | None = None,
    clock: Callable[[], float] | None = None,
    source: Source | None = None,
    fps: float = 20.0,
    tool_costs: dict[str, float] | None = None,
    tier_costs: dict[str, Any] | None = None,
    in_process: bool | None = None,
    alert_webhook: str | None = None,
    recommendations: dict[str, Any] | None = None,
    shards: int = 1,
) -> TopApp:
    """The dashboard. ``replay`` plays history; ``source`` (tests) replaces the stream.

    A live stream or a replay is read by a worker *process* (its own core for decoding
    and reducing); a ``source`` or an injected ``clock`` (tests, snapshots), or
    ``in_process=True``, keeps the same worker in a thread of this process.
    """
    mode = "live" if replay is None else f"replay x{replay.speed:g}"
    if source is not None:
        mode = "recorded"
    reducer_kw: dict[str, Any] = {
        "window_s": max(3600.0, since_s),
        "active_window_s": active_window_s,
        "budget_usd_per_hour": budget_usd_per_hour,
        "tool_costs": tool_costs,
        "tier_costs": tier_costs,
    }
    config = {
        "redis_url": redis_url,
        "stream": stream,
        "shards": shards,
        "since_s": since_s,
        "replay": [replay.start_id, replay.end_id, replay.speed] if replay else None,
        "reducer": reducer_kw,
        "fps": fps,
        "mode": mode,
        "alert_webhook": alert_webhook,
        "recommendations": recommendations,
    }
    if in_process is None:
        in_process = source is not None or clock is not None
    if not in_process:
        from .process import ProcessWorker

        early = ProcessWorker(config)
        # first: the worker boots (imports, connects, reads) while this process imports
        # Textual and the panes, and the UI starts
        early.spawn()
        from .top_app import TopApp

        def process_factory(post: Callable[[Any], object]) -> Any:
            early.post = post
            return early

        return TopApp(
            worker_factory=process_factory,
            stream=stream,
            backends_line=backends_line,
            mode=mode,
            fps=fps,
        )

    from .top_app import TopApp
    from .worker import build_worker

    def factory(post: Callable[[Any], object]) -> Any:
        # the same factory as the child process's (auren_tui.process), with the app's
        # own source and clock when it has them (tests, snapshots)
        return build_worker(config, post, source=source, clock=clock)

    return TopApp(
        worker_factory=factory, stream=stream, backends_line=backends_line, mode=mode, fps=fps
    )
