"""``auren top`` end to end: stream -> worker -> reducer -> painted frame, on real Redis.

Method (all figures from this run, on the same stream, against a baseline measured now):

1. ingest (backfill): N entries (the reducer bench's realistic type mix) are written to a
   fresh stream; the app (headless ``run_test``, 160x48, 20 Hz refresh) backfills them.
   Rate = N / (first painted frame showing all N - app start). Baseline: a bare
   redis-py (asyncio, hiredis) ``XREAD COUNT 5000`` + ``decode`` loop over the same stream.
2. sustained live ingest: a producer *process* XADDs at --rate (default 150,000/s: about
   what one Redis takes here) for --seconds while the app tails; consumed rate, the
   producer's achieved rate, the backlog at the end and how long it takes to drain.
   Baseline: a bare XREAD+decode loop tailing the same producer (same rate and seconds),
   measured before and after the app; also shown: the bare loop over the stored entries
   with no producer running (one reader's ceiling).
3. latency at 10,000 ev/s: the producer stamps each event with the time it sends it; the
   app records (wall time, last stream id) after every painted frame (``call_after_refresh``).
   Event-to-visible-frame = first frame whose last id >= the event's id, minus its stamp.
   Meanwhile a key ("s", re-sort the agents table) is sent through the driver every 100 ms;
   keypress response = key sent -> the frame after its action has been painted.
4. start-up: a fresh process runs ``make_app(...).run(headless=True)`` and prints the time
   of its first painted frame with a state from the stream worker: empty stream, and a
   100,000-event backfill (the first frame showing part of it, i.e. its progress, and the
   first frame showing all of it). Baseline: a bare Textual app with one Static, same way.
   The children are ``bench/top_startup_child.py``, which imports only what it measures.
   ``--only startup`` runs just this phase (``--runs N``: best of N, default 3).

    .venv/bin/python bench/bench_top.py [--redis-url URL] [--events 200000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis
import redis.connection

from auren_core.streams.entries import decode_entries, parse_stream_id

PY = sys.executable
HERE = os.path.abspath(__file__)
# the start-up children: a script of their own, so that they import nothing of this one
# (redis-py alone is ~0.1 s, which neither `make_app` nor a bare Textual app needs)
CHILD = os.path.join(os.path.dirname(HERE), "top_startup_child.py")


class BenchFailed(Exception):
    """A phase that measured nothing (or only part of what it was given): exit non-zero."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchFailed(what)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


# --------------------------------------------------------------------------- producer


def produce(url: str, stream: str, rate: float, seconds: float, mode: str) -> None:
    """Child process: XADD at ``rate``/s for ``seconds`` over a raw socket (hiredis packing)."""
    import socket
    from urllib.parse import urlsplit

    import hiredis

    from auren_core.events import encode_fields

    u = urlsplit(url)
    sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # the URL's password and database, as redis-py would use them: a producer writing to
    # db 0 (or refused by AUTH) while the app reads db N measured "0 events" before
    kw = redis.connection.parse_url(url)
    setup: list[tuple[Any, ...]] = []
    if kw.get("password"):
        setup.append(("AUTH", *(v for v in (kw.get("username"), kw["password"]) if v)))
    if kw.get("db"):
        setup.append(("SELECT", str(kw["db"])))
    reader = hiredis.Reader()
    for cmd in setup:
        sock.sendall(hiredis.pack_command(cmd))
        reply: Any = False
        while reply is False:
            reader.feed(sock.recv(1 << 16))
            reply = reader.gets()
        if isinstance(reply, hiredis.ReplyError):
            raise SystemExit(f"producer: {cmd[0]} failed: {reply}")
    replies = [0]
    errors: list[str] = []

    def drain() -> None:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return
            reader.feed(data)
            while (rep := reader.gets()) is not False:
                replies[0] += 1
                if isinstance(rep, hiredis.ReplyError) and len(errors) < 5:
                    errors.append(str(rep))

    threading.Thread(target=drain, daemon=True).start()
    pool: list[bytes] = []
    if mode == "pool":
        from bench_reducer import entries

        pool = [
            hiredis.pack_command(("XADD", stream, "*", "e", e))
            for e in entries(20_000, 50, time.time() - 5, 4.0)
        ]
    agents = [f"agent-{i}" for i in range(20)]
    sent = 0
    print("start", flush=True)  # the parent's clock starts now (not at our spawn)
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = int(rate * (now - start)) - sent
        if due > 0:
            if mode == "pool":
                chunk = [pool[(sent + i) % len(pool)] for i in range(due)]
            else:
                chunk = [
                    hiredis.pack_command(
                        (
                            "XADD",
                            stream,
                            "*",
                            "e",
                            encode_fields(
                                "llm_call",
                                {
                                    "model": "gpt-4o-mini",
                                    "input_tokens": 100,
                                    "output_tokens": 10,
                                    "cost_usd": 0.0001,
                                },
                                agents[(sent + i) % 20],
                                "bench",
                            ),
                        )
                    )
                    for i in range(due)
                ]
            sock.sendall(b"".join(chunk))
            sent += due
        time.sleep(0.002)
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + 10
    while replies[0] < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    if errors or replies[0] < sent:
        raise SystemExit(f"producer: {replies[0]:,} replies to {sent:,} XADDs; errors {errors}")
    print(f"{sent} {elapsed:.3f}", flush=True)


