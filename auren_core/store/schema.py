"""PostgreSQL schema for the event store: migrations, day partitions, identifiers.

Layout (one PostgreSQL schema, ``auren`` by default, so tests and tenants can use their own):

* ``schema_version(version, applied_at)`` - migrations applied, in order.
* ``events`` - detailed events, ``PARTITION BY RANGE (ts)``, one partition per UTC day
  (``events_pYYYYMMDD``). The primary key ``(sid, ts)`` makes inserts idempotent on the stream
  id: ``ts`` is part of the immutable entry, so a redelivered entry always collides.
* ``agg_hourly`` / ``agg_daily`` - rollups by (bucket, agent, type, key), day partitions too.
* ``maintenance_status(step, target, ok, error, at, failures)`` - the last maintenance run
  (step ``run``) and every rollup or drop that failed (see :mod:`.retention`), read by
  ``auren doctor``.
* ``dead_letter`` - entries that could not be stored (undecodable, out-of-range time, bytes
  PostgreSQL refuses), keyed by stream id, so they are acknowledged and never block the group.

Migrations and partition DDL run under a transaction-scoped advisory lock so several sinks
can start at once. Retention drops whole partitions (see :mod:`.retention`).
"""

# SQL identifiers here are validated schema names quoted by qident(); values are $n params.
# ruff: noqa: S608
from __future__ import annotations

import datetime as dt
import re
import zlib
from typing import Any, Final

__all__ = [
    "AGG_COUNTS",
    "MIGRATIONS",
    "PARTITIONED",
    "day_of",
    "ensure_partitions",
    "ensure_schema",
    "list_partitions",
    "maintenance_key",
    "qident",
    "validate_schema_name",
]

UTC = dt.UTC
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
PARTITIONED: Final = ("events", "agg_hourly", "agg_daily")

# rollup counts: numeric since migration 3 (sums of many bigints can exceed bigint)
AGG_COUNTS: Final = (
    "events", "input_tokens", "output_tokens", "cached_tokens", "unpriced", "errors", "latency_n",
)  # fmt: skip

_AGG_COLUMNS = """
    bucket timestamptz NOT NULL,
    agent text NOT NULL,
    type text NOT NULL,
    key text NOT NULL,
    events bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    cost_usd double precision NOT NULL,
    unpriced bigint NOT NULL,
    errors bigint NOT NULL,
    latency_ms_sum double precision NOT NULL,
    latency_n bigint NOT NULL,
    PRIMARY KEY (bucket, agent, type, key)
"""

# Each migration is a list of statements; {s} is the quoted schema name.
MIGRATIONS: Final[list[list[str]]] = [
    [
        """CREATE TABLE IF NOT EXISTS {s}.events (
            sid text NOT NULL,
            ts timestamptz NOT NULL,
            event_id text NOT NULL,
            type text NOT NULL,
            agent text,
            run text,
            seq bigint,
            parent text,
            payload jsonb NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (sid, ts)
        ) PARTITION BY RANGE (ts)""",
        "CREATE INDEX IF NOT EXISTS events_ts_type ON {s}.events (ts, type)",
        "CREATE INDEX IF NOT EXISTS events_agent_ts ON {s}.events (agent, ts)",
        f"CREATE TABLE IF NOT EXISTS {{s}}.agg_hourly ({_AGG_COLUMNS}) PARTITION BY RANGE (bucket)",
        f"CREATE TABLE IF NOT EXISTS {{s}}.agg_daily ({_AGG_COLUMNS}) PARTITION BY RANGE (bucket)",
        """CREATE TABLE IF NOT EXISTS {s}.dead_letter (
            sid text PRIMARY KEY,
            reason text NOT NULL,
            raw bytea,
            received_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE IF NOT EXISTS {s}.rollup_state (
            day date PRIMARY KEY,
            rolled_at timestamptz NOT NULL
        )""",
    ],
    [  # 2: a day whose detail was dropped; later rows for it are added to its rollup
        "ALTER TABLE {s}.rollup_state ADD COLUMN IF NOT EXISTS finalized boolean "
        "NOT NULL DEFAULT false",
    ],
    [  # 3: rollup sums are numeric (a day's token sum can exceed bigint); maintenance status
        *(
            f"ALTER TABLE {{s}}.{t} "
            + ", ".join(f"ALTER COLUMN {c} TYPE numeric" for c in AGG_COUNTS)
            for t in ("agg_hourly", "agg_daily")
        ),
        """CREATE TABLE IF NOT EXISTS {s}.maintenance_status (
            step text NOT NULL,
            target text NOT NULL,
            ok boolean NOT NULL,
            error text NOT NULL DEFAULT '',
            at timestamptz NOT NULL DEFAULT now(),
            failures integer NOT NULL DEFAULT 0,
            PRIMARY KEY (step, target)
        )""",
    ],
]


def maintenance_key(stream: str) -> str:
    """The Redis hash where ``auren persist`` publishes the latest maintenance outcome for
    ``stream`` (read by serve-ws's ``/metrics`` and ``auren doctor``): ``last_run``,
    ``last_ok`` (unix s), ``failing`` (steps that failed in the latest run; 1 when the run
    itself failed), ``failures_total``, ``last_error``, ``schema``, ``consumer``."""
    return f"{stream}:persist:maintenance"


def validate_schema_name(name: str) -> str:
    """Schema names are identifiers we interpolate into DDL: allow a safe subset only."""
    if not _SCHEMA_RE.match(name):
        raise ValueError(f"schema name must match {_SCHEMA_RE.pattern} (got {name!r})")
    return name


def qident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def day_of(ts: dt.datetime) -> dt.date:
    return ts.astimezone(UTC).date()


def _lock_key(schema: str) -> int:
    return zlib.crc32(f"auren-store:{schema}".encode()) - 2**31


async def ensure_schema(conn: Any, schema: str) -> int:
    """Create the schema and apply pending migrations; returns the current version."""
    validate_schema_name(schema)
    s = qident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {s}.schema_version")
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            for stmt in statements:
                await conn.execute(stmt.format(s=s))
            await conn.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version)
            current = version
    return int(current)


def partition_name(table: str, day: dt.date) -> str:
    return f"{table}_p{day:%Y%m%d}"


async def list_partitions(conn: Any, schema: str, table: str) -> dict[dt.date, str]:
    """Existing day partitions of ``schema.table``: {day: partition name}."""
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           JOIN pg_namespace n ON n.oid = p.relnamespace
           WHERE n.nspname = $1 AND p.relname = $2""",
        schema,
        table,
    )
    out: dict[dt.date, str] = {}
    prefix = f"{table}_p"
    for r in rows:
        name = r["relname"]
        if name.startswith(prefix):
            try:
                out[dt.datetime.strptime(name[len(prefix) :], "%Y%m%d").date()] = name
            except ValueError:
                continue
    return out


async def ensure_partitions(
    conn: Any, schema: str, table: str, days: set[dt.date], known: set[dt.date]
) -> None:
    """Create missing day partitions (``known`` is a per-connection cache, updated)."""
    missing = days - known
    if not missing:
        return
    s = qident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        existing = await list_partitions(conn, schema, table)
        for day in sorted(missing):
            if day in existing:
                continue
            lo = dt.datetime.combine(day, dt.time(), UTC)
            hi = lo + dt.timedelta(days=1)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {s}.{qident(partition_name(table, day))} "
                f"PARTITION OF {s}.{qident(table)} "
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
        known.update(existing)
    known.update(missing)
