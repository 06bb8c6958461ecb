"""Tiered memory benchmarks (issue 4). Prints figures with their method; asserts nothing.

  .venv/bin/python bench/bench_memory.py [--redis-url URL] [--pg-dsn DSN] [--loads N]
      [--rounds R] [--block B] [--linger S] [--tier-costs redis=...,chromadb=...]

Real Redis, real PostgreSQL, a real ChromaDB PersistentClient in a temp dir.

1. tracking overhead: one TieredMemory, one query of each kind (cache hit, structured
   hit, semantic hit, miss: one to three tiers tried; each checked to be served by its
   tier), promotion off so every repetition tries the same tiers. R rounds of a
   tracked and an untracked block of B loads (``mem.track`` on/off, order alternating).
   Per block: mean wall time per load and process CPU time per load (every thread, so
   the publisher thread's work counts). Reported: the median per-round difference and
   its interquartile range. Then the caller-side tracking step alone in a tight loop
   (building the events and ``Publisher.emit``). Target: <= 5 % or <= 50 us per load.
   Run with the memory's default ``event_linger_s`` (0.05: events handed to the
   publisher in batches) and then with 0 (handed over per load), unless ``--linger``.
2. tier statistics: a reproducible workload (seeded corpus and query mix, promotion
   on) published to a fresh stream, read back and reduced by the dashboard's own
   reducer; printed in the shape of ``GET /api/v2/memory/tier-stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg
import redis

from auren_core.events import Event, decode
from auren_core.memory import MemoryItem, MemoryResult, TierAccessed, TieredMemory
from auren_core.streams.publisher import Publisher

TOPICS = {
    "sleep": [
        "sleep",
        "deep",
        "slow-wave",
        "circadian",
        "melatonin",
        "insomnia",
        "nap",
        "bedtime",
        "wake",
        "latency",
    ],
    "nutrition": [
        "protein",
        "glycaemic",
        "magnesium",
        "hydration",
        "caffeine",
        "fasting",
        "fibre",
        "omega",
        "dinner",
    ],
    "neuro": [
        "dopamine",
        "hippocampus",
        "prefrontal",
        "cortisol",
        "attention",
        "memory",
        "plasticity",
        "reward",
    ],
    "training": [
        "zone-2",
        "deload",
        "workload",
        "strength",
        "hypertrophy",
        "tempo",
        "recovery",
        "interval",
        "volume",
    ],
}
VERBS = [
    "improves",
    "impairs",
    "shifts",
    "raises",
    "lowers",
    "stabilises",
    "predicts",
    "delays",
    "restores",
]
OBJECTS = [
    "HRV",
    "alertness",
    "mood",
    "glucose",
    "performance",
    "onset",
    "consolidation",
    "appetite",
    "focus",
]
UNKNOWN = [
    "quasar",
    "lattice",
    "chromodynamics",
    "basalt",
    "sonnet",
    "tariff",
    "glacier",
    "opera",
    "violin",
]
FILLER = ["really", "somehow", "overall", "lately", "honestly", "typically", "usually"]


def corpus(rng: random.Random, n: int) -> list[tuple[str, str, dict[str, Any]]]:
    items = []
    for i in range(n):
        topic = rng.choice(list(TOPICS))
        a, b = rng.sample(TOPICS[topic], 2)
        text = f"{a.capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} via {b} ({i})"
        items.append((f"{topic}-{i}", text, {"topic": topic}))
    return items


def words(text: str) -> list[str]:
    return [w for w in text.split() if w[0].isalpha()]


def query_of(kind: str, item: tuple[str, str, Any], rng: random.Random) -> str:
    w = words(item[1])
    if kind == "structured":  # two of the item's words: a full-text (AND) match
        return " ".join(rng.sample(w, 2)).lower()
    if kind == "semantic":  # most of its words plus words no item has: AND fails
        return " ".join([*rng.sample(w, min(3, len(w))), *rng.sample(FILLER, 2)]).lower()
    return " ".join(rng.sample(UNKNOWN, 3))


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


# --------------------------------------------------------------------------- 1
async def pick_queries(mem: TieredMemory, items: list[Any]) -> dict[str, str]:
    """One query per kind, served by that kind's tier (checked, not assumed)."""
    rng = random.Random(7)
    cache_q = query_of("structured", items[0], rng)
    mem.promote = True
    await mem.load(cache_q)
    assert (await mem.load(cache_q)).tier == "redis_immediate"
    mem.promote = False
    queries = {"cache hit (redis)": cache_q}
    for kind, label, tier in (
        ("structured", "structured (redis+pg)", "postgresql_structured"),
        ("semantic", "semantic (redis+pg+chroma)", "chromadb_semantic"),
        ("miss", "miss (all three)", "miss"),
    ):
        for item in items[1:]:
            q = query_of(kind, item, rng)
            if (await mem.load(q)).tier == tier:
                queries[label] = q
                break
    return queries