def start_producer(url: str, stream: str, rate: float, seconds: float, mode: str) -> Any:
    return subprocess.Popen(
        [PY, HERE, "--produce", url, stream, str(rate), str(seconds), mode],
        stdout=subprocess.PIPE,
        text=True,
    )


async def producer_started(prod: Any) -> None:
    """Wait for the producer's "start" line (its imports and connection are not timed)."""
    line = await asyncio.to_thread(prod.stdout.readline)
    check(line.strip() == "start", f"producer did not start (exit {prod.poll()})")


def producer_result(prod: Any, url: str, stream: str) -> tuple[int, float]:
    """(events sent, seconds the producer took); fails unless the stream holds them all."""
    out = prod.stdout.read().split()
    check(prod.wait() == 0 and len(out) == 2, f"producer failed (exit {prod.returncode})")
    sent = int(out[0])
    held = redis.Redis.from_url(url).xlen(stream) - 1  # minus the marker entry
    check(sent > 0, "producer sent nothing")
    check(held == sent, f"stream holds {held:,} entries, producer sent {sent:,}")
    return sent, float(out[1])


async def wait_for_tail(app: Any, pilot: Any) -> None:
    """Wait until the worker has a state *and* is tailing (connected): events XADDed
    before its first XREAD would not be seen."""
    t0 = time.monotonic()
    while app.latest is None or app.latest.health.connection != "live":
        check(time.monotonic() - t0 < 30, "the app's worker never connected to the stream")
        await pilot.pause(0.02)
    await pilot.pause(0.3)  # its first XREAD (from the head) is under way


# --------------------------------------------------------------------------- 1. ingest


def fill(url: str, stream: str, n: int) -> None:
    from bench_reducer import entries

    r = redis.Redis.from_url(url)
    data = entries(n, 50, time.time() - 3000, 2900.0)
    for i in range(0, n, 5000):
        pipe = r.pipeline(transaction=False)
        for e in data[i : i + 5000]:
            pipe.xadd(stream, {"e": e})
        pipe.execute()


async def baseline_read(url: str, stream: str, n: int) -> float:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    last, got = "0-0", 0
    t0 = time.perf_counter()
    while got < n:
        resp: Any = await client.xread({stream: last}, count=5000)
        if not resp:
            break
        entries = resp[0][1]
        got += len(decode_entries(entries))
        sid = entries[-1][0]
        last = sid.decode() if isinstance(sid, bytes) else sid
    dt = time.perf_counter() - t0
    await client.aclose()
    return got / dt


