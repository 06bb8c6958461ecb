"""Write decoded stream entries to PostgreSQL: idempotent, batched, poison-proof.

One batch = one transaction: a bare ``COPY`` into ``events`` under a savepoint; if the batch
holds an entry already stored (the sink delivers at least once: after a crash or a claim) the
primary key refuses it, and the batch goes through a temporary staging table and
``INSERT INTO events SELECT ... ON CONFLICT DO NOTHING`` instead - so a redelivered entry never
becomes a second row, and the common case costs no more than a plain COPY.

Entries that cannot be stored go to ``dead_letter``: undecodable ones (:class:`Malformed`),
times outside the range of :func:`auren_core.rules.timestamp_problem`, and rows PostgreSQL
refuses (a NUL character in a string, say) - found by retrying that batch row by row under
savepoints, so one bad entry never blocks the others.

Connection-level failures are *not* handled here: they propagate, the caller retries the
whole batch later and acknowledges nothing meanwhile.
"""

# SQL identifiers here are validated schema names quoted by qident(); values are $n params.
# ruff: noqa: S608
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from .. import rules
from ..events import Event, Malformed, encode
from ..events.codec import payload_json
from .schema import day_of, ensure_partitions, qident

__all__ = ["EVENT_COLUMNS", "WriteResult", "Writer", "event_row", "is_data_error"]

UTC = dt.UTC
EVENT_COLUMNS = ("sid", "ts", "event_id", "type", "agent", "run", "seq", "parent", "payload")
_enc = msgspec.json.Encoder()

Row = tuple[str, dt.datetime, str, str, str | None, str | None, int | None, str | None, str]


@dataclass(slots=True)
class WriteResult:
    inserted: int = 0
    duplicates: int = 0
    dead: int = 0
    refused: int = 0  # rows PostgreSQL refused (counted in ``dead`` too)


def is_data_error(exc: BaseException) -> bool:
    """A failure caused by the rows themselves (retrying unchanged cannot help)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in ("22", "23", "54")
    return isinstance(exc, (UnicodeError, ValueError, OverflowError, TypeError))


def event_row(ev: Event, now: float) -> Row | str:
    """The ``events`` row for ``ev``, or the reason it cannot be stored."""
    ts = ev.ts
    problem = rules.timestamp_problem(ts, now)
    if problem is not None:
        return problem
    seq = ev.seq if isinstance(ev.seq, int) else None
    if seq is not None and not -(2**63) <= seq < 2**63:
        return "seq out of range"
    parent = ev.parent if isinstance(ev.parent, str) else None
    return (
        ev.stream_id,
        dt.datetime.fromtimestamp(ts, UTC),
        ev.id,
        ev.type,
        ev.agent,
        ev.run,
        seq,
        parent,
        payload_json(ev.payload).decode(),  # the JSON as read: unknown fields kept
    )


def _clean(text: str) -> str:
    return text.replace("\x00", "\\0")[:1000]


class Writer:
    """Writes batches for one schema on one connection (not shared between tasks)."""

    def __init__(
        self, conn: Any, schema: str, *, clock: Any = time.time, direct: bool = True
    ) -> None:
        self.direct = direct  # try a bare COPY first (see _insert)
        self.fallbacks = 0  # batches that hit a duplicate and went through staging
        self.conn = conn
        self.schema = schema
        self.s = qident(schema)
        self._clock = clock
        self._known_days: set[dt.date] = set()
        self._staging_ready = False

    async def _staging(self) -> None:
        if not self._staging_ready:
            await self.conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS auren_staging "
                f"(LIKE {self.s}.events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            self._staging_ready = True

    async def write(self, items: Sequence[Event | Malformed]) -> WriteResult:
        now = self._clock()
        rows: list[Row] = []
        evs: list[Event] = []
        dead: list[tuple[str, str, bytes | None]] = []
        for it in items:
            if isinstance(it, Malformed):
                dead.append((it.sid, _clean(it.reason), bytes(it.raw)))
                continue
            row = event_row(it, now)
            if isinstance(row, str):
                dead.append((it.stream_id, row, encode(it)))
            else:
                rows.append(row)
                evs.append(it)
        days = {day_of(r[1]) for r in rows}
        await self._staging()
        res = WriteResult()
        for attempt in (1, 2):
            await ensure_partitions(self.conn, self.schema, "events", days, self._known_days)
            try:
                async with self.conn.transaction():
                    res.inserted = await self._insert(rows)
                    res.dead = await self._dead(dead)
                break
            except (asyncpg.CheckViolationError, asyncpg.UndefinedTableError):
                # "no partition for row": retention dropped a (late, old) day's partition
                # since we cached it; recreate it and retry - the next rollup counts it
                self._known_days.clear()
                if attempt == 2:
                    raise
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                res = await self._row_by_row(rows, evs, dead)
                break
        res.duplicates = len(rows) - res.inserted - res.refused
        return res

    async def _insert(self, rows: Sequence[Row]) -> int:
        """Fast path: COPY straight into ``events`` under a savepoint. A redelivered entry makes
        it fail on the primary key (rare: after a crash or a claim); then the batch goes through
        the staging table and ``INSERT ... ON CONFLICT DO NOTHING`` instead."""
        if not rows:
            return 0
        if self.direct:
            try:
                async with self.conn.transaction():
                    await self.conn.copy_records_to_table(
                        "events", records=rows, columns=EVENT_COLUMNS, schema_name=self.schema
                    )
                return len(rows)
            except asyncpg.UniqueViolationError:
                self.fallbacks += 1
        await self.conn.copy_records_to_table("auren_staging", records=rows, columns=EVENT_COLUMNS)
        cols = ", ".join(EVENT_COLUMNS)
        status = await self.conn.execute(
            f"INSERT INTO {self.s}.events ({cols}) SELECT {cols} FROM auren_staging "
            "ON CONFLICT DO NOTHING"
        )
        return int(status.rsplit(" ", 1)[-1])

    async def _dead(self, dead: Sequence[tuple[str, str, bytes | None]]) -> int:
        if not dead:
            return 0
        await self.conn.executemany(
            f"INSERT INTO {self.s}.dead_letter (sid, reason, raw) VALUES ($1, $2, $3) "
            "ON CONFLICT (sid) DO NOTHING",
            dead,
        )
        return len(dead)

    async def _row_by_row(
        self,
        rows: Sequence[Row],
        evs: Sequence[Event],
        dead: Sequence[tuple[str, str, bytes | None]],
    ) -> WriteResult:
        """Slow path after a data error: each row under a savepoint; refusals -> dead letter."""
        res = WriteResult()
        more_dead = list(dead)
        cols = ", ".join(EVENT_COLUMNS)
        sql = (
            f"INSERT INTO {self.s}.events ({cols}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
            "ON CONFLICT DO NOTHING"
        )
        async with self.conn.transaction():
            for row, ev in zip(rows, evs, strict=True):
                try:
                    async with self.conn.transaction():
                        status = await self.conn.execute(sql, *row)
                    res.inserted += int(status.rsplit(" ", 1)[-1])
                except Exception as exc:
                    if not is_data_error(exc):
                        raise
                    res.refused += 1
                    reason = _clean(f"refused by PostgreSQL: {exc}")
                    more_dead.append((row[0], reason, encode(ev)))
            res.dead = await self._dead(more_dead)
        return res
