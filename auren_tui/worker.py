"""The one stream worker: read batches, apply them to the reducer, post frozen state.

It runs in its own thread with its own asyncio loop, so decoding and reducing never
block the UI thread. The reducer belongs to this thread alone; the UI only ever sees
the frozen :class:`~auren_core.state.DashboardState` objects carried by
:class:`StateUpdated` messages, posted on a timer (at most ``fps`` a second, at least
once a second so windows keep sliding) and collapsing in the app's queue when the UI
is busy. Nothing here touches a widget.

Analytics: the worker also keeps the most recent events (at most ``analytics_buffer``,
none older than ``HISTORY_S``: longer than the dashboard's window, so the forecast
gets a history of complete hours as the app runs or with ``--since``) and, while the
analytics screen asks for it, runs :func:`auren_core.analytics.analyze` on them in a
helper thread every ``analytics_every`` seconds (longer when one run costs more than 5%
of that), posting :class:`AnalyticsUpdated`. Nothing is analysed while nobody looks.

Sources: ``StreamReader`` for live data, and :mod:`auren_core.streams.replay`
(``--replay``, recorded batches in tests); :func:`build_worker` is the one factory, used
in-process by the app and in the child process (:mod:`auren_tui.process`). Messages are
in :mod:`auren_tui.messages`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from auren_core.events import Event, Malformed
from auren_core.streams.replay import ReplaySource, Source, item_ts

from .agent_order import trim_state
from .wire import WorkerStats

if TYPE_CHECKING:  # the reader pulls in redis (~0.2 s): the app process never needs it
    from .messages import AnalyticsUpdated

__all__ = [
    "StreamWorker",
    "build_worker",
    "lag_probe_for",
    "new_notifier",
    "restart_delay",
    "run_analysis",
]

log = logging.getLogger("auren.tui.worker")


# while the analytics screen is closed, the analysis still runs this often (or 20x its
# cost, if longer) so that token economics can show the top recommendation
TIP_EVERY_S = 30.0


HISTORY_S = 7 * 86400.0  # the oldest event kept for analytics (the count bound comes first)


SHOWN = 40  # items per analytics list sent to the screen (the totals say how many more)


def _trim(result: dict[str, Any]) -> dict[str, Any]:
    """What the screen shows (:func:`auren_core.analytics.trim` to ``SHOWN``)."""
    from auren_core.analytics import trim

    return trim(result, SHOWN)


def textual_messages() -> Any:
    """The app's message kinds (:mod:`auren_tui.messages`, Textual messages): what a worker
    in the app's process posts. The worker process posts :data:`auren_tui.wire.PLAIN`."""
    from . import messages

    return messages


def run_analysis(
    items: Sequence[Event | Malformed],
    *,
    now: float,
    budget_usd_per_hour: float | None,
    thresholds: dict[str, Any] | None = None,
    messages: Any = None,
) -> AnalyticsUpdated:
    """``analyze(items)`` as a message (an exception becomes the message's error), of
    ``messages``' kind (default: :func:`textual_messages`)."""
    from auren_core.analytics import analysis

    kind = (messages or textual_messages()).AnalyticsUpdated
    t0 = time.perf_counter()
    try:
        result = analysis(
            items,
            now=now,
            budget_usd_per_hour=budget_usd_per_hour,
            shown=SHOWN,
            thresholds=thresholds or None,
        )
    except Exception as exc:  # an analytics bug must not stop the stream: show it
        log.exception("analytics failed")
        error = f"{exc!r}"[:300]
        failed: AnalyticsUpdated = kind(None, time.perf_counter() - t0, len(items), error)
        return failed
    done: AnalyticsUpdated = kind(result, time.perf_counter() - t0, len(items))
    return done


def restart_delay(failures: int) -> float:
    """Seconds before the ``failures``-th consecutive restart: 0.5 s doubling, at most 30 s
    (a worker that crashes at once must not spin a core)."""
    return float(min(RESTART_MAX_S, 0.5 * 2 ** max(0, failures - 1)))