async def timed_block(mem: TieredMemory, q: str, track: bool, n: int) -> tuple[float, float]:
    """Mean wall time and mean process CPU time (every thread) per load, in us."""
    mem.track = track
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await mem.load(q, agent="bench")
    return (time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(xs, n=4)
    return q1, q2, q3


async def overhead(
    mem: TieredMemory,
    items: list[Any],
    rounds: int,
    block: int,
    linger: float | None,
) -> None:
    queries = await pick_queries(mem, items)
    if linger is not None:
        mem.events.linger_s = linger
    print(
        "\n1. tracking overhead per load, tracked vs untracked, same run (promotion off;"
        f" event_linger_s={mem.events.linger_s}, default Publisher)"
    )
    print(
        f"   method: {rounds} rounds; each round one block of {block} tracked and one of"
        f" {block} untracked\n   loads of the same query (order alternating between rounds)."
        " Per block the mean wall\n   time and the process CPU time (every thread, so the"
        " publisher thread's XADDs count)\n   per load; per round tracked minus untracked."
        " Shown: median of the rounds [interquartile\n   range] -- the machine is shared,"
        " so the spread is shown, not hidden."
        " us = microseconds."
    )
    print(
        f"   {'kind':27} {'events':>6} {'untracked':>9} {'wall +us [IQR]':>22} {'+%':>6}"
        f" {'cpu +us [IQR]':>22}"
    )
    for label, q in queries.items():
        res = await mem.load(q)
        await timed_block(mem, q, True, 20)  # warm both paths
        await timed_block(mem, q, False, 20)
        base: list[float] = []
        dwall: list[float] = []
        dcpu: list[float] = []
        for r in range(rounds):
            got = {}
            for track in (True, False) if r % 2 else (False, True):
                got[track] = await timed_block(mem, q, track, block)
            base.append(got[False][0])
            dwall.append(got[True][0] - got[False][0])
            dcpu.append(got[True][1] - got[False][1])
        w1, w2, w3 = quartiles(dwall)
        c1, c2, c3 = quartiles(dcpu)
        b = statistics.median(base)
        print(
            f"   {label:27} {1 + max(1, len(res.items)):6} {b:9.0f}"
            f" {w2:7.1f} [{w1:6.0f},{w3:5.0f}] {100 * w2 / b:5.1f}%"
            f" {c2:7.1f} [{c1:6.0f},{c3:5.0f}]"
        )
    mem.track = True
    print(
        "   the caller-side step alone, tight loop (build the events and queue them; every"
        "\n   1000 events they are encoded and enqueued on the publisher inside the call):"
    )
    lat = {"redis": 0.21, "postgresql": 0.93}
    five = [MemoryItem(id=i, text=t, metadata=m, source="postgresql") for i, t, m in items[:5]]
    for n_items in (0, 1, 5):
        tier: TierAccessed = "postgresql_structured" if n_items else "miss"
        one = MemoryResult(five[:n_items], tier, lat)
        samples = []
        for _ in range(3000):
            t0 = time.perf_counter()
            mem._publish("how does losing sleep hurt memory", one, "bench", None)
            samples.append((time.perf_counter() - t0) * 1e6)
        print(
            f"     1 tier event + {max(1, n_items)} knowledge event(s): "
            f"p50 {statistics.median(samples):.1f} us, p99 {pct(samples, 99):.1f} us"
        )
    mem.flush_events()


# --------------------------------------------------------------------------- 2
async def workload(mem: TieredMemory, items: list[Any], loads: int) -> dict[str, int]:
    """Zipf-ish repeats of popular questions, plus fresh structured, semantic and unknown ones."""
    rng = random.Random(42)
    popular = [
        query_of(rng.choice(["structured", "semantic"]), rng.choice(items), rng) for _ in range(20)
    ]
    weights = [1 / (k + 1) for k in range(len(popular))]
    agents = ["sleep_specialist", "nutritionist", "neuroscientist", "training_coach"]
    served: dict[str, int] = {}
    for _ in range(loads):
        u = rng.random()
        if u < 0.45:
            q = rng.choices(popular, weights)[0]
        elif u < 0.70:
            q = query_of("structured", rng.choice(items), rng)
        elif u < 0.90:
            q = query_of("semantic", rng.choice(items), rng)
        else:
            q = query_of("miss", items[0], rng)
        r = await mem.load(q, agent=rng.choice(agents))
        served[r.tier] = served.get(r.tier, 0) + 1
    return served


def tier_stats(url: str, stream: str) -> dict[str, Any]:
    from auren_core.state import Reducer

    rows: Any = redis.Redis.from_url(url).xrange(stream)
    evs = [decode(f[b"e"], sid.decode()) for sid, f in rows]
    red = Reducer(window_s=24 * 3600)
    red.apply_batch([e for e in evs if isinstance(e, Event)])
    return red.state().tier_stats()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--redis-url", default=os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ap.add_argument(
        "--pg-dsn",
        default=os.environ.get("AUREN_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--loads", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--block", type=int, default=20)
    ap.add_argument(
        "--linger",
        type=float,
        default=None,
        help="TieredMemory event_linger_s for part 1 (default: 0.05, then 0 to compare)",
    )
    ap.add_argument(
        "--tier-costs",
        default="",
        help="per-access USD prices to publish, e.g. redis=0.000001,chromadb=0.0002",
    )
    args = ap.parse_args()
    costs = {k: float(v) for k, v in (kv.split("=") for kv in args.tier_costs.split(",") if kv)}

    ns = f"bench-{uuid.uuid4().hex[:8]}"
    table = f"bench_mem_{uuid.uuid4().hex[:8]}"
    stream = f"bench:mem:{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="auren-bench-chroma-")
    pub = Publisher(args.redis_url, stream, stats_interval=3600)
    mem = TieredMemory(
        args.redis_url,
        args.pg_dsn,
        chroma_path=tmp,
        publisher=pub,
        namespace=ns,
        pg_table=table,
        tier_costs_usd=costs,
    )
    items = corpus(random.Random(1), args.items)
    print(f"tiered memory benchmark: redis {args.redis_url}, postgresql, chroma {tmp}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; corpus {len(items)} items")
    try:
        t0 = time.perf_counter()
        assert (await mem.save_many(items)).ok
        print(f"save_many of {len(items)} items: {time.perf_counter() - t0:.2f} s")
        # The memory's default (batched hand-over) and, for comparison, per-load hand-over.
        for linger in [args.linger] if args.linger is not None else [0.05, 0.0]:
            await overhead(mem, items, args.rounds, args.block, linger)
        mem.events.linger_s = 0.05
        mem.flush_events()
        assert pub.flush(20)
        redis.Redis.from_url(args.redis_url).delete(stream)  # part 2 starts from nothing
        await mem.clear_cache()
        mem.promote, mem.track = True, True
        t0 = time.perf_counter()
        served = await workload(mem, items, args.loads)
        took = time.perf_counter() - t0
        mem.flush_events()
        assert pub.flush(20)
        print(f"\n2. tier statistics: {args.loads} loads (seed 42) in {took:.2f} s, promotion on")
        print(f"   served (from the load results): {json.dumps(served, sort_keys=True)}")
        print("   GET /api/v2/memory/tier-stats shape, reduced from the published events:")
        print(json.dumps(tier_stats(args.redis_url, stream), indent=2, sort_keys=True))
    finally:
        await mem.aclose()
        pub.close()
        r = redis.Redis.from_url(args.redis_url)
        r.delete(stream)
        keys = list(r.scan_iter(match=f"{ns}:*"))
        if keys:
            r.delete(*keys)
        conn = await asyncpg.connect(args.pg_dsn)
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
