"""The stream side of the server: one reader, batch coalescing, lag measurement.

Functions over the :class:`~auren_core.server.app.Server` they serve (its hub, reducer,
metrics and config); started as tasks by ``Server.start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ..store.schema import maintenance_key
from ..streams.lag import CAP, stream_lag
from ..streams.reader import Batch
from ..streams.sharded_reader import make_reader
from ..streams.shards import decode_cursor, shard_keys

if TYPE_CHECKING:
    from .app import Server

__all__ = ["publish", "read_maintenance", "read_stream", "watch_lag"]


async def read_stream(server: Server) -> None:
    """The process's one stream reader: backfill the window, then tail and fan out."""

    def status(state: str, detail: str) -> None:
        server.metrics.reader_connected = state == "connected"
        with contextlib.suppress(Exception):
            server.reducer.set_connection(
                "live" if state == "connected" else "reconnecting", detail
            )

    reader = make_reader(
        server.config.redis_url,
        server.config.stream,
        server.config.shards,
        since=time.time() - server.config.window_s,
        on_status=status,
    )
    queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=16)

    async def pump() -> None:
        async for batch in reader.batches():
            await queue.put(batch)

    pump_task = asyncio.create_task(pump(), name="auren-ws-pump")
    loop = asyncio.get_running_loop()
    last_publish = 0.0
    try:
        while True:
            batches = [await queue.get()]
            # Coalesce: with many clients, one frame per client per interval (the
            # interval grows with the client count) costs far less than one per
            # XREAD reply, for at most ``coalesce_max_s`` of added latency.
            interval = min(
                server.config.coalesce_max_s,
                server.config.coalesce_per_client_s * server.hub.clients,
            )
            wait = last_publish + interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            while not queue.empty():
                batches.append(queue.get_nowait())
            last_publish = loop.time()
            publish(server, batches)
    finally:
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump_task


def publish(server: Server, batches: list[Batch]) -> None:
    """Merge coalesced batches into one and hand it to the hub."""
    if len(batches) == 1:
        batch = batches[0]
    else:
        items = [it for b in batches for it in b.items]
        last = batches[-1]
        shards = None
        if all(b.shards is not None or not b.items for b in batches) and any(
            b.shards is not None for b in batches
        ):
            shards = [sh for b in batches for sh in (b.shards or [])]
        batch = Batch(
            items, last.last_id, all(b.backfill for b in batches), last.received_at, shards
        )
    server.hub.publish(batch)
    server.remember(batch.items, batch.backfill)
    if not server.hub.ready.is_set() and any(not b.backfill or not b.items for b in batches):
        # live, or the end-of-backfill marker: the window's history is in the
        # reducer; freeze it out of the cyclic GC's way (shorter pauses while live)
        gc.collect()
        gc.freeze()
        server.hub.ready.set()


def _num(fields: dict[Any, Any], key: str) -> float:
    v = fields.get(key.encode(), fields.get(key, 0))
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


async def read_maintenance(server: Server) -> None:
    """The latest ``auren persist`` maintenance outcome (the hash the sink publishes) into
    the metrics."""
    assert server.aredis is not None
    fields: dict[Any, Any] = await server.aredis.hgetall(  # type: ignore[misc]
        maintenance_key(server.config.stream)
    )
    if not fields:
        return
    m = server.metrics
    m.maintenance_failing = int(_num(fields, "failing"))
    m.maintenance_failures_total = int(_num(fields, "failures_total"))
    m.maintenance_last_run = _num(fields, "last_run")
    m.maintenance_last_ok = _num(fields, "last_ok")


async def watch_lag(
    server: Server, every: float = 1.0, cap: int = CAP, maintenance_every: int = 5
) -> None:
    """Entries after the live position (:func:`~auren_core.streams.lag.stream_lag`), once
    a second, into the metrics and the reducer's health; every ``maintenance_every``
    seconds, the persist maintenance status (:func:`read_maintenance`)."""
    assert server.aredis is not None
    ticks = 0
    while True:
        await asyncio.sleep(every)
        if ticks % maintenance_every == 0:
            with contextlib.suppress(RedisError, OSError):
                await read_maintenance(server)
        ticks += 1
        last = server.hub.last_id
        if last is None:
            continue
        try:
            n = server.config.shards
            if n > 1:
                lag = 0
                for key, sid in zip(
                    shard_keys(server.config.stream, n), decode_cursor(last, n), strict=True
                ):
                    lag += await stream_lag(server.aredis, key, sid, cap)
            else:
                lag = await stream_lag(server.aredis, server.config.stream, last, cap)
        except (RedisError, OSError):
            continue  # the reader reports the outage; keep the last figure
        server.metrics.lag = lag
        server.reducer.apply_batch([], lag=lag)
