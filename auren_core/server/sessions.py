"""Authenticated sessions end with their token: at ``exp``, or when the family is revoked.

Every connection that authenticated is registered with its token's family and ``exp``:

* expiry: a timer at ``exp`` closes it with 4401 "token expired";
* revocation: ``RefreshStore`` publishes each revoked family on ``auren:auth:revoked``;
  every serve-ws process subscribes (one connection) and closes that family's sessions
  with 4401 "revoked" at once. Pub/sub can miss a message (the subscription was
  reconnecting, or the family was revoked by something that does not publish), so the
  process also polls the family keys of its open sessions (``MGET``, every
  ``revocation_poll_s``) and right after each (re)subscribe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..streams.shards import plain_url
from .auth import family_key, revocation_channel
from .protocol import CLOSE_UNAUTHORIZED

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .fanout import Client
    from .metrics import Metrics

__all__ = ["REASON_EXPIRED", "REASON_REVOKED", "Live", "SessionRegistry", "watch_revocations"]

log = logging.getLogger("auren.server")

REASON_EXPIRED = "token expired"
REASON_REVOKED = "revoked"


class Live:
    """One authenticated connection: its token's family and expiry, and its client."""

    __slots__ = ("client", "ended", "exp", "fam", "sub", "timer", "ws")

    def __init__(self, ws: ServerConnection, sub: str, fam: str | None, exp: float) -> None:
        self.ws = ws
        self.sub = sub
        self.fam = fam
        self.exp = exp
        self.client: Client | None = None  # once subscribed
        self.timer: asyncio.TimerHandle | None = None
        self.ended = False


class SessionRegistry:
    def __init__(
        self,
        metrics: Metrics,
        close: Callable[[ServerConnection, int, str], Coroutine[Any, Any, None]],
        clock: Callable[[], float],
    ) -> None:
        self.metrics = metrics
        self._close = close  # sends the error frame, then the close frame
        self._clock = clock  # wall clock (exp is wall-clock seconds)
        self.by_family: dict[str, set[Live]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, live: Live) -> None:
        loop = asyncio.get_running_loop()
        if live.fam is not None:
            self.by_family.setdefault(live.fam, set()).add(live)
        delay = live.exp - self._clock()
        live.timer = loop.call_later(max(delay, 0.0), self.end, live, REASON_EXPIRED)

    def remove(self, live: Live) -> None:
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if live.fam is not None:
            group = self.by_family.get(live.fam)
            if group is not None:
                group.discard(live)
                if not group:
                    del self.by_family[live.fam]

    def renew(self, live: Live, fam: str | None, exp: float) -> None:
        """The session goes on under a fresh token (its family and ``exp``)."""
        if live.ended:
            return
        self.remove(live)
        live.fam, live.exp = fam, exp
        self.add(live)
        self.metrics.sessions_renewed += 1

    def families(self) -> list[str]:
        return list(self.by_family)

    def revoke(self, fam: str) -> int:
        """End every session of ``fam``; returns how many."""
        group = list(self.by_family.get(fam, ()))
        for live in group:
            self.end(live, REASON_REVOKED)
        return len(group)

    def end(self, live: Live, reason: str) -> None:
        if live.ended:
            return
        live.ended = True
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if reason == REASON_EXPIRED:
            self.metrics.sessions_expired += 1
        else:
            self.metrics.sessions_revoked += 1
        if live.client is not None:
            live.client.end(CLOSE_UNAUTHORIZED, reason)
            return
        task = asyncio.create_task(self._close(live.ws, CLOSE_UNAUTHORIZED, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def poll_revoked(
    registry: SessionRegistry, r: aioredis.Redis, prefix: str, chunk: int = 500
) -> int:
    """Check the family keys of every open session; end the revoked ones."""
    fams = registry.families()
    ended = 0
    for i in range(0, len(fams), chunk):
        part = fams[i : i + chunk]
        keys = [family_key(f, prefix) for f in part]
        # a cluster client cannot MGET keys of different slots: one GET per slot group
        many = getattr(r, "mget_nonatomic", None) or r.mget
        values: Sequence[Any] = await many(keys)
        for fam, value in zip(part, values, strict=True):
            if value in (b"revoked", "revoked"):
                ended += registry.revoke(fam)
    return ended


async def watch_revocations(
    registry: SessionRegistry,
    redis_url: str,
    shared: aioredis.Redis,
    *,
    prefix: str,
    poll_every: float,
    retry_s: float = 1.0,
) -> None:
    """Pub/sub for promptness, polling for what pub/sub missed (see the module doc)."""

    async def poll_loop() -> None:
        while True:
            await asyncio.sleep(poll_every)
            try:
                await poll_revoked(registry, shared, prefix)
            except (RedisError, OSError) as exc:
                log.debug("revocation poll failed: %s", exc)

    poller = asyncio.create_task(poll_loop(), name="auren-ws-revocation-poll")
    channel = revocation_channel(prefix)
    try:
        while True:
            # pub/sub is cluster-wide: any node serves it (the first of a cluster URL's)
            sub = aioredis.Redis.from_url(
                plain_url(redis_url).split(",", 1)[0], socket_connect_timeout=5
            )
            pubsub = sub.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                await poll_revoked(registry, shared, prefix)  # anything missed meanwhile
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        registry.revoke(data.decode("utf-8", "replace"))
            except (RedisError, OSError) as exc:
                log.debug("revocation subscription lost: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await sub.aclose()
            await asyncio.sleep(retry_s)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
