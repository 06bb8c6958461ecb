"""Sharded streams on a local 3-master / 3-replica cluster (issue 15). Prints figures with
their method; asserts nothing.

  PYTHONPATH=. .venv/bin/python bench/bench_cluster.py [--events 60000]

1. publisher throughput, 1 vs 3 vs 6 shards: one Publisher (one thread) emits N events
   (runs spread over the shards) and flushes; against a bare ``RedisCluster`` pipelined
   XADD loop of the same pre-encoded entries over the same keys, same run.
2. reader throughput, 1 vs 3 vs 6 shards: a ShardedReader from 0-0 until N events are out.
3. merge overhead at 10k ev/s: a paced emitter (10k events/s, 3 s) and a tailing reader;
   event time -> batch handed out (p50/p99), 1 shard vs 6.
The cluster (tests/cluster.py) runs on this machine's cores, so the "scaling" columns show
what the client side costs per shard here, not what more machines would give.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import LocalCluster
from redis.cluster import RedisCluster

from auren_core.events import encode_fields
from auren_core.streams.publisher import Publisher
from auren_core.streams.sharded_reader import ShardedReader
from auren_core.streams.shards import shard_keys, shard_of


def bare(c: LocalCluster, stream: str, shards: int, n: int) -> float:
    rc = RedisCluster(host="127.0.0.1", port=c.alive_port())
    keys = shard_keys(stream, shards)
    data = [
        (keys[shard_of(f"r{i % 64}", None, shards, i)],
         encode_fields("tool_used", {"tool": "x", "i": i}, "a", f"r{i % 64}", None, None))
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for j in range(0, n, 1000):
        pipe = rc.pipeline(transaction=False)
        for key, d in data[j : j + 1000]:
            pipe.execute_command("XADD", key, "MAXLEN", "~", 1_000_000, "*", "e", d)
        pipe.execute()
    dt = time.perf_counter() - t0
    rc.close()
    return n / dt


def publisher(c: LocalCluster, stream: str, shards: int, n: int) -> float:
    pub = Publisher(c.url, stream, shards=shards, stats_interval=3600, buffer_size=n + 10)
    pub.emit("tool_used", {"tool": "warm"}, run="w")
    pub.flush(10)
    t0 = time.perf_counter()
    for i in range(n):
        pub.emit("tool_used", {"tool": "x", "i": i}, agent="a", run=f"r{i % 64}")
    pub.flush(120)
    dt = time.perf_counter() - t0
    pub.close()
    return n / dt


def reader(c: LocalCluster, stream: str, shards: int, n: int) -> float:
    async def go() -> float:
        r = ShardedReader(c.url, stream, shards, start_id="0-0", batch_count=2000)
        got = 0
        t0 = time.perf_counter()
        async for b in r.batches():
            got += len(b.items)
            if got >= n:
                break
        dt = time.perf_counter() - t0
        await r.close()
        return got / dt

    return asyncio.run(go())


def merge_latency(c: LocalCluster, stream: str, shards: int, rate: int, secs: float) -> list[float]:
    async def go() -> list[float]:
        r = ShardedReader(c.url, stream, shards, start_id="$", block_ms=100)
        lat: list[float] = []
        want = int(rate * secs)

        async def consume() -> None:
            async for b in r.batches():
                now = time.time()
                lat.extend(now - e.ts for e in b.items if hasattr(e, "ts"))
                if len(lat) >= want:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        pub = Publisher(c.url, stream, shards=shards, stats_interval=3600)

        def pace() -> None:
            t0 = time.perf_counter()
            for i in range(want):
                target = t0 + i / rate
                while time.perf_counter() < target:
                    time.sleep(0.0005)
                pub.emit("tool_used", {"tool": "x"}, agent="a", run=f"r{i % 64}")
            pub.flush(30)

        await asyncio.to_thread(pace)
        await asyncio.wait_for(task, 30)
        pub.close()
        await r.close()
        return lat

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60_000)
    args = ap.parse_args()
    n = args.events
    with LocalCluster() as c:
        print(f"cluster: 3 masters + 3 replicas on loopback; {n} events per measurement")
        print("\n1. publisher throughput (events/s)")
        print(f"{'shards':>6} {'bare RedisCluster':>18} {'Publisher':>10} {'ratio':>6}")
        streams = {}
        for shards in (1, 3, 6):
            s_bare = f"bench:{uuid.uuid4().hex[:6]}"
            s_pub = streams[shards] = f"bench:{uuid.uuid4().hex[:6]}"
            b = bare(c, s_bare, shards, n)
            p = publisher(c, s_pub, shards, n)
            print(f"{shards:>6} {b:>18,.0f} {p:>10,.0f} {p / b:>6.2f}")
        print("\n2. reader throughput, 0-0 to the end (events/s)")
        for shards in (1, 3, 6):
            print(f"{shards:>6} {reader(c, streams[shards], shards, n):>12,.0f}")
        print("\n3. event time -> batch out at 10k events/s for 3 s (ms)")
        for shards in (1, 6):
            lat = sorted(merge_latency(c, f"bench:{uuid.uuid4().hex[:6]}", shards, 10_000, 3.0))
            p50 = statistics.median(lat) * 1000
            p99 = lat[int(len(lat) * 0.99)] * 1000
            print(f"{shards:>6} shards: p50 {p50:6.1f}  p99 {p99:6.1f}  ({len(lat)} events)")


if __name__ == "__main__":
    main()
