"""``auren serve-web`` in a real browser: headless Chromium, driven over the DevTools protocol.

The real command runs as a subprocess (textual-serve starting one real ``auren top`` per
browser session) against real Redis. Unauthenticated requests are refused; with a token the
page loads, the dashboard's frames reach the browser and events published meanwhile appear in
them; a screenshot of the live dashboard is written to ``screenshots/serve-web.png``.
Needs the Debian package ``chromium`` (``apt-get install -y chromium``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from browser import chromium, needs_chromium, page_target
from recorded_events import FROZEN_NOW, recorded
from waiting import await_until, wait_until
from websockets.asyncio.client import ClientConnection, connect

from auren_core.events import Event, encode, make_event
from auren_core.server.auth import KeyRing, RefreshStore, issue_pair

ROOT = Path(__file__).resolve().parents[2]
while not (ROOT / "pyproject.toml").exists() and ROOT.parent != ROOT:  # tests/ or tests/<sub>/
    ROOT = ROOT.parent
AUREN = (sys.executable, "-m", "auren_tui")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-B]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def publish(redis_url: str, stream: str, agent: str, n: int) -> None:
    r = redis.Redis.from_url(redis_url)
    for i in range(n):
        e = make_event(
            "llm_call",
            {
                "model": "gpt-4o-mini",
                "provider": "openai",
                "input_tokens": 100 + i,
                "output_tokens": 10 + i,
                "cost_usd": 0.001,
                "latency_ms": 40.0,
                "cost_source": "test",
                "ok": True,
            },
            agent=agent,
            run="run-web",
        )
        r.xadd(stream, {"e": encode(e)})


def publish_recording(redis_url: str, stream: str) -> None:
    """The snapshot suite's recording (every pane, hostile strings), moved to now."""
    shift = time.time() - 5 - FROZEN_NOW
    enc = msgspec.json.Encoder()
    pipe = redis.Redis.from_url(redis_url).pipeline()
    for it in recorded():
        if isinstance(it, Event) and FROZEN_NOW - it.ts < 3000:
            moved = msgspec.structs.replace(it, ts=it.ts + shift, sid=msgspec.UNSET)
            pipe.xadd(stream, {"e": enc.encode(moved)})
    pipe.execute()


@contextlib.contextmanager
def serve_web(redis_url: str, stream: str, *args: str) -> Iterator[int]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUREN_REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "auren_tui",
            "serve-web",
            "--port",
            str(port),
            "--stream",
            stream,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    def listening() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"serve-web exited: {out}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, "serve-web to listen", timeout=30, interval=0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


WS_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, KeyRing]:
    path = tmp_path / "jwt-keys.json"
    return path, KeyRing.create(path)


def test_refused_without_a_valid_token(
    redis_url: str, stream: str, keys: tuple[Path, KeyRing]
) -> None:
    key_file, ring = keys
    good, _ = issue_pair(ring, "web")
    expired, _ = issue_pair(ring, "web", access_ttl=-60)
    other, _ = issue_pair(KeyRing.create(key_file.with_name("other.json")), "web")
    revoked, rjti = issue_pair(ring, "web")
    store = RefreshStore(redis.Redis.from_url(redis_url, decode_responses=True))
    store.start(revoked.family, rjti)
    store.revoke(revoked.family)
    with serve_web(redis_url, stream, "--keys", str(key_file)) as port:
        base = f"http://127.0.0.1:{port}"
        assert status(f"{base}/") == 401
        assert status(f"{base}/ws", WS_UPGRADE) == 401
        assert status(f"{base}/static/js/textual.js") == 401
        for bad in (expired.access, other.access, revoked.access, good.refresh, "x.y.z"):
            assert status(f"{base}/?token={bad}") == 401, bad[:20]
            assert status(f"{base}/", {"Authorization": f"Bearer {bad}"}) == 401
            assert status(f"{base}/", {"Cookie": f"auren_web_token={bad}"}) == 401
        # a reverse proxy's Authorization header, and the cookie, are accepted
        assert status(f"{base}/", {"Authorization": f"Bearer {good.access}"}) == 200
        assert status(f"{base}/", {"Cookie": f"auren_web_token={good.access}"}) == 200
        # a page of another origin (another port on this host) cannot open the dashboard
        hostile = {
            **WS_UPGRADE,
            "Origin": "http://127.0.0.1:1",
            "Cookie": f"auren_web_token={good.access}",
        }
        assert status(f"{base}/ws", hostile) == 403


