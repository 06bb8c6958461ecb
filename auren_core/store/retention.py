"""Rollups and retention by dropping day partitions (never row-by-row deletes).

``maintain`` (run by the sink at start and every few minutes; one sink at a time thanks to
an advisory lock):

1. recomputes hourly and daily aggregates for each day that still has a detailed partition
   and is recent (today, yesterday), not yet rolled up, or about to expire;
2. drops the ``events`` partitions whose whole day is older than ``detail_days`` - in the same
   transaction as their final rollup, so aggregates always cover what was dropped;
3. drops aggregate partitions whose day is older than ``agg_days``.

Each step (one day's rollup, with its drop when the day expired; one aggregate partition's
drop) runs on its own: a step that fails is rolled back, recorded and reported
(:attr:`MaintenanceResult.failures`), and the others go on - a day whose rollup fails keeps
its detail (it is retried next run) but never keeps the other days' partitions from being
dropped. The run and every failing step are written to ``maintenance_status`` (a step that
succeeds again clears its row), which ``auren doctor`` reads. Sums are ``numeric`` (schema
migration 3): a day's token sum may exceed bigint.

Token counts, costs and unpriced counts follow :mod:`auren_core.rules` (written in SQL
below): ``cost_usd`` is the known cost of LLM calls, tool calls and memory loads;
``unpriced`` counts those without one (a tool's configured price is added at export time).

Granularity is one UTC day: a day's partition goes when its *end* passes the cutoff, so
detailed rows live between ``detail_days`` and ``detail_days + 1`` days.
"""

# SQL identifiers here are validated schema names quoted by qident(); values are $n params.
# ruff: noqa: S608
from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field
from typing import Any

from .. import rules
from .schema import AGG_COUNTS, ensure_partitions, list_partitions, qident

__all__ = [
    "MaintenanceFailure",
    "MaintenanceResult",
    "RetentionPolicy",
    "maintain",
    "read_status",
    "rollup_day",
]

UTC = dt.UTC
DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    detail_days: float = 7.0
    agg_days: float = 90.0


@dataclass(frozen=True, slots=True)
class MaintenanceFailure:
    step: str  # "rollup" (with the drop of an expired day) | "drop_agg_hourly" | "drop_agg_daily"
    target: str  # the day, ISO 8601
    error: str


@dataclass(slots=True)
class MaintenanceResult:
    rolled_days: list[dt.date] = field(default_factory=list)
    dropped_events: list[dt.date] = field(default_factory=list)
    dropped_aggregates: list[dt.date] = field(default_factory=list)
    failures: list[MaintenanceFailure] = field(default_factory=list)


def _num(expr: str) -> str:
    """A JSON number field as numeric (0 when absent or not a number), clamped."""
    return (
        f"CASE WHEN jsonb_typeof({expr}) = 'number' "
        f"THEN least(greatest(({expr})::text::numeric, -1e15), 1e15) ELSE 0 END"
    )


# The rules of auren_core.rules, in SQL (nested CASEs: a WHEN is only evaluated once the
# previous one failed, so a string never reaches a numeric cast).
def _tok(expr: str) -> str:
    """rules.tokens: an integer (or truncated float) from 0 to MAX_TOKENS, else 0."""
    return (
        f"CASE WHEN jsonb_typeof({expr}) = 'number' THEN CASE WHEN ({expr})::text::numeric "
        f"BETWEEN 0 AND {rules.MAX_TOKENS} THEN trunc(({expr})::text::numeric) ELSE 0 END "
        "ELSE 0 END"
    )


def _usd(expr: str) -> str:
    """rules.usd: a number from 0 to MAX_USD, else NULL (unknown)."""
    return (
        f"CASE WHEN jsonb_typeof({expr}) = 'number' THEN CASE WHEN ({expr})::text::numeric "
        f"BETWEEN 0 AND {rules.MAX_USD:.0f} THEN ({expr})::text::numeric END END"
    )


_FAILED = "payload->'ok' = 'false'::jsonb"
_COST_USD = _usd("payload->'cost_usd'")
# rules.llm_call_cost: unknown stays NULL, except a failed call that used no token (0)
_NO_TOKENS = " AND ".join(
    f"{_tok(f'payload->{k!r}')} = 0" for k in ("input_tokens", "output_tokens", "cached_tokens")
)
_LLM_COST = (
    f"CASE WHEN {_COST_USD} IS NOT NULL THEN {_COST_USD} WHEN {_FAILED} AND {_NO_TOKENS} THEN 0 END"
)
_TIER_NAMES = ", ".join(f"'{k}'" for k in rules.TIER_ALIASES)
# rules.tier_access: cost_by_tier (known tier names, valid prices), else cost_usd
_MEM_COST = (
    "CASE WHEN jsonb_typeof(payload->'cost_by_tier') = 'object' "
    "AND payload->'cost_by_tier' <> jsonb_build_object() THEN (SELECT coalesce(sum("
    + _usd("value")
    + f"), 0) FROM jsonb_each(payload->'cost_by_tier') WHERE key IN ({_TIER_NAMES})) "
    f"ELSE {_COST_USD} END"
)
# the event's known cost (NULL: unknown) for the three priced types; tool fallbacks from
# [tool_costs] are applied at export time to the rows' unpriced tool calls
_COST = f"""CASE type
    WHEN 'llm_call' THEN {_LLM_COST}
    WHEN 'tool_used' THEN {_COST_USD}
    WHEN 'memory_tier_access' THEN {_MEM_COST}
    ELSE 0 END"""