async def app_ingest(url: str, stream: str, n: int) -> tuple[float, float, float]:
    """(events/s to the painted frame, seconds, CPU us per event of the app + its worker)."""
    import psutil

    from auren_tui.app import make_app

    app = make_app(redis_url=url, stream=stream, since_s=3600)
    done: list[float] = []
    app.on_frame = lambda t, st: done.append(t) if st.health.events_total >= n else None
    t0 = time.time()
    c0 = time.process_time()
    child_cpu = 0.0
    async with app.run_test(size=(160, 48)) as pilot:
        while not done:
            assert time.time() - t0 < 120, "app never caught up"
            await pilot.pause(0.01)
        cpu = time.process_time() - c0
        proc = getattr(app.worker, "_proc", None)
        if proc is not None:
            ct = psutil.Process(proc.pid).cpu_times()
            child_cpu = ct.user + ct.system
    wall = done[0] - t0
    return n / wall, wall, (cpu + child_cpu) / n * 1e6


# --------------------------------------------------------------------------- 2. sustained


async def sustained(url: str, rate: float, seconds: float) -> dict[str, float]:
    from auren_tui.app import make_app

    stream = f"auren:bench:{uuid.uuid4().hex[:8]}"
    redis.Redis.from_url(url).xadd(stream, {"e": b"{}"})  # exists, so the tail starts now
    app = make_app(redis_url=url, stream=stream, since_s=0)
    out: dict[str, float] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for_tail(app, pilot)
        base = app.latest.health.events_total
        prod = start_producer(url, stream, rate, seconds, "pool")
        await producer_started(prod)
        t0 = time.monotonic()
        while prod.poll() is None:
            await pilot.pause(0.05)
        t_end = time.monotonic()
        at_end = app.latest.health.events_total - base
        sent_n, prod_s = producer_result(prod, url, stream)
        while app.latest.health.events_total - base < sent_n and time.monotonic() - t_end < 60:
            await pilot.pause(0.01)
        drained = time.monotonic() - t_end
        out = {
            "sent": sent_n,
            "producer_rate": sent_n / float(prod_s),
            "consumed_by_end": at_end,
            "consumed_rate": at_end / (t_end - t0),
            "backlog_at_end": sent_n - at_end,
            "drain_s": drained,
            "overall_rate": (app.latest.health.events_total - base) / (t_end - t0 + drained),
            "consumed": app.latest.health.events_total - base,
        }
    # the bare XREAD+decode loop over the very entries the app tailed (same run)
    out["bare_rate"] = await baseline_read(url, stream, sent_n)
    redis.Redis.from_url(url).delete(stream)
    check(out["consumed_by_end"] > 0, f"the app consumed 0 of {out['sent']:,} events")
    check(
        out["consumed"] == out["sent"],
        f"the app consumed {out['consumed']:,} of {out['sent']:,} events within 60 s",
    )
    return out


async def bare_tail(url: str, rate: float, seconds: float) -> float:
    """The baseline of the sustained phase: a bare redis-py (asyncio, hiredis) ``XREAD
    BLOCK COUNT 5000`` + ``decode`` loop tailing the same producer (same rate, same
    seconds, a fresh stream): events/s consumed while the producer ran. Live against live:
    the producer, Redis and the reader share the cores in both."""
    import redis.asyncio as aioredis

    stream = f"auren:bench:{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(url)
    await client.xadd(stream, {"e": b"{}"})
    last = (await client.xinfo_stream(stream))["last-generated-id"].decode()
    prod = start_producer(url, stream, rate, seconds, "pool")
    await producer_started(prod)
    got = 0
    t0 = time.monotonic()
    while prod.poll() is None:
        resp: Any = await client.xread({stream: last}, count=5000, block=100)
        if not resp:
            continue
        entries = resp[0][1] if isinstance(resp, list) else next(iter(resp.values()))
        got += len(decode_entries(entries))
        sid = entries[-1][0]
        last = sid.decode() if isinstance(sid, bytes) else sid
    dt = time.monotonic() - t0
    producer_result(prod, url, stream)
    await client.delete(stream)
    await client.aclose()
    check(got > 0, "the bare tail consumed nothing")
    return got / dt


# --------------------------------------------------------------------------- 3. latency


