"""Async reader: backfill, tail, and resume across dropped connections."""

from __future__ import annotations

import asyncio
import threading
import time

import redis
from servers import PrivateRedis
from waiting import await_until

from auren_core.events import Event, Malformed, encode_fields
from auren_core.streams.reader import Batch, StreamReader, id_for_time


def fill(url: str, stream: str, n: int, start: int = 0) -> None:
    r = redis.Redis.from_url(url)
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(
            stream, {"e": encode_fields("tool_used", {"tool": "t", "duration_ms": i}, "a", None)}
        )
    pipe.execute()


async def collect(reader: StreamReader, until: int, timeout: float = 20) -> list[Batch]:
    out: list[Batch] = []
    got = 0

    async def run() -> None:
        nonlocal got
        async for b in reader.batches():
            out.append(b)
            got += len(b.items)
            if got >= until:
                await reader.close()
                return

    await asyncio.wait_for(run(), timeout)
    return out


def numbers(batches: list[Batch]) -> list[int]:
    return [int(i.payload["duration_ms"]) for b in batches for i in b.items if isinstance(i, Event)]


async def test_backfill_everything_then_tail(redis_url: str, stream: str) -> None:
    fill(redis_url, stream, 3000)
    reader = StreamReader(redis_url, stream, start_id="0-0", block_ms=100, batch_count=500)
    task = asyncio.create_task(collect(reader, 4000))
    head = redis.Redis.from_url(redis_url).xinfo_stream(stream)["last-generated-id"].decode()
    await await_until(lambda: reader.last_id == head, "the backfill read")  # then the tail
    await asyncio.to_thread(fill, redis_url, stream, 1000, 3000)
    batches = await task
    assert numbers(batches) == list(range(4000))


async def test_backfill_by_count(redis_url: str, stream: str) -> None:
    fill(redis_url, stream, 100)
    reader = StreamReader(redis_url, stream, backfill_count=10, block_ms=100)
    batches = await collect(reader, 10)
    assert numbers(batches) == list(range(90, 100))
    assert batches[0].backfill


async def test_backfill_by_time_window(redis_url: str, stream: str) -> None:
    r = redis.Redis.from_url(redis_url)
    now_ms = int(time.time() * 1000)
    for i, age_s in enumerate([7200, 3000, 10]):  # two hours, 50 min, 10 s ago
        r.xadd(
            stream,
            {"e": encode_fields("crew_started", {"crew": str(i)}, None, None)},
            id=f"{now_ms - age_s * 1000}-0",
        )
    reader = StreamReader(redis_url, stream, since=time.time() - 3600, block_ms=100)
    got: list[Batch] = []

    async def run() -> None:
        async for b in reader.batches():
            got.append(b)
            if b.backfill and not b.items:  # end-of-backfill marker
                await reader.close()

    await asyncio.wait_for(run(), 10)
    crews = [i.payload["crew"] for b in got for i in b.items if isinstance(i, Event)]
    assert crews == ["1", "2"]
    assert id_for_time(1.5) == "1500-0"


async def test_start_from_now_skips_history(redis_url: str, stream: str) -> None:
    fill(redis_url, stream, 50)
    reader = StreamReader(redis_url, stream, start_id="$", block_ms=100)
    task = asyncio.create_task(collect(reader, 5))
    await await_until(lambda: reader.last_id is not None, 'the reader to resolve "$"')
    await asyncio.to_thread(fill, redis_url, stream, 5, 50)
    assert numbers(await task) == list(range(50, 55))


async def test_malformed_entries_are_values(redis_url: str, stream: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.xadd(stream, {"e": b"{broken"})
    r.xadd(stream, {"other": b"x"})
    fill(redis_url, stream, 1)
    batches = await collect(StreamReader(redis_url, stream, start_id="0-0", block_ms=100), 3)
    kinds = [type(i).__name__ for b in batches for i in b.items]
    assert kinds == ["Malformed", "Malformed", "Event"]
    bad = [i for b in batches for i in b.items if isinstance(i, Malformed)]
    assert "bad envelope" in bad[0].reason and "no 'e'" in bad[1].reason


async def test_resumes_across_dropped_connections_no_gap_no_duplicate(
    private_redis: PrivateRedis,
) -> None:
    url, stream, total = private_redis.url, "s", 20_000
    statuses: list[str] = []
    reader = StreamReader(
        url,
        stream,
        start_id="0-0",
        block_ms=200,
        batch_count=300,
        on_status=lambda s, d: statuses.append(s),
    )
    stop = threading.Event()

    def writer_and_killer() -> None:
        r = redis.Redis.from_url(url)
        for k in range(20):
            fill(url, stream, total // 20, k * (total // 20))
            r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            if k == 10:  # a server that hangs for a while: reads time out
                private_redis.pause()
                time.sleep(0.5)  # the hang under test
                private_redis.resume()
            time.sleep(0.05)  # the writer's pace: the reader reads between the kills
        stop.set()

    t = threading.Thread(target=writer_and_killer)
    t.start()
    batches = await collect(reader, total, timeout=60)
    t.join()
    assert numbers(batches) == list(range(total))
    assert "reconnecting" in statuses and reader.reconnects >= 1
