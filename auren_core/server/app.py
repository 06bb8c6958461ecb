"""The server: one websockets listener for ``/ws`` and the HTTP API, one stream reader.

Connection life: rate limit and routing (``process_request``) -> origin check (websockets,
403) -> max clients (1013) -> auth (4401) -> subscribe (4400 on a bad message) -> snapshot
-> catch-up from ``since`` over ``XRANGE`` -> join the live fan-out -> events frames, until
the client leaves or its token expires or is revoked (4401, see ``sessions``).

Redis: one bounded pool (``redis_pool`` connections) whose callers wait up to
``redis_pool_timeout`` for a connection instead of failing; subscribers share reads (one
``MGET`` per loop step for family checks, one ``XRANGE`` per distinct backlog), so a
reconnect storm of thousands of clients needs a handful of connections.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Origin

from ..events import Event, Malformed
from ..streams.entries import decode_entries, entry_id, parse_stream_id
from ..streams.shards import (
    CursorError,
    async_client,
    decode_cursor,
    encode_cursor,
    is_cluster_url,
    shard_keys,
    sync_client,
)
from .auth import AUTH_PREFIX, AuthError, KeyRing, RefreshStore, family_key, verify
from .fanout import Client, Hub, close_with_error
from .feed import read_stream, watch_lag
from .http import RateLimiter, error
from .metrics import Metrics
from .protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_SERVER_FULL,
    CLOSE_UNAUTHORIZED,
    Authenticate,
    ProtocolError,
    Session,
    Subscribe,
    Subscription,
    encode_event,
    error_frame,
    events_frame,
    select,
    snapshot_frame,
)
from .routes import Routes
from .sessions import REASON_EXPIRED, Live, SessionRegistry, watch_revocations
from .shared import KeyBatcher, SingleFlight

__all__ = ["Server", "ServerConfig"]

log = logging.getLogger("auren.server")


@dataclass(frozen=True)
class ServerConfig:
    redis_url: str
    stream: str = "auren:events"
    shards: int = 1  # AUREN_STREAM_SHARDS: positions are then cursors over every shard
    host: str = "127.0.0.1"
    port: int = 8765
    auth: str = "jwt"  # "jwt" | "none"
    key_file: Path | None = None
    origins: tuple[str, ...] = ()  # allowed browser origins; "*" = any
    max_clients: int = 10_000
    max_message_bytes: int = 65_536  # client -> server; larger closes with 1009
    conn_rate: float = 20.0  # new connections per second per address (0 = no limit)
    conn_burst: int = 200
    trusted_proxies: tuple[str, ...] = ()  # their X-Forwarded-For names the client address
    queue_frames: int = 512  # per-client queue bound (frames) ...
    queue_bytes: int = 8 << 20  # ... and bytes (frames are shared, so this is references)
    write_high: int = 256 << 10  # socket buffer above which frames queue instead
    window_s: float = 3600.0  # the live reducer's window (snapshot, default tier-stats)
    active_window_s: float = 300.0
    budget_usd_per_hour: float | None = None
    tool_costs: Mapping[str, float] = field(default_factory=dict)  # [tool_costs] of the settings
    tier_costs: Mapping[str, Any] = field(default_factory=dict)  # [tier_costs] of the settings
    # [recommendations] of the settings: the analytics' thresholds (empty: the defaults)
    recommendations: Mapping[str, Any] = field(default_factory=dict)
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    handshake_timeout: float = 10.0  # for auth and subscribe messages
    compression: bool = False
    max_window_events: int = 1_000_000
    snapshot_ttl_s: float = 0.5  # subscribers within this share one snapshot
    snapshot_log: int = 50  # recent log entries kept in the WebSocket snapshot
    coalesce_per_client_s: float = 20e-6  # frame interval per connected client ...
    coalesce_max_s: float = 0.025  # ... capped: 100 clients 2 ms, 1000 clients 20 ms
    analytics_buffer: int = 50_000  # recent events kept for the analytics (as auren top)
    metrics_max_agents: int = 20  # /metrics: agents with their own label, the rest "other"
    analytics_every_s: float = 5.0  # analytics recomputed this often (longer if costly)
    redis_pool: int = 32  # async Redis connections (backfill, family checks, lag) ...
    redis_pool_timeout: float = 30.0  # ... a caller waits this long for one, then 1013
    revocation_poll_s: float = 5.0  # open sessions' families re-checked (pub/sub is first)
    auth_prefix: str = AUTH_PREFIX
    recent_events: int = 20_000  # the latest events kept for catch-up from memory
    alert_webhook: str | None = None  # alerts POSTed here after each analytics run


@dataclass
class _Backlog:
    """One page of backlog read from Redis, shared by the clients that asked for it."""

    items: list[Any]
    last: str
    frames: dict[Any, tuple[bytes | None, int]] = field(default_factory=dict)

    def frame(self, sub: Subscription) -> tuple[bytes | None, int]:
        """The events frame ``sub`` gets from this page (built once per filter)."""
        got = self.frames.get(sub.key)
        if got is None:
            evs = select(self.items, sub)
            frame = events_frame([encode_event(e) for e in evs], self.last) if evs else None
            got = self.frames[sub.key] = (frame, len(evs))
        return got


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.reducer = self.new_reducer(config.window_s)
        self.metrics.enable_business(
            tool_costs=config.tool_costs,
            tier_model=self.reducer.tier_model,
            state_gauges=self._state_gauges,
            max_agents=config.metrics_max_agents,
            storage=lambda: self.reducer.storage,
        )
        self.metrics.process_gauges = self._process_gauges
        self.metrics.max_processes = config.metrics_max_agents
        # the in-memory catch-up holds plain stream ids: one shard only (a sharded resume
        # reads every shard from Redis, _catch_up_sharded)
        recent = config.recent_events if config.shards <= 1 else 0
        self.hub = Hub(self.metrics, self.reducer, recent, shards=config.shards)
        self.routes = Routes(self)
        self.limiter = RateLimiter(config.conn_rate, config.conn_burst)
        self.keyring: KeyRing | None = None
        self.refresh_store: RefreshStore | None = None
        if config.auth == "jwt":
            if config.key_file is None:
                raise ValueError("auth=jwt needs a key file")
            self.keyring = KeyRing.load(config.key_file)
            sync = sync_client(config.redis_url, decode_responses=True)
            self.refresh_store = RefreshStore(sync)
        self.started = time.monotonic()
        self.aredis: aioredis.Redis | None = None
        self._ws: WsServer | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._connections = 0
        self._snapshot: tuple[float, bytes] | None = None
        # analytics (auren_core.analytics, as auren top's analytics screen): the recent
        # events of the window, and the last result as the wire shows it (monotonic time)
        self.recent: collections.deque[Event] = collections.deque(
            maxlen=max(1, config.analytics_buffer)
        )
        self._analytics: tuple[float, dict[str, Any]] | None = None
        self._analytics_lock = asyncio.Lock()
        self._analytics_task: asyncio.Task[None] | None = None
        self._revocation_task: asyncio.Task[None] | None = None
        self.sessions = SessionRegistry(self.metrics, close_with_error, time.time)
        self.backlog_reads: SingleFlight[tuple[str, str], _Backlog | None] = SingleFlight()
        self.family_checks = KeyBatcher(self._mget)
        # alerts leave the terminal (auren_core.alerts): evaluated after each analytics run
        self.notifier: Any = None
        if config.alert_webhook:
            from ..alerts import AlertNotifier

            self.notifier = AlertNotifier(config.alert_webhook, source="serve-ws")
            self.metrics.alerts = self.notifier.sender  # auren_alerts_*_total on /metrics

    def new_reducer(self, window_s: float) -> Any:
        from ..state import make_reducer

        return make_reducer(
            window_s=window_s,
            active_window_s=self.config.active_window_s,
            budget_usd_per_hour=self.config.budget_usd_per_hour,
            tool_costs=self.config.tool_costs,
            tier_costs=self.config.tier_costs,
        )

    def remember(self, items: list[Event | Malformed], backfill: bool = False) -> None:
        """Keep the events read for the analytics (Malformed entries are skipped); count
        the live ones in the business metrics (``/metrics``)."""
        self.recent.extend(it for it in items if isinstance(it, Event))
        if not backfill:
            self.metrics.observe(items)

    def _process_gauges(self) -> list[tuple[str, int | None, float | None]]:
        return [(p.publisher, p.rss_bytes, p.cpu_seconds) for p in self.reducer.state().processes]

    def _state_gauges(self) -> tuple[int, int]:
        state = self.reducer.state()
        return len(state.agents), state.health.publisher_dropped

    async def analytics(self, max_age_s: float | None = None) -> dict[str, Any]:
        """The analytics of the window's recent events (:func:`auren_core.analytics.sections`),
        recomputed in a thread when older than ``max_age_s`` (default ``analytics_every_s``)."""
        age = self.config.analytics_every_s if max_age_s is None else max_age_s
        async with self._analytics_lock:
            hit = self._analytics
            if hit is not None and time.monotonic() - hit[0] < age:
                return hit[1]
            now = time.time()
            cutoff = now - self.config.window_s
            recent = self.recent
            while recent and recent[0].ts < cutoff:
                recent.popleft()
            items: list[Event | Malformed] = list(recent)
            doc = await asyncio.to_thread(self._analyse, items, now)
            self._analytics = (time.monotonic(), doc)
            return doc

    def _analyse(self, items: list[Event | Malformed], now: float) -> dict[str, Any]:
        from ..analytics import analysis, sections

        return sections(
            analysis(
                items,
                now=now,
                budget_usd_per_hour=self.config.budget_usd_per_hour,
                thresholds=dict(self.config.recommendations),
            )
        )

    async def _analytics_loop(self) -> None:
        """Keep the snapshot's ``analytics`` fresh: every ``analytics_every_s`` once the
        backfill is in (at most ~5% of the time: the gap grows with the cost)."""
        await self.hub.ready.wait()
        while True:
            t0 = time.perf_counter()
            try:
                doc = await self.analytics(0.0)
                if self.notifier is not None:  # decides in microseconds; a thread sends
                    self.notifier.evaluate(self.reducer.state().costs, doc, time.time())
            except Exception:  # an analytics bug must not stop the server: log it
                log.exception("analytics failed")
            took = time.perf_counter() - t0
            await asyncio.sleep(max(self.config.analytics_every_s, 20 * took))

    def live_state(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.reducer.state().to_dict()
        return doc

    def snapshot(self) -> bytes:
        """The encoded snapshot frame, shared by clients subscribing within ``snapshot_ttl_s``.

        One ``state()`` per burst of subscribers (1000 reconnecting clients cost one, not
        1000), and the bytes are shared. The recent-event ``log`` is cut to
        ``snapshot_log`` entries: the events themselves come with ``since``.
        """
        now = time.monotonic()
        if self._snapshot is not None and now - self._snapshot[0] < self.config.snapshot_ttl_s:
            return self._snapshot[1]
        state = self.live_state()
        log = state.get("log")
        if isinstance(log, list):
            state["log"] = log[-self.config.snapshot_log :] if self.config.snapshot_log else []
        # the last analytics (GET /api/v2/analytics/<section>); null until the first is in
        state["analytics"] = self._analytics[1] if self._analytics is not None else None
        frame = snapshot_frame(state, self.hub.last_id)
        self._snapshot = (now, frame)
        return frame

    @property
    def port(self) -> int:
        assert self._ws is not None
        return int(self._ws.sockets[0].getsockname()[1])

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        cfg = self.config
        if is_cluster_url(cfg.redis_url):  # a cluster client routes per key
            self.aredis = async_client(cfg.redis_url, socket_connect_timeout=5)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                cfg.redis_url,
                max_connections=cfg.redis_pool,
                timeout=cfg.redis_pool_timeout,
                socket_connect_timeout=5,
            )
            self.aredis = aioredis.Redis.from_pool(pool)
        self._reader_task = asyncio.create_task(read_stream(self), name="auren-ws-reader")
        self._lag_task = asyncio.create_task(watch_lag(self), name="auren-ws-lag")
        self._analytics_task = asyncio.create_task(
            self._analytics_loop(), name="auren-ws-analytics"
        )
        if cfg.auth == "jwt":
            self._revocation_task = asyncio.create_task(
                watch_revocations(
                    self.sessions,
                    cfg.redis_url,
                    self.aredis,
                    prefix=cfg.auth_prefix,
                    poll_every=cfg.revocation_poll_s,
                ),
                name="auren-ws-revocations",
            )
        self._ws = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            origins=None if "*" in cfg.origins else [None, *(Origin(o) for o in cfg.origins)],
            compression="deflate" if cfg.compression else None,
            max_size=cfg.max_message_bytes,
            max_queue=4,
            write_limit=cfg.write_high,
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_timeout,
            close_timeout=2.0,
            open_timeout=cfg.handshake_timeout,
            reuse_address=True,
            backlog=4096,
        )

    async def stop(self) -> None:
        if self._ws is not None:
            self._ws.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.wait_closed(), 5)
        for task in (
            self._reader_task,
            self._lag_task,
            self._analytics_task,
            self._revocation_task,
        ):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.aredis is not None:
            await self.aredis.aclose()
        if self.notifier is not None:
            await asyncio.to_thread(self.notifier.close, 2.0)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    # ------------------------------------------------------------------ auth

    async def _mget(self, keys: Any) -> Any:
        assert self.aredis is not None
        # a cluster client cannot MGET keys of different slots: it groups them by slot
        many = getattr(self.aredis, "mget_nonatomic", None) or self.aredis.mget
        return await many(keys)

    async def check_access(self, token: str) -> dict[str, Any]:
        """Claims of a usable access token: valid, not past ``exp``, family not revoked.

        ``exp`` is checked without leeway here: a session lasts until ``exp`` and is
        closed then, so a token past it would be closed at once anyway.
        """
        assert self.keyring is not None and self.aredis is not None
        claims = verify(self.keyring, token, typ="access")
        if float(claims["exp"]) <= time.time():
            raise AuthError(REASON_EXPIRED)
        fam = claims.get("fam")
        if isinstance(fam, str):
            state = await self.family_checks.get(family_key(fam, self.config.auth_prefix))
            if state == b"revoked":
                raise AuthError("token family revoked")
        return claims

    # ------------------------------------------------------------------ HTTP

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        peer = str(conn.remote_address[0]) if conn.remote_address else "?"
        if peer in self.config.trusted_proxies:  # behind nginx: the client is the last hop
            forwarded = request.headers.get("X-Forwarded-For", "")
            peer = forwarded.rsplit(",", 1)[-1].strip() or peer
        if not self.limiter.allow(peer):
            self.metrics.rejected_rate += 1
            return error(
                429,
                "connection rate limit exceeded",
                [("Retry-After", str(self.limiter.retry_after()))],
            )
        path = urlsplit(request.path).path
        if path == "/ws":
            return None  # WebSocket handshake (origin checked by websockets: 403)
        return await self.routes.handle(request, path, request.headers.get("Origin"))

    # ------------------------------------------------------------------ WebSocket

    async def _handle(self, ws: ServerConnection) -> None:
        cfg = self.config
        self.metrics.connections_total += 1
        if self._connections >= cfg.max_clients:
            self.metrics.rejected_full += 1
            await ws.close(CLOSE_SERVER_FULL, f"server full ({cfg.max_clients} clients)")
            return
        self._connections += 1
        client: Client | None = None
        live: Live | None = None
        session = Session(auth_required=cfg.auth == "jwt")
        try:
            sub = None
            while sub is None:
                raw = await asyncio.wait_for(ws.recv(), cfg.handshake_timeout)
                action = session.receive(raw)
                if isinstance(action, Authenticate):
                    live = await self._authenticate(ws, live, action.token)
                    session.authenticated()
                elif isinstance(action, Subscribe):
                    sub = action.subscription
                    if sub.since != "now":
                        try:  # a plain id or a cursor for this stream's shard count
                            ids = decode_cursor(sub.since, cfg.shards)
                        except CursorError as exc:
                            raise ProtocolError(CLOSE_BAD_REQUEST, f"since: {exc}") from None
                        sub = dataclasses.replace(sub, since=encode_cursor(ids))
            if live is not None and live.ended:
                return
            client = Client(
                ws,
                sub,
                self.metrics,
                max_frames=cfg.queue_frames,
                max_bytes=cfg.queue_bytes,
                high_water=cfg.write_high,
            )
            if live is not None:
                live.client = client
            await self.hub.ready.wait()
            client.start()
            client.enqueue(self.snapshot(), -1)
            await self._catch_up(client)
            async for raw in ws:  # only a renewing auth is expected; anything else: 4400
                action = session.receive(raw)
                if isinstance(action, Authenticate):
                    live = await self._authenticate(ws, live, action.token)
        except ProtocolError as exc:
            self.metrics.protocol_errors += 1
            if exc.code == CLOSE_BAD_REQUEST:
                self.metrics.bad_messages += 1
            with contextlib.suppress(ConnectionClosed):
                await ws.send(error_frame(exc.code, exc.reason), text=True)
                await ws.close(exc.code, exc.reason)
        except TimeoutError:
            self.metrics.bad_messages += 1
            await close_with_error(ws, CLOSE_BAD_REQUEST, "timed out waiting for auth/subscribe")
        except ConnectionClosed:
            pass
        except (RedisError, OSError) as exc:  # Redis down, or no pool connection in time
            self.metrics.stream_unavailable += 1
            log.warning("stream unavailable for a client: %s", exc)
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CLOSE_SERVER_FULL, "stream unavailable: retry with since=last_id")
        except Exception as exc:  # a bug: counted, one line, the connection closed cleanly
            self.metrics.internal_errors += 1
            log.error("connection handler failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(ConnectionClosed):
                await ws.close(1011, "internal error")
        finally:
            self._connections -= 1
            if live is not None:
                self.sessions.remove(live)
            if client is not None:
                self.hub.leave(client)
                await client.stop()

    async def _authenticate(self, ws: ServerConnection, live: Live | None, token: str) -> Live:
        """Check ``token``; register the session (first auth) or renew it (a later one)."""
        try:
            claims = await self.check_access(token)
        except AuthError as exc:
            self.metrics.rejected_auth += 1
            raise ProtocolError(CLOSE_UNAUTHORIZED, f"unauthorized: {exc}") from None
        fam = claims.get("fam")
        family = fam if isinstance(fam, str) else None
        exp = float(claims["exp"])
        if live is None:
            live = Live(ws, str(claims["sub"]), family, exp)
            self.sessions.add(live)  # ends it at exp, or when the family is revoked
        elif str(claims["sub"]) != live.sub:
            self.metrics.rejected_auth += 1
            raise ProtocolError(CLOSE_UNAUTHORIZED, "unauthorized: a renewal must keep the subject")
        else:
            self.sessions.renew(live, family, exp)
        return live

    async def _backlog(self, after: str, upto: str) -> _Backlog | None:
        """Entries after ``after`` up to ``upto`` (at most 1000), or None when there are
        none. One ``XRANGE``, one decode and one frame per filter for each distinct range
        in flight, shared by every client asking (a reconnect storm resumes from few ids)."""
        aredis = self.aredis
        assert aredis is not None
        stream = self.config.stream

        async def read() -> _Backlog | None:
            entries: Any = await aredis.xrange(stream, min="(" + after, max=upto, count=1000)
            if not entries:
                return None
            return _Backlog(decode_entries(entries), entry_id(entries[-1][0]))

        return await self.backlog_reads.do((after, upto), read)

    async def _catch_up(self, client: Client) -> None:
        """Send what the stream holds after the client's cursor, then join the live set.

        From the hub's recent events when the cursor is recent enough (no Redis read),
        else from Redis (``XRANGE``, shared between clients) until it is."""
        assert self.aredis is not None
        if self.config.shards > 1:
            await self._catch_up_sharded(client)
            return
        while not client.dead and not self.hub.join(client):
            target = self.hub.last_id
            assert target is not None
            held = self.hub.recent.after(client.cursor, client.sub, target)
            if held is not None:  # recent enough: from memory, no Redis read
                frame, n, last = held
                if frame is not None:
                    await client.wait_room()
                    client.enqueue(frame, n)
                client.cursor = last
                continue
            got = await self._backlog(client.cursor, target)
            if client.dead:
                return
            if got is None:
                client.cursor = target  # trimmed or nothing there: up to date with target
                continue
            frame, n = got.frame(client.sub)
            if frame is not None:
                await client.wait_room()
                client.enqueue(frame, n)
            client.cursor = got.last

    async def _catch_up_sharded(self, client: Client) -> None:
        """:meth:`_catch_up` over N shards: each round reads up to 1000 entries of every
        shard the client is behind on (one XRANGE per shard key, up to the live position),
        sends them merged by event time in one frame whose ``last_id`` is the cursor of
        every shard's last id sent, until the live set can take the client."""
        assert self.aredis is not None
        n = self.config.shards
        keys = shard_keys(self.config.stream, n)
        while not self.hub.join(client):
            target = self.hub.last_id
            assert target is not None
            want = decode_cursor(target, n)
            have = decode_cursor(client.cursor, n)
            got: list[tuple[float, Any]] = []
            for i in range(n):
                if parse_stream_id(want[i]) <= parse_stream_id(have[i]):
                    continue
                entries: Any = await self.aredis.xrange(
                    keys[i], min="(" + have[i], max=want[i], count=1000
                )
                if client.dead:
                    return
                if not entries:
                    have[i] = want[i]  # trimmed or nothing there: level with the target
                    continue
                for it in decode_entries(entries):
                    got.append((it.ts if isinstance(it, Event) else 0.0, it))
                have[i] = entry_id(entries[-1][0])
            cursor = encode_cursor(have)
            got.sort(key=lambda p: p[0])
            evs = select([it for _, it in got], client.sub)
            if evs:
                await client.wait_room()
                client.enqueue(events_frame([encode_event(e) for e in evs], cursor), len(evs))
            client.cursor = cursor
