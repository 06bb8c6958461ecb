"""Sink throughput: stream -> PostgreSQL through ``auren persist``'s Sink, vs a bare COPY.

Method: N llm_call events are XADDed to a fresh stream (not timed). Then, in the same run,
against the same PostgreSQL:

* baseline - the same rows, already built as tuples, COPYed straight into a fresh
  ``events`` table (same partitioned schema) with asyncpg: the floor for getting rows in;
* sink     - a :class:`auren_core.store.sink.Sink` (XREADGROUP batches, decode and validate,
  COPY into ``events`` under a savepoint - staging + ON CONFLICT only when a batch holds a
  redelivered entry - commit, XACK; the next batch is read while one is written) from start
  until every entry is acked.

Prints events/s for both and the ratio. Target: sink >= 20,000 events/s.
Usage: .venv/bin/python bench/bench_sink.py [--events 200000] [--batch 5000] [--redis-url ..]
[--pg-dsn ..]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
import uuid

import asyncpg
import msgspec
import redis

from auren_core.events import encode, make_event
from auren_core.store import ensure_schema
from auren_core.store.schema import ensure_partitions
from auren_core.store.sink import Sink
from auren_core.store.writer import EVENT_COLUMNS, event_row


def make_entries(n: int) -> list[bytes]:
    now = time.time()
    return [
        encode(
            make_event(
                "llm_call",
                {
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "input_tokens": 400 + i % 50,
                    "output_tokens": 120,
                    "cached_tokens": 0,
                    "cost_usd": 0.000132,
                    "cost_source": "genai-prices",
                    "latency_ms": 812.5,
                    "ok": True,
                },
                agent=f"agent{i % 8}",
                run=f"run{i // 1000}",
                ts=now - (n - i) * 0.001,
            )
        )
        for i in range(n)
    ]


async def baseline_copy(dsn: str, schema: str, entries: list[bytes]) -> float:
    """Bare COPY of the same rows (pre-built tuples) into a fresh events table."""
    from auren_core.events import Event

    dec = msgspec.json.Decoder(Event)
    now = time.time()
    rows = []
    for i, raw in enumerate(entries):
        ev = msgspec.structs.replace(dec.decode(raw), sid=f"{i + 1}-0")
        row = event_row(ev, now)
        assert not isinstance(row, str)
        rows.append(row)
    conn = await asyncpg.connect(dsn)
    try:
        await ensure_schema(conn, schema)
        days = {r[1].astimezone(dt.UTC).date() for r in rows}
        await ensure_partitions(conn, schema, "events", days, set())
        t0 = time.perf_counter()
        await conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS,
                                          schema_name=schema)  # fmt: skip
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def run_sink(
    redis_url: str, stream: str, dsn: str, schema: str, n: int, batch: int, **kw: object
) -> float:
    sink = Sink(redis_url, stream, dsn, schema=schema, consumer="bench", batch_size=batch,
                maintain_every_s=0, **kw)  # type: ignore[arg-type]  # fmt: skip
    # schema and partitions created before timing, as a long-running sink would have them
    conn = await asyncpg.connect(dsn)
    await ensure_schema(conn, schema)
    await conn.close()
    t0 = time.perf_counter()
    task = asyncio.create_task(sink.run())
    deadline = time.monotonic() + 300
    while sink.stats.acked < n:
        await asyncio.sleep(0.01)
        if task.done() or time.monotonic() > deadline:
            sink.stop()
            raise RuntimeError(f"sink stopped or stuck: {sink.stats}")
    elapsed = time.perf_counter() - t0
    sink.stop()
    await task
    assert sink.stats.inserted == n, sink.stats
    return elapsed


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    n = args.events
    tag = uuid.uuid4().hex[:8]
    stream, s_base, s_sink = f"auren:bench:{tag}", f"bench_copy_{tag}", f"bench_sink_{tag}"
    entries = make_entries(n)
    r = redis.Redis.from_url(args.redis_url)
    try:
        for i in range(0, n, 5000):
            pipe = r.pipeline(transaction=False)
            for raw in entries[i : i + 5000]:
                pipe.xadd(stream, {"e": raw})
            pipe.execute()
        base = await baseline_copy(args.pg_dsn, s_base, entries)
        sink = await run_sink(args.redis_url, stream, args.pg_dsn, s_sink, n, args.batch)
    finally:
        r.delete(stream)
        conn = await asyncpg.connect(args.pg_dsn)
        for s in (s_base, s_sink):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        await conn.close()
    print(f"events: {n}, batch {args.batch}")
    print(f"baseline bare COPY (pre-built rows): {base:7.3f} s  {n / base:10,.0f} events/s")
    print(f"sink (XREADGROUP+decode+COPY+XACK): {sink:7.3f} s  {n / sink:10,.0f} events/s")
    print(f"sink / bare COPY time ratio: {sink / base:.2f}x   target >= 20,000 events/s: "
          f"{'met' if n / sink >= 20_000 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
