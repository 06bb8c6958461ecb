"""serve-ws benchmarks (issue 5). Prints figures with their method; exits non-zero when a
phase measured nothing or lost deliveries that no cut client explains.

  .venv/bin/python bench/bench_ws.py [--redis-url URL] [--clients 1,100,1000] [--idle 10000]

Every server and every client group runs in its own process (spawned), so the server's
CPU is its own: publisher -> Redis stream -> server -> N WebSocket clients.

Two servers, same run, same stream traffic, same clients:

* ``auren``: the real :class:`auren_core.server.Server` (reader, reducer, filters, bounded
  per-client queues, snapshot), auth off, rate limit off.
* ``bare``: a bare websockets broadcast loop: ``XREAD BLOCK`` -> join the raw entries into
  one frame -> ``websockets.broadcast`` to every connection (no decode, no reducer, no
  bounds: a slow client would grow its buffer without limit).

Per client count N, two phases of ``--seconds`` each, per server:

1. paced: the publisher XADDs at a fixed rate (``RATE[N]`` events/s, each event stamped
   with ``time.time()``), clients parse every frame; latency = receive time - event ts
   (publish -> XADD -> XREAD -> fan-out -> client receive) for every event delivered to
   every client (clients are minimal raw-socket WebSocket readers, see ``WsReader``);
   deliveries/s = events received by all clients / publishing duration.
2. flood: the publisher XADDs as fast as it can (pipelines of 500); clients count events
   per frame without parsing; deliveries/s = all events received / (last - first receive).

Idle: ``--idle`` connections subscribed to the auren server with no traffic; server RSS
from /proc before and after (fd limits raised with ``resource.setrlimit``).

On a 2-core machine the publisher, Redis, the server and the client processes share two
cores: figures are lower bounds for the server, and the ratio auren/bare is what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import multiprocessing as mp
import os
import re
import resource
import socket
import statistics
import time
import urllib.request
import uuid
from array import array
from multiprocessing.connection import Connection
from typing import Any

import redis

RATE = {1: 5000, 100: 2500, 1000: 250}  # paced events/s: 250k deliveries/s at 100 and 1000
EVENT = {
    "model": "gpt-4o-mini",
    "provider": "openai",
    "input_tokens": 812,
    "output_tokens": 145,
    "cost_usd": 0.000209,
    "cost_source": "genai-prices",
    "latency_ms": 812.4,
    "ok": True,
}


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- servers


def run_auren(port: int, url: str, stream: str) -> None:
    raise_nofile()
    from auren_core.server import Server, ServerConfig

    async def main() -> None:
        srv = Server(
            ServerConfig(
                redis_url=url,
                stream=stream,
                port=port,
                auth="none",
                conn_rate=0,
                max_clients=50_000,
                window_s=600,
                # experiments: AUREN_BENCH_COALESCE_MAX_S=0 turns frame coalescing off
                coalesce_max_s=float(os.environ.get("AUREN_BENCH_COALESCE_MAX_S", "0.025")),
            )
        )
        await srv.start()
        await asyncio.Future()

    asyncio.run(main())


def run_bare(port: int, url: str, stream: str) -> None:
    raise_nofile()
    import redis.asyncio as aioredis
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the subscribe message, ignored
        await ws.send('{"type":"hello"}')
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async def main() -> None:
        r = aioredis.Redis.from_url(url)
        info = await r.xinfo_stream(stream) if await r.exists(stream) else None
        last = info["last-generated-id"].decode() if info else "0-0"
        async with serve(
            handler, "127.0.0.1", port, compression=None, max_size=65536, backlog=4096
        ):
            while True:
                resp: Any = await r.xread({stream: last}, count=2000, block=1000)
                if not resp:
                    continue
                entries = resp[0][1]
                last = entries[-1][0].decode()
                frame = (
                    b'{"type":"events","events":['
                    + b",".join(f[b"e"] for _, f in entries)
                    + b'],"last_id":"'
                    + last.encode()
                    + b'"}'
                )
                broadcast(clients, frame, text=True)

    asyncio.run(main())


# --------------------------------------------------------------------------- clients


_TS = re.compile(rb'"ts":([0-9.]+),')


class WsReader(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455 frames parsed by hand, server frames unmasked).

    The websockets client costs ~20-30 us of Python per frame; with 1000 connections on
    2 cores the clients would be the bottleneck, not the server. This one reads raw chunks,
    skips the first frame (snapshot), and finds each event's ``"ts":`` with one regex over
    the payload bytes: exact per-event latency (``full``) or a count (``count``).
    """

    def __init__(self, st: dict[str, Any], mode: str, ready: asyncio.Future[None]) -> None:
        self.st, self.mode, self.ready = st, mode, ready
        self.buf = b""
        self.handshaken = False
        self.frames = 0
        self.remaining = 0  # payload bytes left in the current frame
        self.opcode = 0
        self.tail = b""
        self.n = 0  # events this connection received
        self.lost = False  # closed by the server (or the network), not by us
        self.aborted = False  # closed by us at the end of the phase

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.t.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def send_text(self, data: bytes, opcode: int = 0x1) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.t.write(bytes([0x80 | opcode, 0x80 | len(data)]) + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.st["closed"] += 1
        self.lost = not self.aborted
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during handshake"))

    def data_received(self, data: bytes) -> None:
        if not self.handshaken:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(self.buf[:40].decode()))
                return
            self.handshaken = True
            data, self.buf = self.buf[end + 4 :], b""
            self.send_text(b'{"type":"subscribe","since":"now"}')
        buf = self.buf + data if self.buf else data
        self.buf = b""
        pos = 0
        while pos < len(buf):
            if self.remaining == 0:  # a frame header
                if len(buf) - pos < 2:
                    break
                b1 = buf[pos + 1] & 0x7F
                hl = 2 + (2 if b1 == 126 else 8 if b1 == 127 else 0)
                if len(buf) - pos < hl:
                    break
                self.opcode = buf[pos] & 0x0F
                n = b1 if b1 < 126 else int.from_bytes(buf[pos + 2 : pos + hl], "big")
                pos += hl
                self.remaining = n
                self.tail = b""
                if n == 0:
                    self._end_frame()
                continue
            take = min(self.remaining, len(buf) - pos)
            chunk = buf[pos : pos + take]
            pos += take
            self.remaining -= take
            if self.frames >= 1 and self.opcode in (0x0, 0x1):
                self._events(chunk)
            elif self.opcode == 0x9:  # ping: answer (pings are small, one chunk)
                self.send_text(chunk, 0xA)
            if self.remaining == 0:
                self._end_frame()
        self.buf = buf[pos:]

    def _end_frame(self) -> None:
        self.frames += 1
        if self.frames == 1 and not self.ready.done():
            self.ready.set_result(None)

    def _events(self, chunk: bytes) -> None:
        st = self.st
        data = self.tail + chunk
        now = time.time()
        if self.mode == "full":
            last = 0
            lat = st["lat"]
            before = len(lat)
            for m in _TS.finditer(data):
                lat.append(now - float(m.group(1)))
                last = m.end()
            self.tail = data[max(last, len(data) - 40) :]
            self.n += len(lat) - before
            st["count"] = len(lat)
        else:
            k = data.count(b'"ts":')
            st["count"] += k
            self.n += k
            self.tail = data[-4:]
        st["progress"].value = st["count"]
        if not st["first"]:
            st["first"] = now
        st["last"] = now


