"""What the stream worker posts, without Textual: :class:`WorkerStats`, and the plain
messages the worker *process* builds (:mod:`auren_tui.process` pickles their fields onto
its pipe; the app side turns them back into the Textual messages of
:mod:`auren_tui.messages`). The child process never imports Textual (~70 ms of its
start-up, which is on the way to the first painted frame)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PLAIN", "WorkerStats"]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What the worker itself has done (the reducer counts the rest)."""

    events_read: int = 0
    batches: int = 0
    backfill_done: bool = False
    last_batch_at: float | None = None  # time.monotonic()
    source: str = "stream"


class StateUpdated:
    """As :class:`auren_tui.messages.StateUpdated`, for the pipe."""

    __slots__ = ("state", "stats")

    def __init__(self, state: Any, stats: WorkerStats) -> None:
        self.state = state
        self.stats = stats


class AnalyticsUpdated:
    """As :class:`auren_tui.messages.AnalyticsUpdated`, for the pipe."""

    __slots__ = ("buffered", "error", "result", "took_s")

    def __init__(
        self, result: dict[str, Any] | None, took_s: float, buffered: int, error: str = ""
    ) -> None:
        self.result = result
        self.took_s = took_s
        self.buffered = buffered
        self.error = error


class WorkerFailed:
    """As :class:`auren_tui.messages.WorkerFailed`, for the pipe."""

    __slots__ = ("error", "restart_in")

    def __init__(self, error: str, restart_in: float | None = None) -> None:
        self.error = error
        self.restart_in = restart_in


class _Plain:
    """The message kinds a :class:`~auren_tui.worker.StreamWorker` builds (its
    ``messages``): these plain ones in the worker process."""

    StateUpdated = StateUpdated
    AnalyticsUpdated = AnalyticsUpdated
    WorkerFailed = WorkerFailed


PLAIN: Any = _Plain
