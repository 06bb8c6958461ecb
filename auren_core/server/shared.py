"""Redis reads shared between subscribers, so a reconnect storm costs few connections.

* :class:`SingleFlight`: concurrent calls with the same key share one in-flight read
  (clients resuming from the same ``last_id`` after a restart: one ``XRANGE`` for all).
* :class:`KeyBatcher`: ``GET``s asked for in the same event-loop step become one
  ``MGET`` (the family check of every authenticating client).

Both run the read in a task of their own: a waiter that goes away (its client hung up)
cancels nothing the others wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["KeyBatcher", "SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}
        self.reads = 0  # reads started
        self.shared = 0  # calls served by a read another call started

    async def do(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        fut = self._flights.get(key)
        if fut is None:
            fut = asyncio.ensure_future(fn())
            self.reads += 1
            self._flights[key] = fut
            fut.add_done_callback(lambda _f, k=key: self._flights.pop(k, None))  # type: ignore[misc]
        else:
            self.shared += 1
        return await asyncio.shield(fut)


class KeyBatcher:
    """``get(key)`` values from one ``fetch(keys)`` per event-loop step (chunks of ``chunk``)."""

    def __init__(
        self, fetch: Callable[[Sequence[str]], Awaitable[Sequence[Any]]], chunk: int = 500
    ) -> None:
        self._fetch = fetch
        self._chunk = chunk
        self._pending: dict[str, list[asyncio.Future[Any]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def get(self, key: str) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.setdefault(key, []).append(fut)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        keys = list(pending)
        for i in range(0, len(keys), self._chunk):
            part = {k: pending[k] for k in keys[i : i + self._chunk]}
            task = asyncio.ensure_future(self._run(part))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, part: dict[str, list[asyncio.Future[Any]]]) -> None:
        self.batches += 1
        try:
            values = await self._fetch(list(part))
        except asyncio.CancelledError:
            for futs in part.values():
                for f in futs:
                    f.cancel()
            raise
        except Exception as exc:  # hand the failure to every waiter
            for futs in part.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            return
        for (_key, futs), value in zip(part.items(), values, strict=True):
            for f in futs:
                if not f.done():
                    f.set_result(value)
