"""Issue 13 item 2, storage: what each memory tier holds, measured on real Redis and
PostgreSQL (and a real ChromaDB directory), published as ``memory_tier_storage`` and priced
per GB-month by ``[tier_costs] <tier>_gb_month`` in the snapshot and tier-stats.

Unknown sizes (a tier not configured, an HTTP Chroma client) stay null, never 0.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from server_helpers import aget, running, subscribe
from waiting import await_until

from auren_core import rules
from auren_core.config import TierCosts
from auren_core.events import Event, decode
from auren_core.export import build_reports
from auren_core.export.sources import stream_events
from auren_core.memory import TieredMemory
from auren_core.state import Reducer
from auren_core.streams.publisher import Publisher

ITEMS = [
    ("sleep-1", "Sleep deprivation impairs memory consolidation in the hippocampus", None),
    ("nutr-1", "A protein intake of 1.6 g/kg per day supports muscle synthesis", None),
]


class Env:
    def __init__(self, redis_url: str, pg_dsn: str, stream: str, tmp: Path) -> None:
        self.redis_url, self.pg_dsn, self.stream = redis_url, pg_dsn, stream
        self.namespace = f"auren-test-{uuid.uuid4().hex[:10]}"
        self.table = f"mem_{uuid.uuid4().hex[:12]}"
        self.chroma_path = str(tmp / "chroma")
        self.publisher = Publisher(redis_url, stream, stats_interval=3600)
        self.mems: list[TieredMemory] = []

    def memory(self, **kw: Any) -> TieredMemory:
        args: dict[str, Any] = dict(
            redis_url=self.redis_url, pg_dsn=self.pg_dsn, publisher=self.publisher,
            namespace=self.namespace, pg_table=self.table,
        )  # fmt: skip
        args.update(kw)
        mem = TieredMemory(**args)
        self.mems.append(mem)
        return mem

    def events(self, etype: str) -> list[Event]:
        for m in self.mems:
            m.flush_events()
        assert self.publisher.flush(10)
        rows: Any = redis.Redis.from_url(self.redis_url).xrange(self.stream)
        out = []
        for sid, fields in rows:
            ev = decode(fields[b"e"], sid.decode())
            assert isinstance(ev, Event), ev
            if ev.type == etype:
                out.append(ev)
        return out


@pytest.fixture
async def env(redis_url: str, pg_dsn: str, stream: str, tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(redis_url, pg_dsn, stream, tmp_path)
    yield e
    for mem in e.mems:
        await mem.aclose()
    e.publisher.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {e.table}")
    finally:
        await conn.close()
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{e.namespace}*", count=1000))
    if keys:
        r.delete(*keys)


def _redis_usage(url: str, namespace: str) -> int:
    r = redis.Redis.from_url(url)
    return sum(int(r.memory_usage(k, samples=0) or 0)
               for k in r.scan_iter(match=f"{namespace}:mem:*"))  # fmt: skip


async def _pg_size(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table))
    finally:
        await conn.close()


async def test_storage_report_measures_redis_postgresql_and_chroma(env: Env) -> None:
    mem = env.memory(chroma_path=env.chroma_path, storage_every_s=None)
    assert (await mem.save_many(ITEMS)).ok
    assert (await mem.load("memory consolidation")).items  # cached in Redis (promote)
    report = await mem.storage_report()
    assert report["namespace"] == env.namespace
    assert report["redis_bytes"] > 0 and report["postgresql_bytes"] > 0
    assert report["chromadb_bytes"] > 0
    # the figures are the servers' own: MEMORY USAGE of the namespace's keys, the table size
    assert report["redis_bytes"] == _redis_usage(env.redis_url, env.namespace)
    assert report["postgresql_bytes"] == await _pg_size(env.pg_dsn, env.table)
    evs = env.events("memory_tier_storage")
    assert len(evs) == 1
    p = evs[0].payload
    assert (p.redis_bytes, p.postgresql_bytes, p.chromadb_bytes) == (
        report["redis_bytes"], report["postgresql_bytes"], report["chromadb_bytes"],
    )  # fmt: skip
    assert p.postgresql_table == env.table


async def test_unknown_sizes_stay_null(env: Env) -> None:
    # no Redis configured, an HTTP Chroma client (its disk is not ours): unknown, not 0
    mem = env.memory(redis_url=None, chroma_url="http://127.0.0.1:9", storage_every_s=None)
    assert (await mem.save_many(ITEMS)).errors.get("chromadb")  # the HTTP Chroma is down
    report = await mem.storage_report()
    assert report["redis_bytes"] is None and report["chromadb_bytes"] is None
    assert report["postgresql_bytes"] > 0
    r = Reducer(tier_costs=TierCosts(redis_gb_month=5.0, chromadb_gb_month=1.0).model_dump())
    r.apply_batch(env.events("memory_tier_storage"))
    tiers = r.state().tier_stats()
    assert tiers["storage_bytes"]["redis"] is None
    assert tiers["storage_usd_per_month"]["redis"] is None
    assert tiers["storage_usd_per_month"]["chromadb"] is None
    assert tiers["storage_bytes"]["postgresql"] == report["postgresql_bytes"]
    assert tiers["storage_usd_per_month"]["postgresql"] == 0.0  # priced at the default 0


async def test_loads_report_storage_in_the_background_at_most_every_interval(env: Env) -> None:
    mem = env.memory(storage_every_s=0.5)
    await mem.save_many(ITEMS)
    started = time.monotonic()
    for _ in range(5):  # the first load starts a report; the next ones are within 0.5 s
        await mem.load("memory consolidation")
    await await_until(lambda: env.events("memory_tier_storage"), "the first storage report")
    assert len(env.events("memory_tier_storage")) == 1
    # past the 0.5 s interval since the first report started (as long as it takes)
    await asyncio.sleep(max(0.0, started + 0.7 - time.monotonic()))
    await mem.load("memory consolidation")
    await await_until(
        lambda: len(env.events("memory_tier_storage")) >= 2, "the second storage report"
    )
    evs = env.events("memory_tier_storage")
    assert len(evs) == 2
    assert all(e.payload.redis_bytes and e.payload.postgresql_bytes for e in evs)
    # track=False publishes nothing, storage included
    quiet = env.memory(storage_every_s=0.01, track=False, namespace=env.namespace + "-q")
    await quiet.load("memory consolidation")
    await asyncio.sleep(0.3)  # a report would have been published by now: none is
    assert len(env.events("memory_tier_storage")) == 2


async def test_snapshot_and_tier_stats_price_storage_per_gb_month(
    env: Env, redis_url: str, stream: str
) -> None:
    mem = env.memory(storage_every_s=None)
    await mem.save_many(ITEMS)
    await mem.load("memory consolidation")
    report = await mem.storage_report()
    env.events("memory_tier_storage")  # flushed to the stream
    prices = {"redis_gb_month": 12.5, "postgresql_gb_month": 0.25}
    cfg = TierCosts(**prices).model_dump()
    want = {
        "redis": report["redis_bytes"] / 1e9 * 12.5,
        "postgresql": report["postgresql_bytes"] / 1e9 * 0.25,
    }
    async with running(redis_url, stream, tier_costs=cfg) as srv:
        deadline = time.monotonic() + 10
        while True:
            doc = json.loads((await aget(srv.port, "/api/v2/memory/tier-stats"))[2])
            if doc["storage_bytes"]["redis"] is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert doc["storage_bytes"] == {
            "redis": report["redis_bytes"], "postgresql": report["postgresql_bytes"],
            "chromadb": None,
        }  # fmt: skip
        for name, usd in want.items():
            assert doc["storage_usd_per_month"][name] == pytest.approx(usd, abs=1e-9)
        assert doc["storage_usd_per_month"]["chromadb"] is None
        # a monthly rate beside the window's cost, not part of it
        assert doc["total_cost_usd"] == sum(doc["cost_by_tier"].values()) == 0.0
        _, snap = await subscribe(srv.port, since="now")
        tiers = snap["state"]["tiers"]
        for name, usd in want.items():
            assert tiers[name]["storage_bytes"] == report[f"{name}_bytes"]
            assert tiers[name]["storage_usd_per_month"] == pytest.approx(usd, abs=1e-9)
        assert tiers["chromadb"]["storage_bytes"] is None
        # /metrics: the same sizes and rates as gauges; a tier never reported has no series
        metrics = (await aget(srv.port, "/metrics"))[2].decode()
        gauges = {
            ln.split(" ")[0]: float(ln.split(" ")[1])
            for ln in metrics.splitlines()
            if ln.startswith("auren_tier_storage_")
        }
        for name, usd in want.items():
            assert gauges[f'auren_tier_storage_bytes{{tier="{name}"}}'] == report[f"{name}_bytes"]
            got = gauges[f'auren_tier_storage_usd_per_month{{tier="{name}"}}']
            assert got == pytest.approx(usd, rel=1e-9, abs=1e-12)
        assert not any('tier="chromadb"' in k for k in gauges)
    # the tiers export report, from the same stream and prices: the same figures
    rows = {
        r["tier"]: r
        for r in build_reports(
            stream_events(redis_url, stream, 0.0, None, []), ["tiers"], tier_costs=cfg
        )["tiers"]
    }
    for name, usd in want.items():
        assert rows[name]["storage_bytes"] == report[f"{name}_bytes"]
        assert rows[name]["storage_usd_per_month"] == rules.round_usd(usd)
        assert rows[name]["cost_usd"] == 0.0  # not part of the window's cost
    assert rows["chromadb"]["storage_bytes"] is None
    assert rows["miss"]["storage_bytes"] is None and rows["miss"]["storage_usd_per_month"] is None


def test_gb_month_prices_are_validated() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        TierCosts(redis_gb_month=-1)
    assert TierCosts().redis_gb_month == 0.0


def test_pane_1_cost_cell_adds_storage_only_when_it_fits() -> None:
    from auren_core.state.model import TierView
    from auren_tui.widgets.tiers import _cost_cell

    tv = TierView("redis", cost_usd=0.12, storage_bytes=1_234_567, storage_usd_per_month=0.015)
    assert _cost_cell(tv, 16) == "$0.12 $0.01/mo"
    assert _cost_cell(tv, 12) == "$0.12 1.2MB"
    assert _cost_cell(tv, 8) == "$0.12"
    assert _cost_cell(TierView("redis", cost_usd=0.12), 16) == "$0.12"  # nothing reported