_KEY = """coalesce(CASE type
    WHEN 'llm_call' THEN payload->>'model'
    WHEN 'tool_used' THEN payload->>'tool'
    WHEN 'memory_tier_access' THEN payload->>'tier_accessed'
    WHEN 'knowledge_access' THEN payload->>'item'
    WHEN 'collaboration' THEN payload->>'to_agent'
    ELSE '' END, '')"""

_LLM = "type = 'llm_call'"
_HOURLY_SELECT = f"""
SELECT date_trunc('hour', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
       coalesce(agent, '') AS agent, type, {_KEY} AS key,
       count(*),
       sum(CASE WHEN {_LLM} THEN {_tok("payload->'input_tokens'")} ELSE 0 END)::numeric,
       sum(CASE WHEN {_LLM} THEN {_tok("payload->'output_tokens'")} ELSE 0 END)::numeric,
       sum(CASE WHEN {_LLM} THEN {_tok("payload->'cached_tokens'")} ELSE 0 END)::numeric,
       coalesce(sum({_COST}), 0)::double precision,
       count(*) FILTER (WHERE ({_COST}) IS NULL),
       count(*) FILTER (WHERE {_FAILED} OR type IN ('task_failed','agent_failed')),
       sum({_num("coalesce(payload->'latency_ms', payload->'duration_ms')")})::double precision,
       count(*) FILTER (WHERE jsonb_typeof(coalesce(payload->'latency_ms',
                        payload->'duration_ms')) = 'number')
FROM {{s}}.events WHERE ts >= $1 AND ts < $2
GROUP BY 1, 2, 3, 4
"""

_MEASURES = (
    "events, input_tokens, output_tokens, cached_tokens, cost_usd, unpriced, errors, "
    "latency_ms_sum, latency_n"
)
_UPSERT = ", ".join(f"{c.strip()} = EXCLUDED.{c.strip()}" for c in _MEASURES.split(","))
_ADD = ", ".join(
    f"{c.strip()} = agg_hourly.{c.strip()} + EXCLUDED.{c.strip()}" for c in _MEASURES.split(",")
)


def _lock_key(schema: str) -> int:
    return zlib.crc32(f"auren-maintain:{schema}".encode()) - 2**31


async def rollup_day(conn: Any, schema: str, day: dt.date, *, additive: bool = False) -> None:
    """Recompute the hourly and daily aggregates of ``day`` from its detailed events.
    ``additive``: the day's earlier detail was already dropped (what is left are late rows),
    so hourly figures are added to the existing rollup instead of replacing it."""
    s = qident(schema)
    lo = dt.datetime.combine(day, dt.time(), UTC)
    hi = lo + DAY
    await ensure_partitions(conn, schema, "agg_hourly", {day}, set())
    await ensure_partitions(conn, schema, "agg_daily", {day}, set())
    await conn.execute(
        f"INSERT INTO {s}.agg_hourly (bucket, agent, type, key, {_MEASURES}) "
        + _HOURLY_SELECT.format(s=s)
        + " ON CONFLICT (bucket, agent, type, key) DO UPDATE SET "
        + (_ADD if additive else _UPSERT),
        lo,
        hi,
    )
    sums = ", ".join(
        f"sum({c.strip()})::{'numeric' if c.strip() in AGG_COUNTS else 'float8'}"
        for c in _MEASURES.split(",")
    )
    await conn.execute(
        f"INSERT INTO {s}.agg_daily (bucket, agent, type, key, {_MEASURES}) "
        f"SELECT $1::timestamptz, agent, type, key, {sums} FROM {s}.agg_hourly "
        "WHERE bucket >= $1 AND bucket < $2 GROUP BY agent, type, key "
        f"ON CONFLICT (bucket, agent, type, key) DO UPDATE SET {_UPSERT}",
        lo,
        hi,
    )
    await conn.execute(
        f"INSERT INTO {s}.rollup_state (day, rolled_at) VALUES ($1, now()) "
        "ON CONFLICT (day) DO UPDATE SET rolled_at = now()",
        day,
    )


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


