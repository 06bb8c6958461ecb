"""Non-blocking event publisher: the agent pays an encode and an enqueue, nothing more.

A background thread drains a bounded buffer into Redis with pipelined ``XADD``
batches (``MAXLEN ~`` trimming). When Redis is down or slow the buffer fills,
then the *oldest* events are dropped and counted; the thread reconnects with
exponential backoff (:mod:`auren_core.streams.backoff`) and resumes. Periodic
``publisher_stats`` events report sent, dropped and queued. At interpreter exit
the buffer is flushed within a bounded time.

Where the events go may be decided late: with ``resolve``, the thread itself works out
the Redis URL and stream before its first send (probing localhost, finding or starting the
embedded Valkey: see :mod:`auren_core.emitter`), so the agent's thread never waits for that
either; until then events wait in the buffer like during an outage.

Sharded streams (``shards > 1``, :mod:`auren_core.streams.shards`): each event is routed at
enqueue time to a shard chosen by its run id (else agent, else round robin) and one pipeline
carries the XADDs of every shard; with a ``redis+cluster://`` URL the client is redis-py's
``RedisCluster``, whose pipeline splits the commands by node and follows MOVED/ASK and slot
map refreshes. Commands a pipeline could not deliver (a master down mid-failover) are put
back in the buffer, only those: what the cluster acknowledged is not sent again.

Nothing here ever raises into the caller: :meth:`Publisher.emit` swallows *and
counts* its own failures (``errors``), so instrumentation cannot break an agent.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from ..events import FIELD, Event, PublisherStats, encode, encode_fields
from ..events.model import _Payload
from .backoff import reconnect_backoff
from .shards import shard_keys, shard_of, shard_of_entry, sync_client

__all__ = ["Publisher", "PublisherCounters", "Source"]

log = logging.getLogger("auren.publisher")


class Source(Protocol):
    """Work the publisher's thread does before each send: an adapter that queues raw
    items cheaply in the agent's thread and has them converted here, so one wake-up
    converts and sends (see ``integrations.crewai.worker``)."""

    def pending(self) -> bool: ...

    def pull(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PublisherCounters:
    produced: int
    sent: int
    dropped: int
    queued: int
    errors: int
    connected: bool


class Publisher:
    """Thread-safe, fork-aware publisher of v1 events to one Redis stream.

    ``resolve``: called on the publisher's thread before its first connection, returns
    ``(redis_url, stream)`` (replacing the two arguments); if it raises, that is handled
    like an unreachable server (logged once, retried with backoff, events buffered).
    """

    def __init__(
        self,
        redis_url: str = "redis://127.0.0.1:6379/0",
        stream: str = "auren:events",
        *,
        resolve: Callable[[], tuple[str, str] | tuple[str, str, int]] | None = None,
        maxlen: int | None = 1_000_000,
        buffer_size: int = 100_000,
        batch_size: int = 1_000,
        flush_interval: float = 0.002,
        max_linger: float = 0.05,
        linger_target: int = 16,
        stats_interval: float = 10.0,
        exit_flush_timeout: float = 2.0,
        socket_timeout: float = 2.0,
        client_factory: Callable[[], redis.Redis] | None = None,
        shards: int = 1,
    ) -> None:
        self.redis_url = redis_url
        self.stream = stream
        # shards > 1: buffer items are (shard, entry) tuples; 1: bare entries (as ever)
        self.shards = max(1, shards)
        self._rr = itertools.count()
        self._resolve = resolve
        self.maxlen = maxlen
        self.buffer_size = max(1, buffer_size)
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        # Adaptive linger: how long the thread lets a batch form once woken: the time
        # ~linger_target events take at the recent arrival rate, within [flush_interval,
        # max_linger]. A sparse emitter (a crew: bursts of a few events) then pays one
        # wake-up and one pipeline per ~linger_target events instead of one per event or
        # two, and a busy one keeps the short flush_interval (latency). flush() never
        # waits for it.
        self.max_linger = max(flush_interval, max_linger)
        self.linger_target = max(1, linger_target)
        self.linger = flush_interval
        self.wakeups = 0  # pipelines sent (one per wake-up that found work)
        self.stats_interval = stats_interval
        self.exit_flush_timeout = exit_flush_timeout
        self._socket_timeout = socket_timeout
        self._client_factory = client_factory
        self._buf: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # produced: next() on an itertools.count is one atomic C call (no lock on the hot
        # path); counters() reads it by taking a value too and subtracting its own reads
        self._produced_ctr = itertools.count()
        self._ctr_reads = 0
        self._read_lock = threading.Lock()
        self._sent = 0
        self._dropped = 0
        self._errors = 0
        self._connected = False
        self._in_flight = 0
        self._sources: tuple[Source, ...] = ()
        self._backoff = reconnect_backoff()
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:04x}"
        _LIVE.add(self)

    # ------------------------------------------------------------------ hot path
    def emit(
        self,
        type: str,
        payload: _Payload | dict[str, Any] | None = None,
        *,
        agent: str | None = None,
        run: str | None = None,
        seq: int | None = None,
        parent: str | None = None,
    ) -> None:
        """Encode and enqueue one event. Never raises, never touches the network.

        ``payload``: the type's struct (:data:`auren_core.events.PAYLOAD_TYPES`), encoded as
        it is, or a dict (a custom type, or a caller's own JSON), encoded as given."""
        try:
            data = encode_fields(type, payload, agent, run, seq, parent)
            if self.shards > 1:
                self._enqueue((shard_of(run, agent, self.shards, next(self._rr)), data))
            else:
                self._enqueue(data)
        except Exception:
            self._errors += 1

    def publish(self, event: Event) -> None:
        """Enqueue an already-built :class:`Event`. Never raises."""
        try:
            if self.shards > 1:
                shard = shard_of(event.run, event.agent, self.shards, next(self._rr))
                self._enqueue((shard, encode(event)))
            else:
                self._enqueue(encode(event))
        except Exception:
            self._errors += 1

    def enqueue_raw(self, data: bytes) -> None:
        """Enqueue an entry the caller already encoded (``events.encode``): for adapters
        that encode themselves so that an encoding failure is theirs to count."""
        try:
            if self.shards > 1:
                self._enqueue((shard_of_entry(data, self.shards, next(self._rr)), data))
            else:
                self._enqueue(data)
        except Exception:  # never into the caller's thread
            self._errors += 1

    def _enqueue(self, data: Any) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        buf = self._buf
        if len(buf) >= self.buffer_size:
            with self._lock:
                while len(buf) >= self.buffer_size:
                    try:
                        buf.popleft()
                    except IndexError:
                        break
                    self._dropped += 1
        buf.append(data)
        next(self._produced_ctr)  # atomic under the GIL, unlike += 1
        if self._thread is None:
            self._start()
        if self._idle or len(buf) >= self.batch_size:
            self._idle = False
            self._wake.set()

    # ------------------------------------------------------------------ sources
    def attach(self, source: Source) -> None:
        """Have this publisher's thread pull ``source`` before each send."""
        with self._lock:
            if all(s is not source for s in self._sources):
                self._sources = (*self._sources, source)

    def detach(self, source: Source) -> None:
        with self._lock:
            self._sources = tuple(s for s in self._sources if s is not source)

    def poke(self) -> None:
        """A source has work: wake the thread if it sleeps (cheap when it is awake)."""
        if self._pid != os.getpid():
            self._after_fork()
        if self._thread is None:
            self._start()
        if self._idle:
            self._idle = False
            self._wake.set()

    def _pending(self) -> bool:
        return any(s.pending() for s in self._sources)

    def _pull(self) -> None:
        for s in self._sources:
            try:
                s.pull()
            except Exception:  # a source's bug must not stop the sending
                self._errors += 1

    # ------------------------------------------------------------------ lifecycle
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            t = threading.Thread(target=self._run, name="auren-publisher", daemon=True)
            self._thread = t
            t.start()

    def _after_fork(self) -> None:
        # A forked child inherits the buffer but not the thread: start afresh.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._buf = collections.deque()
        self._thread = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._produced_ctr = itertools.count()
        self._ctr_reads = 0
        self._read_lock = threading.Lock()
        self._sent = self._dropped = self._errors = 0
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:04x}"

    def produced(self) -> int:
        """Events enqueued so far (thread-safe; every emit completed before the call counts).

        The counter only moves forward through ``next()``, so reading it takes a value as
        well: each read is counted under a lock and subtracted. (The previous way, peeking
        through ``itertools.count.__reduce__``, is deprecated in 3.12 and gone in 3.14.)"""
        with self._read_lock:
            value = next(self._produced_ctr) - self._ctr_reads
            self._ctr_reads += 1
        return value

    def counters(self) -> PublisherCounters:
        return PublisherCounters(
            produced=self.produced(),
            sent=self._sent,
            dropped=self._dropped,
            queued=len(self._buf) + self._in_flight,
            errors=self._errors,
            connected=self._connected,
        )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything enqueued so far is sent (or timeout). True when empty."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            pending = self._pending()
            if not self._buf and not self._in_flight and not pending:
                return True
            if self._thread is None and (self._buf or pending):
                self._start()
            self._wake.set()
            time.sleep(0.001)
        return not self._buf and not self._in_flight and not self._pending()

    def close(self, timeout: float | None = None) -> None:
        """Flush (bounded) and stop the background thread."""
        self.flush(self.exit_flush_timeout if timeout is None else timeout)
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=1.0)
        self._thread = None
        _LIVE.discard(self)

    # ------------------------------------------------------------------ background
    def _client(self) -> redis.Redis:
        if self._client_factory is not None:
            return self._client_factory()
        return sync_client(  # type: ignore[no-any-return]
            self.redis_url,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=min(1.0, self._socket_timeout),
            health_check_interval=0,
            retry_on_timeout=False,
        )

    def _emit_stats(self) -> None:
        c = self.counters()
        usage = process_usage()
        self.emit(
            "publisher_stats",
            PublisherStats(
                sent=c.sent,
                dropped=c.dropped,
                queued=c.queued,
                errors=c.errors,
                publisher=self.identity,
                rss_bytes=usage.get("rss_bytes"),
                cpu_seconds=usage.get("cpu_seconds"),
            ),
        )

    def _run(self) -> None:
        client: redis.Redis | None = None
        failures = 0
        next_stats = time.monotonic() + self.stats_interval
        buf = self._buf
        last_take = time.monotonic()
        # events/s, smoothed; starts as "busy" (linger = flush_interval) so a fast emitter
        # never waits for the estimate to converge
        rate = self.linger_target / self.flush_interval if self.flush_interval > 0 else 0.0
        while True:
            if not buf and not (self._sources and self._pending()):
                if self._stop.is_set():
                    break
                self._idle = True
                if not buf and not (self._sources and self._pending()):  # no lost wake-up
                    self._wake.wait(timeout=0.25)
                self._wake.clear()
                if (buf or self._pending()) and not self._stop.is_set():
                    continue  # woken by a first event: let its batch form (linger) too
            elif len(buf) < self.batch_size and self.linger > 0:
                # Let a batch form (bounded by the adaptive linger) unless woken for a
                # full one (or by flush()).
                self._wake.wait(timeout=self.linger)
                self._wake.clear()
            if self._sources:
                self._pull()
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + self.stats_interval
                self._emit_stats()
            if not buf:
                continue
            batch = self._take(self.batch_size)
            self.wakeups += 1
            if self.flush_interval > 0:
                # arrival rate over the last take interval (EWMA): linger long enough for
                # about linger_target events, within [flush_interval, max_linger]
                t = time.monotonic()
                span = max(t - last_take, 1e-6)
                last_take = t
                rate = 0.7 * rate + 0.3 * (len(batch) / span)
                want = self.linger_target / rate if rate > 0 else self.max_linger
                self.linger = min(self.max_linger, max(self.flush_interval, want))
            try:
                if client is None:
                    if self._resolve is not None:
                        self._resolve_target()
                    client = self._client()
                if self.shards > 1:
                    unsent = self._send_sharded(client, batch)
                    if unsent:
                        self._sent += len(batch) - len(unsent)
                        batch = unsent
                        raise unsent_error(len(unsent))
                else:
                    self._send(client, batch)
            except Exception as exc:
                self._requeue(batch)
                self._connected = False
                failures += 1
                # (an exception marked ``reported`` was already said on stderr: api)
                if failures == 1 and not getattr(exc, "reported", False):
                    log.warning("auren publisher: redis unavailable (%s); buffering", exc)
                if client is not None and not _is_cluster(client):
                    # (a cluster client is kept: it knows every node and refreshes its
                    # slot map itself; a new one would know only the URL's node)
                    try:
                        client.close()
                    except Exception:
                        self._errors += 1
                    client = None
                if self._stop.wait(self._backoff.compute(failures)) and self._exit_deadline():
                    break
                continue
            self._in_flight = 0
            self._sent += len(batch)
            batch = []  # hold nothing of a sent batch while idle (see _send)
            self._connected = True
            if failures:
                log.warning("auren publisher: reconnected after %d failures", failures)
            failures = 0
        if client is not None:
            try:
                client.close()
            except Exception:
                self._errors += 1

    def _send(self, client: Any, batch: list[Any]) -> None:
        """One pipelined write of XADDs to the stream, then every reply read (the first
        error reply raised once all are read, as redis-py's pipeline does).

        On a plain ``redis.Redis`` the commands are packed straight from a generator on
        one pooled connection: each command's argument tuple is freed as soon as it is
        packed, where a ``Pipeline`` keeps 1000 of them (and 1000 option dicts) until it
        is done; after a burst those, recycled by CPython's free lists, sat scattered
        over the memory the burst used and kept megabytes of it resident. Any other
        client (a cluster, a caller's ``client_factory``) gets redis-py's pipeline."""
        head: tuple[Any, ...] = ("XADD", self.stream)
        if self.maxlen:
            head += ("MAXLEN", "~", self.maxlen)
        head += ("*", FIELD)
        if type(client) is not redis.Redis:
            pipe = client.pipeline(transaction=False)
            cmd = pipe.execute_command  # skips xadd()'s per-call argument building
            for data in batch:
                cmd(*head, data)
            pipe.execute()
            return
        pool = client.connection_pool
        conn: Any = pool.get_connection()  # (redis-py types little of Connection)

        def write_read() -> Exception | None:
            error: Exception | None = None
            try:
                conn.send_packed_command(conn.pack_commands((*head, data) for data in batch))
                for _ in range(len(batch)):
                    try:
                        conn.read_response()
                    except redis.ResponseError as exc:  # one command refused: read the rest
                        error = error or exc
            except BaseException:
                conn.disconnect()  # replies may be left on the socket: never reuse it
                raise
            return error

        try:
            # the client's retry policy, as its pipeline would apply it (a connection
            # found dead is reconnected and the batch written again)
            error = conn.retry.call_with_retry(write_read, lambda _exc: conn.disconnect())
        finally:
            pool.release(conn)
        if error is not None:
            raise error

    def _send_sharded(self, client: Any, batch: list[Any]) -> list[Any]:
        """One pipeline of XADDs over every shard; returns the items not acknowledged."""
        keys = self._keys
        if len(keys) != self.shards or self._keys_for != self.stream:
            keys = self._keys = shard_keys(self.stream, self.shards)
            self._keys_for = self.stream
        tail: tuple[Any, ...] = ("MAXLEN", "~", self.maxlen) if self.maxlen else ()
        tail += ("*", FIELD)
        pipe = client.pipeline(transaction=False)
        cmd = pipe.execute_command
        for item in batch:
            if isinstance(item, tuple):
                shard, data = item
            else:  # enqueued while the shard count was being learnt
                data, shard = item, shard_of_entry(item, self.shards, next(self._rr))
            cmd("XADD", keys[shard], *tail, data)
        try:
            results = pipe.execute(raise_on_error=False)
        except Exception:
            return batch  # nothing known to be acknowledged
        return [item for item, r in zip(batch, results, strict=False) if isinstance(r, Exception)]

    _keys: list[str] = []
    _keys_for: str = ""

    def _resolve_target(self) -> None:
        """Where to send, worked out here on the publisher's thread (first send only)."""
        assert self._resolve is not None
        target: tuple[Any, ...] = self._resolve()
        self.redis_url, self.stream = target[0], target[1]
        if len(target) > 2 and int(target[2]) > 1 and self.shards == 1:
            self._shard_buffered(int(target[2]))
        self._resolve = None
        log.info("auren publisher: sending to stream %r", self.stream)

    def _shard_buffered(self, n: int) -> None:
        """Switch to ``n`` shards (known only once the settings are read): the entries
        buffered meanwhile are routed by their own run/agent fields."""
        with self._lock:
            self.shards = n
            items = list(self._buf)
            self._buf.clear()
            for it in items:
                if isinstance(it, bytes | bytearray):
                    it = (shard_of_entry(bytes(it), n, next(self._rr)), it)
                self._buf.append(it)

    def _exit_deadline(self) -> bool:
        # Stopping while Redis is down: give up (the buffer is reported as queued).
        return True

    def _take(self, n: int) -> list[Any]:
        buf = self._buf
        batch: list[Any] = []
        with self._lock:
            for _ in range(min(n, len(buf))):
                batch.append(buf.popleft())
            self._in_flight = len(batch)
        return batch

    def _requeue(self, batch: list[Any]) -> None:
        """Put an unsent batch back at the front, dropping the oldest beyond the bound."""
        buf = self._buf
        with self._lock:
            room = self.buffer_size - len(buf)
            keep = batch[-room:] if room > 0 else []
            self._dropped += len(batch) - len(keep)
            buf.extendleft(reversed(keep))
            self._in_flight = 0


def _is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def unsent_error(n: int) -> Exception:
    return redis.ConnectionError(f"{n} events not acknowledged by the cluster")


_LIVE: weakref.WeakSet[Publisher] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for pub in list(_LIVE):
        try:
            pub.close()
        except Exception:
            log.exception("auren publisher: flush at exit failed")


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_usage() -> dict[str, Any]:
    """This process's resident memory (``rss_bytes``: ``/proc/self/statm`` on Linux, else
    the peak from ``getrusage``) and CPU time (``cpu_seconds``: user + system)."""
    out: dict[str, Any] = {}
    t = os.times()
    out["cpu_seconds"] = round(t.user + t.system, 3)
    try:
        with open("/proc/self/statm", "rb") as f:
            out["rss_bytes"] = int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        try:
            import resource
            import sys

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["rss_bytes"] = int(peak if sys.platform == "darwin" else peak * 1024)
        except (ImportError, OSError, ValueError):
            pass
    return out
