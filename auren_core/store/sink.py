"""``auren persist``: a Redis Streams consumer-group sink into PostgreSQL.

Delivery is at least once, rows exactly once: entries are written idempotently (see
:mod:`.writer`) and ``XACK``-ed only after the transaction that stored them committed. On start
the sink first re-reads its *own* pending entries (``XREADGROUP ... 0``: it may have been
killed between commit and ack), then claims entries that other consumers left pending for
longer than ``claim_idle_ms`` (``XAUTOCLAIM``: a dead sink's work), then tails new entries
(``>``). Several sinks may share the group: each entry is delivered to one of them.

When PostgreSQL or Redis is unavailable the sink keeps the batch in hand and retries with
exponential backoff (:mod:`auren_core.streams.backoff`, capped at 5 s); it reads at most one
batch ahead (delivered to it, so pending in the group: never lost) and acknowledges nothing
meanwhile, so the backlog waits in the stream and drains when the server returns. Rollups and
retention (:mod:`.retention`) run every ``maintain_every_s`` on their own connection, beside
ingestion.

Sharded streams (:mod:`auren_core.streams.shards`): :func:`run_sharded` runs one Sink per
shard key, each with its own consumer group (same group name, one group per key: a
consumer group lives on one key, hence one slot) and its own pending/claim recovery; several
``auren persist`` processes share every shard's group. Stored ``sid`` values are then
``<shard key>/<stream id>`` (stream ids of different shards may coincide).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from ..events import Event, Malformed
from ..streams.backoff import reconnect_backoff
from ..streams.entries import decode_entry, entry_id
from ..streams.shards import async_client, is_cluster_url, shard_keys
from .retention import MaintenanceResult, RetentionPolicy, maintain
from .schema import ensure_schema, maintenance_key
from .writer import Writer

__all__ = ["Sink", "SinkStats", "maintenance_key", "run_sharded", "shard_sinks"]

log = logging.getLogger("auren.persist")


@dataclass(slots=True)
class SinkStats:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead: int = 0
    acked: int = 0
    claimed: int = 0
    retries: int = 0
    trimmed: int = 0  # delivered ids whose entry was trimmed from the stream before storage
    maintenance_runs: int = 0
    maintenance_failures: int = 0  # failed steps (and failed runs) since start
    maintenance_failing: int = 0  # steps that failed in the latest run (1: the run itself)
    pg_up: bool = False
    redis_up: bool = False
    last_error: str = ""


def _raw(response: Any, **kwargs: Any) -> Any:
    return response


def _decode(entries: list[Any], prefix: str = "") -> list[Event | Malformed]:
    """Decode ``[id, fields]`` entries (fields a dict from XAUTOCLAIM, a flat list from the
    raw XREADGROUP). Entries trimmed before we read them (fields None) carry nothing to store.
    ``prefix``: put before each stored id (a shard's key, for ids unique across shards)."""
    if prefix:
        return [decode_entry(prefix + entry_id(sid), fields) for sid, fields in entries if fields]
    return [decode_entry(sid, fields) for sid, fields in entries if fields]


class Sink:
    """One consumer of the group; run several for throughput or availability."""

    def __init__(
        self,
        redis_url: str,
        stream: str,
        pg_dsn: str,
        *,
        schema: str = "auren",
        group: str = "auren-persist",
        consumer: str | None = None,
        batch_size: int = 5000,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        claim_every_s: float = 30.0,
        policy: RetentionPolicy | None = None,
        maintain_every_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        read_ahead: bool = True,
        sid_prefix: str = "",
    ) -> None:
        self.sid_prefix = sid_prefix
        self.status_stream = ""  # the stream whose maintenance hash this sink writes
        self.redis_url = redis_url
        self.stream = stream
        self.pg_dsn = pg_dsn
        self.schema = schema
        self.group = group
        self.consumer = consumer or socket.gethostname()
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self.policy = policy or RetentionPolicy()
        self.maintain_every_s = maintain_every_s
        self.clock = clock
        self.read_ahead = read_ahead  # read the next batch while the current one is written
        self._prefetch: asyncio.Task[list[Any]] | None = None
        self._maint_task: asyncio.Task[None] | None = None
        self.stats = SinkStats()
        self._stop = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._conn: Any = None
        self._writer: Writer | None = None
        self._failures = 0  # consecutive failures of the current step (backoff)
        self._policy = reconnect_backoff(cap=5.0)

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ connections
    async def _r(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = async_client(
                self.redis_url,
                socket_connect_timeout=2.0,
                socket_timeout=self.block_ms / 1000.0 + 5.0,
            )
            # raw XREADGROUP replies: redis-py's dict per entry costs more than our decode
            self._redis.set_response_callback("XREADGROUP", _raw)
        return self._redis

    async def _pg(self) -> Writer:
        if self._writer is None:
            import asyncpg

            conn = await asyncpg.connect(self.pg_dsn, timeout=5.0)
            try:
                await ensure_schema(conn, self.schema)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
            self._writer = Writer(conn, self.schema, clock=self.clock)
            self.stats.pg_up = True
        return self._writer

    async def _drop_pg(self) -> None:
        conn, self._conn, self._writer = self._conn, None, None
        self.stats.pg_up = False
        if conn is not None:
            try:
                conn.terminate()
            except Exception as exc:  # already gone: nothing to release
                log.debug("terminate failed: %s", exc)

    async def _backoff(self, what: str, exc: BaseException) -> None:
        if what == "redis" and is_cluster_url(self.redis_url) and self._redis is not None:
            # a cluster client may keep routing to a dead master: start afresh from the
            # URL's nodes (the slot map then names the promoted replica)
            client, self._redis = self._redis, None
            with contextlib.suppress(Exception):
                await client.aclose()
        self.stats.retries += 1
        self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:300]
        self._failures += 1
        delay = self._policy.compute(self._failures)
        log.warning("%s unavailable (%s); retrying in %.2fs", what, exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    # ------------------------------------------------------------------ redis steps
    async def _ensure_group(self) -> None:
        r = await self._r()
        try:
            await r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, start: str) -> list[Any]:
        r = await self._r()
        block = None if start != ">" else self.block_ms
        resp: Any = await r.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=self.batch_size, block=block
        )
        if not resp:
            return []
        if isinstance(resp, dict):  # RESP3: {stream: entries}
            return list(next(iter(resp.values())))
        return list(resp[0][1])  # RESP2: [[stream, entries]]

    async def _claim(self) -> list[Any]:
        """Entries other consumers left pending longer than ``claim_idle_ms``."""
        r = await self._r()
        out: list[Any] = []
        cursor = "0-0"
        while len(out) < self.batch_size:
            resp = await r.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=cursor,
                count=self.batch_size,
            )
            cursor = entry_id(resp[0])
            out.extend(resp[1])
            if cursor == "0-0":
                break
        self.stats.claimed += len(out)
        return out

    # ------------------------------------------------------------------ one batch
    async def _store_and_ack(self, entries: list[Any]) -> None:
        """Store until it succeeds (or stop is requested), then acknowledge."""
        items = _decode(entries, self.sid_prefix)
        self.stats.trimmed += sum(1 for e in entries if not e[1])
        ids = [e[0] for e in entries]
        while not self._stop.is_set():
            try:
                writer = await self._pg()
                res = await writer.write(items)
                break
            except Exception as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                await self._drop_pg()
                await self._backoff("postgresql", exc)
        else:
            return  # stopping: leave them pending, the next run stores them
        self.stats.inserted += res.inserted
        self.stats.duplicates += res.duplicates
        self.stats.dead += res.dead
        self._failures = 0
        while True:
            try:
                r = await self._r()
                for i in range(0, len(ids), 10_000):
                    await r.xack(self.stream, self.group, *ids[i : i + 10_000])
                self.stats.acked += len(ids)
                return
            except Exception as exc:  # unacked entries are redelivered: harmless
                await self._backoff("redis", exc)
                if self._stop.is_set():
                    return

    async def _maintain(self) -> MaintenanceResult | None:
        import asyncpg

        conn = await asyncpg.connect(self.pg_dsn, timeout=5.0)
        try:
            await ensure_schema(conn, self.schema)
            res = await maintain(conn, self.schema, now=self.clock(), policy=self.policy)
            if res is not None and (res.dropped_events or res.dropped_aggregates):
                log.info("retention: %s", res)
            return res
        finally:
            await conn.close()

    @property
    def status_key(self) -> str:
        """The Redis hash where each maintenance run's outcome is published (serve-ws's
        ``/metrics`` and ``auren doctor`` read it: :func:`maintenance_key`)."""
        return maintenance_key(self.status_stream or self.stream)

    async def _publish_status(self, failing: int, error: str) -> None:
        """The outcome of one maintenance run in Redis (best effort: Redis may be down)."""
        now = self.clock()
        fields: dict[FieldT, EncodableT] = {
            "last_run": now,
            "failing": failing,
            "last_error": error[:1000],
            "schema": self.schema,
            "consumer": self.consumer,
        }
        if not failing:
            fields["last_ok"] = now
        try:
            r = await self._r()
            async with r.pipeline(transaction=True) as p:
                p.hset(self.status_key, mapping=fields)
                if failing:
                    p.hincrby(self.status_key, "failures_total", failing)
                await p.execute()
        except Exception as exc:
            log.debug("maintenance status not published: %s", exc)

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        phase = "pending"  # own pending first, then claims, then new entries
        try:  # create/migrate the schema now; if PostgreSQL is down, the first batch retries
            await self._pg()
        except Exception as exc:
            self.stats.last_error = f"postgresql: {exc}"[:300]
            log.warning("postgresql unavailable at start (%s); will retry", exc)
            await self._drop_pg()
        next_claim = 0.0
        next_maint = 0.0
        while not self._stop.is_set():
            try:
                if phase == "pending":
                    await self._ensure_group()
                    self.stats.redis_up = True
                    entries = await self._read("0")
                    if not entries:
                        phase = "claim"
                        continue
                elif phase == "claim" or time.monotonic() >= next_claim:
                    entries = await self._claim()
                    if not entries:
                        phase = "new"
                        next_claim = time.monotonic() + self.claim_every_s
                        continue
                elif self._prefetch is not None:
                    task, self._prefetch = self._prefetch, None
                    entries = await task
                else:
                    entries = await self._read(">")
                self.stats.redis_up = True
            except Exception as exc:
                self.stats.redis_up = False
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    phase = "pending"
                await self._backoff("redis", exc)
                continue
            if entries:
                self.stats.read += len(entries)
                if self.read_ahead and phase == "new" and time.monotonic() < next_claim:
                    self._prefetch = asyncio.create_task(self._read(">"))
                await self._store_and_ack(entries)
            if time.monotonic() >= next_maint and self.maintain_every_s > 0:
                next_maint = time.monotonic() + self.maintain_every_s
                if self._maint_task is None or self._maint_task.done():
                    # on its own connection, beside ingestion: a long rollup never stalls it
                    self._maint_task = asyncio.create_task(self._maintain_logged())
        await self.close()

    async def _maintain_logged(self) -> None:
        try:
            res = await self._maintain()
        except Exception as exc:  # retention is retried next interval
            self.stats.last_error = f"maintenance: {type(exc).__name__}: {exc}"[:300]
            self.stats.maintenance_failures += 1
            self.stats.maintenance_failing = 1
            log.warning("maintenance failed: %s", exc)
            await self._publish_status(1, f"run: {type(exc).__name__}: {exc}")
            return
        self.stats.maintenance_runs += 1
        if res is None:  # another sink holds the maintenance lock: it reports
            return
        failing = len(res.failures)
        error = "; ".join(f"{f.step} {f.target}: {f.error}" for f in res.failures)
        self.stats.maintenance_failing = failing
        if failing:
            self.stats.maintenance_failures += failing
            self.stats.last_error = f"maintenance: {error}"[:300]
            log.warning("maintenance: %d step(s) failed: %s", failing, error)
        await self._publish_status(failing, error)

    async def close(self) -> None:
        if self._maint_task is not None and not self._maint_task.done():
            self._maint_task.cancel()  # its transaction rolls back; the next run redoes it
            with contextlib.suppress(BaseException):
                await self._maint_task
        if self._prefetch is not None:  # read but not stored: stays pending for the next run
            self._prefetch.cancel()
            with contextlib.suppress(BaseException):
                await self._prefetch
            self._prefetch = None
        await self._drop_pg()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def shard_sinks(
    redis_url: str, stream: str, pg_dsn: str, shards: int, **kw: Any
) -> list[Sink]:
    """One :class:`Sink` per shard key (one sink on ``stream`` itself for one shard).
    Only the first runs rollups and retention (they are per database, not per shard)."""
    keys = shard_keys(stream, shards)
    if len(keys) == 1:
        return [Sink(redis_url, stream, pg_dsn, **kw)]
    sinks = []
    for i, key in enumerate(keys):
        skw = dict(kw)
        if i:
            skw["maintain_every_s"] = 0.0
        sink = Sink(redis_url, key, pg_dsn, sid_prefix=f"{key}/", **skw)
        sink.status_stream = stream
        sinks.append(sink)
    return sinks


async def run_sharded(sinks: list[Sink]) -> None:
    """Run the shard sinks side by side until each is stopped."""
    await asyncio.gather(*(s.run() for s in sinks))


def total_stats(sinks: list[Sink]) -> SinkStats:
    """The shard sinks' counters added up (flags: all up)."""
    out = SinkStats(pg_up=True, redis_up=True)
    for s in sinks:
        st = s.stats
        for f in ("read", "inserted", "duplicates", "dead", "acked", "claimed", "retries",
                  "trimmed", "maintenance_runs", "maintenance_failures",
                  "maintenance_failing"):
            setattr(out, f, getattr(out, f) + getattr(st, f))
        out.pg_up = out.pg_up and st.pg_up
        out.redis_up = out.redis_up and st.redis_up
        out.last_error = st.last_error or out.last_error
    return out
