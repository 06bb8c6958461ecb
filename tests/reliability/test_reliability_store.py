"""Reliability of ``auren persist`` maintenance (issue 16, item 3), on a real PostgreSQL.

* a rollup whose token sum exceeds 2^63 succeeds (sums are numeric, schema migration 3);
* one failing step (a day's rollup, an aggregate partition's drop) never blocks the others;
* every failure is visible: in ``maintenance_status`` (``auren doctor``), in the Redis hash
  the sink publishes, and on serve-ws ``/metrics``.

Failures are injected with real PostgreSQL objects: a trigger that refuses inserts into one
day's rollup partition, a view that depends on one aggregate partition.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
from typing import Any

import asyncpg
import msgspec
import pytest
import redis
from waiting import await_until

from auren_core import doctor
from auren_core.events import make_event
from auren_core.export import build_reports
from auren_core.store import RetentionPolicy, ensure_schema, list_partitions, maintain
from auren_core.store import schema as schema_mod
from auren_core.store.queries import fetch_aggregates
from auren_core.store.retention import read_status
from auren_core.store.schema import ensure_partitions, maintenance_key
from auren_core.store.sink import Sink
from auren_core.store.writer import Writer

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=UTC).timestamp()
TODAY = dt.datetime.fromtimestamp(NOW, UTC).date()
BIG = 5 * 10**18  # fits a bigint (< 2^63 ~ 9.22e18); two of them do not


def _llm(ts: float, tokens: int, sid: str) -> Any:
    ev = make_event("llm_call", {"model": "m", "input_tokens": tokens}, agent="a", ts=ts)
    return msgspec.structs.replace(ev, sid=sid)


async def _seed_big_hourly(conn: asyncpg.Connection, schema: str, day: dt.date) -> None:
    """Two hourly rows of one (agent, type, key) whose sum exceeds bigint: what a day whose
    detail was dropped and re-rolled (additive) accumulates, or a real long-running day."""
    await ensure_partitions(conn, schema, "agg_hourly", {day}, set())
    lo = dt.datetime.combine(day, dt.time(), UTC)
    for h in (1, 2):
        await conn.execute(
            f'INSERT INTO "{schema}".agg_hourly (bucket, agent, type, key, events, input_tokens,'
            " output_tokens, cached_tokens, cost_usd, unpriced, errors, latency_ms_sum,"
            " latency_n) VALUES ($1, 'a', 'llm_call', 'old-model', 1, $2, 0, 0, 0, 1, 0, 0, 0)",
            lo + dt.timedelta(hours=h),
            BIG,
        )


async def test_rollup_whose_token_sum_exceeds_bigint_succeeds(
    conn: asyncpg.Connection, schema: str
) -> None:
    await ensure_schema(conn, schema)
    w = Writer(conn, schema, clock=lambda: NOW)
    assert (await w.write([_llm(NOW - 60, 7, "1-0")])).inserted == 1
    await _seed_big_hourly(conn, schema, TODAY)
    res = await maintain(conn, schema, now=NOW, policy=RetentionPolicy())
    assert res is not None
    assert res.failures == []
    assert res.rolled_days == [TODAY]
    daily = {
        r["key"]: r["input_tokens"]
        for r in await conn.fetch(f'SELECT key, input_tokens FROM "{schema}".agg_daily')
    }
    assert daily == {"old-model": 2 * BIG, "m": 7}
    assert 2 * BIG > 2**63
    # read back as Python ints, and the export counts them exactly
    rows = await fetch_aggregates(conn, schema)
    assert {r["key"]: r["input_tokens"] for r in rows} == {"old-model": 2 * BIG, "m": 7}
    assert all(type(r["input_tokens"]) is int and type(r["events"]) is int for r in rows)
    tokens = build_reports([], ["tokens"], aggregates=rows)["tokens"]
    assert sum(r["input_tokens"] for r in tokens) == 2 * BIG + 7
    # a second run (upsert over numeric rows) is as good
    again = await maintain(conn, schema, now=NOW, policy=RetentionPolicy())
    assert again is not None and again.failures == []


async def test_migration_3_turns_existing_bigint_rollups_into_numeric(
    conn: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS[:2])
    assert await ensure_schema(conn, schema) == 2
    await _seed_big_hourly(conn, schema, TODAY)  # existing rows, in an existing partition
    monkeypatch.undo()
    assert await ensure_schema(conn, schema) == len(schema_mod.MIGRATIONS) >= 3
    types = {
        r["column_name"]: r["data_type"]
        for r in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = $1 AND table_name = 'agg_hourly_p{TODAY:%Y%m%d}'",
            schema,
        )
    }
    assert {types[c] for c in schema_mod.AGG_COUNTS} == {"numeric"}
    assert await conn.fetchval(f'SELECT sum(input_tokens) FROM "{schema}".agg_hourly') == 2 * BIG
    res = await maintain(conn, schema, now=NOW)
    assert res is not None and res.failures == []


async def _refuse_rollups_of(conn: asyncpg.Connection, schema: str, day: dt.date) -> None:
    """Make every rollup of ``day`` fail: its hourly partition refuses inserts."""
    await ensure_partitions(conn, schema, "agg_hourly", {day}, set())
    await conn.execute(
        f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS '
        "$$BEGIN RAISE EXCEPTION 'injected rollup failure'; END$$"
    )
    await conn.execute(
        f'CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".agg_hourly_p{day:%Y%m%d} '
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
    )


async def _setup_failing_store(conn: asyncpg.Connection, schema: str) -> dict[str, dt.date]:
    """Days: ``bad`` (expired, its rollup fails), ``good`` (expired), today; two aggregate
    days past ``agg_days``, the older one pinned by a view (its drop fails)."""
    await ensure_schema(conn, schema)
    days = {
        "bad": TODAY - dt.timedelta(days=20),
        "good": TODAY - dt.timedelta(days=15),
        "agg_pinned": TODAY - dt.timedelta(days=101),
        "agg_old": TODAY - dt.timedelta(days=100),
    }
    w = Writer(conn, schema, clock=lambda: NOW)
    items = [
        _llm(NOW - 20 * 86400, 3, "1-0"),
        _llm(NOW - 15 * 86400, 4, "2-0"),
        _llm(NOW - 15 * 86400 + 1, 5, "2-1"),
        _llm(NOW - 60, 6, "3-0"),
    ]
    assert (await w.write(items)).inserted == 4
    for table in ("agg_hourly", "agg_daily"):
        await ensure_partitions(conn, schema, table, {days["agg_pinned"], days["agg_old"]}, set())
    await conn.execute(
        f'CREATE VIEW "{schema}".pin AS SELECT * FROM '
        f'"{schema}".agg_daily_p{days["agg_pinned"]:%Y%m%d}'
    )
    await _refuse_rollups_of(conn, schema, days["bad"])
    return days


async def test_a_failing_day_does_not_stop_other_partitions_from_being_dropped(
    conn: asyncpg.Connection, schema: str, pg_dsn: str
) -> None:
    conn_dsn = pg_dsn
    days = await _setup_failing_store(conn, schema)
    policy = RetentionPolicy(detail_days=7, agg_days=90)
    res = await maintain(conn, schema, now=NOW, policy=policy)
    assert res is not None
    failed = {(f.step, f.target) for f in res.failures}
    assert failed == {
        ("rollup", days["bad"].isoformat()),
        ("drop_agg_daily", days["agg_pinned"].isoformat()),
    }
    assert all(f.error for f in res.failures)
    assert "injected rollup failure" in next(f.error for f in res.failures if f.step == "rollup")
    # the good expired day was rolled up and dropped although an older day failed before it
    assert res.dropped_events == [days["good"]]
    assert set(res.rolled_days) == {days["good"], TODAY}
    assert days["agg_old"] in res.dropped_aggregates
    # the failed day keeps its detail (nothing lost): retried next run
    parts = await list_partitions(conn, schema, "events")
    assert set(parts) == {days["bad"], TODAY}
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".events') == 2
    daily = {
        r["bucket"].date(): r["input_tokens"]
        for r in await conn.fetch(f'SELECT bucket, input_tokens FROM "{schema}".agg_daily')
    }
    assert daily == {days["good"]: 9, TODAY: 6}
    assert days["agg_old"] not in await list_partitions(conn, schema, "agg_daily")
    assert days["agg_pinned"] in await list_partitions(conn, schema, "agg_daily")

    # visible: maintenance_status rows, and auren doctor's lines built from them
    status = await read_status(conn, schema)
    assert status[0]["step"] == "run" and status[0]["ok"] is False
    assert status[0]["failures"] == 2
    failing = {(r["step"], r["target"]) for r in status if not r["ok"] and r["step"] != "run"}
    assert failing == failed
    checks = doctor.maintenance_checks(status, now=time.time())
    assert [c.ok for c in checks] == [False, False, False]
    names = " ".join(c.name for c in checks)
    assert f"rollup {days['bad'].isoformat()}" in names
    assert "injected rollup failure" in " ".join(c.detail for c in checks)
    from auren_core.config import load_settings

    cli = await asyncio.to_thread(doctor.check_postgres, load_settings(pg_dsn=conn_dsn), schema)
    assert cli[0].name == "postgresql" and cli[0].ok
    assert [c.name for c in cli[1:]] == [c.name for c in checks]

    # fixed: the next run catches up and clears the status
    await conn.execute(f'DROP TRIGGER refuse ON "{schema}".agg_hourly_p{days["bad"]:%Y%m%d}')
    await conn.execute(f'DROP VIEW "{schema}".pin')
    again = await maintain(conn, schema, now=NOW, policy=policy)
    assert again is not None and again.failures == []
    assert again.dropped_events == [days["bad"]]
    assert days["agg_pinned"] in again.dropped_aggregates
    status = await read_status(conn, schema)
    assert [(r["step"], r["ok"], r["failures"]) for r in status] == [("run", True, 0)]
    assert [c.ok for c in doctor.maintenance_checks(status)] == [True]


async def test_maintenance_failures_reach_redis_doctor_and_metrics(
    redis_url: str, stream: str, pg_dsn: str, schema: str, conn: asyncpg.Connection
) -> None:
    from server_helpers import aget, running

    days = await _setup_failing_store(conn, schema)
    r = redis.Redis.from_url(redis_url)
    key = maintenance_key(stream)
    r.delete(key)
    try:
        sink = Sink(redis_url, stream, pg_dsn, schema=schema, consumer="m", block_ms=100,
                    maintain_every_s=3600, clock=lambda: NOW,
                    policy=RetentionPolicy(detail_days=7, agg_days=90))  # fmt: skip
        task = asyncio.create_task(sink.run())
        await await_until(lambda: sink.stats.maintenance_runs >= 1, "a maintenance run", timeout=20)
        # the run's outcome written to Redis (the hash the doctor reads)
        await await_until(lambda: r.hexists(key, "failing"), "the maintenance hash", timeout=5)
        sink.stop()
        await task
        assert sink.stats.maintenance_runs == 1
        assert sink.stats.maintenance_failing == 2
        assert sink.stats.maintenance_failures == 2
        assert days["bad"].isoformat() in sink.stats.last_error
        raw: Any = r.hgetall(key)
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        assert fields["failing"] == "2" and fields["failures_total"] == "2"
        assert float(fields["last_run"]) == NOW and "last_ok" not in fields
        assert "injected rollup failure" in fields["last_error"]

        # auren doctor: the stream-side check (the hash) ...
        checks = doctor.maintenance_hash_check(r, stream, now=NOW + 5)
        assert len(checks) == 1 and not checks[0].ok
        assert "2 failing" in checks[0].detail and days["bad"].isoformat() in checks[0].detail

        # the CLI, end to end: both sources of maintenance lines, not a failing exit
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "auren_tui", "doctor", "--json", "--redis-url", redis_url,
             "--stream", stream, "--pg-dsn", pg_dsn, "--schema", schema],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        doc = json.loads(proc.stdout)
        lines = {c["name"]: c for c in doc["checks"]}
        assert lines["maintenance"]["ok"] is False
        assert lines["maintenance run"]["ok"] is False
        bad = lines[f"maintenance rollup {days['bad'].isoformat()}"]
        assert bad["ok"] is False and "injected rollup failure" in bad["detail"]
        assert lines[f"maintenance drop_agg_daily {days['agg_pinned'].isoformat()}"]["ok"] is False

        # ... and serve-ws /metrics
        async with running(redis_url, stream) as srv:
            body = ""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                body = (await aget(srv.port, "/metrics"))[2].decode()
                if _sample(body, "auren_persist_maintenance_failing") == 2:
                    break
                await asyncio.sleep(0.2)
        assert _sample(body, "auren_persist_maintenance_failing") == 2
        assert _sample(body, "auren_persist_maintenance_failures_total") == 2
        assert _sample(body, "auren_persist_maintenance_last_run_timestamp_seconds") == NOW
        assert _sample(body, "auren_persist_maintenance_last_success_timestamp_seconds") == 0
    finally:
        r.delete(key)
        r.close()


def _sample(body: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(body):
        for smp in fam.samples:
            if smp.name == name and not smp.labels:
                return float(smp.value)
    return None


async def test_metrics_show_no_maintenance_seen_by_default(redis_url: str, stream: str) -> None:
    from server_helpers import aget, running

    async with running(redis_url, stream) as srv:
        body = (await aget(srv.port, "/metrics"))[2].decode()
    assert _sample(body, "auren_persist_maintenance_failing") == -1
