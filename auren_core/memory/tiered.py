"""TieredMemory: one knowledge store over Redis -> PostgreSQL -> ChromaDB, observed.

A load tries the immediate cache (Redis), then structured full-text search
(PostgreSQL), then semantic search (ChromaDB); the first tier with an answer
serves it and, with ``promote=True``, the answer is copied upward (a Chroma hit
into PostgreSQL and the Redis cache, a PostgreSQL hit into the cache), so the same
question is answered from Redis next time.

Every load publishes ``memory_tier_access`` (tier, latency of exactly the tiers
tried, items, errors) and one ``knowledge_access`` per item (or one with
``hit=False`` for a knowledge gap) through the non-blocking auren Publisher,
stamped at load time and handed over in batches (see ``_events``).

A tier that fails or times out is recorded in ``errors`` and the read falls
through; the tier is then skipped with backoff (see ``_health``) and reconnected
lazily. Loads never raise. Saves write the durable tiers (PostgreSQL, ChromaDB),
invalidate the cache, and report per-tier failures in their result.

Async face: ``await mem.load(...)``. Sync face (CrewAI tools run in worker
threads): ``mem.load_sync(...)`` runs the same core on a private event loop thread.
Connections belong to one event loop (the "home" loop); a call from another
running loop is forwarded to it, and a home loop that has finished is replaced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..events.model import MemoryTierStorage
from ._chroma_tier import ChromaTier
from ._core import MAX_LIMIT, MAX_SCAN, RowLike, TierCore, query_hash, to_row
from ._events import EventSink, load_events
from ._health import TierHealth, describe
from ._loop import HomeLoop, WrongLoopError
from ._pg_tier import PostgresTier
from ._redis_tier import RedisTier
from ._types import TIERS, DeleteResult, ItemsResult, MemoryResult, SaveResult, TierName
from .embedding import Embedder, HashingEmbedder

if TYPE_CHECKING:
    from ..streams.publisher import Publisher

__all__ = ["MAX_LIMIT", "MAX_SCAN", "TieredMemory", "WrongLoopError", "query_hash"]

log = logging.getLogger("auren.memory")
T = TypeVar("T")


class TieredMemory(TierCore):
    """Knowledge store for AUREN agents over three real tiers; see the module doc.

    ``redis_url`` / ``pg_dsn`` may be None to run without that tier; ChromaDB is
    used when ``chroma_path`` or ``chroma_url`` is given. ``publisher=None`` uses
    the process publisher (``auren_core.emitter.get_publisher()``) on first load;
    ``track=False`` publishes nothing (benchmarks compare the two). A load's events
    reach the publisher at most ``event_linger_s`` later (batched: see ``_events``;
    0 = at once); ``flush_events()`` and ``close()`` hand them over now.
    ``chroma_max_distance`` (cosine distance) defaults to the embedder's own
    ``max_distance`` attribute, else 0.5.

    Storage: :meth:`storage_report` measures the bytes each tier holds and publishes a
    ``memory_tier_storage`` event; loads also trigger one at most every
    ``storage_every_s`` seconds (None or 0: never), run as a background task on the
    loop (a load never waits for it).
    """

    def __init__(
        self,
        redis_url: str | None,
        pg_dsn: str | None,
        chroma_path: str | None = None,
        chroma_url: str | None = None,
        publisher: Publisher | None = None,
        ttl_s: int = 3600,
        promote: bool = True,
        namespace: str = "auren",
        redact_queries: bool = False,
        embedder: Embedder | None = None,
        *,
        track: bool = True,
        pg_table: str = "auren_memory",
        chroma_max_distance: float | None = None,
        redis_timeout: float = 0.5,
        pg_timeout: float = 2.0,
        chroma_timeout: float = 5.0,
        backoff_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        tier_costs_usd: Mapping[str, float] | None = None,
        event_linger_s: float = 0.05,
        storage_every_s: float | None = 300.0,
    ) -> None:
        self.namespace = namespace
        self.promote = promote
        self.redact_queries = redact_queries
        self.track = track
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        self.events = EventSink(publisher, event_linger_s)
        self.tier_costs_usd = dict(tier_costs_usd or {})
        self.redis = RedisTier(redis_url, namespace, ttl_s, redis_timeout) if redis_url else None
        self.pg = (
            PostgresTier(pg_dsn, namespace, table=pg_table, timeout=pg_timeout) if pg_dsn else None
        )
        self.chroma = (
            ChromaTier(
                namespace,
                self.embedder,
                path=chroma_path,
                url=chroma_url,
                max_distance=(
                    chroma_max_distance
                    if chroma_max_distance is not None
                    else float(getattr(self.embedder, "max_distance", 0.5))
                ),
            )
            if (chroma_path or chroma_url)
            else None
        )
        self.timeouts: dict[TierName, float] = {
            "redis": redis_timeout,
            "postgresql": pg_timeout,
            "chromadb": chroma_timeout,
        }
        self.health: dict[TierName, TierHealth] = {
            t: TierHealth(backoff_s, backoff_cap_s) for t in ("redis", "postgresql", "chromadb")
        }
        self.storage_every_s = storage_every_s
        self._storage_due = 0.0  # monotonic time of the next automatic storage report
        self._storage_tasks: set[asyncio.Task[Any]] = set()
        self._loop = HomeLoop(self._drop_clients)
        # The first Chroma use imports chromadb and opens the store (~1 s): not a timeout.
        self._chroma_warm = False

    @classmethod
    def from_settings(cls, settings: Any = None, **kwargs: Any) -> TieredMemory:
        """Backends as every auren command resolves them: flags > env > auren.toml >
        embedded defaults (``auren_core.config`` and ``auren_core.backends``)."""
        from ..backends import resolve_chroma, resolve_postgres, resolve_redis
        from ..config import load_settings

        s = settings if settings is not None else load_settings()
        chroma = str(resolve_chroma(s).url)
        is_url = chroma.startswith(("http://", "https://"))
        path = chroma.removeprefix("file://")
        kwargs.setdefault("redact_queries", bool(getattr(s, "redact_queries", False)))
        # Per-access tier prices: [tier_costs] (USD per operation, the non-zero ones), and
        # the older "memory:<tier>" entries of tool_costs (which win where both are set).
        configured = getattr(s, "tier_costs", None)
        costs = {
            t: float(c)
            for t in TIERS
            if isinstance(c := getattr(configured, t, None), int | float) and c > 0
        }
        costs.update(
            {
                k.removeprefix("memory:"): float(v)
                for k, v in dict(getattr(s, "tool_costs", None) or {}).items()
                if k.startswith("memory:") and k.removeprefix("memory:") in TIERS
            }
        )
        if costs:
            kwargs.setdefault("tier_costs_usd", costs)
        return cls(
            resolve_redis(s).url,
            resolve_postgres(s).url,
            chroma_path=None if is_url else path,
            chroma_url=chroma if is_url else None,
            **kwargs,
        )

    # ------------------------------------------------------------------ event loops
    def _drop_clients(self) -> None:
        self.events.flush()  # the old loop's timer may never fire
        for tier in (self.redis, self.pg, self.chroma):
            if tier is not None:
                tier.drop()

    async def _run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return await self._loop.run(make)

    def _run_sync(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        return self._loop.run_sync(make, timeout)

    # ------------------------------------------------------------------ public API
    async def load(
        self, query: str, limit: int = 5, agent: str | None = None, *, run: str | None = None
    ) -> MemoryResult:
        """Answer ``query`` from the fastest tier that has it. Never raises."""
        try:
            return await self._run(lambda: self._load(query, limit, agent, run))
        except Exception as exc:  # only a bug or a dying loop gets here
            log.exception("auren memory: load failed")
            return MemoryResult([], "miss", {}, {"memory": describe(exc)})

    def load_sync(
        self,
        query: str,
        limit: int = 5,
        agent: str | None = None,
        *,
        run: str | None = None,
        timeout: float | None = None,
    ) -> MemoryResult:
        """Blocking :meth:`load` for threads without an event loop (CrewAI tools)."""
        budget = timeout if timeout is not None else self._budget()
        try:
            return self._run_sync(lambda: self._load(query, limit, agent, run), budget)
        except concurrent.futures.TimeoutError:
            return MemoryResult([], "miss", {}, {"memory": f"timed out after {budget:.1f}s"})
        except WrongLoopError:
            raise
        except Exception as exc:
            log.exception("auren memory: load_sync failed")
            return MemoryResult([], "miss", {}, {"memory": describe(exc)})

    async def save(
        self,
        item_id: str,
        text: str,
        metadata: dict[str, Any] | None = None,
        agent: str | None = None,
    ) -> SaveResult:
        """Store one item in PostgreSQL and ChromaDB and invalidate cached answers."""
        return await self.save_many([(item_id, text, metadata, agent)])

    async def save_many(self, items: Iterable[RowLike]) -> SaveResult:
        rows = [to_row(i) for i in items]
        return await self._run(lambda: self._save(rows))

    def save_sync(
        self,
        item_id: str,
        text: str,
        metadata: dict[str, Any] | None = None,
        agent: str | None = None,
    ) -> SaveResult:
        return self.save_many_sync([(item_id, text, metadata, agent)])

    def save_many_sync(self, items: Iterable[RowLike]) -> SaveResult:
        rows = [to_row(i) for i in items]
        return self._run_sync(lambda: self._save(rows), self._budget(len(rows)))

    # Stored items (not loads: no tier events). Used to manage what is stored, e.g.
    # by the CrewAI storage backend (get_record, list_records, delete, ...).
    async def get_items(self, ids: Iterable[str]) -> ItemsResult:
        """The stored items of these ids (missing ids are left out), from PostgreSQL,
        else ChromaDB. Never raises: ``ok`` is False when no tier could answer."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        return await self._run(lambda: self._get_items(wanted))

    def get_items_sync(self, ids: Iterable[str]) -> ItemsResult:
        wanted = list(dict.fromkeys(str(i) for i in ids))
        budget = self._budget() + 60
        try:
            return self._run_sync(lambda: self._get_items(wanted), budget)
        except concurrent.futures.TimeoutError:
            return ItemsResult([], None, {"memory": f"timed out after {budget:.1f}s"})

    async def list_items(self, limit: int = MAX_SCAN, offset: int = 0) -> ItemsResult:
        """Stored items of this namespace, most recently saved first (at most
        ``MAX_SCAN``), from PostgreSQL, else ChromaDB. Never raises."""
        return await self._run(lambda: self._list_items(limit, offset))

    def list_items_sync(self, limit: int = MAX_SCAN, offset: int = 0) -> ItemsResult:
        budget = self._budget() + 60
        try:
            return self._run_sync(lambda: self._list_items(limit, offset), budget)
        except concurrent.futures.TimeoutError:
            return ItemsResult([], None, {"memory": f"timed out after {budget:.1f}s"})

    async def delete_items(self, ids: Iterable[str]) -> DeleteResult:
        """Delete these items from PostgreSQL and ChromaDB and invalidate cached
        answers. ``deleted`` counts the items that were stored (per the first tier
        that took the delete); failing tiers are in ``errors``."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        return await self._run(lambda: self._delete_items(wanted))

    def delete_items_sync(self, ids: Iterable[str]) -> DeleteResult:
        wanted = list(dict.fromkeys(str(i) for i in ids))
        return self._run_sync(lambda: self._delete_items(wanted), self._budget() + 90)

    async def clear_cache(self) -> None:
        """Invalidate every cached answer of this namespace (all processes)."""
        if self.redis is not None:
            redis = self.redis
            await self._run(redis.invalidate)

    async def reset(self) -> dict[str, str]:
        """Delete every item of this namespace from all tiers (CrewAI's
        ``reset_memories``). Returns the errors of tiers that could not be reset."""
        return await self._run(self._reset)

    def reset_sync(self) -> dict[str, str]:
        return self._run_sync(self._reset, self._budget() + 30)

    async def connect(self) -> dict[str, str]:
        """Open every tier now (optional warm-up); returns the errors of those that failed."""
        return await self._run(self._connect)

    def connect_sync(self) -> dict[str, str]:
        return self._run_sync(self._connect, self._budget() + 10)

    async def storage_report(self) -> dict[str, Any]:
        """Measure the bytes each tier holds and publish them as ``memory_tier_storage``
        (through the load events' path, whatever ``track`` says: it is asked for).
        Returns the payload; a tier absent, failing or unmeasurable is None (unknown),
        never 0. Never raises."""
        payload = await self._run(self._storage_report)
        self.events.flush()
        return payload

    def storage_report_sync(self) -> dict[str, Any]:
        """Blocking :meth:`storage_report`."""
        payload = self._run_sync(self._storage_report, self._budget() + 30)
        self.events.flush()
        return payload

    async def _measure(
        self, tier: TierName, make: Callable[[], Coroutine[Any, Any, int | None]], timeout: float
    ) -> int | None:
        try:
            return await asyncio.wait_for(make(), timeout)
        except Exception as exc:
            log.debug("auren memory: cannot measure %s: %s", tier, describe(exc))
            return None

    async def _storage_report(self) -> dict[str, Any]:
        redis, pg, chroma = self.redis, self.pg, self.chroma
        budget = 10.0
        report = MemoryTierStorage(
            namespace=self.namespace,
            redis_bytes=None
            if redis is None
            else await self._measure("redis", redis.storage_bytes, budget),
            postgresql_bytes=None
            if pg is None
            else await self._measure("postgresql", pg.storage_bytes, budget),
            chromadb_bytes=None
            if chroma is None
            else await self._measure(
                "chromadb", lambda: asyncio.to_thread(chroma.storage_bytes), budget * 6
            ),
            postgresql_table=pg.table if pg is not None else None,
            chromadb_path=str(chroma.path)
            if chroma is not None and chroma.path and not chroma.url
            else None,
        )
        self.events.publish([("memory_tier_storage", report)], None, None)
        return report.to_dict()

    async def _close(self) -> None:
        for task in list(self._storage_tasks):  # a background report must not outlive us
            task.cancel()
        if self._storage_tasks:
            await asyncio.gather(*self._storage_tasks, return_exceptions=True)
        await super()._close()

    def _maybe_storage_report(self) -> None:
        """Start a background storage report when one is due (called by loads)."""
        every = self.storage_every_s
        if not every or every <= 0:
            return
        now = time.monotonic()
        if now < self._storage_due or self._storage_tasks:
            return
        self._storage_due = now + every
        try:
            task = asyncio.get_running_loop().create_task(self._storage_report())
        except RuntimeError:
            return
        self._storage_tasks.add(task)
        task.add_done_callback(self._storage_done)

    def _storage_done(self, task: asyncio.Task[Any]) -> None:
        self._storage_tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.debug("auren memory: storage report failed: %s", describe(exc))

    def flush_events(self) -> None:
        """Hand the events of past loads to the publisher now (they otherwise wait up
        to ``event_linger_s``). Then ``publisher.flush()`` waits until they are sent."""
        self.events.flush()

    async def aclose(self) -> None:
        """Close connections and the private loop thread (if any)."""
        self.events.flush()
        if self._loop.alive():
            try:
                await self._run(self._close)
            except Exception as exc:
                log.warning("auren memory: close failed: %s", describe(exc))
        self._loop.stop_private()

    def close(self) -> None:
        """Blocking :meth:`aclose` for sync callers."""
        self.events.flush()
        home = self._loop.home
        if home is not None and self._loop.alive():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if home is not running:
                try:
                    asyncio.run_coroutine_threadsafe(self._close(), home).result(5)
                except Exception as exc:
                    log.warning("auren memory: close failed: %s", describe(exc))
        self._loop.stop_private()

    def _budget(self, n: int = 1) -> float:
        return sum(self.timeouts.values()) * 2 + 15 + 0.01 * n

    @property
    def publish_errors(self) -> int:
        """Events that could not be handed to the publisher (none were waited for)."""
        return self.events.errors

    def _publish(
        self, query: str, result: MemoryResult, agent: str | None, run: str | None
    ) -> None:
        try:
            evs = load_events(
                query, result, redact_queries=self.redact_queries, tier_costs=self.tier_costs_usd
            )
        except Exception as exc:  # a bug here must not cost the caller its answer
            self.events.errors += 1
            log.warning("auren memory: cannot describe a load: %s", describe(exc))
            return
        self.events.publish(evs, agent, run)

    async def _load(
        self, query: str, limit: int, agent: str | None, run: str | None
    ) -> MemoryResult:
        result = await self._lookup(query, limit, agent)
        if self.track:
            self._publish(query, result, agent, run)
            self._maybe_storage_report()
        return result
