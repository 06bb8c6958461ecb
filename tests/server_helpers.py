"""Helpers shared by the serve-ws tests: a running server, publishing, collecting frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect

from auren_core.events import Event, encode, make_event
from auren_core.server import Server, ServerConfig


@contextlib.asynccontextmanager
async def running(redis_url: str, stream: str, **kw: Any) -> AsyncIterator[Server]:
    kw.setdefault("auth", "none")
    kw.setdefault("conn_rate", 0.0)
    srv = Server(ServerConfig(redis_url=redis_url, stream=stream, port=0, **kw))
    await srv.start()
    await asyncio.wait_for(srv.hub.ready.wait(), 10)
    try:
        yield srv
    finally:
        await srv.stop()


def llm(agent: str, i: int, ts: float | None = None) -> Event:
    return make_event(
        "llm_call",
        {
            "model": "gpt-4o-mini",
            "provider": "openai",
            "input_tokens": 100 + i,
            "output_tokens": 10 + i,
            "cost_usd": 0.001 * (i + 1),
            "latency_ms": 40.0 + i,
            "cost_source": "test",
            "ok": True,
        },
        agent=agent,
        run="run-1",
        ts=ts,
    )


def tier(agent: str, tier_accessed: str, ms: float) -> Event:
    lat = {"redis": ms} if tier_accessed == "redis_immediate" else {"redis": 1.0, "postgresql": ms}
    return make_event(
        "memory_tier_access",
        {
            "tier_accessed": tier_accessed,
            "query": "q",
            "latency_by_tier": lat,
            "items_retrieved": 1,
        },
        agent=agent,
        run="run-1",
    )


def publish(redis_url: str, stream: str, events: Sequence[Event]) -> list[str]:
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline(transaction=False)
    for ev in events:
        pipe.xadd(stream, {"e": encode(ev)})
    ids = [i.decode() for i in pipe.execute()]
    r.close()
    return ids


async def subscribe(
    port: int, token: str | None = None, **sub: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", max_size=None)
    if token is not None:
        await ws.send(json.dumps({"type": "auth", "token": token}))
    await ws.send(json.dumps({"type": "subscribe", **sub}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["type"] == "snapshot", first
    return ws, first


async def collect(
    ws: ClientConnection, n: int, timeout: float = 15.0
) -> tuple[list[dict[str, Any]], str | None]:
    """Read events frames until ``n`` events arrived; returns (events, last last_id)."""
    out: list[dict[str, Any]] = []
    last_id = None
    deadline = time.monotonic() + timeout
    while len(out) < n:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        assert frame["type"] == "events", frame
        out.extend(frame["events"])
        last_id = frame["last_id"]
    return out, last_id


async def nothing_more(ws: ClientConnection, wait: float = 0.5) -> None:
    with contextlib.suppress(TimeoutError):
        extra = await asyncio.wait_for(ws.recv(), wait)
        raise AssertionError(f"unexpected frame: {str(extra)[:200]}")


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers=headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def aget(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(http_get, port, path, headers, method)
