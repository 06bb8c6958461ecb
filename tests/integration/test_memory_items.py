"""TieredMemory's stored-item API (get / list / delete by id) against real Redis,
PostgreSQL and ChromaDB (no mocks). These back CrewAI's ``StorageBackend``
methods (get_record, list_records, delete, ...) in ``crewai_unified``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from servers import free_port

from auren_core.memory import TieredMemory

ITEMS: list[tuple[str, str, dict[str, Any] | None, str | None]] = [
    ("a-1", "Sleep deprivation impairs memory consolidation", {"topic": "sleep"}, "sleep_doc"),
    ("a-2", "Slow-wave sleep replays the day's experiences", None, None),
    ("a-3", "Protein intake supports muscle protein synthesis", {"topic": "food"}, "nutri"),
]


class Env:
    def __init__(self, redis_url: str, pg_dsn: str, tmp: Path) -> None:
        self.redis_url = redis_url
        self.pg_dsn = pg_dsn
        self.tmp = tmp
        self.namespace = f"auren-items-{uuid.uuid4().hex[:10]}"
        self.table = f"mem_{uuid.uuid4().hex[:12]}"
        self.mems: list[TieredMemory] = []

    def memory(self, **kw: Any) -> TieredMemory:
        args: dict[str, Any] = dict(
            redis_url=self.redis_url,
            pg_dsn=self.pg_dsn,
            chroma_path=str(self.tmp / "chroma"),
            namespace=self.namespace,
            pg_table=self.table,
            track=False,
            backoff_s=0.3,
        )
        args.update(kw)
        mem = TieredMemory(**args)
        self.mems.append(mem)
        return mem


@pytest.fixture
async def env(redis_url: str, pg_dsn: str, tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(redis_url, pg_dsn, tmp_path)
    yield e
    for mem in e.mems:
        await mem.aclose()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {e.table}")
    finally:
        await conn.close()
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{e.namespace}:*"))
    if keys:
        r.delete(*keys)


async def test_get_list_delete_items_in_every_tier(env: Env) -> None:
    mem = env.memory()
    t0 = datetime.now(UTC)
    for row in ITEMS:  # one save each: distinct save times
        assert (await mem.save_many([row])).ok
        time.sleep(0.01)

    got = await mem.get_items(["a-3", "a-1", "nope"])
    assert got.ok and got.source == "postgresql" and not got.errors
    by_id = {i.id: i for i in got.items}
    assert set(by_id) == {"a-1", "a-3"}
    assert by_id["a-1"].text == ITEMS[0][1] and by_id["a-1"].metadata == {"topic": "sleep"}
    assert by_id["a-1"].agent == "sleep_doc"
    assert by_id["a-1"].updated_at is not None and by_id["a-1"].updated_at >= t0

    listed = await mem.list_items()
    assert [i.id for i in listed.items] == ["a-3", "a-2", "a-1"]  # most recent save first
    assert [i.id for i in (await mem.list_items(limit=1, offset=1)).items] == ["a-2"]
    assert listed.items[1].metadata == {} and listed.items[1].agent is None

    # Chroma holds the same items (what a PostgreSQL-less memory lists)
    chroma_only = env.memory(pg_dsn=None)
    c = chroma_only.list_items_sync()
    assert c.source == "chromadb" and [i.id for i in c.items] == ["a-3", "a-2", "a-1"]
    assert {i.id: (i.text, i.metadata, i.agent) for i in c.items} == {
        i.id: (i.text, i.metadata, i.agent) for i in listed.items
    }

    # a cached answer does not outlive a delete
    assert (await mem.load("memory consolidation")).tier == "postgresql_structured"
    assert (await mem.load("memory consolidation")).tier == "redis_immediate"
    res = await mem.delete_items(["a-1", "nope"])
    assert res.ok and res.deleted == 1 and res.tiers == ["postgresql", "chromadb"]
    assert (await mem.load("memory consolidation")).tier == "miss"
    assert [i.id for i in (await mem.get_items(["a-1"])).items] == []
    assert [i.id for i in chroma_only.get_items_sync(["a-1", "a-2"]).items] == ["a-2"]
    assert (await mem.delete_items([])).deleted == 0


def test_sync_faces_and_chroma_only_deletes(env: Env) -> None:
    mem = env.memory(pg_dsn=None, redis_url=None)
    assert mem.save_many_sync([r[:3] for r in ITEMS]).written == ["chromadb"]
    assert {i.id for i in mem.get_items_sync(["a-2", "a-3"]).items} == {"a-2", "a-3"}
    res = mem.delete_items_sync(["a-2", "a-3", "a-9"])
    assert res.deleted == 2 and res.tiers == ["chromadb"]
    assert [i.id for i in mem.list_items_sync().items] == ["a-1"]
    mem.close()


async def test_postgres_down_lists_from_chroma(env: Env) -> None:
    healthy = env.memory()
    assert (await healthy.save_many(ITEMS)).ok
    await healthy.aclose()
    mem = env.memory(pg_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/test", backoff_s=30)
    got = await mem.list_items()
    assert got.ok and got.source == "chromadb" and "postgresql" in got.errors
    assert {i.id for i in got.items} == {"a-1", "a-2", "a-3"}
    got = await mem.get_items(["a-2"])  # PostgreSQL is now skipped (backoff)
    assert got.source == "chromadb" and got.errors["postgresql"].startswith("skipped")
    res = await mem.delete_items(["a-2"])
    assert res.tiers == ["chromadb"] and res.deleted == 1 and "postgresql" in res.errors


async def test_no_durable_tier_is_a_clean_failure(env: Env) -> None:
    mem = env.memory(pg_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/test", chroma_path=None)
    got = await mem.list_items()
    assert not got.ok and got.items == [] and got.source is None and "postgresql" in got.errors
    assert not (await mem.get_items(["x"])).ok
    res = await mem.delete_items(["x"])
    assert res.tiers == [] and res.deleted == 0 and "postgresql" in res.errors
    none = env.memory(pg_dsn=None, chroma_path=None)
    assert (await none.list_items()).errors == {"memory": "no durable tier configured"}
