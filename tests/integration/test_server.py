"""serve-ws over real sockets and real Redis: subscribe, filter, resume, HTTP API, limits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, cast

import pytest
import redis
from server_helpers import (
    aget,
    collect,
    llm,
    nothing_more,
    publish,
    running,
    subscribe,
    tier,
)
from servers import free_port
from waiting import await_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from auren_core.events import Event, decode, make_event
from auren_core.server.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_UNAUTHORIZED,
    Authenticate,
    Phase,
    ProtocolError,
    Session,
    Subscribe,
)
from auren_core.state import Reducer

# --------------------------------------------------------------------------- sans-I/O


def test_session_phases_and_validation() -> None:
    s = Session(auth_required=True)
    with pytest.raises(ProtocolError) as e:
        s.receive('{"type":"subscribe"}')
    assert e.value.code == CLOSE_UNAUTHORIZED
    assert isinstance(s.receive('{"type":"auth","token":"x"}'), Authenticate)
    s.authenticated()
    act = s.receive('{"type":"subscribe","types":["llm_call"],"since":"1700000000000"}')
    assert isinstance(act, Subscribe)
    assert act.subscription.types == frozenset({"llm_call"})
    assert act.subscription.since == "1700000000000-0"
    assert s.phase is Phase.STREAMING
    with pytest.raises(ProtocolError):
        s.receive('{"type":"subscribe"}')  # only once
    for bad in [
        "not json",
        "[1,2]",
        '{"type":1}',
        '{"type":"subscribe","since":"yesterday"}',
        '{"type":"subscribe","types":"llm_call"}',
        '{"type":"subscribe","agents":[""]}',
        '{"type":"subscribe","types":[' + ",".join(['"x"'] * 300) + "]}",
    ]:
        with pytest.raises(ProtocolError) as e:
            Session(auth_required=False).receive(bad)
        assert e.value.code == CLOSE_BAD_REQUEST


# --------------------------------------------------------------------------- feed


async def test_snapshot_then_live_events_in_order(redis_url: str, stream: str) -> None:
    before = [llm("planner", i) for i in range(5)]
    publish(redis_url, stream, before)
    async with running(redis_url, stream) as srv:
        ws, snap = await subscribe(srv.port, since="now")
        assert ws.response is not None  # the client offered permessage-deflate: declined
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        totals = snap["state"]["totals"]
        assert totals["llm_calls"] == 5
        assert totals["input_tokens"] == sum(100 + i for i in range(5))
        assert {"generated_at", "window_s", "agents", "tiers", "collaboration", "health"} <= set(
            snap["state"]
        )
        after = [llm("planner", i) for i in range(10)]
        ids = publish(redis_url, stream, after)
        got, last_id = await collect(ws, 10)
        assert [e["_sid"] for e in got] == ids
        assert [e["id"] for e in got] == [e.id for e in after]
        assert last_id == ids[-1]
        await nothing_more(ws)
        await ws.close()


async def test_filters_by_type_and_agent(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream) as srv:
        ws_t, _ = await subscribe(srv.port, types=["memory_tier_access"])
        ws_a, _ = await subscribe(srv.port, agents=["nutritionist"])
        ws_all, _ = await subscribe(srv.port)
        evs = [
            llm("nutritionist", 1),
            tier("sleep", "redis_immediate", 2.0),
            llm("sleep", 2),
            tier("nutritionist", "miss", 9.0),
        ]
        ids = publish(redis_url, stream, evs)
        got_t, _ = await collect(ws_t, 2)
        got_a, _ = await collect(ws_a, 2)
        got_all, _ = await collect(ws_all, 4)
        assert [e["_sid"] for e in got_t] == [ids[1], ids[3]]
        assert [e["_sid"] for e in got_a] == [ids[0], ids[3]]
        assert [e["_sid"] for e in got_all] == ids
        for ws in (ws_t, ws_a, ws_all):
            await nothing_more(ws, 0.3)
            await ws.close()


async def test_flow_events_pass_a_type_filter(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream) as srv:
        ws_f, _ = await subscribe(srv.port, types=["flow_step", "human_input"])
        ws_a, _ = await subscribe(srv.port, agents=["writer"], types=["human_input"])
        evs = [
            make_event("flow_started", {"flow": "F"}, run="fl-1"),
            make_event("flow_step", {"flow": "F", "method": "m", "phase": "started"}, run="fl-1"),
            llm("writer", 1),
            make_event("human_input", {"state": "requested", "flow": "F"}, run="fl-1"),
            make_event("human_input", {"state": "requested"}, agent="writer", run="c-1"),
            make_event("flow_completed", {"flow": "F", "duration_ms": 5.0}, run="fl-1"),
        ]
        ids = publish(redis_url, stream, evs)
        got_f, _ = await collect(ws_f, 3)
        got_a, _ = await collect(ws_a, 1)
        assert [e["_sid"] for e in got_f] == [ids[1], ids[3], ids[4]]
        assert [e["type"] for e in got_f] == ["flow_step", "human_input", "human_input"]
        assert got_f[0]["payload"]["method"] == "m" and got_f[0]["run"] == "fl-1"
        assert [e["_sid"] for e in got_a] == [ids[4]]
        for ws in (ws_f, ws_a):
            await nothing_more(ws, 0.3)
            await ws.close()


async def test_resume_gives_exactly_the_missed_sequence(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream) as srv:
        ws, _ = await subscribe(srv.port, since="0-0")
        first = publish(redis_url, stream, [llm("a", i) for i in range(20)])
        got, last_id = await collect(ws, 20)
        assert [e["_sid"] for e in got] == first
        await ws.close()
        missed = publish(redis_url, stream, [llm("a", i) for i in range(2500)])  # > 1 XRANGE page
        ws, _ = await subscribe(srv.port, since=last_id)
        got, _ = await collect(ws, 2500)
        assert [e["_sid"] for e in got] == missed
        later = publish(redis_url, stream, [llm("a", i) for i in range(5)])
        got, _ = await collect(ws, 5)
        assert [e["_sid"] for e in got] == later
        await nothing_more(ws)
        await ws.close()


async def test_resume_seam_under_live_traffic(redis_url: str, stream: str) -> None:
    """Catch-up from an old id while events keep arriving: no gap, no repeat at the seam."""
    async with running(redis_url, stream) as srv:
        start = publish(redis_url, stream, [llm("a", 0)])[0]
        publish(redis_url, stream, [llm("a", i) for i in range(3000)])
        stop = asyncio.Event()

        async def trickle() -> None:
            while not stop.is_set():
                await asyncio.to_thread(publish, redis_url, stream, [llm("b", i) for i in range(7)])
                await asyncio.sleep(0.003)  # a steady trickle, not a flood

        task = asyncio.create_task(trickle())
        ws, _ = await subscribe(srv.port, since=start)
        await asyncio.sleep(0.6)  # the catch-up runs while the trickle goes on (the test)
        stop.set()
        await task
        entries: Any = redis.Redis.from_url(redis_url).xrange(stream, min="(" + start)
        want = [sid.decode() for sid, _ in entries]
        got, _ = await collect(ws, len(want))
        assert [e["_sid"] for e in got] == want
        await nothing_more(ws)
        await ws.close()


async def test_malformed_entries_are_skipped_and_counted(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream) as srv:
        ws, _ = await subscribe(srv.port)
        r = redis.Redis.from_url(redis_url)
        r.xadd(stream, {"e": b"\x1b[31m{not json"})
        good = publish(redis_url, stream, [llm("a", 1)])
        got, last_id = await collect(ws, 1)
        assert [e["_sid"] for e in got] == good and last_id == good[0]
        assert srv.metrics.malformed == 1
        await ws.close()


# --------------------------------------------------------------------------- limits


async def test_oversized_message_closed_1009(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream, max_message_bytes=1024) as srv:
        ws = await connect(f"ws://127.0.0.1:{srv.port}/ws")
        await ws.send(json.dumps({"type": "subscribe", "types": ["x" * 2000]}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009
        # the server still serves others
        ws2, _ = await subscribe(srv.port)
        await ws2.close()


async def test_bad_message_closed_with_reason(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream) as srv:
        ws = await connect(f"ws://127.0.0.1:{srv.port}/ws")
        await ws.send('{"type":"subscribe","since":"<script>"}')
        err = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert err == {"type": "error", "code": 4400, "reason": err["reason"]}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4400 and "since" in (ws.close_reason or "")


async def test_max_clients_and_rate_limit(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream, max_clients=2) as srv:
        a, _ = await subscribe(srv.port)
        b, _ = await subscribe(srv.port)
        c = await connect(f"ws://127.0.0.1:{srv.port}/ws")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(c.recv(), 5)
        assert c.close_code == 1013 and "server full" in (c.close_reason or "")
        await a.close()
        await b.close()
    async with running(redis_url, stream, conn_rate=1.0, conn_burst=3) as srv:
        codes = [(await aget(srv.port, "/healthz"))[0] for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        status, headers, _ = await aget(srv.port, "/healthz")
        assert status == 429 and int(headers["Retry-After"]) >= 1
    async with running(
        redis_url, stream, conn_rate=1.0, conn_burst=2, trusted_proxies=("127.0.0.1",)
    ) as srv:  # behind a proxy: the limit is per forwarded client address
        for client in ("10.0.0.1", "10.0.0.2"):
            xff = {"X-Forwarded-For": f"203.0.113.9, {client}"}
            codes = [(await aget(srv.port, "/healthz", xff))[0] for _ in range(3)]
            assert codes == [200, 200, 429], (client, codes)


# --------------------------------------------------------------------------- HTTP API


async def test_http_api_matches_the_reducer(redis_url: str, stream: str) -> None:
    evs = [
        make_event(
            "agent_registered",
            {"role": "Sleep specialist", "goal": "g", "tools": ["t"], "model": "gpt-4o-mini"},
            agent="sleep",
        ),
        *[llm("sleep", i) for i in range(6)],
        tier("sleep", "redis_immediate", 1.5),
        tier("sleep", "redis_immediate", 2.5),
        tier("sleep", "postgresql_structured", 12.0),
        tier("sleep", "miss", 30.0),
    ]
    publish(redis_url, stream, evs)
    ref = Reducer(window_s=3600.0)
    ref.apply_batch(evs)
    want = ref.state().tier_stats()
    async with running(redis_url, stream) as srv:
        status, headers, body = await aget(srv.port, "/api/v2/memory/tier-stats?window_hours=1")
        assert status == 200 and headers["Content-Type"] == "application/json"
        doc = json.loads(body)
        for key in ("tier_hit_rates", "average_latencies_ms", "cost_by_tier"):
            assert doc[key] == json.loads(json.dumps(want[key])), key
        assert doc["tier_hit_rates"]["redis"] == pytest.approx(0.5)
        status, _, body = await aget(srv.port, "/api/v2/memory/tier-stats?window_hours=24")
        doc24 = json.loads(body)
        assert status == 200 and doc24["tier_hit_rates"] == doc["tier_hit_rates"]
        status, _, body = await aget(srv.port, "/api/v2/agents/active")
        agents = json.loads(body)
        assert status == 200 and agents["count"] == 1
        assert agents["agents"][0]["id"] == "sleep"
        assert agents["agents"][0]["role"] == "Sleep specialist"
        assert agents["agents"][0]["input_tokens"] == sum(100 + i for i in range(6))
        status, _, body = await aget(srv.port, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["last_id"]
        status, headers, body = await aget(srv.port, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        metrics = dict(
            line.split(" ", 1)
            for line in body.decode().splitlines()
            if line and not line.startswith("#")
        )
        assert float(metrics["auren_ws_events_total"]) == len(evs)
        for bad in (
            "/api/v2/memory/tier-stats?window_hours=abc",
            "/api/v2/memory/tier-stats?window_hours=-1",
            "/api/v2/export/analytics?format=xlsx",
        ):
            status, _, body = await aget(srv.port, bad)
            assert status == 400 and json.loads(body)["error"]
        assert (await aget(srv.port, "/nope"))[0] == 404


async def test_flows_endpoint(redis_url: str, stream: str) -> None:
    now = time.time()

    def fe(type: str, run: str, age: float, **payload: Any) -> Event:
        return make_event(type, payload, run=run, ts=now - age)

    evs = [
        fe("flow_started", "fl-1", 30, flow="Plan"),
        fe("flow_step", "fl-1", 29, flow="Plan", method="draft", phase="started"),
        fe("flow_step", "fl-1", 28, flow="Plan", method="draft", phase="paused"),
        fe("human_input", "fl-1", 28, state="requested", method="draft", message="ok?"),
        fe("flow_started", "fl-2", 20, flow="Report"),
        fe("flow_failed", "fl-2", 10, flow="Report", ok=False, error="boom"),
    ]
    publish(redis_url, stream, evs)
    ref = Reducer(window_s=3600.0)
    ref.apply_batch(evs)
    want = ref.state().to_dict()["flows"]
    async with running(redis_url, stream) as srv:
        await await_until(
            lambda: srv.reducer.state().health.events_total >= len(evs), "every event read"
        )
        status, headers, body = await aget(srv.port, "/api/v2/flows")
        assert status == 200 and headers["Content-Type"] == "application/json"
        doc = json.loads(body)
        assert (doc["count"], doc["active"], doc["window_s"]) == (2, 1, 3600.0)
        assert doc["by_status"] == {"running": 0, "waiting_human": 1, "completed": 0, "failed": 1}
        got = doc["flows"]
        assert [f["run"] for f in got] == ["fl-1", "fl-2"]
        assert got[0]["status"] == "waiting_human" and got[0]["current_step"] == "draft"
        assert got[0]["waiting_message"] == "ok?" and got[1]["error"] == "boom"
        for g, w in zip(got, want, strict=True):  # the reducer's figures (the clocks differ)
            g.pop("duration_ms"), w.pop("duration_ms")
            assert g == w


async def test_export_endpoint(redis_url: str, stream: str) -> None:
    pytest.importorskip("auren_core.export")
    evs = [llm("sleep", i) for i in range(4)]
    publish(redis_url, stream, evs)
    async with running(redis_url, stream) as srv:
        status, headers, body = await aget(
            srv.port, "/api/v2/export/analytics?format=csv&report=tokens"
        )
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        assert b"sleep" in body
        status, _, body = await aget(srv.port, "/api/v2/export/analytics?format=json&report=all")
        assert status == 200 and json.loads(body)
        status, _, body = await aget(srv.port, "/api/v2/export/analytics?report=bogus")
        assert status == 400
        status, _, body = await aget(srv.port, "/api/v2/export/analytics?format=json&report=flows")
        assert status == 200 and json.loads(body) == {"flows": []}


# --------------------------------------------------------------------------- processes

_CLIENT = r"""
import json, socket, sys
from websockets.sync.client import connect
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
with connect(f"ws://127.0.0.1:{sys.argv[1]}/ws", sock=sock, max_size=None) as ws:
    ws.send(json.dumps({"type": "subscribe"}))
    ws.recv()
    print("ready", flush=True)
    try:
        while True:
            ws.recv()
    except Exception:
        pass
    print("closed", ws.close_code, ws.close_reason, flush=True)