RESTART_MAX_S = 30.0


HEALTHY_S = 30.0  # a worker that ran this long before dying starts the backoff afresh


_STATUS = {"connected": "live", "reconnecting": "reconnecting", "connecting": "connecting"}


class StreamWorker:
    """Owns the reducer and the source; runs in a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        *,
        reducer: Callable[[], Any],
        source: Source,
        post: Callable[[Any], object],
        fps: float = 20.0,
        lag_probe: Callable[[], Any] | None = None,
        source_name: str = "stream",
        analytics_buffer: int = 50_000,
        analytics_every: float = 5.0,
        thresholds: dict[str, Any] | None = None,
        tip_every: float = TIP_EVERY_S,
        messages: Any = None,
    ) -> None:
        # the kinds of message posted: Textual ones in the app's process (the default),
        # plain ones in the worker process (auren_tui.wire.PLAIN: no Textual there)
        self.messages = messages if messages is not None else textual_messages()
        self._make_reducer = reducer
        self.reducer: Any = None
        self.source = source
        self.post = post
        self.interval = 1.0 / fps
        self.lag_probe = lag_probe
        self.source_name = source_name
        # replay: build the reducer only once the first events have set the virtual clock
        self.lazy_reducer = False
        self._status: tuple[str, str] | None = None
        self._events = 0
        self._batches = 0
        self._backfill_done = False
        self._last_batch: float | None = None
        self._lag: int | None = None
        self._dirty = True
        self._wake: asyncio.Event | None = None  # set (on the loop) when _dirty becomes true
        self._pending: list[Callable[[Any], None]] = []
        self._pending_lock = threading.Lock()
        self._stop_flag = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._recent: collections.deque[Event | Malformed] = collections.deque(
            maxlen=max(1, analytics_buffer)
        )
        self.analytics_every = analytics_every
        self.thresholds = dict(thresholds or {})  # [recommendations] of auren.toml
        self.tip_every = tip_every
        self._analytics_on = False
        self._analytics_now = False
        self._view: dict[str, Any] = {}  # trim_state() arguments: the table's order, pins
        # auren_core.alerts.AlertNotifier (--alert-webhook): analytics then run even while
        # no screen shows them, and each result's alerts go to the webhook
        self.notifier: Any = None
        source.on_status = self._on_status

    # ---------------------------------------------------------------- thread side
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="auren-stream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop_flag.set()
        loop, ev = self._loop, self._stop_async
        if loop is not None and ev is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(ev.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def call(self, fn: Callable[[Any], None]) -> None:
        """Run ``fn(reducer)`` on the worker thread before the next state is built
        (dropped while there is no reducer yet)."""
        with self._pending_lock:
            self._pending.append(fn)
        self._mark_dirty_threadsafe()

    def set_analytics(self, active: bool) -> None:
        """Analyse now and then every ``analytics_every`` s (``True``), or stop."""
        self._analytics_on = active
        self._analytics_now = active

    def set_view(self, sort: str, reverse: bool, pin: Sequence[str] = ()) -> None:
        """The agents table's order and the agents an open screen shows: the states
        posted carry only those agents (:func:`~auren_tui.agent_order.trim_state`)."""
        self._view = {"sort": sort, "reverse": reverse, "pin": tuple(pin)}
        self._mark_dirty_threadsafe()

    def _mark_dirty(self) -> None:
        """On the worker's loop: a new state is due (posted at once if the last one is
        older than the frame interval, else as soon as it is)."""
        self._dirty = True
        if self._wake is not None:
            self._wake.set()

    def _mark_dirty_threadsafe(self) -> None:
        loop = self._loop
        if loop is None:
            self._dirty = True
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(self._mark_dirty)

    def stats(self) -> WorkerStats:
        return WorkerStats(
            self._events, self._batches, self._backfill_done, self._last_batch, self.source_name
        )

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # a bug: show it in the app, never die silently
            log.exception("stream worker failed")
            self.post(self.messages.WorkerFailed(f"{type(exc).__name__}: {exc}"))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_async = asyncio.Event()
        self._wake = asyncio.Event()
        if self._stop_flag.is_set():
            return
        tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._tick()),
            asyncio.create_task(self._analytics()),
        ]
        if self.lag_probe is not None:
            tasks.append(asyncio.create_task(self._probe_lag()))
        stop = asyncio.create_task(self._stop_async.wait())
        await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await self.source.close()
        if self.notifier is not None:  # what is queued gets a second to go out
            await asyncio.to_thread(self.notifier.close, 1.0)
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t  # re-raises a crash of the reader or the ticker
        stop.cancel()

    def _on_status(self, state: str, detail: str) -> None:
        self._status = (_STATUS.get(state, state), detail)
        if self.reducer is not None:
            self.reducer.set_connection(*self._status)
        self._mark_dirty()

    async def _read(self) -> None:
        async for batch in self.source.batches():
            if self.reducer is None and (batch.items or not self.lazy_reducer):
                self._new_reducer()
            if batch.items:
                self.reducer.apply_batch(batch.items, last_id=batch.last_id, lag=self._lag)
                self._events += len(batch.items)
                self._recent.extend(batch.items)
            self._batches += 1
            self._last_batch = time.monotonic()
            if not batch.backfill or not batch.items:  # live data, or the end-of-backfill marker
                self._backfill_done = True
            self._mark_dirty()

    def _new_reducer(self) -> None:
        self.reducer = self._make_reducer()
        if self._status is not None:
            self.reducer.set_connection(*self._status)

    async def _tick(self) -> None:
        """Post a state as soon as something changed, at most ``fps`` a second (the one
        throttle: a change waits only for the rest of the frame interval, not for a
        fixed tick), and at least once a second so windows keep sliding."""
        last_post = 0.0
        wake = self._wake
        assert wake is not None
        while True:
            wait = max(0.0, last_post + self.interval - time.monotonic())
            if wait:
                await asyncio.sleep(wait)  # the frame interval since the last post
            if not self._dirty:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        wake.wait(), max(0.0, last_post + 1.0 - time.monotonic())
                    )
            wake.clear()
            now = time.monotonic()
            if self._pending:
                with self._pending_lock:
                    pending, self._pending = self._pending, []
                for fn in pending:
                    if self.reducer is not None:
                        fn(self.reducer)
            if self.reducer is None:
                if self.lazy_reducer:
                    last_post = now  # idle until events come (or a second passes)
                    continue
                self._new_reducer()
            if self._dirty or now - last_post >= 1.0:
                self._dirty = False
                last_post = now
                state = trim_state(self.reducer.state(), **self._view)
                self.post(self.messages.StateUpdated(state, self.stats()))

    async def _analytics(self) -> None:
        """While wanted: analyse the recent events off this loop (a helper thread, so
        reading goes on), at most ~5% of the time (the gap grows with the cost), never
        during the backfill (it would slow it by a quarter, measured). With the analytics
        screen closed: once the backfill is in, then every ``tip_every`` s (token
        economics' top recommendation)."""
        next_at = 0.0
        tip_at = 0.0
        while True:
            await asyncio.sleep(0.05)
            mono = time.monotonic()
            wanted = self._analytics_on or self.notifier is not None  # screen open or alerting
            due = self._analytics_now or (
                mono >= next_at if wanted else self.tip_every > 0 and mono >= tip_at
            )
            if not due or self.reducer is None or not self._backfill_done:
                continue  # a backfill runs flat out: analyse what it read once it is done
            self._analytics_now = False
            now = self.reducer.clock()
            recent, cutoff = self._recent, now - max(HISTORY_S, self.reducer.window_s)
            while recent and item_ts(recent[0]) < cutoff:
                recent.popleft()
            items = list(recent)
            budget = self.reducer.budget_usd_per_hour
            msg = await asyncio.to_thread(
                run_analysis,
                items,
                now=now,
                budget_usd_per_hour=budget,
                thresholds=self.thresholds,
                messages=self.messages,
            )
            next_at = time.monotonic() + max(self.analytics_every, 20 * msg.took_s)
            tip_at = time.monotonic() + max(self.tip_every, 20 * msg.took_s)
            if self.notifier is not None and msg.result is not None:
                try:  # decides in microseconds; the notifier's thread sends
                    self.notifier.evaluate(self.reducer.state().costs, msg.result, now)
                except Exception:  # an alerting bug must not stop the stream: log it
                    log.exception("alerts failed")
            self.post(msg)  # the screen when open; the economics pane's tip always

    async def _probe_lag(self) -> None:
        assert self.lag_probe is not None
        while True:
            await asyncio.sleep(1.0)
            try:
                lag = await self.lag_probe()
            except Exception as exc:  # outage: the reader reports it; keep the last figure
                log.debug("lag probe failed: %s", exc)
                continue
            if lag != self._lag:
                self._lag = lag
                if self.reducer is not None and lag is not None:
                    self.reducer.apply_batch([], lag=lag)  # no events: just the new lag
                    self._mark_dirty()


def build_worker(
    cfg: dict[str, Any],
    post: Callable[[Any], object],
    *,
    source: Source | None = None,
    clock: Callable[[], float] | None = None,
    messages: Any = None,
) -> StreamWorker:
    """The one worker factory, used in-process by the app and in the child process: a
    :class:`StreamWorker` over ``source`` (else a replay of ``cfg["replay"]``, else the live
    stream from ``cfg["since_s"]`` ago, or after ``cfg["start_id"]`` for a restart)."""
    from auren_core.state import make_reducer
    from auren_core.streams.sharded_reader import make_reader

    lag_probe = None
    if source is None and cfg.get("replay"):
        start_id, end_id, speed = cfg["replay"]
        rs = ReplaySource(
            cfg["redis_url"], cfg["stream"], start_id=start_id, end_id=end_id, speed=speed
        )
        source, clock = rs, clock or rs.clock
    elif source is None:
        since_s = cfg["since_s"]
        now = (clock or time.time)()
        reader = make_reader(  # one stream key, or every shard of a sharded stream
            cfg["redis_url"],
            cfg["stream"],
            cfg.get("shards", 1),
            batch_count=5000,
            since=now - since_s if since_s > 0 else None,
            start_id=cfg.get("start_id"),  # a restarted worker resumes after its last id
        )
        source, lag_probe = reader, lag_probe_for(reader)
    tick = clock or time.time

    def reducer() -> Any:
        return make_reducer(clock=tick, **cfg["reducer"])

    worker = StreamWorker(
        reducer=reducer,
        source=source,
        post=post,
        fps=cfg["fps"],
        lag_probe=lag_probe,
        source_name=cfg["mode"],
        thresholds=cfg.get("recommendations"),
        messages=messages,
    )
    # a replay's clock is unknown until its first events: the reducer waits for them
    worker.lazy_reducer = bool(cfg.get("replay"))
    if not cfg.get("replay"):
        worker.notifier = new_notifier(cfg.get("alert_webhook"))
    return worker


def new_notifier(url: str | None) -> Any:
    """An :class:`auren_core.alerts.AlertNotifier` for ``url`` (None without one)."""
    if not url:
        return None
    from auren_core.alerts import AlertNotifier

    return AlertNotifier(url, source="auren top")


def lag_probe_for(reader: Any) -> Callable[[], Any]:
    """The lag of ``reader``'s position (:class:`~auren_core.streams.lag.LagProbe`: one
    persistent connection, made on the worker's loop)."""
    from auren_core.streams.lag import LagProbe

    if hasattr(reader, "shard_lags"):  # a ShardedReader: the sum over its shards
        return reader.lag  # type: ignore[no-any-return]
    return LagProbe(reader.redis_url, reader.stream, lambda: reader.last_id)