def run_clients(port: int, n: int, mode: str, conn: Connection, progress: Any) -> None:
    """``n`` connections; ``mode`` full (latency of every event) or count."""
    raise_nofile()
    st: dict[str, Any] = {
        "lat": array("d"),
        "count": 0,
        "first": 0.0,
        "last": 0.0,
        "closed": 0,
        "progress": progress,
    }

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transports, errors, readers = [], [], []
        for i in range(n):
            ready: asyncio.Future[None] = loop.create_future()
            try:
                t, proto = await loop.create_connection(
                    functools.partial(WsReader, st, mode, ready), "127.0.0.1", port
                )
                await asyncio.wait_for(ready, 60)
                transports.append(t)
                readers.append(proto)
            except (OSError, TimeoutError, ConnectionError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:120])
            if i % 100 == 99:
                await asyncio.sleep(0)
        closed0 = st["closed"]
        conn.send(("ready", len(transports)))
        await asyncio.to_thread(conn.recv)  # "stop"
        lost = st["closed"] - closed0
        per_conn = [(rd.n, rd.lost) for rd in readers]  # before our own aborts
        for rd in readers:
            rd.aborted = True
        for t in transports:
            t.abort()
        conn.send(
            (
                st["count"],
                st["lat"].tobytes(),
                [st["first"], st["last"]],
                errors[:5] + ([f"{lost} closed by server"] if lost else []),
                len(errors) + lost,
                per_conn,
            )
        )

    asyncio.run(main())


# --------------------------------------------------------------------------- publisher


def run_publisher(url: str, stream: str, rate: float, seconds: float, conn: Connection) -> None:
    from auren_core.events import encode_fields

    r = redis.Redis.from_url(url)
    sent = 0
    t0 = time.monotonic()
    tick = 0.005
    while (now := time.monotonic()) - t0 < seconds:
        pipe = r.pipeline(transaction=False)
        n = 500 if rate <= 0 else max(0, int((now - t0) * rate) - sent)
        for _ in range(n):
            # no MAXLEN: entries trimmed before a lagging server read them were lost with
            # no cut and no drop ("delivered 78.4%"); each phase has a fresh stream instead
            pipe.xadd(stream, {"e": encode_fields("llm_call", EVENT, "agent-1", "run-1")})
        if n:
            pipe.execute()
            sent += n
        if rate > 0:
            time.sleep(tick)
    conn.send((sent, time.monotonic() - t0))