def test_auth_none_only_on_loopback(redis_url: str, stream: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "auren_tui", "serve-web", "--auth", "none", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "AUREN_REDIS_URL": redis_url},
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "auren: --auth none is refused on 0.0.0.0: bind to 127.0.0.1 or use --auth jwt"
    ]
    with serve_web(redis_url, stream, "--auth", "none") as port:
        assert status(f"http://127.0.0.1:{port}/") == 200
        # a DNS-rebinding page reaches 127.0.0.1 under its own name: refused
        assert status(f"http://127.0.0.1:{port}/", {"Host": f"evil.example:{port}"}) == 403


# ---------------------------------------------------------------------------- the browser


class CDP:
    """The DevTools protocol on one page: commands, and the events seen meanwhile."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my = self.next_id
        await self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == my:
                assert "error" not in msg, msg
                return dict(msg.get("result", {}))
            self.events.append(msg)

    async def js(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")

    def dashboard_text(self) -> str:
        """Everything the dashboard sent the browser so far, escape sequences removed."""
        raw = b"".join(
            base64.b64decode(e["params"]["response"]["payloadData"])
            for e in self.events
            if e.get("method") == "Network.webSocketFrameReceived"
            and e["params"]["response"].get("opcode") == 2
        )
        return ANSI.sub(b"", raw).decode("utf-8", "replace")


@needs_chromium
async def test_browser_shows_the_live_dashboard(
    redis_url: str, stream: str, keys: tuple[Path, KeyRing]
) -> None:
    key_file, ring = keys
    pair, _ = issue_pair(ring, "web-test")
    publish_recording(redis_url, stream)
    publish(redis_url, stream, "backfilled", 3)
    live = f"live{uuid.uuid4().hex[:6]}"
    with (
        serve_web(redis_url, stream, "--keys", str(key_file)) as port,
        chromium(window_size="1400,860") as devtools,
    ):
        page = page_target(devtools)
        async with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            cdp = CDP(ws)
            await cdp.call("Network.enable")
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"http://127.0.0.1:{port}/?token={pair.access}")
            deadline = time.monotonic() + 60
            await await_until(
                lambda: cdp.js("document.body && document.body.classList.contains('-first-byte')"),
                "the dashboard drawn in the browser",
                timeout=60,
                interval=0.1,
            )
            # the token left the address bar and is out of reach of page scripts
            assert await cdp.js("location.search") == ""
            assert "auren_web_token" not in str(await cdp.js("document.cookie"))

            async def seen(text: str) -> bool:
                await cdp.js("1")  # a round trip: the frames received meanwhile are logged
                return text in cdp.dashboard_text()

            left = max(1.0, deadline - time.monotonic())
            await await_until(lambda: seen("backfilled"), "backfilled events", timeout=left)
            assert live not in cdp.dashboard_text()
            publish(redis_url, stream, live, 5)  # while the page is open
            left = max(1.0, deadline - time.monotonic())
            await await_until(lambda: seen(live), "events published live", timeout=left)
            # xterm.js writes what it received on its next animation frames: two of them
            two_frames = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
            await cdp.call("Runtime.evaluate", expression=two_frames, awaitPromise=True)
            shot = await cdp.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            assert png.startswith(b"\x89PNG") and len(png) > 10_000
            out = ROOT / "screenshots" / "serve-web.png"
            out.parent.mkdir(exist_ok=True)
            out.write_bytes(png)


async def _session_close(
    port: int, token: str, within: float, opened: asyncio.Event | None = None
) -> tuple[int | None, str]:
    """How the dashboard session of ``token`` ends (code, reason) within ``within`` s;
    ``opened`` is set once the dashboard has sent its first frame."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"http://127.0.0.1:{port}/ws?width=80&height=24",
            headers={"Authorization": f"Bearer {token}"},
        ) as ws,
    ):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code, str(msg.extra or "")
            if opened is not None:
                opened.set()
        return None, "still open"


