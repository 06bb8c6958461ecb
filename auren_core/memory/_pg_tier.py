"""Tier 2: PostgreSQL through asyncpg, the structured store with full-text search.

One table (default ``auren_memory``) holds every namespace: id, text, metadata
jsonb, the saving agent, and a generated ``tsvector`` column with a GIN index.
Queries use ``websearch_to_tsquery`` (all words must match, quotes and ``-`` work)
ranked by ``ts_rank``: precise, so paraphrases fall through to the semantic tier.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ._types import MemoryItem, StoredItem

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresTier", "check_identifier"]

log = logging.getLogger("auren.memory")

MAX_QUERY_CHARS = 1000
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_identifier(name: str) -> str:
    """Accept ``table`` or ``schema.table`` made of plain identifiers (they are
    interpolated into SQL, so nothing else gets through)."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ValueError(f"invalid PostgreSQL table name: {name!r}")
    return name


class PostgresTier:
    name = "postgresql"

    def __init__(
        self,
        dsn: str,
        namespace: str,
        *,
        table: str = "auren_memory",
        ts_config: str = "english",
        timeout: float = 2.0,
        connect_timeout: float = 2.0,
        pool_size: int = 4,
    ) -> None:
        self.dsn = dsn
        self.namespace = namespace
        self.table = check_identifier(table)
        self.ts_config = check_identifier(ts_config)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        base = self.table.split(".")[-1]
        t, cfg = self.table, self.ts_config
        self._ddl = [
            *([f"CREATE SCHEMA IF NOT EXISTS {t.split('.')[0]}"] if "." in t else []),
            f"""CREATE TABLE IF NOT EXISTS {t} (
                namespace text NOT NULL,
                id text NOT NULL,
                text text NOT NULL,
                metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                agent text,
                tsv tsvector GENERATED ALWAYS AS (to_tsvector('{cfg}', text)) STORED,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (namespace, id))""",
            f"CREATE INDEX IF NOT EXISTS {base}_tsv_gin ON {t} USING GIN (tsv)",
        ]
        # Identifiers are validated by check_identifier(); values are always $n parameters.
        self._search = f"""
            SELECT id, text, metadata, ts_rank(tsv, q) AS rank
            FROM {t}, websearch_to_tsquery('{cfg}', $2) AS q
            WHERE namespace = $1 AND tsv @@ q
            ORDER BY rank DESC, id
            LIMIT $3"""  # noqa: S608
        upsert = f"""
            INSERT INTO {t} (namespace, id, text, metadata, agent)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (namespace, id) DO """  # noqa: S608
        self._upsert = upsert + (
            "UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata, "
            "agent = EXCLUDED.agent, updated_at = now()"
        )
        self._insert_missing = upsert + "NOTHING"
        cols = "id, text, metadata, agent, updated_at"
        self._get = f"SELECT {cols} FROM {t} WHERE namespace = $1 AND id = ANY($2::text[])"  # noqa: S608
        self._scan = f"""
            SELECT {cols} FROM {t} WHERE namespace = $1
            ORDER BY updated_at DESC, id LIMIT $2 OFFSET $3"""  # noqa: S608
        self._delete = f"DELETE FROM {t} WHERE namespace = $1 AND id = ANY($2::text[])"  # noqa: S608

    @staticmethod
    async def _init_conn(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "jsonb",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            import asyncpg

            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.timeout,
                init=self._init_conn,
                # Visible in pg_stat_activity: operators can see (and kill) our sessions.
                server_settings={"application_name": f"auren-memory:{self.namespace}"[:63]},
            )
            try:
                async with pool.acquire() as conn, conn.transaction():
                    # Serialise concurrent first users: CREATE ... IF NOT EXISTS can race.
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
                    for stmt in self._ddl:
                        await conn.execute(stmt)
            except BaseException:
                pool.terminate()
                raise
            self._pool = pool
        return self._pool

    async def connect(self) -> None:
        await self._get_pool()

    @staticmethod
    def query_error(exc: BaseException) -> bool:
        """Did this request fail because of what it asked (bad data, a query too
        complex), not because the server is unwell? Such a failure says nothing about
        the tier's health, so it must not make later reads skip PostgreSQL."""
        import asyncpg

        state = getattr(exc, "sqlstate", None) or ""
        # 22 data exception, 42 syntax/access rule, 54 program limit exceeded
        return isinstance(exc, asyncpg.PostgresError) and state[:2] in {"22", "42", "54"}

    async def search(self, query: str, limit: int) -> list[MemoryItem]:
        pool = await self._get_pool()
        # Full-text queries are short; a pasted document would only hit PostgreSQL's
        # limits (every word must match anyway). PostgreSQL text cannot hold NUL.
        q = query[:MAX_QUERY_CHARS].replace("\x00", " ")
        rows = await pool.fetch(self._search, self.namespace, q, limit, timeout=self.timeout)
        return [
            MemoryItem(
                id=r["id"],
                text=r["text"],
                metadata=r["metadata"] or {},
                score=float(r["rank"]),
                source="postgresql",
            )
            for r in rows
        ]

    async def upsert(
        self,
        items: Sequence[tuple[str, str, dict[str, Any] | None, str | None]],
        *,
        overwrite: bool = True,
    ) -> None:
        """Write ``(id, text, metadata, agent)`` rows; ``overwrite=False`` (promotion)
        only fills in rows that are missing and never clobbers a newer save."""
        pool = await self._get_pool()
        sql = self._upsert if overwrite else self._insert_missing
        args = [(self.namespace, i, t, m or {}, a) for i, t, m, a in items]
        await pool.executemany(sql, args, timeout=self.timeout)

    @staticmethod
    def _stored(r: Any) -> StoredItem:
        return StoredItem(
            id=r["id"],
            text=r["text"],
            metadata=r["metadata"] or {},
            agent=r["agent"],
            updated_at=r["updated_at"],
        )

    async def get(self, ids: Sequence[str], timeout: float | None = None) -> list[StoredItem]:
        """The stored rows of these ids (missing ids are left out; order not kept)."""
        pool = await self._get_pool()
        rows = await pool.fetch(self._get, self.namespace, list(ids), timeout=timeout)
        return [self._stored(r) for r in rows]

    async def scan(
        self, limit: int, offset: int = 0, timeout: float | None = None
    ) -> list[StoredItem]:
        """Rows of this namespace, most recently saved first."""
        pool = await self._get_pool()
        rows = await pool.fetch(self._scan, self.namespace, limit, offset, timeout=timeout)
        return [self._stored(r) for r in rows]

    async def delete(self, ids: Sequence[str], timeout: float | None = None) -> int:
        """Forget these items; returns how many rows went."""
        pool = await self._get_pool()
        status = await pool.execute(self._delete, self.namespace, list(ids), timeout=timeout)
        return int(status.split()[-1])

    async def delete_all(self) -> int:
        """Forget every item of this namespace; returns how many rows went."""
        pool = await self._get_pool()
        status = await pool.execute(
            f"DELETE FROM {self.table} WHERE namespace = $1",  # noqa: S608 (checked identifier)
            self.namespace,
            timeout=self.timeout,
        )
        return int(status.split()[-1])

    async def storage_bytes(self) -> int | None:
        """``pg_total_relation_size`` of the table (heap, indexes, TOAST): the table holds
        every namespace, so this is the table's size (reported with its name)."""
        pool = await self._get_pool()
        v = await pool.fetchval(
            "SELECT pg_total_relation_size(to_regclass($1))", self.table, timeout=self.timeout
        )
        return int(v) if v is not None else None

    def drop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                pool.terminate()
            except Exception as exc:  # its loop may be closed; the sockets go with it
                log.debug("auren memory: dropping a pool of a finished loop: %s", exc)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
