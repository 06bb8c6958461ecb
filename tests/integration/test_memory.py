"""TieredMemory against real Redis, PostgreSQL and ChromaDB (no mocks).

Each test gets its own namespace, PostgreSQL table (dropped afterwards), Chroma
directory (tmp_path) and event stream; events are read back with XRANGE.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import orjson
import pytest
import redis
from servers import PrivateRedis, free_port
from waiting import await_until

from auren_core.events import Event, decode
from auren_core.events.schema import event_schema
from auren_core.memory import HashingEmbedder, MemoryResult, TieredMemory, WrongLoopError
from auren_core.streams.publisher import Publisher

ITEMS: list[tuple[str, str, dict[str, Any] | None]] = [
    (
        "sleep-1",
        "Sleep deprivation impairs memory consolidation in the hippocampus",
        {"topic": "sleep", "confidence": 0.9},
    ),
    (
        "sleep-2",
        "Slow-wave sleep replays the day's experiences to the neocortex",
        {"topic": "sleep"},
    ),
    (
        "nutr-1",
        "A protein intake of 1.6 g/kg per day supports muscle protein synthesis",
        {"topic": "nutrition"},
    ),
    ("neuro-1", "Dopamine neurons signal reward prediction errors in the striatum", None),
]
STRUCTURED = "memory consolidation"  # every word in sleep-1: a full-text (AND) match
SEMANTIC = "how does losing sleep hurt memory"  # shares words, not all: semantic only
UNKNOWN = "quantum chromodynamics on a lattice"


async def drop_table(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        await conn.close()


def delete_keys(url: str, namespace: str) -> None:
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"{namespace}*", count=1000))
    if keys:
        r.delete(*keys)


class Env:
    """One test's backends: builds memories that share its namespace and stream."""

    def __init__(self, redis_url: str, pg_dsn: str, stream: str, tmp: Path) -> None:
        self.redis_url = redis_url
        self.pg_dsn = pg_dsn
        self.stream = stream
        self.namespace = f"auren-test-{uuid.uuid4().hex[:10]}"
        self.table = f"mem_{uuid.uuid4().hex[:12]}"
        self.chroma_path = str(tmp / "chroma")
        self.publisher = Publisher(redis_url, stream, stats_interval=3600)
        self.mems: list[TieredMemory] = []

    def memory(self, **kw: Any) -> TieredMemory:
        args: dict[str, Any] = dict(
            redis_url=self.redis_url,
            pg_dsn=self.pg_dsn,
            chroma_path=self.chroma_path,
            publisher=self.publisher,
            namespace=self.namespace,
            pg_table=self.table,
            backoff_s=0.3,
            storage_every_s=None,  # exact event lists here; storage: test_tier_storage.py
        )
        args.update(kw)
        mem = TieredMemory(**args)
        self.mems.append(mem)
        return mem

    def raw_entries(self) -> list[tuple[str, bytes]]:
        for mem in self.mems:
            mem.flush_events()
        assert self.publisher.flush(10)
        rows: Any = redis.Redis.from_url(self.redis_url).xrange(self.stream)
        return [(sid.decode(), fields[b"e"]) for sid, fields in rows]

    def events(self, etype: str | None = None) -> list[Event]:
        out = []
        for sid, raw in self.raw_entries():
            jsonschema.validate(orjson.loads(raw), SCHEMA)
            ev = decode(raw, sid)
            assert isinstance(ev, Event), ev
            if etype is None or ev.type == etype:
                out.append(ev)
        return out


SCHEMA = orjson.loads((Path(__file__).parents[2] / "docs" / "event.schema.json").read_bytes())


def test_published_schema_is_current() -> None:
    """The tests validate against docs/event.schema.json: it must match the code."""
    assert orjson.loads(orjson.dumps(event_schema())) == SCHEMA


