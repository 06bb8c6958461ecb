"""``auren serve-web``: ``auren top`` in a browser, through textual-serve, authenticated.

textual-serve (Textualize) serves a page with xterm.js and, for each browser WebSocket,
runs one ``auren top`` process with Textual's web driver. It has no authentication, so this
module puts an aiohttp middleware in front of every route:

* ``--auth jwt``: the same access tokens as ``auren serve-ws`` (verified by
  :func:`auren_core.server.auth.verify`, revoked families refused). A token comes either as
  ``?token=JWT`` on the first load (moved into an HttpOnly, SameSite=Strict cookie, then a
  redirect drops it from the address bar) or as ``Authorization: Bearer JWT`` (set by a
  reverse proxy). A session is closed (4401) when its token expires or its family is revoked.
* ``--auth none``: loopback only, and the Host header must name loopback too (a page on
  another site that rebinds its DNS name to 127.0.0.1 is refused).
* The dashboard WebSocket refuses a cross-origin page (403): cookies do not tell ports apart.
* At most ``max_sessions`` dashboards at once (each is an ``auren top`` process): 503 beyond.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from aiohttp import WSCloseCode, web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from auren_core.server.auth import AuthError, KeyRing, RefreshStore, verify

__all__ = ["COOKIE", "WebAuth", "WebConfig", "WebServer"]

log = logging.getLogger("auren.serve-web")

COOKIE: Final = "auren_web_token"
CLOSE_UNAUTHORIZED: Final = 4401  # as serve-ws: token expired or revoked
REVOCATION_CHECK_S: Final = 5.0
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class WebConfig:
    command: str
    host: str = "127.0.0.1"
    port: int = 8080
    auth: str = "jwt"  # jwt | none
    key_file: Path | None = None
    redis_url: str | None = None  # revocation checks (the refresh-family keys)
    public_url: str | None = None  # the URL the browser uses, when behind a proxy
    max_sessions: int = 8
    title: str = "auren top"


def _host_name(host_header: str) -> str:
    """``127.0.0.1:8080`` -> ``127.0.0.1``; ``[::1]:8080`` -> ``[::1]``."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Unavailable(Exception):
    """The token store cannot be reached: answer 503."""


