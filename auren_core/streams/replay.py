"""Event sources for a reducer loop, beside the live :class:`~.reader.StreamReader`: stream
history replayed at a chosen speed (:class:`ReplaySource`, ``auren top --replay``) and batches
given up front (:class:`RecordedSource`: tests, snapshots). All share one interface:
``batches()``, ``close()`` and an ``on_status`` attribute, so replayed history takes the
same path as live data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..events import Event, Malformed

if TYPE_CHECKING:  # the reader pulls in redis (~0.2 s): a UI process never needs it
    from .reader import Batch

log = logging.getLogger("auren.streams.replay")

__all__ = ["RecordedSource", "ReplaySource", "ReplaySpec", "Source", "item_ts"]


class Source(Protocol):
    on_status: Callable[[str, str], None] | None

    def batches(self) -> AsyncIterator[Batch]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """``--replay FROM[..TO] --speed N`` as stream ids (inclusive; ``-``/``+`` = the ends)."""

    start_id: str = "-"
    end_id: str = "+"
    speed: float = 1.0


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
        from .reader import Batch

        return cls([Batch(list(items), sid, backfill=True), Batch([], sid, backfill=True)])


def item_ts(item: Event | Malformed) -> float:
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
        from .reader import Batch

        group: list[Event | Malformed] = []
        for item in items:
            ts = item_ts(item)
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

        from auren_core.streams.backoff import reconnect_backoff
        from auren_core.streams.entries import decode_entries, entry_id

        from .reader import Batch

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
                    self._virtual = max(item_ts(i) for i in items)
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

