"""The read/write core of the tiered memory: one operation per tier under its
timeout, the read order with fall-through and promotion, saves, resets.

:class:`TierCore` holds no event-loop or event logic (that is
:class:`~auren_core.memory.tiered.TieredMemory`); it never raises from a read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ._chroma_tier import ChromaTier
from ._health import TierHealth, describe
from ._pg_tier import PostgresTier
from ._redis_tier import RedisTier
from ._types import (
    TIER_EVENT_NAMES,
    DeleteResult,
    ItemsResult,
    MemoryItem,
    MemoryResult,
    SaveResult,
    StoredItem,
    TierName,
)

__all__ = ["MAX_LIMIT", "MAX_SCAN", "Row", "RowLike", "TierCore", "query_hash", "to_row"]

log = logging.getLogger("auren.memory")
T = TypeVar("T")
Row = tuple[str, str, dict[str, Any] | None, str | None]
# What save_many accepts: a MemoryItem or (id, text[, metadata[, agent]]).
RowLike = MemoryItem | Sequence[Any]
MAX_LIMIT = 100  # items per load: a tool argument, so bounded
MAX_SCAN = 50_000  # items per listing
SCAN_TIMEOUT = 30.0  # listings and deletes are not reads on an agent's path


def query_hash(query: str) -> str:
    """Stable key of a query: whitespace- and case-insensitive."""
    norm = " ".join(query.lower().split())
    return hashlib.blake2b(norm.encode(), digest_size=16).hexdigest()


class TierCore:
    """The tiers and what is done with them (state is set up by TieredMemory)."""

    redis: RedisTier | None
    pg: PostgresTier | None
    chroma: ChromaTier | None
    promote: bool
    timeouts: dict[TierName, float]
    health: dict[TierName, TierHealth]
    _chroma_warm: bool

    async def _tier_call(
        self,
        tier: TierName,
        make: Callable[[], Awaitable[T]],
        errors: dict[str, str],
        timeout: float | None = None,
    ) -> tuple[bool, T | None]:
        """Run one tier operation under its timeout; record a failure, never raise."""
        health = self.health[tier]
        try:
            async with asyncio.timeout(timeout or self.timeouts[tier]):
                value = await make()
        except Exception as exc:
            err = describe(exc) if not isinstance(exc, TimeoutError) else "timeout"
            errors[tier] = err
            if tier == "postgresql" and PostgresTier.query_error(exc):
                log.debug("auren memory: postgresql refused a request: %s", err)
            else:
                health.failed(err)
                log.debug("auren memory: %s failed: %s", tier, err)
            return False, None
        health.ok()
        return True, value

    async def _lookup(self, query: str, limit: int, agent: str | None) -> MemoryResult:
        """Try the tiers in order; promote a lower tier's answer. Never raises."""
        limit = min(MAX_LIMIT, max(1, int(limit)))
        lat: dict[str, float] = {}
        errors: dict[str, str] = {}
        items: list[MemoryItem] = []
        served: TierName | None = None
        qhash = query_hash(query)
        gen: int | None = None
        clock = time.perf_counter

        if self.redis is not None:
            if self.health["redis"].available():
                redis = self.redis
                t0 = clock()
                ok, got = await self._tier_call("redis", lambda: redis.get(qhash, limit), errors)
                lat["redis"] = (clock() - t0) * 1000
                if ok and got is not None:
                    cached, gen = got
                    if cached is not None:
                        items, served = cached, "redis"
            else:
                errors["redis"] = self.health["redis"].skipped_reason()

        if served is None and self.pg is not None:
            if self.health["postgresql"].available():
                pg = self.pg
                t0 = clock()
                ok, rows = await self._tier_call(
                    "postgresql",
                    lambda: pg.search(query, limit),
                    errors,
                    None if pg._pool is not None else self.timeouts["postgresql"] * 2,
                )
                lat["postgresql"] = (clock() - t0) * 1000
                if ok and rows:
                    items, served = rows, "postgresql"
            else:
                errors["postgresql"] = self.health["postgresql"].skipped_reason()

        if served is None and self.chroma is not None:
            if self.health["chromadb"].available():
                chroma = self.chroma
                t0 = clock()
                ok, hits = await self._tier_call(
                    "chromadb",
                    lambda: asyncio.to_thread(chroma.search, query, limit),
                    errors,
                    None if self._chroma_warm else 60.0,
                )
                lat["chromadb"] = (clock() - t0) * 1000
                self._chroma_warm = self._chroma_warm or ok
                if ok and hits:
                    items, served = hits, "chromadb"
            else:
                errors["chromadb"] = self.health["chromadb"].skipped_reason()

        if served is not None and served != "redis" and self.promote:
            await self._promote(served, qhash, gen, limit, items, agent, errors)

        tier = TIER_EVENT_NAMES[served] if served is not None else "miss"
        return MemoryResult(items, tier, lat, errors)

    async def _promote(
        self,
        served: TierName,
        qhash: str,
        gen: int | None,
        limit: int,
        items: list[MemoryItem],
        agent: str | None,
        errors: dict[str, str],
    ) -> None:
        """Copy a lower tier's answer upward. Failures are recorded, never raised."""
        if served == "chromadb" and self.pg is not None and self.health["postgresql"].available():
            pg = self.pg
            rows: list[Row] = [(i.id, i.text, i.metadata, agent) for i in items]
            perr: dict[str, str] = {}
            await self._tier_call("postgresql", lambda: pg.upsert(rows, overwrite=False), perr)
            if perr:
                errors.setdefault("postgresql", "promote: " + perr["postgresql"])
        if gen is not None and self.redis is not None:
            redis = self.redis
            rerr: dict[str, str] = {}
            await self._tier_call("redis", lambda: redis.put(qhash, gen, limit, items), rerr)
            if rerr:
                errors.setdefault("redis", "promote: " + rerr["redis"])

    async def _save(self, rows: list[Row]) -> SaveResult:
        errors: dict[str, str] = {}
        written: list[TierName] = []
        if not rows:
            return SaveResult([], [], {})
        budget = 30.0 + len(rows) * 0.01  # bulk loads are not reads: a generous bound
        jobs: list[tuple[TierName, Callable[[], Awaitable[Any]]]] = []
        if self.pg is not None:
            pg = self.pg
            jobs.append(("postgresql", lambda: pg.upsert(rows)))
        if self.chroma is not None:
            chroma = self.chroma
            jobs.append(("chromadb", lambda: asyncio.to_thread(chroma.upsert, rows)))
        results = await asyncio.gather(
            *(self._tier_call(t, make, errors, budget) for t, make in jobs)
        )
        written = [t for (t, _), (ok, _) in zip(jobs, results, strict=True) if ok]
        if self.chroma is not None and "chromadb" in written:
            self._chroma_warm = True
        if self.redis is not None:
            redis = self.redis
            ok, _ = await self._tier_call("redis", redis.invalidate, errors)
            if not ok:
                log.warning("auren memory: cache not invalidated: %s", errors.get("redis"))
        if not written:
            log.warning("auren memory: save of %d item(s) reached no tier: %s", len(rows), errors)
        return SaveResult([r[0] for r in rows], written, errors)

    async def _get_items(self, ids: list[str]) -> ItemsResult:
        """Stored items by id: from PostgreSQL, else (absent or failing) ChromaDB."""

        def from_pg(pg: PostgresTier) -> Callable[[], Awaitable[list[StoredItem]]]:
            return lambda: pg.get(ids, SCAN_TIMEOUT)

        def from_chroma(chroma: ChromaTier) -> Callable[[], Awaitable[list[StoredItem]]]:
            return lambda: asyncio.to_thread(chroma.get, ids)

        if not ids:
            return ItemsResult([], "postgresql" if self.pg is not None else None)
        return await self._durable_read(from_pg, from_chroma)

    async def _list_items(self, limit: int, offset: int) -> ItemsResult:
        """Stored items, most recently saved first: PostgreSQL, else ChromaDB."""
        limit = min(MAX_SCAN, max(0, int(limit)))
        offset = max(0, int(offset))

        def from_pg(pg: PostgresTier) -> Callable[[], Awaitable[list[StoredItem]]]:
            return lambda: pg.scan(limit, offset, SCAN_TIMEOUT)

        def from_chroma(chroma: ChromaTier) -> Callable[[], Awaitable[list[StoredItem]]]:
            return lambda: asyncio.to_thread(chroma.scan, limit, offset)

        return await self._durable_read(from_pg, from_chroma)

    async def _durable_read(
        self,
        from_pg: Callable[[PostgresTier], Callable[[], Awaitable[list[StoredItem]]]],
        from_chroma: Callable[[ChromaTier], Callable[[], Awaitable[list[StoredItem]]]],
    ) -> ItemsResult:
        errors: dict[str, str] = {}
        if self.pg is not None:
            if self.health["postgresql"].available():
                ok, rows = await self._tier_call(
                    "postgresql", from_pg(self.pg), errors, SCAN_TIMEOUT
                )
                if ok:
                    return ItemsResult(rows or [], "postgresql", errors)
            else:
                errors["postgresql"] = self.health["postgresql"].skipped_reason()
        if self.chroma is not None:
            if self.health["chromadb"].available():
                ok, rows = await self._tier_call(
                    "chromadb", from_chroma(self.chroma), errors, SCAN_TIMEOUT * 2
                )
                self._chroma_warm = self._chroma_warm or ok
                if ok:
                    return ItemsResult(rows or [], "chromadb", errors)
            else:
                errors["chromadb"] = self.health["chromadb"].skipped_reason()
        if not errors:
            errors["memory"] = "no durable tier configured"
        return ItemsResult([], None, errors)

    async def _delete_items(self, ids: list[str]) -> DeleteResult:
        """Delete items by id from the durable tiers and invalidate the cache."""
        errors: dict[str, str] = {}
        if not ids:
            return DeleteResult(0, [], {})
        jobs: list[tuple[TierName, Callable[[], Awaitable[int]]]] = []
        if self.pg is not None:
            pg = self.pg
            jobs.append(("postgresql", lambda: pg.delete(ids, SCAN_TIMEOUT)))
        if self.chroma is not None:
            chroma = self.chroma
            jobs.append(("chromadb", lambda: asyncio.to_thread(chroma.delete, ids)))
        results = await asyncio.gather(
            *(self._tier_call(t, make, errors, SCAN_TIMEOUT * 2) for t, make in jobs)
        )
        done = [(t, n) for (t, _), (ok, n) in zip(jobs, results, strict=True) if ok]
        if self.redis is not None:
            await self._tier_call("redis", self.redis.invalidate, errors)
        return DeleteResult(int(done[0][1] or 0) if done else 0, [t for t, _ in done], errors)

    async def _reset(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.pg is not None:
            await self._tier_call("postgresql", self.pg.delete_all, errors, 30.0)
        if self.chroma is not None:
            chroma = self.chroma
            await self._tier_call(
                "chromadb", lambda: asyncio.to_thread(chroma.delete_all), errors, 60.0
            )
        if self.redis is not None:
            await self._tier_call("redis", self.redis.invalidate, errors)
        return errors

    async def _connect(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.redis is not None:
            redis = self.redis
            await self._tier_call("redis", lambda: redis.get("connect", 1), errors)
        if self.pg is not None:
            await self._tier_call("postgresql", self.pg.connect, errors)
        if self.chroma is not None:
            chroma = self.chroma
            ok, _ = await self._tier_call(
                "chromadb", lambda: asyncio.to_thread(chroma.connect), errors, 60.0
            )
            self._chroma_warm = self._chroma_warm or ok
        return errors

    async def _close(self) -> None:
        if self.redis is not None:
            await self.redis.close()
        if self.pg is not None:
            await self.pg.close()
        if self.chroma is not None:
            self.chroma.drop()


def to_row(item: RowLike) -> Row:
    """A save argument as (id, text, metadata, agent)."""
    if isinstance(item, MemoryItem):
        return (item.id, item.text, item.metadata or None, None)
    vals = list(item)
    vals += [None] * (4 - len(vals))
    # PostgreSQL text cannot hold NUL: keep every tier's copy of an item identical.
    return (
        str(vals[0]).replace("\x00", "\ufffd"),
        str(vals[1]).replace("\x00", "\ufffd"),
        vals[2],
        vals[3],
    )