# --------------------------------------------------------------------------- driver


class BenchFailed(Exception):
    """A phase that measured nothing or lost deliveries it cannot explain: exit non-zero."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchFailed(what)


def pct(xs: array[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000 if s else float("nan")


def phase(
    ctx: Any,
    kind: str,
    port: int,
    pid: int,
    url: str,
    stream: str,
    n: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    mode = "full" if rate > 0 else "count"
    groups = max(1, min(4, n // 25))
    sizes = [n // groups + (1 if i < n % groups else 0) for i in range(groups)]
    pipes, procs, progress = [], [], []
    for size in sizes:
        a, b = ctx.Pipe()
        progress.append(ctx.Value("q", 0, lock=False))
        p = ctx.Process(target=run_clients, args=(port, size, mode, b, progress[-1]), daemon=True)
        p.start()
        pipes.append(a)
        procs.append(p)
    opened = sum(pp.recv()[1] for pp in pipes)
    a, b = ctx.Pipe()
    cpu0 = cpu_s(pid)
    pub = ctx.Process(target=run_publisher, args=(url, stream, rate, seconds, b), daemon=True)
    pub.start()
    sent, took = a.recv()
    idle_since, prev = time.monotonic(), -1
    # the tail: all delivered, or nothing new for 10 s (a slow but moving tail is waited for:
    # a fixed 30 s deadline stopped clients mid-drain and reported it as a partial delivery)
    drained = False
    while time.monotonic() - idle_since <= 10.0:
        time.sleep(0.05)
        got = sum(v.value for v in progress)
        if got >= sent * opened:
            drained = True
            break
        if got != prev:
            idle_since, prev = time.monotonic(), got
    cpu = cpu_s(pid) - cpu0
    for pp in pipes:
        pp.send("stop")
    total, lats, first, last, errs, nerr = 0, array("d"), [], [], [], 0
    conns: list[tuple[int, bool]] = []
    for pp in pipes:
        count, raw, fl, e, ne, pc = pp.recv()
        conns += pc
        total += count
        lat = array("d")
        lat.frombytes(raw)
        lats.extend(lat)
        if fl[0]:
            first.append(fl[0])
            last.append(fl[1])
        errs += e
        nerr += ne
    for p in [*procs, pub]:
        p.join(10)
    span = took if rate > 0 else max(1e-9, max(last) - min(first)) if first else took
    cut, n_cut, n_drop = "", 0, 0
    if kind == "auren":  # the server's own account of slow clients (a fresh server per phase)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            mx = dict(
                ln.split(" ", 1)
                for ln in resp.read().decode().splitlines()
                if ln and not ln.startswith("#")
            )
        n_cut = int(float(mx["auren_ws_slow_disconnects_total"]))
        n_drop = int(float(mx["auren_ws_drops_total"]))
        cut = f"cut {n_cut} drops {n_drop}"
    # every missing delivery must be explained: a connection the server cut (and counted)
    # misses what came after; a connection that stayed open must have every event
    short_open = [sent - c for c, gone in conns if not gone and c != sent]
    short_cut = sum(sent - c for c, gone in conns if gone)
    gone_n = sum(1 for _c, gone in conns if gone)
    never = (n - len(conns)) * sent  # connections that never opened (in errors)
    unexplained: list[str] = []
    if short_open:
        unexplained.append(
            f"{len(short_open)} open connections short by {sum(short_open):,} events "
            f"(min {min(short_open):,}, max {max(short_open):,}; negative = duplicates)"
        )
    if gone_n > n_cut:
        unexplained.append(f"{gone_n} connections closed, the server cut {n_cut}")
    if not drained and not unexplained and short_cut + never == 0:
        unexplained.append("the tail stopped moving before every event was delivered")
    check(sent > 0 and total > 0, f"{kind} {n} clients: measured nothing (sent {sent})")
    check(
        not unexplained,
        f"{kind} {n} clients: delivered {total:,} of {sent * n:,}: " + "; ".join(unexplained),
    )
    if short_cut or never:
        cut += f" (missing {short_cut:,} on {gone_n} cut, {never:,} on unopened connections)"
    return {
        "server": kind,
        "clients": n,
        "opened": opened,
        "mode": mode,
        "sent": sent,
        "deliveries": total,
        "expected": sent * n,
        "per_s": total / span,
        "p50": pct(lats, 50),
        "p99": pct(lats, 99),
        "rss": rss_mb(pid),
        "cpu_per_m": cpu / max(total, 1) * 1e6,
        "errors": nerr,
        "err": errs[:2],
        "cut": cut,
    }


def start_server(ctx: Any, kind: str, url: str, stream: str) -> tuple[Any, int]:
    port = free_port()
    target = run_auren if kind == "auren" else run_bare
    p = ctx.Process(target=target, args=(port, url, stream), daemon=True)
    p.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            time.sleep(0.3)
            return p, port
        time.sleep(0.1)
    raise RuntimeError(f"{kind} server did not start")


def show(r: dict[str, Any]) -> None:
    pct_del = 100.0 * r["deliveries"] / max(1, r["expected"])
    lat = f"p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms" if r["mode"] == "full" else " " * 32
    print(
        f"  {r['server']:5} {r['clients']:5} clients {r['mode']:5}  "
        f"{r['per_s']:11,.0f} deliveries/s  {lat}  delivered {pct_del:5.1f}%  "
        f"server CPU {r['cpu_per_m']:5.2f} s/M  RSS {r['rss']:6.1f} MB"
        + (f"  {r['cut']}" if r["cut"] else "")
        + (f"  errors {r['errors']} {r['err']}" if r["errors"] else ""),
        flush=True,
    )


def idle(ctx: Any, url: str, stream: str, n: int) -> None:
    proc, port = start_server(ctx, "auren", url, stream)
    base = rss_mb(proc.pid)
    groups = max(1, n // 1000)
    pipes, procs = [], []
    for _ in range(groups):
        a, b = ctx.Pipe()
        p = ctx.Process(
            target=run_clients,
            daemon=True,
            args=(port, n // groups, "count", b, ctx.Value("q", 0, lock=False)),
        )
        p.start()
        pipes.append(a)
        procs.append(p)
    t0 = time.monotonic()
    opened = sum(pp.recv()[1] for pp in pipes)
    took = time.monotonic() - t0
    time.sleep(2)
    held = rss_mb(proc.pid)
    print(
        f"  idle: {opened:,} of {n:,} connections subscribed in {took:.1f} s; server RSS "
        f"{base:.0f} MB -> {held:.0f} MB ({(held - base) * 1024 / max(opened, 1):.1f} KB per "
        f"connection); target <= 1024 MB",
        flush=True,
    )
    for pp in pipes:
        pp.send("stop")
        pp.recv()
    for p in procs:
        p.join(10)
    proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--redis-url", default=os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ap.add_argument("--clients", default="1,100,1000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds per phase")
    ap.add_argument("--no-flood", dest="flood", action="store_false", help="paced phases only")
    args = ap.parse_args()
    raise_nofile()
    ctx = mp.get_context("spawn")
    stream = f"bench:ws:{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(args.redis_url)
    print(
        f"serve-ws benchmark: {os.cpu_count()} CPUs, stream {stream}, {args.seconds:.0f} s "
        "per phase; clients in separate processes (<= 4 groups)",
        flush=True,
    )
    try:
        for n in [int(x) for x in args.clients.split(",") if x]:
            rate = RATE.get(n, 200)
            print(f"{n} clients: paced {rate} events/s, then flood", flush=True)
            for rate_i in (rate, 0) if args.flood else (rate,):
                runs: dict[str, list[dict[str, Any]]] = {"auren": [], "bare": []}
                for _ in range(args.repeat):  # alternate, so drift in load hits both
                    for kind in ("auren", "bare"):
                        r.delete(stream)  # a fresh stream per phase (nothing is trimmed)
                        proc, port = start_server(ctx, kind, args.redis_url, stream)
                        res = phase(
                            ctx,
                            kind,
                            port,
                            proc.pid,
                            args.redis_url,
                            stream,
                            n,
                            rate_i,
                            args.seconds,
                        )
                        proc.kill()
                        proc.join()
                        show(res)
                        runs[kind].append(res)
                med = {
                    k: {f: statistics.median(r[f] for r in v) for f in ("per_s", "p50", "p99")}
                    for k, v in runs.items()
                }
                a, b = med["auren"], med["bare"]
                lat = f", p99 auren {a['p99']:.1f} ms vs bare {b['p99']:.1f} ms" if rate_i else ""
                print(
                    f"  -> median of {args.repeat}: auren {a['per_s']:,.0f} vs bare "
                    f"{b['per_s']:,.0f} deliveries/s = {a['per_s'] / max(b['per_s'], 1):.0%}"
                    f"{lat}",
                    flush=True,
                )
        if args.idle:
            idle(ctx, args.redis_url, stream, args.idle)
    finally:
        r.delete(stream)


if __name__ == "__main__":
    try:
        main()
    except BenchFailed as exc:
        raise SystemExit(f"bench_ws: FAILED: {exc}") from None
