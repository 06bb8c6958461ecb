"""Where ``auren export`` reads events from: a stream's history (XRANGE in pages of raw
replies, validated like every reader) or the PostgreSQL event store plus its daily rollups for
days older than the detailed retention."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..events import Event, Malformed

__all__ = ["pg_events", "stream_events", "stream_start"]


def stream_events(
    redis_url: str,
    stream: str,
    since: float,
    until: float | None,
    agents: list[str],
    shards: int = 1,
) -> Iterator[Event | Malformed]:
    """The window's events; over N shards, each shard's merged by event time."""
    import heapq

    from ..streams.shards import shard_keys

    keys = shard_keys(stream, shards)
    if len(keys) == 1:
        return _from_key(redis_url, stream, since, until, agents)
    return heapq.merge(
        *(_from_key(redis_url, k, since, until, agents) for k in keys),
        key=lambda e: e.ts,  # type: ignore[union-attr]
    )


def _from_key(
    redis_url: str, stream: str, since: float, until: float | None, agents: list[str]
) -> Iterator[Event | Malformed]:
    from ..streams.entries import decode_entry, entry_id, id_for_time
    from ..streams.shards import sync_client

    r = sync_client(redis_url, socket_timeout=30)
    # raw replies ([id, [field, value, ...]]): redis-py's per-entry dict building would
    # otherwise cost more than decoding the events
    r.set_response_callback("XRANGE", lambda resp, **_: resp)
    start = id_for_time(since)
    end = "+" if until is None else f"({id_for_time(until)}"
    while True:
        entries: Any = r.xrange(stream, start, end, count=20_000)
        if not entries:
            return
        for sid, fields in entries:
            # validated like every reader's (top, serve-ws, persist): an entry the dashboard
            # counts as malformed is in no report either (auren_core.rules)
            ev = decode_entry(sid, fields)
            if isinstance(ev, Event) and (not agents or ev.agent in agents):
                yield ev
        start = f"({entry_id(entries[-1][0])}"


def stream_start(redis_url: str, stream: str, shards: int = 1) -> float | None:
    """Unix time of the oldest entry the stream still holds (None if empty); over N
    shards the latest of the shards' oldest (from then on every shard has its history)."""
    from ..streams.entries import entry_id, parse_stream_id
    from ..streams.shards import shard_keys, sync_client

    r = sync_client(redis_url, socket_timeout=5)
    starts: list[float] = []
    for key in shard_keys(stream, shards):
        first: Any = r.xrange(key, "-", "+", count=1)
        if first:
            starts.append(parse_stream_id(entry_id(first[0][0]))[0] / 1000.0)
    return max(starts) if starts else None


def pg_events(
    dsn: str, schema: str, since: float, until: float | None, agents: list[str]
) -> tuple[list[Event], list[dict[str, Any]]]:
    import asyncio

    import asyncpg

    from ..config import ConfigError
    from ..store.queries import fetch_aggregates, first_detail_day, iter_events

    async def go() -> tuple[list[Event], list[dict[str, Any]]]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            if not await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".events'):
                raise ConfigError(f"no event store in schema {schema!r}: run `auren persist`")
            out: list[Event] = []
            async for chunk in iter_events(
                conn, schema, since=since, until=until, agents=agents or None
            ):
                out.extend(chunk)
            # days older than the first detailed day come from the daily rollups
            first = await first_detail_day(conn, schema)
            day0 = since - since % 86400
            aggs: list[dict[str, Any]] = []
            if first is not None and first > day0:
                aggs = await fetch_aggregates(
                    conn, schema, since=day0, until=first, agents=agents or None
                )
            return out, aggs
        finally:
            await conn.close()

    return asyncio.run(go())