async def latency(url: str, rate: float, seconds: float) -> tuple[list[float], list[float]]:
    from textual import events

    from auren_tui.app import make_app

    stream = f"auren:bench:{uuid.uuid4().hex[:8]}"
    redis.Redis.from_url(url).xadd(stream, {"e": b"{}"})
    app = make_app(redis_url=url, stream=stream, since_s=0)
    frames: list[tuple[float, tuple[int, int]]] = []

    def on_frame(t: float, st: Any) -> None:
        if st.health.last_id:
            frames.append((t, parse_stream_id(st.health.last_id)))

    app.on_frame = on_frame
    keys: list[float] = []
    pending: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        original = app.action_sort

        def timed_sort() -> None:
            original()
            sent = pending.pop(0)
            app.call_after_refresh(lambda: keys.append(time.perf_counter() - sent))

        app.action_sort = timed_sort  # type: ignore[method-assign]
        await wait_for_tail(app, pilot)
        prod = start_producer(url, stream, rate, seconds, "fresh")
        await producer_started(prod)
        await pilot.pause(0.5)
        while prod.poll() is None:
            ev = events.Key("s", "s")
            ev.set_sender(app)
            pending.append(time.perf_counter())
            assert app._driver is not None
            app._driver.send_message(ev)
            await asyncio.sleep(0.1)
        sent, _ = producer_result(prod, url, stream)
        await pilot.pause(1.0)
    r = redis.Redis.from_url(url)
    from auren_core.events import Event

    lat: list[float] = []
    fi = 0
    for item in decode_entries(r.xrange(stream, count=10_000_000)):
        if not isinstance(item, Event) or item.run != "bench":
            continue
        sid = parse_stream_id(item.stream_id)
        while fi < len(frames) and frames[fi][1] < sid:
            fi += 1
        if fi < len(frames):
            lat.append(frames[fi][0] - item.ts)
    r.delete(stream)
    check(len(lat) == sent, f"{len(lat):,} of {sent:,} events reached a painted frame")
    check(len(keys) > 0, "no keypress was measured")
    check(not pending, f"{len(pending)} keypresses were never handled")
    return lat, keys


# --------------------------------------------------------------------------- 4. start-up


