"""Read the event store back: detailed events for a window, aggregates beyond it.

Filter values (agent names, types) are always bound as query parameters, never spliced into
SQL, so a value like ``x'; DROP TABLE events; --`` is just a name that matches nothing.
"""

# SQL identifiers here are validated schema names quoted by qident(); values are $n params.
# ruff: noqa: S608
from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from ..events import Event
from ..events.codec import payload_from_json
from .schema import AGG_COUNTS, qident, validate_schema_name

__all__ = ["fetch_aggregates", "first_detail_day", "iter_events"]

UTC = dt.UTC


def _where(
    since: float | None,
    until: float | None,
    agents: Sequence[str] | None,
    types: Sequence[str] | None,
    col: str = "ts",
) -> tuple[str, list[Any]]:
    conds: list[str] = []
    args: list[Any] = []
    if since is not None:
        args.append(dt.datetime.fromtimestamp(since, UTC))
        conds.append(f"{col} >= ${len(args)}")
    if until is not None:
        args.append(dt.datetime.fromtimestamp(until, UTC))
        conds.append(f"{col} < ${len(args)}")
    if agents:
        args.append(list(agents))
        conds.append(f"agent = ANY(${len(args)}::text[])")
    if types:
        args.append(list(types))
        conds.append(f"type = ANY(${len(args)}::text[])")
    return (" WHERE " + " AND ".join(conds)) if conds else "", args


async def iter_events(
    conn: Any,
    schema: str,
    *,
    since: float | None = None,
    until: float | None = None,
    agents: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    chunk: int = 20_000,
) -> AsyncIterator[list[Event]]:
    """Detailed events in time order, in chunks (a server-side cursor: bounded memory)."""
    s = qident(validate_schema_name(schema))
    where, args = _where(since, until, agents, types)
    sql = (
        "SELECT sid, extract(epoch FROM ts)::float8 AS ts, event_id, type, agent, run, seq, "
        f"parent, payload::text AS payload FROM {s}.events{where} ORDER BY ts, sid"
    )
    async with conn.transaction():
        cur = await conn.cursor(sql, *args)
        while True:
            rows = await cur.fetch(chunk)
            if not rows:
                return
            yield [
                Event(
                    id=r["event_id"],
                    ts=r["ts"],
                    type=r["type"],
                    agent=r["agent"],
                    run=r["run"],
                    payload=payload_from_json(r["type"], r["payload"]),
                    seq=r["seq"] if r["seq"] is not None else msgspec.UNSET,
                    parent=r["parent"] if r["parent"] is not None else msgspec.UNSET,
                    sid=r["sid"],
                )
                for r in rows
            ]


async def fetch_aggregates(
    conn: Any,
    schema: str,
    *,
    daily: bool = True,
    since: float | None = None,
    until: float | None = None,
    agents: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Aggregate rows (``agg_daily`` or ``agg_hourly``) as dicts, bucket as unix seconds,
    counts as ``int``."""
    s = qident(validate_schema_name(schema))
    table = "agg_daily" if daily else "agg_hourly"
    where, args = _where(since, until, agents, types, col="bucket")
    rows = await conn.fetch(
        f"SELECT extract(epoch FROM bucket)::float8 AS bucket, agent, type, key, events, "
        "input_tokens, output_tokens, cached_tokens, cost_usd, unpriced, errors, "
        f"latency_ms_sum, latency_n FROM {s}.{table}{where} ORDER BY bucket, agent, type, key",
        *args,
    )
    # the counts are numeric (schema migration 3): Python ints, whatever their size
    return [{k: int(v) if k in AGG_COUNTS else v for k, v in r.items()} for r in rows]


async def first_detail_day(conn: Any, schema: str) -> float | None:
    """Start (unix seconds) of the oldest day that still has detailed events, or None."""
    from .schema import list_partitions

    days = await list_partitions(conn, validate_schema_name(schema), "events")
    if not days:
        return None
    return dt.datetime.combine(min(days), dt.time(), UTC).timestamp()