@pytest.fixture(scope="module")
def chroma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Chroma directory (one client) per module: tests differ by namespace
    (collection), and opening a new store per test costs more than the test."""
    return tmp_path_factory.mktemp("chroma-shared")


@pytest.fixture
async def env(redis_url: str, pg_dsn: str, stream: str, chroma_dir: Path) -> AsyncIterator[Env]:
    e = Env(redis_url, pg_dsn, stream, chroma_dir)
    yield e
    for mem in e.mems:
        await mem.aclose()
    e.publisher.close()
    await drop_table(pg_dsn, e.table)
    delete_keys(redis_url, e.namespace)


async def seeded(env: Env, **kw: Any) -> TieredMemory:
    mem = env.memory(**kw)
    res = await mem.save_many(ITEMS)
    assert res.ok and res.written == ["postgresql", "chromadb"], res
    return mem


def tiers_tried(res: MemoryResult) -> set[str]:
    return set(res.latency_by_tier)


# --------------------------------------------------------------------------- tiers
async def test_each_tier_serves_its_kind_of_query(env: Env) -> None:
    mem = await seeded(env)

    r = await mem.load(STRUCTURED, agent="neuroscientist")
    assert r.tier == "postgresql_structured" and [i.id for i in r.items] == ["sleep-1"]
    assert tiers_tried(r) == {"redis", "postgresql"} and not r.errors
    assert r.items[0].metadata == {"topic": "sleep", "confidence": 0.9}

    r = await mem.load(STRUCTURED, agent="neuroscientist")  # promoted: now a cache hit
    assert r.tier == "redis_immediate" and [i.id for i in r.items] == ["sleep-1"]
    assert tiers_tried(r) == {"redis"}
    assert r.items[0].metadata == {"topic": "sleep", "confidence": 0.9}

    r = await mem.load(SEMANTIC, agent="sleep_specialist")
    assert r.tier == "chromadb_semantic" and r.items[0].id == "sleep-1"
    assert tiers_tried(r) == {"redis", "postgresql", "chromadb"}
    assert all(i.source == "chromadb" and 0 < (i.score or 0) <= 1 for i in r.items)
    assert r.items[0].metadata["topic"] == "sleep"

    r = await mem.load(SEMANTIC.upper(), agent="sleep_specialist")  # case/space-insensitive key
    assert r.tier == "redis_immediate" and r.items[0].id == "sleep-1"

    r = await mem.load(UNKNOWN)
    assert r.tier == "miss" and r.items == [] and not r.hit
    assert tiers_tried(r) == {"redis", "postgresql", "chromadb"} and not r.errors
    r = await mem.load(UNKNOWN)  # misses are not cached: a gap is looked up again
    assert r.tier == "miss" and tiers_tried(r) == {"redis", "postgresql", "chromadb"}
    assert all(v >= 0 for v in r.latency_by_tier.values())


async def test_limit_and_ranking(env: Env) -> None:
    mem = await seeded(env)
    r = await mem.load("sleep", limit=5)
    assert r.tier == "postgresql_structured"
    assert {i.id for i in r.items} == {"sleep-1", "sleep-2"}
    scores = [i.score or 0.0 for i in r.items]
    assert scores == sorted(scores, reverse=True)
    r1 = await mem.load("sleep", limit=1)  # the cached 2-item answer serves a smaller limit
    assert r1.tier == "redis_immediate" and len(r1.items) == 1


async def test_promotion_off(env: Env) -> None:
    mem = await seeded(env, promote=False)
    assert (await mem.load(STRUCTURED)).tier == "postgresql_structured"
    assert (await mem.load(STRUCTURED)).tier == "postgresql_structured"


async def test_chroma_hit_is_promoted_into_postgres(env: Env) -> None:
    mem = env.memory()
    # Knowledge that only the semantic tier holds (e.g. indexed by another tool).
    await asyncio.to_thread(
        mem.chroma.upsert,  # type: ignore[union-attr]
        [("circ-1", "Morning light exposure advances the circadian clock", {"k": 1}, None)],
    )
    r = await mem.load("does light in the morning shift circadian rhythm", agent="sleep_specialist")
    assert r.tier == "chromadb_semantic" and r.items[0].id == "circ-1"
    conn = await asyncpg.connect(env.pg_dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT text, metadata, agent FROM {env.table} WHERE id='circ-1'"
        )
    finally:
        await conn.close()
    assert row is not None and row["agent"] == "sleep_specialist"
    assert orjson.loads(row["metadata"]) == {"k": 1}
    r = await mem.load("circadian clock")  # now a structured hit
    assert r.tier == "postgresql_structured" and r.items[0].id == "circ-1"


async def test_save_invalidates_cached_answers(env: Env) -> None:
    mem = await seeded(env)
    other = env.memory()  # a second process-like client sharing the same tiers
    assert len((await mem.load("dopamine")).items) == 1
    assert (await other.load("dopamine")).tier == "redis_immediate"
    await other.save("neuro-2", "Dopamine release rises with novelty", None, agent="neuroscientist")
    r = await mem.load("dopamine")
    assert r.tier == "postgresql_structured" and {i.id for i in r.items} == {"neuro-1", "neuro-2"}
    await mem.save("neuro-2", "Novelty triggers hippocampal acetylcholine release")  # overwrite
    r = await mem.load("dopamine")
    assert [i.id for i in r.items] == ["neuro-1"]


# --------------------------------------------------------------------------- events
async def test_events_published(env: Env) -> None:
    mem = await seeded(env)
    await mem.load(STRUCTURED, agent="neuroscientist", run="run-7")
    await mem.load(STRUCTURED, agent="neuroscientist")
    await mem.load("sleep", limit=5, agent="sleep_specialist")
    await mem.load(SEMANTIC, agent="sleep_specialist")
    await mem.load(UNKNOWN, agent="nutritionist")

    tiers = env.events("memory_tier_access")
    assert [e.payload["tier_accessed"] for e in tiers] == [
        "postgresql_structured",
        "redis_immediate",
        "postgresql_structured",
        "chromadb_semantic",
        "miss",
    ]
    assert [set(e.payload["latency_by_tier"]) for e in tiers] == [
        {"redis", "postgresql"},
        {"redis"},
        {"redis", "postgresql"},
        {"redis", "postgresql", "chromadb"},
        {"redis", "postgresql", "chromadb"},
    ]
    assert [e.payload["items_retrieved"] for e in tiers] == [
        1,
        1,
        2,
        tiers[3].payload["items_retrieved"],
        0,
    ]
    assert tiers[3].payload["items_retrieved"] >= 1
    assert [e.payload["query"] for e in tiers] == [
        STRUCTURED,
        STRUCTURED,
        "sleep",
        SEMANTIC,
        UNKNOWN,
    ]
    assert [e.agent for e in tiers] == [
        "neuroscientist",
        "neuroscientist",
        "sleep_specialist",
        "sleep_specialist",
        "nutritionist",
    ]
    assert tiers[0].run == "run-7" and tiers[1].run is None
    assert all("errors" not in e.payload for e in tiers)

    know = env.events("knowledge_access")
    got = [(e.payload["item"], e.payload["source"], e.payload["hit"], e.agent) for e in know]
    assert got[:2] == [
        ("sleep-1", "postgresql", True, "neuroscientist"),
        ("sleep-1", "redis", True, "neuroscientist"),
    ]
    assert sorted(got[2:4]) == [
        ("sleep-1", "postgresql", True, "sleep_specialist"),
        ("sleep-2", "postgresql", True, "sleep_specialist"),
    ]
    assert got[4][1:] == ("chromadb", True, "sleep_specialist")
    assert got[-1] == (UNKNOWN, "miss", False, "nutritionist")  # the knowledge gap
    assert len(know) == sum(max(1, e.payload["items_retrieved"]) for e in tiers)


async def test_untracked_publishes_nothing(env: Env) -> None:
    mem = await seeded(env, track=False)
    await mem.load(STRUCTURED)
    await mem.load(UNKNOWN)
    assert env.events() == []


async def test_queries_redacted(env: Env) -> None:
    mem = await seeded(env, redact_queries=True)
    secret = "patient 4711 insomnia memory consolidation"
    await mem.load(secret, agent="sleep_specialist")
    await mem.load(UNKNOWN)
    evs = env.events()
    raw = b"".join(e for _, e in env.raw_entries())
    assert b"4711" not in raw and b"chromodynamics" not in raw
    tier = [e for e in evs if e.type == "memory_tier_access"]
    assert all(e.payload["query"].startswith("sha256:") for e in tier)
    assert tier[0].payload["query"] != tier[1].payload["query"]
    gap = [e for e in evs if e.type == "knowledge_access" and not e.payload["hit"]]
    assert gap and gap[0].payload["item"] == tier[1].payload["query"]


# --------------------------------------------------------------------------- failures
async def test_redis_stopped_mid_test_degrades_and_recovers(
    env: Env, private_redis: PrivateRedis
) -> None:
    mem = await seeded(env, redis_url=private_redis.url, backoff_s=1.0)
    assert (await mem.load(STRUCTURED)).tier == "postgresql_structured"
    assert (await mem.load(STRUCTURED)).tier == "redis_immediate"

    private_redis.stop()
    r = await mem.load(STRUCTURED, agent="neuroscientist")
    assert r.tier == "postgresql_structured" and r.items[0].id == "sleep-1"
    assert "redis" in r.errors and tiers_tried(r) == {"redis", "postgresql"}

    r = await mem.load(STRUCTURED)  # within the backoff: Redis is not even tried
    assert r.tier == "postgresql_structured" and tiers_tried(r) == {"postgresql"}
    assert r.errors["redis"].startswith("skipped")

    private_redis.start()
    await asyncio.sleep(1.1)  # past the backoff: reconnect lazily on the next read
    r = await mem.load(STRUCTURED)
    assert r.tier == "postgresql_structured" and not r.errors  # the restarted cache is empty
    assert tiers_tried(r) == {"redis", "postgresql"}
    assert (await mem.load(STRUCTURED)).tier == "redis_immediate"

    ev = env.events("memory_tier_access")
    failed = [e for e in ev if "errors" in e.payload]
    assert len(failed) == 2 and "redis" in failed[0].payload["errors"]
    assert set(failed[0].payload["latency_by_tier"]) == {"redis", "postgresql"}
    assert set(failed[1].payload["latency_by_tier"]) == {"postgresql"}


async def test_hung_redis_times_out(env: Env, private_redis: PrivateRedis) -> None:
    mem = await seeded(env, redis_url=private_redis.url, redis_timeout=0.3)
    await mem.load(STRUCTURED)
    private_redis.pause()
    try:
        t = time.perf_counter()
        r = await mem.load(STRUCTURED)
        took = time.perf_counter() - t
    finally:
        private_redis.resume()
    assert r.tier == "postgresql_structured" and "redis" in r.errors
    assert 0.25 < took < 3.0, took  # bounded by redis_timeout, not a hang


async def test_postgres_down_falls_through_to_chroma(env: Env) -> None:
    seeded_mem = await seeded(env)  # items in every tier, via a healthy client
    await seeded_mem.aclose()
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    mem = env.memory(pg_dsn=dead, backoff_s=30)
    r = await mem.load(STRUCTURED, agent="neuroscientist")
    assert r.tier == "chromadb_semantic" and r.items[0].id == "sleep-1"
    assert "postgresql" in r.errors and tiers_tried(r) == {"redis", "postgresql", "chromadb"}
    r = await mem.load(UNKNOWN)
    assert r.tier == "miss" and r.errors["postgresql"].startswith("skipped")
    assert tiers_tried(r) == {"redis", "chromadb"}
    res = await mem.save("x-1", "written while PostgreSQL is down")
    assert res.written == ["chromadb"] and "postgresql" in res.errors and not res.ok
    ev = env.events("memory_tier_access")
    assert "postgresql" in ev[0].payload["errors"]


async def test_everything_down_is_a_clean_empty_result(env: Env) -> None:
    mem = env.memory(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        pg_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        chroma_path=None,
    )
    r = await mem.load(STRUCTURED, agent="neuroscientist")
    assert r.tier == "miss" and r.items == [] and set(r.errors) == {"redis", "postgresql"}
    res = await mem.save("a", "b")
    assert res.written == [] and set(res.errors) >= {"postgresql"}
    (ev,) = env.events("memory_tier_access")
    assert ev.payload["tier_accessed"] == "miss" and set(ev.payload["errors"]) == {
        "redis",
        "postgresql",
    }


# --------------------------------------------------------------------------- faces
def test_sync_face_from_worker_threads(env: Env) -> None:
    mem = env.memory()
    assert mem.save_many_sync(ITEMS).ok
    results: dict[int, MemoryResult] = {}

    def worker(n: int) -> None:
        results[n] = mem.load_sync(STRUCTURED if n % 2 else SEMANTIC, agent=f"agent-{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.items and r.items[0].id == "sleep-1" for r in results.values())
    assert {r.tier for r in results.values()} <= {
        "postgresql_structured",
        "chromadb_semantic",
        "redis_immediate",
    }
    assert len(env.events("memory_tier_access")) == 8
    mem.close()


async def test_sync_call_on_own_loop_is_refused(env: Env) -> None:
    mem = await seeded(env)
    with pytest.raises(WrongLoopError):
        mem.load_sync(STRUCTURED)
    r = await asyncio.to_thread(mem.load_sync, STRUCTURED)  # from a thread: forwarded
    assert r.tier == "postgresql_structured"


def test_knowledge_lookup_tool(env: Env) -> None:
    from auren_core.memory.crewai_tool import KnowledgeLookupTool

    mem = env.memory()
    mem.save_many_sync(ITEMS)
    tool = KnowledgeLookupTool(memory=mem, agent_id="sleep_specialist", limit=3)
    out = tool.run(query=STRUCTURED)
    assert "[sleep-1]" in out and "hippocampus" in out
    assert "No knowledge found" in tool.run(query=UNKNOWN)
    ev = env.events("memory_tier_access")
    assert [e.agent for e in ev] == ["sleep_specialist", "sleep_specialist"]
    assert [e.payload["tier_accessed"] for e in ev] == ["postgresql_structured", "miss"]
    mem.close()


# --------------------------------------------------------------------------- pure parts
def test_import_does_not_load_heavy_backends() -> None:
    code = (
        "import sys, auren_core, auren_core.memory\n"
        "bad = [m for m in ('chromadb', 'asyncpg', 'crewai') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    emb = HashingEmbedder()
    (v,) = emb(["Sleep deprivation impairs memory"])
    assert len(v) == 384 and abs(sum(x * x for x in v) - 1) < 1e-9
    code = (
        "from auren_core.memory import HashingEmbedder\n"
        "print(HashingEmbedder()(['Sleep deprivation impairs memory'])[0])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert orjson.loads(other.stdout.strip()) == v
    a, b, c = emb(["sleep and memory", "memory during sleep", "protein synthesis"])

    def dot(x: list[float], y: list[float]) -> float:
        return sum(i * j for i, j in zip(x, y, strict=True))

    assert dot(a, b) > 0.5 > dot(a, c)
    assert emb([""])[0] == [0.0] * 384


async def test_postgres_session_terminated_mid_query(env: Env) -> None:
    mem = await seeded(env, promote=False)
    assert (await mem.load(STRUCTURED)).tier == "postgresql_structured"
    app = f"auren-memory:{env.namespace}"
    locker = await asyncpg.connect(env.pg_dsn)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute(f"LOCK TABLE {env.table} IN ACCESS EXCLUSIVE MODE")
        load = asyncio.create_task(mem.load(STRUCTURED, agent="neuroscientist"))
        for _ in range(200):  # until our search is blocked on the lock
            waiting = await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND wait_event_type = 'Lock'",
                app,
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the load never reached PostgreSQL"
        killed = await locker.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = $1) t",
            app,
        )
        assert killed >= 1
        r = await load
        await tx.rollback()
    finally:
        await locker.close()
    # The agent still gets its answer, from the semantic tier, and the event says why.
    assert r.tier == "chromadb_semantic" and r.items[0].id == "sleep-1"
    assert "postgresql" in r.errors and tiers_tried(r) == {"redis", "postgresql", "chromadb"}
    await asyncio.sleep(0.4)  # past the backoff: the pool opens a fresh session
    r = await mem.load(STRUCTURED)
    assert r.tier == "postgresql_structured" and not r.errors
    ev = env.events("memory_tier_access")
    assert [e.payload["tier_accessed"] for e in ev] == [
        "postgresql_structured",
        "chromadb_semantic",
        "postgresql_structured",
    ]
    assert "postgresql" in ev[1].payload["errors"] and "errors" not in ev[2].payload


class ChromaServer:
    """A real ``chroma run`` server process (the HttpClient path)."""

    def __init__(self, path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).parent / "chroma"
        self.proc = subprocess.Popen(
            [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)  # not listening yet
        self.stop()
        raise RuntimeError("chroma server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    if not (Path(sys.executable).parent / "chroma").exists():
        pytest.skip("no chroma CLI in this environment")
    srv = ChromaServer(tmp_path / "chroma-server")
    yield srv
    srv.stop()


async def test_chroma_http_server_stopped_mid_test(env: Env, chroma_server: ChromaServer) -> None:
    mem = await seeded(env, chroma_path=None, chroma_url=chroma_server.url)
    assert mem.chroma is not None and mem.chroma.url == chroma_server.url
    r = await mem.load(SEMANTIC, agent="sleep_specialist")
    assert r.tier == "chromadb_semantic" and r.items[0].id == "sleep-1"

    chroma_server.stop()
    r = await mem.load("why would losing sleep hurt memory", agent="x")
    assert r.tier == "miss" and r.items == [] and "chromadb" in r.errors
    assert tiers_tried(r) == {"redis", "postgresql", "chromadb"}
    r = await mem.load(STRUCTURED)  # the other tiers still answer
    assert r.tier == "postgresql_structured"
    (gap,) = [e for e in env.events("memory_tier_access") if e.payload.get("errors")]
    assert gap.payload["tier_accessed"] == "miss" and "chromadb" in gap.payload["errors"]


def test_from_settings_resolves_backends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, pg_dsn: str
) -> None:
    from auren_core.config import load_settings

    monkeypatch.setenv("AUREN_CHROMA_URL", "http://chroma.example:8123")
    mem = TieredMemory.from_settings(load_settings(redis_url=redis_url, pg_dsn=pg_dsn))
    assert mem.chroma is not None and mem.chroma.url == "http://chroma.example:8123"
    assert mem.chroma.path is None
    monkeypatch.delenv("AUREN_CHROMA_URL")
    s = load_settings(
        redis_url=redis_url,
        pg_dsn=pg_dsn,
        data_dir=str(tmp_path),
        redact_queries=True,
        tool_costs={"memory:chromadb": 0.001, "web_search": 0.005},
    )
    mem = TieredMemory.from_settings(s)
    assert mem.tier_costs_usd == {"chromadb": 0.001}
    assert mem.chroma is not None and mem.chroma.url is None
    assert mem.chroma.path == str(tmp_path / "chroma") and mem.redact_queries
    assert mem.redis is not None and mem.redis.url == redis_url
    assert mem.pg is not None and mem.pg.dsn == pg_dsn


async def test_tier_costs_priced_per_tier_tried(env: Env) -> None:
    costs = {"redis": 0.000001, "postgresql": 0.00002, "chromadb": 0.0003}
    mem = await seeded(env, tier_costs_usd=costs)
    await mem.load(STRUCTURED)  # redis + postgresql
    await mem.load(STRUCTURED)  # redis
    await mem.load(UNKNOWN)  # all three
    ev = env.events("memory_tier_access")
    assert [e.payload["cost_by_tier"] for e in ev] == [
        {"redis": costs["redis"], "postgresql": costs["postgresql"]},
        {"redis": costs["redis"]},
        costs,
    ]
    for e in ev:
        assert e.payload["cost_usd"] == pytest.approx(sum(e.payload["cost_by_tier"].values()))
    unpriced = await seeded(env)
    await unpriced.load(STRUCTURED)
    last = env.events("memory_tier_access")[-1].payload
    assert "cost_usd" not in last and "cost_by_tier" not in last


async def test_reset_forgets_every_tier(env: Env) -> None:
    mem = await seeded(env)
    assert (await mem.load(STRUCTURED)).tier == "postgresql_structured"
    assert (await mem.load(STRUCTURED)).tier == "redis_immediate"
    other = await seeded(env, namespace=env.namespace + "-other")
    assert await mem.reset() == {}
    r = await mem.load(STRUCTURED)
    assert r.tier == "miss" and not r.errors  # cache invalidated, PostgreSQL and Chroma empty
    assert (await mem.load(SEMANTIC)).tier == "miss"
    assert (await other.load(STRUCTURED)).tier == "postgresql_structured"  # namespaces apart
    assert (await mem.save_many(ITEMS)).ok  # the collection is recreated on next use
    assert (await mem.load(SEMANTIC)).tier == "chromadb_semantic"


async def test_hostile_queries_are_harmless(env: Env) -> None:
    mem = await seeded(env)
    nasty = [
        "'; DROP TABLE auren_memory; --",
        "memory consolidation' OR '1'='1",
        "\x1b[31mred\x1b[0m \x00 \u202e memory",
        '=HYPERLINK("http://x")',
        "",
        "   ",
        "sleep " * 40_000,  # 240 kB
        '"unbalanced quote -minus !!! (( ))',
    ]
    for q in nasty:
        r = await mem.load(q, limit=10**9, agent="<b>[red]x[/red]</b>")
        assert r.tier in {"postgresql_structured", "chromadb_semantic", "redis_immediate", "miss"}
        assert len(r.items) <= 100
    assert (await mem.load(STRUCTURED)).items[0].id == "sleep-1"  # the table survived
    ev = env.events("memory_tier_access")
    assert len(ev) == len(nasty) + 1
    assert all(len(e.payload["query"]) <= 500 for e in ev)
    assert ev[6].payload["query"].endswith("[240000 chars]")
    assert ev[2].payload["query"] == nasty[2]  # carried verbatim: renderers sanitise
    # no tier failed, so none is skipped afterwards: bad input is not a sick tier
    assert not [e.payload["errors"] for e in ev if e.payload.get("errors")]


async def test_events_batched_within_linger_with_load_timestamps(env: Env) -> None:
    mem = await seeded(env, event_linger_s=0.05)
    produced = env.publisher.counters().produced
    before = time.time()
    await mem.load(STRUCTURED, agent="neuroscientist")
    after = time.time()
    # no flush_events(): the linger timer hands them to the publisher
    await await_until(
        lambda: env.publisher.counters().produced >= produced + 2, "the events handed over"
    )
    assert env.publisher.flush(10)
    rows: Any = redis.Redis.from_url(env.redis_url).xrange(env.stream)
    evs = [decode(f[b"e"], sid.decode()) for sid, f in rows]
    assert [e.type for e in evs if isinstance(e, Event)] == [
        "memory_tier_access",
        "knowledge_access",
    ]
    assert all(isinstance(e, Event) and before <= e.ts <= after for e in evs)


def test_events_survive_a_loop_that_ends_without_close(redis_url: str, stream: str) -> None:
    """asyncio.run() returns before the linger timer fires; interpreter exit still
    hands the events to the publisher, which sends them before the process ends."""
    code = (
        "import asyncio\n"
        "from auren_core.memory import TieredMemory\n"
        "from auren_core.streams.publisher import Publisher\n"
        f"pub = Publisher({redis_url!r}, {stream!r}, stats_interval=3600)\n"
        f"mem = TieredMemory({redis_url!r}, None, publisher=pub, event_linger_s=30,"
        f" namespace='linger-{uuid.uuid4().hex[:8]}')\n"
        "async def main():\n"
        "    for q in ('a', 'b', 'c'):\n"
        "        await mem.load(q, agent='x')\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    rows: Any = redis.Redis.from_url(redis_url).xrange(stream)
    types = [orjson.loads(f[b"e"])["type"] for _, f in rows]
    assert types.count("memory_tier_access") == 3 and types.count("knowledge_access") == 3
