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
    bad_messages: int = 0  # closed 4400: malformed, nested, hostile or out-of-order messages
    sessions_expired: int = 0  # closed 4401 "token expired" while open
    sessions_revoked: int = 0  # closed 4401 "revoked" while open
    sessions_renewed: int = 0  # open sessions that authenticated again with a fresh token
    stream_unavailable: int = 0  # closed 1013: Redis unreachable or no pool connection in time
    internal_errors: int = 0  # closed 1011 by an unexpected server error (a bug)
    lag: int = 0  # entries between the reader and the stream head, when known
    reader_connected: bool = False
    clients: int = 0
    queued_frames: int = 0
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
                "auren_ws_bad_messages_total",
                "counter",
                "connections closed 4400: malformed, nested or hostile messages",
                self.bad_messages,
            ),
            (
                "auren_ws_sessions_expired_total",
                "counter",
                "open sessions closed 4401: token expired",
                self.sessions_expired,
            ),
            (
                "auren_ws_sessions_revoked_total",
                "counter",
                "open sessions closed 4401: token family revoked",
                self.sessions_revoked,
            ),
            (
                "auren_ws_sessions_renewed_total",
                "counter",
                "open sessions renewed with a fresh token",
                self.sessions_renewed,
            ),
            (
                "auren_ws_stream_unavailable_total",
                "counter",
                "connections closed 1013: Redis unavailable or busy",
                self.stream_unavailable,
            ),
            (
                "auren_ws_internal_errors_total",
                "counter",
                "connections closed 1011 by an unexpected server error",
                self.internal_errors,
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
        ]
        out: list[str] = []
        for name, kind, help_, value in rows:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.append(f"{name} {value}")
        return "\n".join(out) + "\n"