async def _record(conn: Any, s: str, step: str, target: str, error: str | None) -> None:
    """A step's outcome in ``maintenance_status``: a failure upserted (counted), a success
    clears the step's row."""
    if error is None:
        await conn.execute(
            f"DELETE FROM {s}.maintenance_status WHERE step = $1 AND target = $2", step, target
        )
    else:
        await conn.execute(
            f"INSERT INTO {s}.maintenance_status (step, target, ok, error, at, failures) "
            "VALUES ($1, $2, false, $3, now(), 1) ON CONFLICT (step, target) DO UPDATE SET "
            "ok = false, error = EXCLUDED.error, at = now(), "
            "failures = maintenance_status.failures + 1",
            step,
            target,
            error,
        )


async def _step(
    conn: Any, s: str, res: MaintenanceResult, step: str, day: dt.date, work: Any
) -> bool:
    """Run one isolated step (``work()`` opens its own transaction); a failure is rolled
    back, recorded and collected instead of ending the run. A lost connection still ends it
    (every later step would fail the same way)."""
    target = day.isoformat()
    try:
        await work()
    except Exception as exc:
        if conn.is_closed():
            raise
        res.failures.append(MaintenanceFailure(step, target, _err(exc)))
        await _record(conn, s, step, target, _err(exc))
        return False
    await _record(conn, s, step, target, None)
    return True


async def maintain(
    conn: Any, schema: str, *, now: float, policy: RetentionPolicy | None = None
) -> MaintenanceResult | None:
    """Roll up, then drop expired partitions. ``None`` if another sink is doing it.
    Failing steps are in the result's ``failures`` (and in ``maintenance_status``)."""
    policy = policy or RetentionPolicy()
    s = qident(schema)
    key = _lock_key(schema)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
        return None
    try:
        res = MaintenanceResult()
        now_dt = dt.datetime.fromtimestamp(now, UTC)
        today = now_dt.date()
        detail_cut = now_dt - dt.timedelta(days=policy.detail_days)
        agg_cut = now_dt - dt.timedelta(days=policy.agg_days)
        state = await conn.fetch(f"SELECT day, finalized FROM {s}.rollup_state")
        rolled = {r["day"] for r in state}
        finalized = {r["day"] for r in state if r["finalized"]}
        for day, name in sorted((await list_partitions(conn, schema, "events")).items()):
            expired = dt.datetime.combine(day, dt.time(), UTC) + DAY <= detail_cut
            if not (expired or day >= today - DAY or day not in rolled):
                continue

            async def roll(day: dt.date = day, name: str = name, expired: bool = expired) -> None:
                async with conn.transaction():
                    if expired:  # no insert may slip in between its final rollup and the drop
                        await conn.execute(
                            f"LOCK TABLE {s}.{qident(name)} IN ACCESS EXCLUSIVE MODE"
                        )
                    await rollup_day(conn, schema, day, additive=day in finalized)
                    if expired:
                        await conn.execute(f"DROP TABLE {s}.{qident(name)}")
                        await conn.execute(
                            f"UPDATE {s}.rollup_state SET finalized = true WHERE day = $1", day
                        )

            if await _step(conn, s, res, "rollup", day, roll):
                res.rolled_days.append(day)
                if expired:
                    res.dropped_events.append(day)
        for table in ("agg_hourly", "agg_daily"):
            for day, name in sorted((await list_partitions(conn, schema, table)).items()):
                if dt.datetime.combine(day, dt.time(), UTC) + DAY > agg_cut:
                    continue

                async def drop(name: str = name) -> None:
                    await conn.execute(f"DROP TABLE IF EXISTS {s}.{qident(name)}")

                if await _step(conn, s, res, f"drop_{table}", day, drop) and table == "agg_daily":
                    res.dropped_aggregates.append(day)
        summary = "; ".join(f"{f.step} {f.target}: {f.error}" for f in res.failures)
        await conn.execute(
            f"INSERT INTO {s}.maintenance_status (step, target, ok, error, at, failures) "
            "VALUES ('run', '', $1, $2, now(), $3) ON CONFLICT (step, target) DO UPDATE SET "
            "ok = EXCLUDED.ok, error = EXCLUDED.error, at = now(), failures = EXCLUDED.failures",
            not res.failures,
            summary[:2000],
            len(res.failures),
        )
        return res
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def read_status(conn: Any, schema: str) -> list[dict[str, Any]]:
    """``maintenance_status`` rows (the ``run`` row first, then failing steps by day);
    empty when the schema or the table does not exist yet."""
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{qident(schema)}.maintenance_status"
    )
    if not exists:
        return []
    rows = await conn.fetch(
        "SELECT step, target, ok, error, extract(epoch FROM at)::float8 AS at, failures "
        f"FROM {qident(schema)}.maintenance_status ORDER BY step <> 'run', target, step"
    )
    return [dict(r) for r in rows]
