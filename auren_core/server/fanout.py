"""Fan-out: one stream reader per process, shared frames, bounded per-client queues.

Each batch from the :class:`~auren_core.streams.reader.StreamReader` is applied to the shared
reducer, then encoded once per distinct filter (clients with the same ``types``/``agents``
share the bytes) and handed to every client:

* fast path: a client with an empty queue and a write buffer below the high-water mark
  gets the frame written straight to its socket (``websockets.broadcast``), like a bare
  broadcast loop;
* slow path: otherwise the frame joins the client's queue, drained by its own sender task
  that waits for the socket (back-pressure). A queue over ``max_frames`` or ``max_bytes``
  means the client cannot keep up: it is cut off with close code 4408 and a reason, its
  frames are dropped, and nobody else waits for it.

Memory is bounded: frames are shared bytes, each client holds at most ``max_bytes`` of
references plus one socket buffer.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from ..events import Event, Malformed
from ..streams.reader import Batch
from ..streams.shards import cursor_after, decode_cursor
from .metrics import Metrics
from .protocol import (
    CLOSE_SLOW_CONSUMER,
    Subscription,
    encode_event,
    error_frame,
    events_frame,
    events_frame_all,
    id_after,
    select,
)

__all__ = ["Client", "Hub", "Recent", "ReducerLike", "close_with_error"]

log = logging.getLogger("auren.server")

FilterKey = tuple[frozenset[str] | None, frozenset[str] | None]


class ReducerLike(Protocol):
    def apply_batch(
        self, items: list[Event | Malformed], *, last_id: str | None = ..., lag: int | None = ...
    ) -> Any: ...


class Client:
    """One subscribed connection: its filter, cursor and bounded send queue."""

    def __init__(
        self,
        ws: ServerConnection,
        sub: Subscription,
        metrics: Metrics,
        *,
        max_frames: int,
        max_bytes: int,
        high_water: int,
    ) -> None:
        self.ws = ws
        self.sub = sub
        self.metrics = metrics
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.high_water = high_water
        self.queue: deque[tuple[bytes, int]] = deque()
        self.queued_bytes = 0
        self.cursor = sub.since
        self.dead = False
        self.cut_reason = ""
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self.on_cut: Callable[[Client], None] | None = None  # the hub drops it at once
        self._closing: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name="auren-ws-sender")

    def can_write_now(self) -> bool:
        """Fast path allowed: nothing queued ahead and the socket is not backed up."""
        if self.queue or self.dead:
            return False
        transport = self.ws.transport
        return transport is not None and transport.get_write_buffer_size() < self.high_water

    def enqueue(self, frame: bytes, n: int) -> bool:
        """Queue a frame; False (and the client is cut off) when the queue is full."""
        if self.dead:
            return False
        if self.queue and (
            len(self.queue) >= self.max_frames or self.queued_bytes + len(frame) > self.max_bytes
        ):
            self.cut_off(
                f"slow consumer: send queue full ({len(self.queue)} frames, "
                f"{self.queued_bytes} bytes)"
            )
            return False
        self.queue.append((frame, n))
        self.queued_bytes += len(frame)
        self.metrics.queued_frames += 1
        self._wake.set()
        return True

    def queue_room(self) -> bool:
        return len(self.queue) < self.max_frames // 2 and self.queued_bytes < self.max_bytes // 2

    async def wait_room(self) -> None:
        """Back-pressure for pull-based sends (catch-up): wait until the queue is half empty."""
        while not self.dead and not self.queue_room():
            await asyncio.sleep(0.01)

    def cut_off(self, reason: str) -> None:
        if self.dead:
            return
        self.dead = True
        self.cut_reason = reason
        self.metrics.slow_disconnects += 1
        self.metrics.drops += len(self.queue)
        self.metrics.queued_frames -= len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        if self._sender is not None:
            self._sender.cancel()
        log.warning("cut off %s: %s", _peer(self.ws), reason)
        if self.on_cut is not None:
            self.on_cut(self)
        self._closing = asyncio.create_task(self._close(CLOSE_SLOW_CONSUMER, reason))

    def end(self, code: int, reason: str) -> None:
        """End the session (its token expired or was revoked): nothing more is sent but an
        error frame and the close; queued frames are discarded (not counted as drops)."""
        if self.dead:
            return
        self.dead = True
        self.metrics.queued_frames -= len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        if self._sender is not None:
            self._sender.cancel()
        if self.on_cut is not None:
            self.on_cut(self)
        self._closing = asyncio.create_task(close_with_error(self.ws, code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code, reason), 2.0)
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            if self.ws.transport is not None:
                self.ws.transport.abort()

    async def _send_loop(self) -> None:
        try:
            while True:
                while not self.queue:
                    self._wake.clear()
                    await self._wake.wait()
                frame, n = self.queue.popleft()
                self.queued_bytes -= len(frame)
                self.metrics.queued_frames -= 1
                await self.ws.send(frame, text=True)
                if n >= 0:
                    self.metrics.frames_sent += 1
                    self.metrics.deliveries += n
        except ConnectionClosed:
            pass

    async def stop(self) -> None:
        self.dead = True
        self.metrics.queued_frames -= len(self.queue)
        self.queue.clear()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await self._sender

    async def drained(self) -> None:
        """Wait until everything queued has been written (tests and shutdown)."""
        while self.queue and not self.dead:
            await asyncio.sleep(0.005)


async def close_with_error(ws: ServerConnection, code: int, reason: str) -> None:
    """``{"type":"error",...}`` then the close frame; the socket is dropped after 2 s."""
    try:
        await asyncio.wait_for(ws.send(error_frame(code, reason), text=True), 2.0)
        await asyncio.wait_for(ws.close(code, reason), 2.0)
    except (TimeoutError, ConnectionClosed, OSError):
        if ws.transport is not None:
            ws.transport.abort()


def _peer(ws: ServerConnection) -> str:
    try:
        return f"{ws.remote_address[0]}:{ws.remote_address[1]}"
    except (TypeError, IndexError):
        return "?"


def _id_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


class Recent:
    """The last ``size`` events the hub published, in stream order, encodings cached.

    Every event from the oldest one held up to the hub's ``last_id`` is here (the hub sees
    the stream in order), so a client whose cursor is at or after the oldest held id
    catches up from memory: no Redis read at all (a reconnect storm resumes from the last
    few seconds of the stream). Older cursors are read from Redis until they get here.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: list[tuple[int, int]] = []
        self._events: list[Event] = []
        self._encoded: list[bytes | None] = []
        self._start = 0
        self._frames: dict[tuple[int, int, FilterKey, str], tuple[bytes, int]] = {}
        self.served = 0  # catch-up pages served from memory

    def __len__(self) -> int:
        return len(self._events) - self._start

    def add(self, items: list[Event | Malformed]) -> None:
        if self.size <= 0:
            return
        self._frames.clear()  # positions move: frames are shared within one live step
        for it in items:
            if isinstance(it, Event) and it.stream_id:
                self._keys.append(_id_key(it.stream_id))
                self._events.append(it)
                self._encoded.append(None)
        excess = len(self) - self.size
        if excess > 0:
            self._start += excess
        if self._start > max(self.size, 4096):  # compact now and then: amortised O(1)
            del self._keys[: self._start], self._events[: self._start]
            del self._encoded[: self._start]
            self._start = 0

    def covers(self, cursor: str) -> bool:
        return len(self) > 0 and _id_key(cursor) >= self._keys[self._start]

    def after(
        self, cursor: str, sub: Subscription, last_id: str, limit: int = 1000
    ) -> tuple[bytes | None, int, str] | None:
        """The events frame of what ``sub`` wants after ``cursor`` (scanning at most
        ``limit`` events; None when nothing matches), its event count and the position it
        brings the client to; None when ``cursor`` is older than what is held. Clients
        resuming alike get the same frame bytes (one copy in memory, not one each)."""
        if not self.covers(cursor):
            return None
        self.served += 1
        i = bisect.bisect_right(self._keys, _id_key(cursor), lo=self._start)
        j = min(i + limit, len(self._events))
        last = last_id if j == len(self._events) else self._events[j - 1].stream_id
        key = (i - self._start, j - self._start, sub.key, last)
        cached = self._frames.get(key)
        if cached is not None:
            return cached[0], cached[1], last
        out: list[bytes] = []
        for k in range(i, j):
            ev = self._events[k]
            if sub.matches(ev):
                b = self._encoded[k]
                if b is None:
                    b = self._encoded[k] = encode_event(ev)
                out.append(b)
        if not out:
            return None, 0, last
        frame = events_frame(out, last)
        if len(self._frames) < 1024:
            self._frames[key] = (frame, len(out))
        return frame, len(out), last