def startup(args: list[str], runs: int = 3) -> list[float]:
    """Best of ``runs`` for each time the child prints (on its last line), from the spawn."""
    best: list[float] = []
    for _ in range(runs):
        t0 = time.time()
        out = subprocess.run([PY, CHILD, *args], capture_output=True, text=True, timeout=120)
        lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
        if not lines:
            raise RuntimeError(out.stderr[-2000:])
        got = [float(x) - t0 for x in lines[-1].split()]
        best = got if not best else [min(a, b) for a, b in zip(best, got, strict=True)]
    return best


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--redis-url", default=os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=150_000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--only", choices=["ingest", "sustained", "latency", "startup"])
    ap.add_argument("--runs", type=int, default=3, help="start-up: best of this many runs")
    a = ap.parse_args()
    url = a.redis_url
    r = redis.Redis.from_url(url)
    print(
        f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
        f"redis {r.info()['redis_version']} at {url}"
    )

    def want(part: str) -> bool:
        return a.only in (None, part)

    if want("ingest"):
        stream = f"auren:bench:{uuid.uuid4().hex[:8]}"
        try:
            fill(url, stream, a.events)
            c0 = time.process_time()
            base = asyncio.run(baseline_read(url, stream, a.events))
            base_cpu = (time.process_time() - c0) / a.events * 1e6
            rate, wall, cpu_us = asyncio.run(app_ingest(url, stream, a.events))
        finally:
            r.delete(stream)
        print(f"\n1. ingest, {a.events:,} backfilled events:")
        print(f"   baseline XREAD+decode loop  : {base:>9,.0f} ev/s  ({base_cpu:.1f} us CPU/ev)")
        print(
            f"   auren top (to painted frame): {rate:>9,.0f} ev/s  ({wall:.2f} s, "
            f"{rate / base:.2f}x of baseline; {cpu_us:.1f} us CPU/ev in worker + UI)  "
            f"target >= 50,000: {'MET' if rate >= 50_000 else 'MISSED'}"
        )

    if want("sustained"):
        # alternate bare / app / bare: drift in the machine's load hits both
        tails = [asyncio.run(bare_tail(url, a.rate, a.seconds))]
        s = asyncio.run(sustained(url, a.rate, a.seconds))
        tails.append(asyncio.run(bare_tail(url, a.rate, a.seconds)))
        live_bare = sum(tails) / len(tails)
        print(f"\n2. sustained live tail, producer process at {a.rate:,.0f}/s for {a.seconds:g} s:")
        print(
            f"   producer achieved {s['producer_rate']:,.0f}/s ({s['sent']:,.0f} events); app "
            f"consumed {s['consumed_rate']:,.0f}/s while it ran; backlog at end "
            f"{s['backlog_at_end']:,.0f}, drained in {s['drain_s']:.2f} s; overall "
            f"{s['overall_rate']:,.0f}/s"
        )
        ratio = s["consumed_rate"] / live_bare
        print(
            f"   bare XREAD+decode loop tailing the same producer (before and after the app): "
            f"{' and '.join(f'{t:,.0f}/s' for t in tails)}; app/bare {ratio:.2f}x"
        )
        print(
            f"   (the bare loop over the stored entries, no producer running: "
            f"{s['bare_rate']:,.0f}/s = the ceiling of one reader; app/that "
            f"{s['consumed_rate'] / s['bare_rate']:.2f}x)"
        )
        ok = (s["backlog_at_end"] == 0 and s["consumed_rate"] >= 100_000) or ratio >= 0.75
        print(
            "   target >= 100,000 ev/s with backlog 0, or >= 0.75x of the bare tail: "
            f"{'MET' if ok else 'MISSED'}"
        )

    if want("latency"):
        for n, rate in enumerate((10_000, 50_000)):
            lat, keys = asyncio.run(latency(url, rate, a.seconds))
            ms = [x * 1000 for x in lat]
            kms = [x * 1000 for x in keys]
            print(
                f"\n3{'ab'[n]}. at {rate:,} ev/s for {a.seconds:g} s "
                f"({len(ms):,} events, {len(kms)} keys):"
            )
            met = pct(ms, 50) <= 50 and pct(ms, 99) <= 120
            print(
                f"   event -> painted frame: p50 {pct(ms, 50):.0f} ms, p99 {pct(ms, 99):.0f} ms, "
                f"max {max(ms):.0f} ms"
                + (f"  (targets 50 / 120 ms: {'MET' if met else 'MISSED'})" if n == 0 else "")
            )
            print(
                f"   keypress -> painted frame: p50 {pct(kms, 50):.0f} ms, p99 {pct(kms, 99):.0f} "
                f"ms (target p99 50 ms: {'MET' if pct(kms, 99) <= 50 else 'MISSED'})"
            )

    if want("startup"):
        empty = f"auren:bench:{uuid.uuid4().hex[:8]}"
        big = f"auren:bench:{uuid.uuid4().hex[:8]}"
        try:
            (bare,) = startup(["--bare-frame"], a.runs)
            first, _ = startup(["--first-frame", url, empty, "0"], a.runs)
            fill(url, big, 100_000)
            progress, full = startup(["--first-frame", url, big, "100000"], a.runs)
        finally:
            r.delete(empty, big)
        print(
            "\n4. start-up (process spawn -> first painted frame with stream state, "
            f"best of {a.runs}):"
        )
        print(f"   bare Textual app (baseline): {bare:.2f} s")
        print(
            f"   auren top, empty stream     : {first:.2f} s  ({first / bare:.2f}x bare; "
            f"target 0.5 s: {'MET' if first <= 0.5 else 'MISSED'})"
        )
        print(
            f"   auren top, 100k backfill    : first frame {progress:.2f} s (the backfill's "
            f"progress; target 1.0 s: {'MET' if progress <= 1.0 else 'MISSED'}); "
            f"all 100k shown {full:.2f} s"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        produce(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        try:
            main()
        except BenchFailed as exc:
            sys.exit(f"bench_top: FAILED, measured nothing valid: {exc}")
