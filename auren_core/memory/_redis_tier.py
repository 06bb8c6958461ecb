"""Tier 1: Redis, the immediate cache of query results (TTL).

Keys: ``<ns>:mem:gen`` (a generation counter) and ``<ns>:mem:q:<gen>:<hash(query)>``
(a JSON list of items). Every save bumps the generation, so a cached answer never
outlives new knowledge, in every process sharing the Redis, without scanning keys.
A read is one round trip: a small Lua script reads the generation and the entry.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry  # the asyncio client takes the asyncio Retry
from redis.backoff import NoBackoff

from ._types import MemoryItem

__all__ = ["RedisTier"]

_GET = """
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('GET', ARGV[1] .. g .. ':' .. ARGV[2])}
"""


class RedisTier:
    name = "redis"

    def __init__(self, url: str, namespace: str, ttl_s: int, timeout: float) -> None:
        self.url = url
        self.ttl_s = max(1, int(ttl_s))
        self.timeout = timeout
        self.gen_key = f"{namespace}:mem:gen"
        self.q_prefix = f"{namespace}:mem:q:"
        self._client: aioredis.Redis | None = None
        self._script: Any = None

    def _get_client(self) -> aioredis.Redis:
        if self._client is None:
            # No client-side retries: a failure must fall through to the next tier now.
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            self._script = self._client.register_script(_GET)
        return self._client

    async def get(self, qhash: str, limit: int) -> tuple[list[MemoryItem] | None, int]:
        """Cached items for the query (None on a cache miss) and the generation read."""
        self._get_client()
        gen_raw, raw = await self._script(keys=[self.gen_key], args=[self.q_prefix, qhash])
        gen = int(gen_raw)
        if raw is None:
            return None, gen
        doc = orjson.loads(raw)
        items = doc["i"]
        # An entry made for a smaller limit answers a bigger one only if it was complete.
        if limit > doc["l"] and len(items) >= doc["l"]:
            return None, gen
        return [
            MemoryItem(id=i[0], text=i[1], metadata=i[2] or {}, score=i[3], source="redis")
            for i in items[:limit]
        ], gen

    async def put(self, qhash: str, gen: int, limit: int, items: list[MemoryItem]) -> None:
        doc = {"l": limit, "i": [[i.id, i.text, i.metadata or None, i.score] for i in items]}
        await self._get_client().set(
            f"{self.q_prefix}{gen}:{qhash}", orjson.dumps(doc), ex=self.ttl_s
        )

    async def storage_bytes(self, max_keys: int = 100_000, batch: int = 500) -> int | None:
        """Bytes this namespace's keys use (sum of MEMORY USAGE over ``SCAN MATCH
        <ns>:mem:*``, pipelined per batch). At most ``max_keys`` keys are measured: beyond
        that the size is unknown (None), never a partial sum passed off as the whole."""
        client = self._get_client()
        total = 0
        seen = 0
        cursor: int = 0
        match = self.gen_key.removesuffix("gen") + "*"
        while True:
            cursor, keys = await client.scan(cursor=cursor, match=match, count=batch)
            if keys:
                seen += len(keys)
                if seen > max_keys:
                    return None
                pipe = client.pipeline(transaction=False)
                for k in keys:
                    pipe.memory_usage(k, samples=0)
                total += sum(int(v) for v in await pipe.execute() if v is not None)
            if int(cursor) == 0:
                return total

    async def invalidate(self) -> None:
        """Forget every cached query of this namespace (bump the generation)."""
        await self._get_client().incr(self.gen_key)

    def drop(self) -> None:
        """Forget the client without awaiting (its loop may be gone)."""
        self._client = None
        self._script = None

    async def close(self) -> None:
        client, self._client = self._client, None
        self._script = None
        if client is not None:
            await client.aclose()
