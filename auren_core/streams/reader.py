"""Async stream reader: backfill, then tail, resuming from the last id after any outage.

Used by the dashboard worker and the WebSocket server alike. It yields :class:`Batch`
objects; each carries decoded events (or :class:`Malformed` values) and the last stream
id seen. Entries are decoded by :mod:`auren_core.streams.entries`, reconnects wait as
:mod:`auren_core.streams.backoff` says, lag is :mod:`auren_core.streams.lag`'s.

The reader owns the resume point: after a lost connection it reconnects with
exponential backoff and continues with ``XREAD`` from the last id it delivered,
so nothing the stream still holds is lost and nothing is repeated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..events import Event, Malformed
from .backoff import reconnect_backoff
from .entries import decode_entries, entry_id, id_for_time, parse_stream_id
from .lag import CAP, stream_lag

__all__ = ["Batch", "StreamReader", "id_for_time", "parse_stream_id"]

log = logging.getLogger("auren.reader")

StatusCallback = Callable[[str, str], None]


def _raw(response: Any, **_options: Any) -> Any:
    return response


def raw_xread_replies(client: aioredis.Redis) -> None:
    """XREAD replies as the parser (hiredis) returns them, without redis-py's per-entry
    dict (``pairs_to_dict``, about a fifth of a live tail's cost): RESP2 ``[[stream,
    entries]]`` or RESP3 ``{stream: entries}``, each entry ``[id, [field, value, ...]]``
    (:func:`xread_entries` takes either; :func:`~auren_core.streams.entries.entry_value`
    reads the flat field list)."""
    client.set_response_callback("XREAD", _raw)


def xread_entries(resp: Any) -> Any:
    """The entries of a one-stream raw XREAD reply (:func:`raw_xread_replies`), RESP2 or
    RESP3."""
    if isinstance(resp, dict):
        return next(iter(resp.values()))
    return resp[0][1]


@dataclass(slots=True)
class Batch:
    """Decoded entries in stream order; ``last_id`` is the position after them.
    ``backfill``: read while catching up on history (an empty one marks its end). Lag is
    not carried here: it is measured beside the reading (:mod:`auren_core.streams.lag`)."""

    items: list[Event | Malformed]
    last_id: str
    backfill: bool = False
    received_at: float = field(default_factory=time.time)
    # sharded streams: each item's shard index (ShardedReader); None for one stream
    shards: list[int] | None = None


class StreamReader:
    """Read one stream: optional backfill (time window or count), then tail forever."""

    def __init__(
        self,
        redis_url: str,
        stream: str = "auren:events",
        *,
        since: float | None = None,
        backfill_count: int | None = None,
        start_id: str | None = None,
        block_ms: int = 1000,
        batch_count: int = 2000,
        on_status: StatusCallback | None = None,
        client_factory: Callable[[], aioredis.Redis] | None = None,
    ) -> None:
        """``start_id``: resume after this id ("0-0" = everything, "$" = only new).
        Otherwise ``since`` (unix time) or ``backfill_count`` choose the backfill."""
        self.redis_url = redis_url
        self.stream = stream
        self.since = since
        self.backfill_count = backfill_count
        self.start_id = start_id
        self.block_ms = block_ms
        self.batch_count = batch_count
        self.on_status = on_status
        self._client_factory = client_factory
        self.last_id: str | None = None
        self.connected = False
        self.reconnects = 0
        self._closed = False
        self._backoff = reconnect_backoff()

    def _status(self, state: str, detail: str = "") -> None:
        if self.on_status is not None:
            try:
                self.on_status(state, detail)
            except Exception:
                log.exception("status callback failed")

    def _client(self) -> aioredis.Redis:
        if self._client_factory is not None:
            client = self._client_factory()  # ours too: the reader closes it
        else:
            client = aioredis.Redis.from_url(
                self.redis_url,
                socket_connect_timeout=2.0,
                socket_timeout=(self.block_ms / 1000.0) + 5.0,
                health_check_interval=0,
            )
        raw_xread_replies(client)  # every client of the reader: one reply shape
        return client

    async def close(self) -> None:
        self._closed = True

    async def _initial_id(self, client: aioredis.Redis) -> tuple[str, list[Batch]]:
        """Work out the backfill and return (resume id, backfill batches)."""
        if self.start_id is not None:
            if self.start_id == "$":
                info = (
                    await client.xinfo_stream(self.stream)
                    if await client.exists(self.stream)
                    else None
                )
                return (entry_id(info["last-generated-id"]) if info else "0-0"), []
            return self.start_id, []
        if self.backfill_count:
            entries: Any = await client.xrevrange(self.stream, count=self.backfill_count)
            entries = list(reversed(entries or []))
            if not entries:
                return "0-0", []
            return entry_id(entries[-1][0]), [
                Batch(decode_entries(entries), entry_id(entries[-1][0]), backfill=True)
            ]
        if self.since is not None:
            return self._exclusive_before(id_for_time(self.since)), []
        head = await self._head(client)
        return head or "0-0", []

    @staticmethod
    def _exclusive_before(sid: str) -> str:
        ms, seq = parse_stream_id(sid)
        if seq > 0:
            return f"{ms}-{seq - 1}"
        return f"{ms - 1}-18446744073709551615" if ms > 0 else "0-0"

    async def _head(self, client: aioredis.Redis) -> str | None:
        try:
            info = await client.xinfo_stream(self.stream)
        except ResponseError:
            return None  # no such stream yet
        return entry_id(info["last-generated-id"])

    async def batches(self) -> AsyncIterator[Batch]:
        """Yield batches forever (until :meth:`close`), surviving outages."""
        failures = 0
        client: aioredis.Redis | None = None
        backfilling = self.since is not None and self.start_id is None
        while not self._closed:
            try:
                if client is None:
                    client = self._client()
                    await client.ping()
                    if self.connected is False and failures:
                        self.reconnects += 1
                    self.connected = True
                    self._status("connected", self.redis_url)
                    failures = 0
                if self.last_id is None:
                    self.last_id, first = await self._initial_id(client)
                    for b in first:
                        yield b
                resp: Any = await client.xread(
                    {self.stream: self.last_id},
                    count=self.batch_count,
                    block=None if backfilling else self.block_ms,
                )
                if not resp:
                    if backfilling:
                        backfilling = False
                        yield Batch([], self.last_id, backfill=True)
                    continue
                entries = xread_entries(resp)
                items = decode_entries(entries)
                self.last_id = entry_id(entries[-1][0])
                yield Batch(items, self.last_id, backfill=backfilling)
                if backfilling and len(entries) < self.batch_count:
                    backfilling = False
                    yield Batch([], self.last_id, backfill=True)  # end-of-backfill marker
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                self.connected = False
                self._status("reconnecting", f"{type(exc).__name__}: {exc}")
                if client is not None:
                    try:
                        await client.aclose()
                    except Exception:
                        log.debug("close after failure failed", exc_info=True)
                    client = None
                await asyncio.sleep(self._backoff.compute(failures))
        if client is not None:
            await client.aclose()

    async def lag(self, cap: int = CAP) -> int | None:
        """Entries after our position (:func:`~auren_core.streams.lag.stream_lag`), on a
        connection of its own; None before the first read or when Redis does not answer."""
        if self.last_id is None:
            return None
        client = self._client()
        try:
            return await stream_lag(client, self.stream, self.last_id, cap)
        except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError):
            return None
        finally:
            await client.aclose()
