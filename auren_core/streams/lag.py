"""Lag: how many entries of the stream lie after a reader's position. Defined once here
for the dashboard worker, serve-ws and the stream reader alike.

A plain reader (XREAD, no consumer group) has no server-side lag figure, so it is counted:
``XINFO STREAM`` first (O(1); its last-generated-id says "caught up" in the common case,
and when even the oldest entry the stream holds lies after the position, its length is the
answer), else an exclusive ``XRANGE`` from the position, up to ``cap + 1`` entries. A
consumer group's lag is Redis's own (``XINFO GROUPS``, Redis 7+), shown by ``auren doctor``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .entries import entry_id, parse_stream_id

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["CAP", "LagProbe", "stream_lag"]

CAP = 10_000


async def stream_lag(client: aioredis.Redis, stream: str, last_id: str, cap: int = CAP) -> int:
    """Entries of ``stream`` after ``last_id``: exact up to ``cap``, ``cap + 1`` meaning
    "more than ``cap``". A missing stream is 0 behind. Redis errors propagate."""
    from redis.exceptions import ResponseError

    try:
        info: Any = await client.xinfo_stream(stream)
    except ResponseError:  # no such stream (yet)
        return 0
    pos = parse_stream_id(last_id)
    if parse_stream_id(entry_id(info["last-generated-id"])) <= pos:
        return 0
    first = info.get("first-entry")
    if first and parse_stream_id(entry_id(first[0])) > pos:
        return min(int(info.get("length") or 0), cap + 1)
    rest: Any = await client.xrange(stream, min=f"({last_id}", count=cap + 1)
    return len(rest or [])


class LagProbe:
    """:func:`stream_lag` for a moving position (``position()``, None before the first
    read), over one persistent connection made on first use in the caller's loop."""

    def __init__(
        self,
        redis_url: str,
        stream: str,
        position: Callable[[], str | None],
        *,
        cap: int = CAP,
        socket_timeout: float = 2.0,
    ) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.position = position
        self.cap = cap
        self.socket_timeout = socket_timeout
        self._client: aioredis.Redis | None = None

    async def __call__(self) -> int | None:
        last = self.position()
        if last is None:
            return None
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(
                self.redis_url, socket_timeout=self.socket_timeout
            )
        try:
            return await stream_lag(self._client, self.stream, last, self.cap)
        except Exception:
            await self.aclose()  # a fresh connection next time
            raise

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
