"""Read every shard of a sharded stream (:mod:`auren_core.streams.shards`) as one.

The same contract as :class:`auren_core.streams.reader.StreamReader` (it yields
:class:`~auren_core.streams.reader.Batch` objects: backfill, an end-of-backfill marker, then the
tail), for N shard keys on a Redis Cluster (``redis+cluster://``) or on one server:

* one ``XREAD`` per shard key (never a cross-slot XREAD): during the backfill the shards are
  read in turn without blocking; live, one task per shard blocks on its own key;
* a k-way merge by event time (``ts``): the head with the smallest ``ts`` among the shards
  goes first. An entry waits for the other shards at most ``reorder_window_s`` after it
  arrived (the bounded reorder window: the latency it adds), then goes anyway. Within one
  shard the stream order is kept, so one run's events (one shard) stay in order;
* the resume position is a cursor (:func:`~auren_core.streams.shards.encode_cursor`) of
  every shard's last *delivered* id: ``Batch.last_id``; ``start_id`` takes such a cursor
  back (or a plain id, ``0-0``, ``$`` for every shard). Nothing is delivered twice and
  nothing the shards still hold is skipped across a resume or a reconnect.

Connection errors (a master down, a failover) are retried with backoff per shard by the
pumps; redis-py's cluster client follows MOVED/ASK and refreshes its slot map.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..events import Event, Malformed
from .backoff import reconnect_backoff
from .entries import decode_entries, entry_id, id_for_time, parse_stream_id
from .lag import CAP, stream_lag
from .reader import Batch
from .shards import async_client, decode_cursor, encode_cursor, shard_keys

__all__ = ["ShardedReader"]

log = logging.getLogger("auren.reader")

StatusCallback = Callable[[str, str], None]
_Entry = tuple[float, float, str, Event | Malformed]  # (ts, arrived, stream id, item)
# (RedisClusterException: no node of the cluster answers, which is not a RedisError)
_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, RedisError, RedisClusterException)


def _exclusive_before(sid: str) -> str:
    ms, seq = parse_stream_id(sid)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-18446744073709551615" if ms > 0 else "0-0"


class ShardedReader:
    """Backfill then tail N shard keys, merged by event time."""

    def __init__(
        self,
        redis_url: str,
        stream: str = "auren:events",
        shards: int = 2,
        *,
        since: float | None = None,
        start_id: str | None = None,
        block_ms: int = 1000,
        batch_count: int = 2000,
        reorder_window_s: float = 0.05,
        on_status: StatusCallback | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.keys = shard_keys(stream, shards)
        self.n = len(self.keys)
        self.since = since
        self.start_id = start_id
        self.block_ms = block_ms
        self.batch_count = batch_count
        self.window = reorder_window_s
        self.on_status = on_status
        # check a given cursor now: a bad one is the caller's mistake (CursorError)
        self._start = decode_cursor(start_id, self.n) if start_id is not None else None
        self.delivered: list[str] | None = None  # per shard: last id handed out
        self._read: list[str] = []  # per shard: last id read (queued or delivered)
        self._queues: list[collections.deque[_Entry]] = [
            collections.deque() for _ in range(self.n)
        ]
        self.connected = False
        self.reconnects = 0
        self._closed = False
        self._client: Any = None
        self._last_ts = 0.0

    # ------------------------------------------------------------------ basics
    @property
    def last_id(self) -> str | None:
        return encode_cursor(self.delivered) if self.delivered is not None else None

    def _cursor(self) -> str:
        return encode_cursor(list(self.delivered or []))

    def _status(self, state: str, detail: str = "") -> None:
        if self.on_status is not None:
            try:
                self.on_status(state, detail)
            except Exception:
                log.exception("status callback failed")

    def _new_client(self) -> Any:
        return async_client(
            self.redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=(self.block_ms / 1000.0) + 5.0,
        )

    async def close(self) -> None:
        """Stop: the generator ends at its next step; the connections close now."""
        self._closed = True
        await self._drop_client()

    async def _head(self, key: str) -> str:
        try:
            info: Any = await self._client.xinfo_stream(key)
        except ResponseError:
            return "0-0"  # no such stream yet
        return entry_id(info["last-generated-id"])

    async def _initial(self) -> list[str]:
        if self._start is not None:
            out = []
            for key, sid in zip(self.keys, self._start, strict=True):
                out.append(await self._head(key) if sid in ("$", "now") else sid)
            return out
        if self.since is not None:
            return [_exclusive_before(id_for_time(self.since))] * self.n
        return [await self._head(k) for k in self.keys]

    # ------------------------------------------------------------------ reading
    async def _xread(self, i: int, block: int | None) -> int:
        resp: Any = await self._client.xread(
            {self.keys[i]: self._read[i]}, count=self.batch_count, block=block
        )
        if not resp:
            return 0
        entries = resp[0][1] if isinstance(resp, list) else next(iter(resp.values()))[0]
        if not entries:
            return 0
        self._enqueue(i, entries)
        return len(entries)

    def _enqueue(self, i: int, entries: list[Any]) -> None:
        now = time.monotonic()
        q = self._queues[i]
        last_ts = self._last_ts
        for (sid, _f), item in zip(entries, decode_entries(entries), strict=True):
            ts = item.ts if isinstance(item, Event) else last_ts
            last_ts = ts
            q.append((ts, now, entry_id(sid), item))
        self._read[i] = entry_id(entries[-1][0])

    def _release(
        self, *, final: bool, exhausted: list[bool] | None = None
    ) -> tuple[list[Event | Malformed], list[int]]:
        """Merge what may go now: the smallest-``ts`` head while every shard has a head
        (or, backfilling, has no more; live, the head is older than the window)."""
        assert self.delivered is not None
        qs = self._queues
        out: list[Event | Malformed] = []
        origin: list[int] = []
        now = time.monotonic()
        while True:
            best = -1
            best_ts = 0.0
            missing = False
            for i, q in enumerate(qs):
                if q:
                    if best < 0 or q[0][0] < best_ts:
                        best, best_ts = i, q[0][0]
                elif exhausted is None or not exhausted[i]:
                    missing = True
            if best < 0:
                break
            if missing and not final and now - qs[best][0][1] < self.window:
                break
            ts, _arr, sid, item = qs[best].popleft()
            self.delivered[best] = sid
            if isinstance(item, Event):
                self._last_ts = ts
            out.append(item)
            origin.append(best)
        return out, origin

    def _oldest_wait(self) -> float | None:
        """Seconds until the oldest queued head leaves the window (None: nothing queued)."""
        heads = [q[0][1] for q in self._queues if q]
        if not heads:
            return None
        return max(0.0, min(heads) + self.window - time.monotonic())

    async def _connect(self) -> None:
        failures = 0
        backoff = reconnect_backoff()
        while not self._closed:
            try:
                if self._client is None:
                    self._client = self._new_client()
                await self._client.ping()
                if failures:
                    self.reconnects += 1
                self.connected = True
                self._status("connected", self.redis_url)
                return
            except _ERRORS as exc:
                failures += 1
                self.connected = False
                self._status("reconnecting", f"{type(exc).__name__}: {exc}")
                await self._drop_client()
                await asyncio.sleep(backoff.compute(failures))

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def batches(self) -> AsyncIterator[Batch]:
        """Yield batches until :meth:`close`: backfill (when ``since``), then live."""
        await self._connect()
        if self._closed:
            return
        if self.delivered is None:
            while True:
                try:
                    self.delivered = await self._initial()
                    break
                except _ERRORS as exc:
                    self._status("reconnecting", f"{type(exc).__name__}: {exc}")
                    await self._drop_client()
                    await asyncio.sleep(0.5)
                    await self._connect()
            self._read = list(self.delivered)
        if self.since is not None and self._start is None:
            async for b in self._backfill():
                yield b
        async for b in self._tail():
            yield b
        await self._drop_client()

    async def _backfill(self) -> AsyncIterator[Batch]:
        exhausted = [False] * self.n
        while not all(exhausted) and not self._closed:
            for i in range(self.n):
                if exhausted[i] or len(self._queues[i]) >= self.batch_count:
                    continue
                try:
                    got = await self._xread(i, None)
                except _ERRORS as exc:
                    self._status("reconnecting", f"{type(exc).__name__}: {exc}")
                    await self._drop_client()
                    await self._connect()
                    break
                if got < self.batch_count:
                    exhausted[i] = True
            items, origin = self._release(final=False, exhausted=exhausted)
            if items:
                yield Batch(items, self._cursor(), backfill=True, shards=origin)
        items, origin = self._release(final=True)
        if items:
            yield Batch(items, self._cursor(), backfill=True, shards=origin)
        yield Batch([], self._cursor(), backfill=True)

    async def _pump(self, i: int, wake: asyncio.Event) -> None:
        failures = 0
        backoff = reconnect_backoff()
        while not self._closed:
            if len(self._queues[i]) >= 4 * self.batch_count:
                await asyncio.sleep(0.01)  # the merge is behind: let it catch up
                continue
            try:
                client = self._client
                if client is None:
                    await asyncio.sleep(0.05)
                    continue
                got = await self._xread(i, self.block_ms)
                if failures:
                    self.reconnects += 1
                    self.connected = True
                    self._status("connected", self.redis_url)
                failures = 0
                if got:
                    wake.set()
            except asyncio.CancelledError:
                raise
            except _ERRORS as exc:
                failures += 1
                self.connected = False
                self._status("reconnecting", f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(backoff.compute(failures))

    async def _tail(self) -> AsyncIterator[Batch]:
        wake = asyncio.Event()
        pumps = [asyncio.create_task(self._pump(i, wake)) for i in range(self.n)]
        try:
            while not self._closed:
                wait = self._oldest_wait()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=1.0 if wait is None else wait)
                wake.clear()
                items, origin = self._release(final=False)
                if items:
                    yield Batch(items, self._cursor(), shards=origin)
        finally:
            for t in pumps:
                t.cancel()
            for t in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    # ------------------------------------------------------------------ lag
    async def shard_lags(self, cap: int = CAP) -> list[int] | None:
        """Entries after our position on each shard (None before the first read)."""
        if self.delivered is None:
            return None
        client = self._new_client()
        try:
            return [
                await stream_lag(client, k, sid, cap)
                for k, sid in zip(self.keys, self.delivered, strict=True)
            ]
        except _ERRORS:
            return None
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def lag(self, cap: int = CAP) -> int | None:
        lags = await self.shard_lags(cap)
        return None if lags is None else sum(lags)


def make_reader(
    redis_url: str, stream: str, shards: int = 1, **kw: Any
) -> Any:
    """A :class:`ShardedReader` for N > 1 shards or a cluster URL, else today's
    :class:`~auren_core.streams.reader.StreamReader` (same ``batches()``, ``close()`` and
    ``lag()``)."""
    from .reader import StreamReader
    from .shards import is_cluster_url

    if shards > 1 or is_cluster_url(redis_url):
        kw.pop("backfill_count", None)
        kw.pop("client_factory", None)
        return ShardedReader(redis_url, stream, shards, **kw)
    return StreamReader(redis_url, stream, **kw)