class WebAuth:
    """Checks a request's token (query, header or cookie); None when auth is off."""

    def __init__(self, mode: str, ring: KeyRing | None, redis_url: str | None) -> None:
        self.mode = mode
        self.ring = ring
        self._redis: Any = None
        self._store: RefreshStore | None = None
        if mode == "jwt" and redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(redis_url)
            self._store = RefreshStore(self._redis)
        self.refused = 0

    async def check(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unrevoked access token; raises AuthError, or
        :class:`Unavailable` when revocation cannot be checked (fail closed)."""
        assert self.ring is not None
        claims = verify(self.ring, token, typ="access")
        try:
            revoked = await self.revoked(claims)
        except Exception as exc:  # Redis away: refuse, never wave a token through
            raise Unavailable(f"cannot check token revocation: {str(exc)[:80]}") from None
        if revoked:
            raise AuthError("token family revoked")
        return claims

    async def revoked(self, claims: dict[str, Any]) -> bool:
        fam = claims.get("fam")
        if not isinstance(fam, str) or self._store is None:
            return False
        state = await self._redis.get(self._store.key(fam))
        return bool(state == b"revoked")

    @staticmethod
    def presented(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return request.cookies.get(COOKIE) or None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _refuse(status: int, reason: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="auren"'} if status == 401 else {}
    return web.Response(status=status, text=f"{reason}\n", headers=headers)


class WebServer(Server):
    """textual-serve's server with authentication, an origin check and a session cap."""

    def __init__(self, config: WebConfig) -> None:
        super().__init__(
            config.command,
            host=config.host,
            port=config.port,
            title=config.title,
            public_url=config.public_url,
        )
        self.config = config
        self._derive_url = config.public_url is None
        ring = KeyRing.load(config.key_file) if config.auth == "jwt" and config.key_file else None
        if config.auth == "jwt" and ring is None:
            raise ValueError("auth jwt needs a key file")
        self.auth = WebAuth(config.auth, ring, config.redis_url)
        self.sessions = 0
        self.closed_expired = 0
        self._sockets: set[web.WebSocketResponse] = set()

    # ------------------------------------------------------------------ app

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._middleware)
        return app

    async def make_app(self) -> web.Application:
        return await self._make_app()

    async def on_startup(self, app: web.Application) -> None:
        pass  # no logo: the command prints one line

    async def on_shutdown(self, app: web.Application) -> None:
        # open dashboards end now (their `auren top` quits), not after aiohttp's timeout
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        await self.auth.close()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.config.auth == "none":
            if _host_name(request.host) not in _LOOPBACK_HOSTS:
                return _refuse(403, "--auth none serves loopback names only")
            return await self._checked_origin(request, handler)
        query_token = request.query.get("token")
        if query_token is not None and request.path == "/":
            try:
                claims = await self.auth.check(query_token)
            except AuthError as exc:
                self.auth.refused += 1
                return _refuse(401, f"unauthorized: {exc}")
            except Unavailable as exc:
                return _refuse(503, str(exc))
            rest = {k: v for k, v in request.query.items() if k != "token"}
            location = "/" + (f"?{urlencode(rest)}" if rest else "")
            resp = web.Response(status=303, headers={"Location": location})
            resp.set_cookie(
                COOKIE,
                query_token,
                max_age=max(1, int(float(claims["exp"]) - time.time())),
                path="/",
                httponly=True,
                samesite="Strict",
                secure=self._secure(request),
            )
            return resp
        token = self.auth.presented(request)
        if token is None:
            self.auth.refused += 1
            return _refuse(
                401, "unauthorized: open /?token=<JWT from `auren token`> or send a Bearer token"
            )
        try:
            claims = await self.auth.check(token)
        except AuthError as exc:
            self.auth.refused += 1
            refused = _refuse(401, f"unauthorized: {exc}")
            refused.del_cookie(COOKIE, path="/")
            return refused
        except Unavailable as exc:
            return _refuse(503, str(exc))
        request["auren_claims"] = claims
        return await self._checked_origin(request, handler)

    def _secure(self, request: web.Request) -> bool:
        url = self.config.public_url or ""
        return request.secure or url.startswith("https:")

    async def _checked_origin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            allowed = {request.host}
            if self.config.public_url:
                allowed.add(urlsplit(self.config.public_url).netloc)
            if origin is not None and urlsplit(origin).netloc not in allowed:
                return _refuse(403, "cross-origin dashboard connection refused")
        return await handler(request)

    # ------------------------------------------------------------------ pages

    async def handle_index(self, request: web.Request) -> Any:  # type: ignore[override]
        if self._derive_url:  # the ws URL the page uses: the host the browser reached
            self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        if self.sessions >= self.config.max_sessions:
            raise web.HTTPServiceUnavailable(
                text=f"{self.sessions} dashboards open (--max-sessions): try later\n"
            )
        self.sessions += 1
        try:
            return await self._session(request)
        finally:
            self.sessions -= 1

    async def _session(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        await websocket.prepare(request)

        async def close() -> None:
            await websocket.close()

        app_service = AppService(
            self.command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=close,
            download_manager=self.download_manager,
            debug=False,
        )
        claims: dict[str, Any] | None = request.get("auren_claims")
        watchdog = asyncio.create_task(self._watch(websocket, claims))
        self._sockets.add(websocket)
        try:
            await app_service.start(width, height)
            await self._process_messages(websocket, app_service)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as exc:  # a browser that sends garbage ends its own session only
            log.warning("dashboard session ended: %s", str(exc)[:200])
            await websocket.close(code=WSCloseCode.UNSUPPORTED_DATA)
        finally:
            self._sockets.discard(websocket)
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await self._stop_app(app_service)
        return websocket

    async def _watch(self, websocket: web.WebSocketResponse, claims: dict[str, Any] | None) -> None:
        """Close the session (4401) when its token expires or its family is revoked."""
        if claims is None:
            return
        exp = float(claims["exp"])
        while True:
            left = exp - time.time()
            if left <= 0:
                reason = b"token expired"
                break
            await asyncio.sleep(min(left, REVOCATION_CHECK_S))
            try:
                if await self.auth.revoked(claims):
                    reason = b"revoked"
                    break
            except Exception as exc:  # Redis away: keep the session until its token expires
                log.warning("revocation check failed: %s", str(exc)[:120])
        self.closed_expired += 1
        await websocket.close(code=CLOSE_UNAUTHORIZED, message=reason)

    @staticmethod
    async def _stop_app(app_service: AppService) -> None:
        try:
            await asyncio.wait_for(app_service.stop(), 10)
        except (TimeoutError, Exception):
            proc = app_service._process
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM; ``on_ready`` once the port is bound."""
        asyncio.run(self._serve(on_ready))

    async def _serve(self, on_ready: Callable[[], None] | None) -> None:
        import signal

        runner = web.AppRunner(await self.make_app(), access_log=None, shutdown_timeout=15)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port).start()
            if on_ready is not None:
                on_ready()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()  # open dashboards end, their `auren top` processes quit
