"""The messages the stream worker posts to the app: typed, and the only thing that crosses
from the worker (thread or child process) to the UI."""

from __future__ import annotations

import time
from typing import Any

from textual.message import Message

from .wire import WorkerStats

__all__ = ["AnalyticsUpdated", "StateUpdated", "WorkerFailed", "WorkerStats"]


class StateUpdated(Message):
    """A new frozen state; a newer one replaces an older one still queued."""

    def __init__(self, state: Any, stats: WorkerStats) -> None:
        super().__init__()
        self.state = state
        self.stats = stats
        self.posted_at = time.monotonic()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StateUpdated)


class AnalyticsUpdated(Message):
    """A result of ``analyze()`` (trimmed for display) or the error that stopped it."""

    def __init__(
        self, result: dict[str, Any] | None, took_s: float, buffered: int, error: str = ""
    ) -> None:
        super().__init__()
        self.result = result
        self.took_s = took_s
        self.buffered = buffered
        self.error = error

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AnalyticsUpdated)


class WorkerFailed(Message):
    """The worker died of a bug (never of an outage: those reconnect). ``restart_in``:
    seconds until a new worker process starts (None: it will not be restarted)."""

    def __init__(self, error: str, restart_in: float | None = None) -> None:
        super().__init__()
        self.error = error
        self.restart_in = restart_in