class Hub:
    """Owns the live position (``last_id``) and the set of clients joined to it."""

    def __init__(
        self,
        metrics: Metrics,
        reducer: ReducerLike | None = None,
        recent: int = 20_000,
        shards: int = 1,
    ) -> None:
        """``shards > 1``: positions are cursors of every shard's id
        (:mod:`auren_core.streams.shards`), compared shard by shard."""
        self.metrics = metrics
        self.shards = shards
        self._after = id_after if shards == 1 else cursor_after
        self.reducer = reducer
        self.recent = Recent(recent)
        self.last_id: str | None = None
        self.ready = asyncio.Event()
        self.groups: dict[FilterKey, set[Client]] = defaultdict(set)
        self.pending: list[Client] = []  # clients whose cursor is ahead of last_id
        self.on_batch: list[Callable[[Batch], None]] = []

    @property
    def clients(self) -> int:
        return sum(len(g) for g in self.groups.values()) + len(self.pending)

    def join(self, client: Client) -> bool:
        """Join the live fan-out if the client's cursor has reached ``last_id``.

        Synchronous (no await): no batch can slip between the check and the join, so
        the seam between catch-up and live has no gap and no repeat.
        """
        assert self.last_id is not None
        if client.cursor == "now":
            client.cursor = self.last_id
        if self._after(self.last_id, client.cursor):
            return False  # still behind (on some shard): more catch-up needed
        client.on_cut = self.leave
        if self._after(client.cursor, self.last_id):
            self.pending.append(client)  # ahead of us (another server was faster)
        else:
            self.groups[client.sub.key].add(client)
        self.metrics.clients = self.clients
        return True

    def leave(self, client: Client) -> None:
        group = self.groups.get(client.sub.key)
        if group is not None:
            group.discard(client)
            if not group:
                del self.groups[client.sub.key]
        if client in self.pending:
            self.pending.remove(client)
        self.metrics.clients = self.clients

    def publish(self, batch: Batch) -> None:
        """Apply one batch to the reducer and hand its frames to every client."""
        items = batch.items
        m = self.metrics
        if items:
            m.events_in += len(items)
            m.rate.add(len(items))
            m.malformed += sum(1 for it in items if isinstance(it, Malformed))
        if items and (self.groups or self.pending):
            self._fan_out(items, batch.last_id, batch.shards)  # latency first: the reducer can wait
        self.last_id = batch.last_id
        self.recent.add(items)
        # same synchronous step: nobody can observe the fan-out before the reducer has it
        if self.reducer is not None and items:
            self.reducer.apply_batch(items, last_id=batch.last_id)
        for cb in self.on_batch:
            cb(batch)

    def _fan_out(
        self, items: list[Event | Malformed], last_id: str, shards: list[int] | None = None
    ) -> None:
        cache: dict[int, bytes] = {}

        def enc(evs: list[Event]) -> list[bytes]:
            out = []
            for ev in evs:
                b = cache.get(id(ev))
                if b is None:
                    b = cache[id(ev)] = encode_event(ev)
                out.append(b)
            return out

        m = self.metrics
        for clients in list(self.groups.values()):
            if not clients:
                continue
            sub = next(iter(clients)).sub
            evs = select(items, sub)
            if not evs:
                continue
            if sub.types is None and sub.agents is None:  # everything: one encoder call
                frame = events_frame_all(evs, last_id)
            else:
                frame = events_frame(enc(evs), last_id)
            n = len(evs)
            fast = []
            for c in list(clients):
                c.cursor = last_id
                if c.can_write_now():
                    fast.append(c.ws)
                else:
                    c.enqueue(frame, n)
            if fast:
                broadcast(fast, frame, text=True)
                m.frames_sent += len(fast)
                m.deliveries += n * len(fast)
        if self.pending:
            still: list[Client] = []
            for c in list(self.pending):
                if c.dead:
                    continue
                if self.shards > 1:
                    if self._pending_sharded(c, items, last_id, shards, enc):
                        still.append(c)
                    continue
                if not id_after(last_id, c.cursor):
                    still.append(c)
                    continue
                cur = c.cursor
                evs = [ev for ev in select(items, c.sub) if id_after(ev.stream_id, cur)]
                if evs:
                    c.enqueue(events_frame(enc(evs), last_id), len(evs))
                c.cursor = last_id
                if not c.dead:
                    self.groups[c.sub.key].add(c)
            self.pending = still

    def _pending_sharded(
        self,
        c: Client,
        items: list[Event | Malformed],
        last_id: str,
        shards: list[int] | None,
        enc: Callable[[list[Event]], list[bytes]],
    ) -> bool:
        """A client ahead of this server on some shard: hand it this batch's events that
        lie after its own id on their shard, move its cursor to the furthest of both on
        each shard, and join it once we are level everywhere. True: still pending."""
        from ..streams.entries import parse_stream_id
        from ..streams.shards import encode_cursor

        mine = decode_cursor(c.cursor, self.shards)
        hub = decode_cursor(last_id, self.shards)
        if shards is not None:
            keep = {
                id(it)
                for it, sh in zip(items, shards, strict=True)
                if isinstance(it, Event) and id_after(it.stream_id, mine[sh])
            }
            evs = [ev for ev in select(items, c.sub) if id(ev) in keep]
        else:
            evs = []
        merged = [max(a, b, key=parse_stream_id) for a, b in zip(mine, hub, strict=True)]
        cursor = encode_cursor(merged)
        if evs:
            c.enqueue(events_frame(enc(evs), cursor), len(evs))
        c.cursor = cursor
        if c.dead:
            return False
        if cursor_after(cursor, last_id):
            return True
        self.groups[c.sub.key].add(c)
        return False