"""


async def test_stalled_client_cut_off_others_get_everything(redis_url: str, stream: str) -> None:
    async with running(
        redis_url, stream, queue_bytes=512 << 10, write_high=64 << 10, ping_interval=None
    ) as srv:
        slow = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(srv.port)], stdout=subprocess.PIPE, text=True
        )
        assert slow.stdout is not None
        line = await asyncio.to_thread(slow.stdout.readline)
        assert line.strip() == "ready"
        os.kill(slow.pid, signal.SIGSTOP)
        others = [(await subscribe(srv.port))[0] for _ in range(20)]
        payload = "x" * 2000
        received: list[list[str]] = [[] for _ in others]

        async def read_until_marker(ws: ClientConnection, out: list[str]) -> None:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                for e in frame["events"]:
                    out.append(e["_sid"])
                    if e["type"] == "crew_completed":
                        return

        readers = [
            asyncio.create_task(read_until_marker(ws, out))
            for ws, out in zip(others, received, strict=True)
        ]
        ids: list[str] = []
        rounds = 0
        # keep publishing until the stalled client's kernel buffers and queue overflow
        while srv.metrics.slow_disconnects == 0 and rounds < 60:
            batch = [
                make_event("tool_used", {"tool": "search", "note": payload}, agent="a")
                for _ in range(300)
            ]
            ids += await asyncio.to_thread(publish, redis_url, stream, batch)
            rounds += 1
            await asyncio.sleep(0.05)  # publishing pace: the others keep reading meanwhile
        ids += publish(redis_url, stream, [make_event("crew_completed", {"crew": "c"})])
        t0 = time.monotonic()
        await asyncio.gather(*readers)
        assert all(r == ids for r in received)
        assert time.monotonic() - t0 < 60
        assert srv.metrics.slow_disconnects == 1 and srv.hub.clients == 20
        assert srv._ws is not None
        ws_server = srv._ws
        # its socket is closed too (close frame, then abort after 2 s)
        await await_until(lambda: len(ws_server.connections) == 20, "its socket closed")
        # the server already dropped it (aborted after the 2 s close timeout); let it go
        os.kill(slow.pid, signal.SIGCONT)
        slow.kill()
        slow.wait()
        for ws in others:
            await ws.close()


def _serve(port: int, redis_url: str, stream: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AUREN_REDIS_URL": redis_url, "AUREN_STREAM": stream}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "auren_tui",
            "serve-ws",
            "--auth",
            "none",
            "--port",
            str(port),
            "--conn-rate",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_two_server_processes_serve_identical_data(redis_url: str, stream: str) -> None:
    evs = [llm("a", i) for i in range(30)] + [tier("a", "redis_immediate", 3.0)]
    early = publish(redis_url, stream, evs)
    ports = [free_port(), free_port()]
    procs = [_serve(p, redis_url, stream) for p in ports]
    try:
        for proc in procs:
            assert proc.stdout is not None
            banner = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert banner.startswith("backends: redis"), banner
            assert "serving ws://" in await asyncio.to_thread(proc.stdout.readline)
        conns = [(await subscribe(p, since="0-0")) for p in ports]
        late = publish(redis_url, stream, [llm("b", i) for i in range(40)])
        seqs = [await collect(ws, 71) for ws, _ in conns]
        assert seqs[0][0] == seqs[1][0]
        assert [e["_sid"] for e in seqs[0][0]] == early + late
        assert conns[0][1]["state"]["totals"] == conns[1][1]["state"]["totals"]
        stats = [
            json.loads((await aget(p, "/api/v2/memory/tier-stats?window_hours=1"))[2])
            for p in ports
        ]
        assert stats[0]["tier_hit_rates"] == stats[1]["tier_hit_rates"]
        assert stats[0]["average_latencies_ms"] == stats[1]["average_latencies_ms"]
        for ws, _ in conns:
            await ws.close()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)
        assert all(proc.returncode == 0 for proc in procs)
        assert all(
            "WARNING: --auth none" in (proc.stderr.read() if proc.stderr else "") for proc in procs
        )


def test_event_frames_decode_back_to_events() -> None:
    from auren_core.server.protocol import encode_event, events_frame, events_frame_all

    ev = decode(
        b'{"v":1,"id":"x","ts":1767225600.5,"type":"llm_call","agent":"a","run":null,'
        b'"payload":{"model":"m"}}',
        "5-1",
    )
    frame = json.loads(events_frame([encode_event(ev)], "5-1"))  # type: ignore[arg-type]
    assert frame["events"][0]["_sid"] == "5-1" and frame["last_id"] == "5-1"
    assert decode(json.dumps(frame["events"][0])).id == "x"  # type: ignore[union-attr]
    assert isinstance(ev, Event)
    assert events_frame_all([ev, ev], "5-1") == events_frame([encode_event(ev)] * 2, "5-1")


class _RecordingWs:
    """Stands in for a connection in the pure fan-out test: no transport, records sends."""

    transport = None
    remote_address = ("127.0.0.1", 1)

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, data: bytes, text: bool = False) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


async def test_hub_seams_without_sockets() -> None:
    """Behind -> catch up first; ahead -> held, then only later events; full queue -> cut."""
    from auren_core.server.fanout import Client, Hub
    from auren_core.server.metrics import Metrics
    from auren_core.server.protocol import Subscription
    from auren_core.streams.reader import Batch

    def ev(sid: str) -> Any:
        raw = (
            f'{{"v":1,"id":"{sid}","ts":1767225600.0,"type":"llm_call","payload":{{"model":"m"}}}}'
        )
        return decode(raw.encode(), sid)

    m = Metrics()
    hub = Hub(m)
    hub.last_id = "10-0"

    def client(since: str, **kw: int) -> tuple[Client, _RecordingWs]:
        ws = _RecordingWs()
        c = Client(
            cast(Any, ws),
            Subscription(since=since),
            m,
            max_frames=kw.get("frames", 8),
            max_bytes=1 << 20,
            high_water=1,
        )
        c.start()
        return c, ws

    behind, _ = client("5-0")
    assert hub.join(behind) is False  # needs XRANGE catch-up first
    ahead, ahead_ws = client("12-0")
    live, live_ws = client("now")
    assert hub.join(ahead) and hub.join(live)
    assert hub.pending == [ahead]
    hub.publish(Batch([ev("11-0"), ev("12-0"), ev("13-0")], "13-0"))
    await await_until(lambda: ahead_ws.sent and live_ws.sent, "the clients' senders to send")
    sids = [[e["_sid"] for e in json.loads(f)["events"]] for f in ahead_ws.sent]
    assert sids == [["13-0"]] and hub.pending == []
    assert [e["_sid"] for e in json.loads(live_ws.sent[0])["events"]] == ["11-0", "12-0", "13-0"]
    slow, slow_ws = client("now", frames=2)
    slow._sender.cancel()  # type: ignore[union-attr]  # a client that never drains
    assert hub.join(slow)
    for i in range(4):
        hub.publish(Batch([ev(f"2{i}-0")], f"2{i}-0"))
    assert slow.dead and "slow consumer" in slow.cut_reason
    assert m.slow_disconnects == 1 and slow not in hub.groups.get(slow.sub.key, set())
    await await_until(
        lambda: hasattr(slow_ws, "closed") and len(live_ws.sent) >= 5,
        "the slow client closed, the live one sent to",
    )
    assert slow_ws.closed[0] == 4408
    assert len(live_ws.sent) == 5  # the others never waited


async def test_redis_outage_and_recovery(private_redis: Any) -> None:
    url, stream = private_redis.url, "auren:outage"
    async with running(url, stream, ping_interval=None) as srv:
        ws, _ = await subscribe(srv.port)
        ids = publish(url, stream, [llm("a", i) for i in range(3)])
        assert [e["_sid"] for e in (await collect(ws, 3))[0]] == ids
        assert (await aget(srv.port, "/healthz"))[0] == 200
        private_redis.stop()

        async def unhealthy() -> tuple[int, bytes] | None:
            status, _, body = await aget(srv.port, "/healthz")
            return (status, body) if status == 503 else None

        status, body = await await_until(unhealthy, "/healthz to say 503", timeout=5)
        assert status == 503 and json.loads(body)["reader_connected"] is False
        late = await connect(f"ws://127.0.0.1:{srv.port}/ws")  # needs a catch-up: refused
        await late.send(json.dumps({"type": "subscribe", "since": "0-0"}))
        assert json.loads(await asyncio.wait_for(late.recv(), 10))["type"] == "snapshot"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(late.recv(), 10)
        assert late.close_code == 1013 and "stream unavailable" in (late.close_reason or "")
        private_redis.start()
        after = publish(url, stream, [llm("b", i) for i in range(4)])  # the old client stays
        assert [e["_sid"] for e in (await collect(ws, 4, timeout=20))[0]] == after
        assert (await aget(srv.port, "/healthz"))[0] == 200
        await ws.close()


async def test_lag_is_measured_from_the_stream(redis_url: str, stream: str) -> None:
    async with running(redis_url, stream) as srv:
        ids = publish(redis_url, stream, [llm("a", i) for i in range(25)])
        await await_until(lambda: srv.hub.last_id == ids[-1], "the hub at the head", timeout=2)
        srv.metrics.lag = -1  # not a measurement: the next probe (every second) replaces it
        await await_until(lambda: srv.metrics.lag != -1, "a lag measurement", timeout=5)
        assert srv.metrics.lag == 0
        srv.hub.last_id = ids[4]  # as if the fan-out were 20 entries behind the head
        await await_until(lambda: srv.metrics.lag == 20, "the lag of 20 measured", timeout=5)
        assert srv.metrics.lag == 20
        body = (await aget(srv.port, "/metrics"))[2].decode()
        assert "\nauren_ws_lag_entries 20.0\n" in body  # prometheus-client writes floats


async def test_keepalive_closes_a_client_that_never_answers_pings(
    redis_url: str, stream: str
) -> None:
    async with running(redis_url, stream, ping_interval=0.2, ping_timeout=0.3) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        payload, mask = b'{"type":"subscribe"}', b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        polite, _ = await subscribe(srv.port)  # the websockets client answers pings
        data = b""
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):  # until the server hangs up
                data += chunk
        assert b"\x89\x04" in data  # a ping (4-byte payload) was sent...
        assert b"\x88" in data and (1011).to_bytes(2, "big") in data  # ...then close 1011
        ids = publish(redis_url, stream, [llm("a", 1)])
        assert [e["_sid"] for e in (await collect(polite, 1))[0]] == ids
        # dropped once the 2 s close timeout ends the TCP connection
        await await_until(lambda: srv.hub.clients == 1, "the silent client dropped", timeout=5)
        writer.close()
        await polite.close()


async def test_snapshot_log_is_capped_and_shared(redis_url: str, stream: str) -> None:
    publish(redis_url, stream, [llm("a", i) for i in range(30)])
    async with running(redis_url, stream, snapshot_log=10) as srv:
        ws1, snap1 = await subscribe(srv.port)
        ws2, snap2 = await subscribe(srv.port)
        assert snap1["state"]["totals"]["llm_calls"] == 30
        assert len(snap1["state"]["log"]) == 10  # the newest entries only
        assert snap1 == snap2  # subscribers within snapshot_ttl_s share one snapshot
        await ws1.close()
        await ws2.close()
