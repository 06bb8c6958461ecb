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

Sources (``StreamReader`` for live data, :class:`ReplaySource` for
``--replay``, a list of recorded batches in tests) share one interface: ``batches()``,
``close()`` and an ``on_status`` attribute, so replayed history takes the same path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from textual.message import Message

from auren_core.events import Event, Malformed

from .agent_order import trim_state

if TYPE_CHECKING:  # the reader pulls in redis (~0.2 s): the app process never needs it
    from auren_core.reader import Batch

__all__ = [
    "AnalyticsUpdated",
    "ProcessWorker",
    "RecordedSource",
    "ReplaySource",
    "ReplaySpec",
    "Source",
    "StateUpdated",
    "StreamWorker",
    "WireLog",
    "WorkerFailed",
    "WorkerStats",
    "child_main",
    "lag_probe_for",
]

log = logging.getLogger("auren.tui.worker")


class Source(Protocol):
    on_status: Callable[[str, str], None] | None

    def batches(self) -> AsyncIterator[Batch]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What the worker itself has done (the reducer counts the rest)."""

    events_read: int = 0
    batches: int = 0
    backfill_done: bool = False
    last_batch_at: float | None = None  # time.monotonic()
    source: str = "stream"


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """``--replay FROM[..TO] --speed N`` as stream ids (inclusive; ``-``/``+`` = the ends)."""

    start_id: str = "-"
    end_id: str = "+"
    speed: float = 1.0


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


HISTORY_S = 7 * 86400.0  # the oldest event kept for analytics (the count bound comes first)
SHOWN = 40  # items per analytics list sent to the screen (the totals say how many more)


def _trim(result: dict[str, Any]) -> dict[str, Any]:
    """What the screen shows (:func:`auren_core.analytics.trim` to ``SHOWN``)."""
    from auren_core.analytics import trim

    return trim(result, SHOWN)


def run_analysis(
    items: Sequence[Event | Malformed], *, now: float, budget_usd_per_hour: float | None
) -> AnalyticsUpdated:
    """``analyze(items)`` as a message (an exception becomes the message's error)."""
    from auren_core.analytics import analysis

    t0 = time.perf_counter()
    try:
        result = analysis(items, now=now, budget_usd_per_hour=budget_usd_per_hour, shown=SHOWN)
    except Exception as exc:  # an analytics bug must not stop the stream: show it
        log.exception("analytics failed")
        return AnalyticsUpdated(None, time.perf_counter() - t0, len(items), f"{exc!r}"[:300])
    return AnalyticsUpdated(result, time.perf_counter() - t0, len(items))


class WorkerFailed(Message):
    """The worker died of a bug (never of an outage: those reconnect). ``restart_in``:
    seconds until a new worker process starts (None: it will not be restarted)."""

    def __init__(self, error: str, restart_in: float | None = None) -> None:
        super().__init__()
        self.error = error
        self.restart_in = restart_in


def restart_delay(failures: int) -> float:
    """Seconds before the ``failures``-th consecutive restart: 0.5 s doubling, at most 30 s
    (a worker that crashes at once must not spin a core)."""
    return float(min(RESTART_MAX_S, 0.5 * 2 ** max(0, failures - 1)))


RESTART_MAX_S = 30.0
HEALTHY_S = 30.0  # a worker that ran this long before dying starts the backoff afresh


class RecordedSource:
    """Batches given up front (tests, snapshots); then idle like a quiet stream."""

    def __init__(self, batches: Iterable[Batch], *, status: str = "connected") -> None:
        self._batches = list(batches)
        self._status = status
        self.on_status: Callable[[str, str], None] | None = None
        self._closed = asyncio.Event()

    async def batches(self) -> AsyncIterator[Batch]:
        if self.on_status is not None:
            self.on_status(self._status, "recorded events")
        for b in self._batches:
            yield b
        await self._closed.wait()

    async def close(self) -> None:
        self._closed.set()

    @classmethod
    def of(cls, items: Sequence[Event | Malformed], *, last_id: str = "") -> RecordedSource:
        sid = last_id or next((i.stream_id for i in reversed(items) if isinstance(i, Event)), "")
        from auren_core.reader import Batch

        return cls([Batch(list(items), sid, backfill=True), Batch([], sid, backfill=True)])


_STATUS = {"connected": "live", "reconnecting": "reconnecting", "connecting": "connecting"}


class StreamWorker:
    """Owns the reducer and the source; runs in a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        *,
        reducer: Callable[[], Any],
        source: Source,
        post: Callable[[Message], object],
        fps: float = 20.0,
        lag_probe: Callable[[], Any] | None = None,
        source_name: str = "stream",
        analytics_buffer: int = 50_000,
        analytics_every: float = 5.0,
    ) -> None:
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
        self._analytics_on = False
        self._analytics_now = False
        self._view: dict[str, Any] = {}  # trim_state() arguments: the table's order, pins
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
        self._dirty = True

    def set_analytics(self, active: bool) -> None:
        """Analyse now and then every ``analytics_every`` s (``True``), or stop."""
        self._analytics_on = active
        self._analytics_now = active

    def set_view(self, sort: str, reverse: bool, pin: Sequence[str] = ()) -> None:
        """The agents table's order and the agents an open screen shows: the states
        posted carry only those agents (:func:`~auren_tui.agent_order.trim_state`)."""
        self._view = {"sort": sort, "reverse": reverse, "pin": tuple(pin)}
        self._dirty = True

    def stats(self) -> WorkerStats:
        return WorkerStats(
            self._events, self._batches, self._backfill_done, self._last_batch, self.source_name
        )

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # a bug: show it in the app, never die silently
            log.exception("stream worker failed")
            self.post(WorkerFailed(f"{type(exc).__name__}: {exc}"))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_async = asyncio.Event()
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
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t  # re-raises a crash of the reader or the ticker
        stop.cancel()

    def _on_status(self, state: str, detail: str) -> None:
        self._status = (_STATUS.get(state, state), detail)
        if self.reducer is not None:
            self.reducer.set_connection(*self._status)
        self._dirty = True

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
            self._dirty = True

    def _new_reducer(self) -> None:
        self.reducer = self._make_reducer()
        if self._status is not None:
            self.reducer.set_connection(*self._status)

    async def _tick(self) -> None:
        last_post = 0.0
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            if self._pending:
                with self._pending_lock:
                    pending, self._pending = self._pending, []
                for fn in pending:
                    if self.reducer is not None:
                        fn(self.reducer)
            if self.reducer is None:
                if self.lazy_reducer:
                    continue
                self._new_reducer()
            if self._dirty or now - last_post >= 1.0:
                self._dirty = False
                last_post = now
                state = trim_state(self.reducer.state(), **self._view)
                self.post(StateUpdated(state, self.stats()))

    async def _analytics(self) -> None:
        """While wanted: analyse the recent events off this loop (a helper thread, so
        reading goes on), at most ~5% of the time (the gap grows with the cost), never
        during the backfill (it would slow it by a quarter, measured)."""
        next_at = 0.0
        while True:
            await asyncio.sleep(0.05)
            mono = time.monotonic()
            due = self._analytics_now or (self._analytics_on and mono >= next_at)
            if not due or self.reducer is None or not self._backfill_done:
                continue  # a backfill runs flat out: analyse what it read once it is done
            self._analytics_now = False
            now = self.reducer.clock()
            recent, cutoff = self._recent, now - max(HISTORY_S, self.reducer.window_s)
            while recent and _item_ts(recent[0]) < cutoff:
                recent.popleft()
            items = list(recent)
            budget = self.reducer.budget_usd_per_hour
            msg = await asyncio.to_thread(run_analysis, items, now=now, budget_usd_per_hour=budget)
            next_at = time.monotonic() + max(self.analytics_every, 20 * msg.took_s)
            self.post(msg)

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
                    self._dirty = True


def _item_ts(item: Event | Malformed) -> float:
    if isinstance(item, Event):
        return item.ts
    ms, _, _ = item.sid.partition("-")
    return int(ms) / 1000.0 if ms.isdigit() else 0.0


class ReplaySource:
    """Stream history from ``start_id`` to ``end_id`` (inclusive), paced by event time.

    ``speed`` 1.0 is real time, 10 ten times faster, 0 as fast as possible. :meth:`clock`
    is the replay's virtual time: give it to the reducer so windows, rates and "active
    in the last 5 minutes" mean what they meant then. When history runs out the clock
    stops at the last event and the source idles (the dashboard keeps the final state).
    """

    def __init__(
        self,
        redis_url: str,
        stream: str,
        *,
        start_id: str = "-",
        end_id: str = "+",
        speed: float = 1.0,
        chunk: int = 2000,
        slice_s: float = 0.05,
    ) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.start_id = start_id
        self.end_id = end_id
        self.speed = speed
        self.chunk = chunk
        self.slice_s = slice_s
        self.on_status: Callable[[str, str], None] | None = None
        self.done = False
        self._virtual: float | None = None
        self._anchor: tuple[float, float] | None = None  # (virtual ts, monotonic)
        self._closed = asyncio.Event()

    def clock(self) -> float:
        if self._virtual is None:
            # before the first event: the start of the range, never wall time (a reducer
            # window that has moved to "now" would count all of history as expired)
            ms = self.start_id.lstrip("(").partition("-")[0]
            return int(ms) / 1000.0 if ms.isdigit() else 0.0
        if self.done or self.speed <= 0 or self._anchor is None:
            return self._virtual
        v0, m0 = self._anchor
        return max(self._virtual, v0 + (time.monotonic() - m0) * self.speed)

    def _status(self, state: str, detail: str) -> None:
        if self.on_status is not None:
            self.on_status(state, detail)

    async def close(self) -> None:
        self._closed.set()

    async def _sleep_until(self, mono: float) -> None:
        delay = mono - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)

    async def _paced(self, items: list[Event | Malformed], last_id: str) -> AsyncIterator[Batch]:
        from auren_core.reader import Batch

        group: list[Event | Malformed] = []
        for item in items:
            ts = _item_ts(item)
            if self._anchor is None:
                self._anchor = (ts, time.monotonic())
            v0, m0 = self._anchor
            due = m0 + (ts - v0) / self.speed
            if group and due > time.monotonic() + self.slice_s:
                tail = group[-1]
                yield Batch(group, tail.stream_id if isinstance(tail, Event) else tail.sid)
                group = []
                await self._sleep_until(due)
            group.append(item)
            self._virtual = max(self._virtual or ts, ts)
        if group:
            yield Batch(group, last_id)

    async def batches(self) -> AsyncIterator[Batch]:
        import redis.asyncio as aioredis
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from auren_core.reader import Batch
        from auren_core.streams.backoff import reconnect_backoff
        from auren_core.streams.entries import decode_entries, entry_id

        backoff = reconnect_backoff()
        cursor, last_id, failures = self.start_id, "", 0
        client: aioredis.Redis | None = None
        while not self._closed.is_set():
            try:
                if client is None:
                    client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2.0)
                    await client.ping()
                    self._status("connected", f"replay x{self.speed:g}")
                entries: Any = await client.xrange(
                    self.stream, min=cursor, max=self.end_id, count=self.chunk
                )
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                self._status("reconnecting", f"{type(exc).__name__}: {exc}")
                if client is not None:
                    await client.aclose()
                client = None
                await self._sleep_until(time.monotonic() + backoff.compute(failures))
                continue
            failures = 0
            if entries:
                last_id = entry_id(entries[-1][0])
                cursor = "(" + last_id
                items = decode_entries(entries)
                if self.speed <= 0:
                    self._virtual = max(_item_ts(i) for i in items)
                    yield Batch(items, last_id)
                else:
                    async for b in self._paced(items, last_id):
                        yield b
            if len(entries or ()) < self.chunk:
                break
        if client is not None:
            await client.aclose()
        self.done = True
        self._status("connected", "replay finished")
        yield Batch([], last_id, backfill=True)
        await self._closed.wait()


# --------------------------------------------------------------------------- process mode
#
# Reading, decoding and reducing cost ~20-30 us an event in Python; in a thread they share
# one core (the GIL) with rendering. For a live stream the worker therefore runs the same
# StreamWorker in a child process and ships frozen states back over a pipe: the reducer
# gets a core of its own and the UI thread only unpickles a state (~4 ms) per frame.


class WireLog(NamedTuple):
    """A log line as shipped from the worker process (``summary`` already computed)."""

    sid: str
    id: str
    ts: float | None
    type: str
    agent: str | None
    run: str | None
    malformed: bool
    summary: str


MAX_ROWS_PER_FRAME = 500  # above ~10k ev/s at 20 Hz the tail shows a sample of the newest


def _new_rows(log: Sequence[Any], mark: tuple[str, str] | None) -> list[tuple[Any, ...]]:
    start = max(0, len(log) - MAX_ROWS_PER_FRAME)
    if mark is not None:
        for i in range(len(log) - 1, start - 1, -1):
            if (log[i].sid, log[i].id) == mark:
                start = i + 1
                break
    return [
        (e.sid, e.id, e.ts, e.type, e.agent, e.run, e.malformed, e.summary) for e in log[start:]
    ]


def child_main(argv: Sequence[str]) -> None:
    """Entry point of the worker process: config JSON in argv[1], frames on stdout."""
    import dataclasses
    import json
    import pickle
    import struct
    import sys

    cfg = json.loads(argv[1])
    out = sys.stdout.buffer
    latest: list[Any] = [None, None]  # newest state (or failure), newest analytics
    cond = threading.Condition()

    def writer() -> None:
        mark: tuple[str, str] | None = None
        while True:
            with cond:
                while latest == [None, None]:
                    cond.wait()
                slot = 0 if latest[0] is not None else 1
                msg, latest[slot] = latest[slot], None
            if isinstance(msg, AnalyticsUpdated):
                body = pickle.dumps(("analytics", msg.result, msg.took_s, msg.buffered, msg.error))
            elif isinstance(msg, StateUpdated):
                st = msg.state
                rows = _new_rows(st.log, mark)
                if st.log:
                    mark = (st.log[-1].sid, st.log[-1].id)
                body = pickle.dumps(("state", dataclasses.replace(st, log=()), rows, msg.stats), 5)
            else:
                body = pickle.dumps(("failed", getattr(msg, "error", "?")), 5)
            try:
                out.write(struct.pack("!I", len(body)) + body)
                out.flush()
            except OSError:  # the app has gone
                os._exit(0)

    def post(msg: Any) -> None:
        with cond:  # newest wins: a state not yet written is replaced (its rows are not lost)
            latest[1 if isinstance(msg, AnalyticsUpdated) else 0] = msg
            cond.notify()

    worker = _build_worker(cfg, post)
    import gc

    gc.freeze()  # as in the app: the reducer holds many long-lived objects; collect rarely
    gc.set_threshold(50_000, 20, 100)

    def watch_stdin() -> None:
        for line in sys.stdin.buffer:  # commands from the app, one a line
            if line.startswith(b"analytics "):
                worker.set_analytics(line.strip().endswith(b" on"))
            elif line.startswith(b"view "):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    v = json.loads(line[5:])
                    worker.set_view(str(v["sort"]), bool(v["reverse"]), [str(p) for p in v["pin"]])
        worker.stop(timeout=0)  # EOF: the app closed the pipe (or died)

    threading.Thread(target=writer, daemon=True).start()
    threading.Thread(target=watch_stdin, daemon=True).start()
    worker._run()
    with cond:
        while latest != [None, None]:
            cond.wait(0.05)


def _build_worker(cfg: dict[str, Any], post: Callable[[Any], object]) -> StreamWorker:
    from auren_core.state import make_reducer
    from auren_core.streams.sharded_reader import make_reader

    clock: Callable[[], float] = time.time
    lag_probe = None
    source: Source
    if cfg.get("replay"):
        start_id, end_id, speed = cfg["replay"]
        rs = ReplaySource(
            cfg["redis_url"], cfg["stream"], start_id=start_id, end_id=end_id, speed=speed
        )
        source, clock = rs, rs.clock
    else:
        since_s = cfg["since_s"]
        reader = make_reader(
            cfg["redis_url"],
            cfg["stream"],
            cfg.get("shards", 1),
            batch_count=5000,
            since=time.time() - since_s if since_s > 0 else None,
            start_id=cfg.get("start_id"),  # a restarted worker resumes after its last id
        )
        source, lag_probe = reader, lag_probe_for(reader)

    def reducer() -> Any:
        return make_reducer(clock=clock, **cfg["reducer"])

    worker = StreamWorker(
        reducer=reducer,
        source=source,
        post=post,
        fps=cfg["fps"],
        lag_probe=lag_probe,
        source_name=cfg["mode"],
    )
    worker.lazy_reducer = bool(cfg.get("replay"))
    return worker


def lag_probe_for(reader: Any) -> Callable[[], Any]:
    """The lag of ``reader``'s position (:class:`~auren_core.streams.lag.LagProbe`: one
    persistent connection, made on the worker's loop)."""
    from auren_core.streams.lag import LagProbe

    if hasattr(reader, "shard_lags"):  # a ShardedReader: the sum over its shards
        return reader.lag  # type: ignore[no-any-return]
    return LagProbe(reader.redis_url, reader.stream, lambda: reader.last_id)


def _close_quietly(f: Any) -> None:
    with contextlib.suppress(Exception):
        f.close()


class ProcessWorker:
    """Runs :func:`child_main` in a child process; posts its states into the app."""

    def __init__(
        self,
        config: dict[str, Any],
        post: Callable[[Message], object] | None = None,
        log_size: int = 2000,
    ) -> None:
        self.config = config
        self.post: Callable[[Message], object] = post or (lambda _m: None)
        self._log: collections.deque[WireLog] = collections.deque(maxlen=log_size)
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() vs a restart
        self._err: Any = None
        self._analytics = False
        self._view: dict[str, Any] | None = None
        self.last_id: str | None = None  # the newest entry the worker has applied
        self.restarts = 0
        self._spawned_at = 0.0

    def spawn(self) -> None:
        """Start the child now (``make_app`` does, so it boots while the UI does)."""
        import json
        import sys
        import tempfile
        import weakref

        if self._proc is not None:
            return
        if self._err is not None:
            _close_quietly(self._err)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        code = "import sys; from auren_tui.worker import child_main; child_main(sys.argv)"
        # the child imports auren_tui the way this process did (a checkout, a venv, ...)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
        )
        self._spawned_at = time.monotonic()
        # an app that is built but never run must not leave its child behind
        weakref.finalize(self, _close_quietly, self._proc.stdin)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        self.spawn()
        self._thread = threading.Thread(target=self._read, name="auren-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        """Read frames until the child exits; then, unless stopping, say so (the app shows
        the worker as dead) and start a new one after a backoff, resuming where it was."""
        failures = 0
        while True:
            self._read_child()
            if self._stopping.is_set():
                return
            assert self._proc is not None
            rc = self._proc.wait()
            lived = time.monotonic() - self._spawned_at
            failures = 1 if lived >= HEALTHY_S else failures + 1
            delay = restart_delay(failures)
            why = f"stream worker process exited ({rc}): {self._stderr_tail()}"
            log.info("%s; restarting in %.1fs", why, delay)  # shown by the app, not on stderr
            self.post(WorkerFailed(why, restart_in=delay))
            if self._stopping.wait(delay):
                return
            self._restart()

    def _restart(self) -> None:
        """A new child that misses nothing: with a backfill window it reads the window
        again (a fresh reducer needs it, and it holds everything after the last id); live
        only (no window), it resumes after the last id it applied."""
        if self.last_id and not self.config.get("replay") and not self.config.get("since_s"):
            self.config = dict(self.config, start_id=self.last_id)
        else:  # the new worker reads its history again: its log lines replace ours
            self._log.clear()
        with self._lock:
            if self._stopping.is_set():
                return
            old, self._proc = self._proc, None
            if old is not None:
                _close_quietly(old.stdout)
                _close_quietly(old.stdin)
            self.restarts += 1
            self.spawn()
        if self._view is not None:
            self.set_view(self._view["sort"], self._view["reverse"], self._view["pin"])
        if self._analytics:
            self.set_analytics(True)

    def _read_child(self) -> None:
        import dataclasses
        import pickle
        import struct

        assert self._proc is not None and self._proc.stdout is not None
        f = self._proc.stdout
        while True:
            head = f.read(4)
            if len(head) < 4:
                break
            body = f.read(struct.unpack("!I", head)[0])
            try:
                msg = pickle.loads(body)  # noqa: S301 - our own child process
            except Exception as exc:  # a frame cut short by the child's death
                log.debug("bad frame from the worker: %r", exc)
                break
            if msg[0] == "state":
                _, state, rows, stats = msg
                self._log.extend(WireLog(*r) for r in rows)
                if state.health.last_id:
                    self.last_id = state.health.last_id
                self.post(StateUpdated(dataclasses.replace(state, log=tuple(self._log)), stats))
            elif msg[0] == "analytics":
                self.post(AnalyticsUpdated(*msg[1:]))
            else:
                self.post(WorkerFailed(str(msg[1])))

    def set_analytics(self, active: bool) -> None:
        """Tell the child to analyse (``True``) or stop (a line on its stdin)."""
        self._analytics = active
        self._send(b"analytics on\n" if active else b"analytics off\n")

    def set_view(self, sort: str, reverse: bool, pin: Sequence[str] = ()) -> None:
        """As :meth:`StreamWorker.set_view`, in the child."""
        import json

        self._view = {"sort": sort, "reverse": reverse, "pin": list(pin)}
        self._send(b"view " + json.dumps(self._view).encode() + b"\n")

    def _send(self, line: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
        except (OSError, ValueError) as exc:  # the child has gone: the reader reports it
            log.debug("command not sent to the worker: %s", exc)

    def _stderr_tail(self) -> str:
        if self._err is None:
            return ""
        self._err.seek(0)
        lines = self._err.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._err is not None:
            self._err.close()