async def test_session_ends_when_its_token_expires_or_is_revoked(
    redis_url: str, stream: str, keys: tuple[Path, KeyRing]
) -> None:
    import aiohttp

    key_file, ring = keys
    pair, rjti = issue_pair(ring, "web")
    store = RefreshStore(redis.Redis.from_url(redis_url, decode_responses=True))
    store.start(pair.family, rjti)
    args = ("--keys", str(key_file), "--max-sessions", "1")
    with serve_web(redis_url, stream, *args) as port:
        opened = asyncio.Event()
        first = asyncio.create_task(_session_close(port, pair.access, 30, opened))
        opening = asyncio.create_task(opened.wait())
        await asyncio.wait([first, opening], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        opening.cancel()
        assert opened.is_set() and not first.done(), "the first dashboard never opened"
        # one `auren top` per session, and no more than --max-sessions of them
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(
                    f"http://127.0.0.1:{port}/ws",
                    headers={"Authorization": f"Bearer {pair.access}"},
                )
        assert refused.value.status == 503
        store.revoke(pair.family)  # `auren token --revoke-family`
        assert await first == (4401, "revoked")
        deadline = time.monotonic() + 15  # the first `auren top` quits, freeing its slot
        while True:
            short, _ = issue_pair(ring, "web", access_ttl=3)
            t0 = time.monotonic()
            try:
                closed = await _session_close(port, short.access, 20)
                break
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503 and time.monotonic() < deadline
                await asyncio.sleep(0.1)  # the slot is not free yet: try again
        assert closed == (4401, "token expired")
        assert time.monotonic() - t0 < 8


def test_refused_while_revocation_cannot_be_checked(
    private_redis: Any, stream: str, keys: tuple[Path, KeyRing]
) -> None:
    key_file, ring = keys
    pair, _ = issue_pair(ring, "web")
    with serve_web(private_redis.url, stream, "--keys", str(key_file)) as port:
        base = f"http://127.0.0.1:{port}"
        assert status(f"{base}/", {"Authorization": f"Bearer {pair.access}"}) == 200
        private_redis.stop()  # the family store is gone: fail closed, never a 500
        assert status(f"{base}/", {"Authorization": f"Bearer {pair.access}"}) == 503
        assert status(f"{base}/?token={pair.access}") == 503
        assert status(f"{base}/") == 401


async def test_stopping_ends_open_dashboards_and_their_processes(
    redis_url: str, stream: str
) -> None:
    import aiohttp
    import psutil

    port = _free_port()
    proc = subprocess.Popen(
        [*AUREN, "serve-web", "--auth", "none", "--port", str(port), "--stream", stream],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), "AUREN_REDIS_URL": redis_url},
    )
    try:

        def serving() -> bool:
            assert proc.poll() is None, "serve-web exited"
            with contextlib.suppress(OSError):
                return status(f"http://127.0.0.1:{port}/") == 200
            return False

        await await_until(lambda: asyncio.to_thread(serving), "serve-web to answer", timeout=30)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws")
            kids = await await_until(
                lambda: psutil.Process(proc.pid).children(recursive=True),
                "the session's `auren top` process",
                timeout=30,
            )
            t0 = time.monotonic()
            proc.terminate()
            assert await asyncio.to_thread(proc.wait, 20) == 0
            assert time.monotonic() - t0 < 10  # not aiohttp's shutdown timeout
            await ws.close()
        _, alive = psutil.wait_procs(kids, timeout=5)
        assert alive == []  # the session's `auren top` quit with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_hostile_browser_ends_only_its_own_session(redis_url: str, stream: str) -> None:
    import aiohttp

    with serve_web(redis_url, stream, "--auth", "none") as port:
        url = f"http://127.0.0.1:{port}/ws"
        async with aiohttp.ClientSession() as http:
            calm = await http.ws_connect(url)
            for bad in ("not json", "[" * 100_000 + "]" * 100_000, '["stdin"]', "{}"):
                ws = await http.ws_connect(url)
                await ws.send_str(bad)
                while (msg := await ws.receive(timeout=20)).type not in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    pass
                assert ws.close_code == 1003, bad[:10]
            assert not calm.closed  # the other dashboard is still up
            await calm.send_str('["ping", "x"]')
            while (msg := await calm.receive(timeout=20)).type != aiohttp.WSMsgType.TEXT:
                pass
            assert msg.json() == ["pong", "x"]
            await calm.close()
