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
import threading
from collections.abc import Iterator
from typing import Any

from browser import chromium, needs_chromium, page_target
from server_helpers import llm, publish, running
from waiting import await_until
from websockets.asyncio.client import ClientConnection, connect

from auren_core.events import make_event

pytestmark = needs_chromium

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
                page = page_target(devtools)
                async with connect(page["webSocketDebuggerUrl"], max_size=None) as cdp:
                    ids = [0]

                    async def status() -> bool:
                        js = "document.getElementById('status').textContent"
                        return str(await evaluate(cdp, js, ids)).startswith("snapshot")

                    await await_until(status, "the page's snapshot", timeout=30, interval=0.05)
                    after = publish(redis_url, stream, [llm("sleep", i) for i in range(5)])
                    want = before + after
                    rows: list[str] = []

                    async def listed() -> bool:
                        nonlocal rows
                        rows = await evaluate(
                            cdp,
                            "[...document.querySelectorAll('#events li')]"
                            ".map(li => li.textContent)",
                            ids,
                        )
                        return len(rows) >= len(want)

                    await await_until(listed, "every event listed", timeout=30, interval=0.05)
                    assert [r.split(" ")[0] for r in rows] == want
                    assert rows[1] == f"{before[1]} tool_used {hostile}"  # shown as text
                    assert await evaluate(cdp, "document.querySelectorAll('img').length", ids) == 0
                    assert await evaluate(cdp, "document.title", ids) == "auren feed"
            assert srv.metrics.deliveries >= len(want)
