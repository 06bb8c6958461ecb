"""Server counters and their Prometheus text rendering (no client library needed).

Counters are plain integers bumped on the event loop (one thread), so no locks.
``events_per_s`` is a rate over a sliding window of per-second buckets.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Metrics", "RateWindow"]


class RateWindow:
    """Events per second over the last ``span`` seconds (per-second buckets)."""

    def __init__(self, span: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.span = span
        self.clock = clock
        self._buckets: deque[tuple[int, int]] = deque()
        self._started = clock()

    def add(self, n: int) -> None:
        sec = int(self.clock())
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1] = (sec, self._buckets[-1][1] + n)
        else:
            self._buckets.append((sec, n))
        self._trim(sec)

    def _trim(self, sec: int) -> None:
        while self._buckets and self._buckets[0][0] <= sec - self.span:
            self._buckets.popleft()

    def rate(self) -> float:
        now = self.clock()
        self._trim(int(now))
        elapsed = min(float(self.span), max(now - self._started, 1e-9))
        return sum(n for _, n in self._buckets) / elapsed


@dataclass
class Metrics:
    events_in: int = 0  # stream entries read (including malformed)
    malformed: int = 0
    frames_sent: int = 0  # events frames handed to connections
    deliveries: int = 0  # events delivered (one event to one client = one delivery)
    drops: int = 0  # frames discarded because a client was cut off for being slow
    slow_disconnects: int = 0
    connections_total: int = 0
    rejected_auth: int = 0
    rejected_full: int = 0
    rejected_rate: int = 0
    protocol_errors: int = 0
    lag: int = 0  # entries between the reader and the stream head, when known
    reader_connected: bool = False
    clients: int = 0
    queued_frames: int = 0
    # ``auren persist`` maintenance (rollups, retention), from the Redis hash it publishes
    # (:func:`auren_core.store.schema.maintenance_key`); -1 while none was seen
    maintenance_failing: int = -1
    maintenance_failures_total: int = 0
    maintenance_last_run: float = 0.0
    maintenance_last_ok: float = 0.0
    rate: RateWindow = field(default_factory=RateWindow)

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        rows: list[tuple[str, str, str, float]] = [
            ("auren_ws_events_total", "counter", "stream entries read", self.events_in),
            (
                "auren_ws_events_per_second",
                "gauge",
                "entries read per second (10 s)",
                round(self.rate.rate(), 3),
            ),
            ("auren_ws_malformed_total", "counter", "malformed entries skipped", self.malformed),
            ("auren_ws_clients", "gauge", "subscribed WebSocket clients", self.clients),
            (
                "auren_ws_connections_total",
                "counter",
                "WebSocket connections accepted",
                self.connections_total,
            ),
            ("auren_ws_frames_sent_total", "counter", "events frames sent", self.frames_sent),
            (
                "auren_ws_deliveries_total",
                "counter",
                "events delivered to clients",
                self.deliveries,
            ),
            ("auren_ws_drops_total", "counter", "frames dropped for slow clients", self.drops),
            (
                "auren_ws_slow_disconnects_total",
                "counter",
                "clients cut off for reading slowly",
                self.slow_disconnects,
            ),
            (
                "auren_ws_rejected_auth_total",
                "counter",
                "connections refused: auth",
                self.rejected_auth,
            ),
            (
                "auren_ws_rejected_full_total",
                "counter",
                "connections refused: max clients",
                self.rejected_full,
            ),
            (
                "auren_ws_rejected_rate_total",
                "counter",
                "connections refused: rate limit",
                self.rejected_rate,
            ),
            (
                "auren_ws_protocol_errors_total",
                "counter",
                "connections closed for bad messages",
                self.protocol_errors,
            ),
            (
                "auren_ws_queued_frames",
                "gauge",
                "frames waiting in client queues",
                self.queued_frames,
            ),
            ("auren_ws_lag_entries", "gauge", "entries behind the stream head", self.lag),
            (
                "auren_ws_reader_connected",
                "gauge",
                "1 when the stream reader is connected",
                1 if self.reader_connected else 0,
            ),
            (
                "auren_persist_maintenance_failing",
                "gauge",
                "auren persist maintenance steps that failed in the latest run (-1: no run seen)",
                self.maintenance_failing,
            ),
            (
                "auren_persist_maintenance_failures_total",
                "counter",
                "auren persist maintenance steps that failed",
                self.maintenance_failures_total,
            ),
            (
                "auren_persist_maintenance_last_run_timestamp_seconds",
                "gauge",
                "unix time of the latest maintenance run (0: none)",
                self.maintenance_last_run,
            ),
            (
                "auren_persist_maintenance_last_success_timestamp_seconds",
                "gauge",
                "unix time of the latest maintenance run without a failure (0: none)",
                self.maintenance_last_ok,
            ),
        ]
        out: list[str] = []
        for name, kind, help_, value in rows:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.append(f"{name} {value}")
        return "\n".join(out) + "\n"
