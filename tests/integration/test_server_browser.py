"""A real browser: headless Chromium opens a page that subscribes to /ws and lists events.

The page is served by the test on its own port (a different origin, allow-listed); the
test drives Chromium over the DevTools protocol and reads the list back from the DOM.
Needs the Debian package ``chromium`` (``apt-get install -y chromium``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import llm, publish, running
from websockets.asyncio.client import ClientConnection, connect

from auren_core.events import make_event

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>auren feed</title></head>
<body><div id="status">connecting</div><ul id="events"></ul>
<script>
const status = document.getElementById("status");
const list = document.getElementById("events");
const port = new URLSearchParams(location.search).get("port");
const ws = new WebSocket("ws://127.0.0.1:" + port + "/ws");
ws.onopen = () => ws.send(JSON.stringify({type: "subscribe", since: "0-0"}));
ws.onmessage = (msg) => {
  const frame = JSON.parse(msg.data);
  if (frame.type === "snapshot") {
    status.textContent = "snapshot " + frame.state.totals.events;
  } else if (frame.type === "events") {
    for (const e of frame.events) {
      const li = document.createElement("li");
      li.textContent = e._sid + " " + e.type + " " + e.agent;  // text, never markup
      list.appendChild(li);
    }
  }
};
ws.onclose = (ev) => { status.textContent = "closed " + ev.code; };
</script></body></html>
"""


@contextlib.contextmanager
def page_server(html: str) -> Iterator[int]:
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()


@contextlib.contextmanager
def chromium(url: str) -> Iterator[int]:
    """Headless Chromium showing ``url``; yields its DevTools port."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="auren-chromium-")
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        yield int(active.read_text().split()[0])
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def evaluate(cdp: ClientConnection, expression: str, ids: list[int]) -> Any:
    ids[0] += 1
    await cdp.send(
        json.dumps(
            {
                "id": ids[0],
                "method": "Runtime.evaluate",
                "params": {"expression": expression, "returnByValue": True},
            }
        )
    )
    while True:
        reply = json.loads(await asyncio.wait_for(cdp.recv(), 10))
        if reply.get("id") == ids[0]:
            return reply["result"]["result"].get("value")


async def test_browser_page_shows_live_events(redis_url: str, stream: str) -> None:
    hostile = '<img src=x onerror="document.title=1">'
    before = publish(
        redis_url,
        stream,
        [llm("planner", 1), make_event("tool_used", {"tool": "search"}, agent=hostile)],
    )
    with page_server(PAGE) as page_port:
        origin = f"http://127.0.0.1:{page_port}"
        async with running(redis_url, stream, origins=(origin,)) as srv:
            with chromium(f"{origin}/?port={srv.port}") as devtools:
                targets = json.loads(
                    urllib.request.urlopen(
                        f"http://127.0.0.1:{devtools}/json/list", timeout=10
                    ).read()
                )
                page = next(t for t in targets if t.get("type") == "page")
                async with connect(page["webSocketDebuggerUrl"], max_size=None) as cdp:
                    ids = [0]
                    deadline = time.monotonic() + 30
                    while not str(
                        await evaluate(cdp, "document.getElementById('status').textContent", ids)
                    ).startswith("snapshot"):
                        assert time.monotonic() < deadline, "page never got its snapshot"
                        await asyncio.sleep(0.1)
                    after = publish(redis_url, stream, [llm("sleep", i) for i in range(5)])
                    want = before + after
                    rows: list[str] = []
                    while len(rows) < len(want) and time.monotonic() < deadline:
                        rows = await evaluate(
                            cdp,
                            "[...document.querySelectorAll('#events li')]"
                            ".map(li => li.textContent)",
                            ids,
                        )
                        await asyncio.sleep(0.1)
                    assert [r.split(" ")[0] for r in rows] == want
                    assert rows[1] == f"{before[1]} tool_used {hostile}"  # shown as text
                    assert await evaluate(cdp, "document.querySelectorAll('img').length", ids) == 0
                    assert await evaluate(cdp, "document.title", ids) == "auren feed"
            assert srv.metrics.deliveries >= len(want)
