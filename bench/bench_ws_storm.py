"""serve-ws reconnect storm (issue 16 item 6). Prints figures with their method; asserts nothing.

  .venv/bin/python bench/bench_ws_storm.py [--clients 2000] [--procs 4] [--backlog 1000]
      [--positions 100] [--server-pythonpath DIR] [--redis-url URL]

What a restart looks like to serve-ws: every dashboard reconnects at the same moment, each
with its own token (its own refresh family) and its own ``since=last_id``.

* The stream is seeded with ``--backlog`` events; each client resumes from one of
  ``--positions`` ids among them (spread over the backlog), so the server must read a
  backlog for every client (XRANGE) and check a family for every token (GET/MGET).
* One real ``auren serve-ws`` process (``--auth jwt``, ``--conn-rate 0``: all clients come
  from 127.0.0.1, and the per-address rate limit is a separate defence), started from
  ``--server-pythonpath`` (default: this checkout; point it at an older checkout to compare).
* ``--procs`` client processes open ``--clients`` connections in total, all released at
  the same wall-clock instant; each sends auth + subscribe, waits for the snapshot, then
  reads events frames until it has its whole backlog (the exact count is known from the
  seeded ids). Frames are not parsed (events are counted by their ``"_sid":`` key), so
  the client processes, which share the 2 cores with the server, stay light.

Reported: served (snapshot and complete backlog, no extra event), refused by close code,
time from the release to the last snapshot and to the last complete backlog (p50/p99/max),
the peak number of Redis client connections during the storm (``INFO clients``, sampled
every 50 ms, minus the count before), and the server's RSS and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_ws import cpu_s, free_port, raise_nofile, rss_mb  # noqa: E402  (the same helpers)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# --------------------------------------------------------------------------- clients


def client_group(
    port: int, jobs: list[tuple[str, str, int]], start_at: float, out: Any, timeout: float
) -> None:
    """Run ``jobs`` (token, since, expected events) as simultaneous clients; send results."""
    raise_nofile()
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def one(token: str, since: str, want: int) -> tuple[str, float, float]:
        t_snap = t_done = float("nan")
        try:
            ws = await connect(f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=timeout)
        except Exception as exc:  # refused at the handshake (HTTP status, reset, timeout)
            return f"connect failed: {type(exc).__name__}", t_snap, t_done
        try:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            await ws.send(json.dumps({"type": "subscribe", "since": since}))
            first = await asyncio.wait_for(ws.recv(decode=False), timeout)
            if not first.startswith(b'{"type":"snapshot"'):
                await ws.wait_closed()
                return f"refused {ws.close_code}", t_snap, t_done
            t_snap = time.time() - start_at
            got = 0
            while got < want:
                frame = await asyncio.wait_for(ws.recv(decode=False), timeout)
                got += frame.count(b'"_sid":')  # once per event (the payloads have none)
            t_done = time.time() - start_at
            outcome = "served" if got == want else f"extra events {got - want}"
            await ws.close()
            return outcome, t_snap, t_done
        except ConnectionClosed:
            return f"refused {ws.close_code}", t_snap, t_done
        except TimeoutError:
            await ws.close()
            return "timed out", t_snap, t_done

    async def main() -> list[tuple[str, float, float]]:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return await asyncio.gather(*(one(*j) for j in jobs))

    out.send(asyncio.run(main()))
    out.close()


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--redis-url", default=os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--backlog", type=int, default=1000, help="events seeded in the stream")
    ap.add_argument("--positions", type=int, default=100, help="distinct since ids")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--server-pythonpath", default=str(ROOT))
    ap.add_argument(
        "--recent-events",
        type=int,
        default=None,
        help="run the server with this many recent events in memory (0: every backlog "
        "from Redis) instead of the CLI's default; the same serve-ws command otherwise",
    )
    args = ap.parse_args()
    raise_nofile()
    sys.path.insert(0, str(ROOT))
    from auren_core.events import encode, make_event
    from auren_core.server import KeyRing, RefreshStore, issue_pair

    r = redis.Redis.from_url(args.redis_url)
    stream = f"auren:bench:storm:{uuid.uuid4().hex[:8]}"
    now = time.time()
    pipe = r.pipeline(transaction=False)
    for i in range(args.backlog):
        ev = make_event(
            "llm_call",
            {
                "model": "gpt-4o-mini",
                "provider": "openai",
                "input_tokens": 800,
                "output_tokens": 100,
                "cost_usd": 0.0002,
                "cost_source": "bench",
                "latency_ms": 500.0,
                "ok": True,
            },
            agent=f"agent-{i % 50}",
            run=f"run-{i % 7}",
            ts=now - args.backlog * 0.01 + i * 0.01,
        )
        pipe.xadd(stream, {"e": encode(ev)})
    ids = [i.decode() for i in pipe.execute()]

    tmp = Path(tempfile.mkdtemp(prefix="auren-storm-"))
    key_file = tmp / "keys.json"
    ring = KeyRing.create(key_file)
    store = RefreshStore(redis.Redis.from_url(args.redis_url, decode_responses=True))
    jobs: list[tuple[str, str, int]] = []
    fams: list[str] = []
    step = max(1, len(ids) // args.positions)
    for c in range(args.clients):
        pair, jti = issue_pair(ring, f"dash-{c}", access_ttl=3600)
        store.start(pair.family, jti, 3600)
        fams.append(pair.family)
        k = (c % args.positions) * step
        jobs.append((pair.access, ids[k], len(ids) - 1 - k))

    port = free_port()
    loaded = subprocess.run(
        [sys.executable, "-c", "import auren_core.server.app as m; print(m.__file__)"],
        env={**os.environ, "PYTHONPATH": args.server_pythonpath},
        cwd=args.server_pythonpath,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {
        **os.environ,
        "PYTHONPATH": args.server_pythonpath,
        "AUREN_REDIS_URL": args.redis_url,
        "AUREN_STREAM": stream,
    }
    launcher = ["-m", "auren_tui"]
    if args.recent_events is not None:  # the CLI with one ServerConfig default changed
        launcher = [
            "-c",
            "import dataclasses, sys; from auren_core.server import app; "
            "from auren_tui.cli import main; "
            "app.ServerConfig = dataclasses.make_dataclass('ServerConfig', "
            f"[('recent_events', int, dataclasses.field(default={args.recent_events}))], "
            "bases=(app.ServerConfig,), frozen=True); "
            "import auren_core.server as s; s.ServerConfig = app.ServerConfig; "
            "sys.exit(main(sys.argv[1:]))",
        ]
    server = subprocess.Popen(
        [
            sys.executable,
            *launcher,
            "serve-ws",
            "--keys",
            str(key_file),
            "--port",
            str(port),
            "--conn-rate",
            "0",
            "--max-clients",
            "50000",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=raise_nofile,
        cwd=args.server_pythonpath,  # `python -m` puts the working directory first
    )
    try:
        assert server.stdout is not None
        for _ in range(2):
            line = server.stdout.readline()
            if not line:
                raise SystemExit(
                    f"serve-ws did not start: {server.stderr.read() if server.stderr else ''}"
                )
        time.sleep(1.0)  # backfill of the window into the reducer
        rss0, cpu0 = rss_mb(server.pid), cpu_s(server.pid)
        base_clients = int(r.info("clients")["connected_clients"])
        peak = [base_clients]
        sampling = threading.Event()

        def sample() -> None:
            s = redis.Redis.from_url(args.redis_url)
            while not sampling.is_set():
                with contextlib.suppress(redis.RedisError):
                    peak[0] = max(peak[0], int(s.info("clients")["connected_clients"]))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ctx = mp.get_context("spawn")
        start_at = time.time() + 3.0  # every process spawned and imported by then
        pipes, procs = [], []
        for p in range(args.procs):
            a, b = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=client_group,
                args=(port, jobs[p :: args.procs], start_at, b, args.timeout),
            )
            proc.start()
            pipes.append(a)
            procs.append(proc)
        results: list[tuple[str, float, float]] = []
        for a in pipes:
            results.extend(a.recv())
        for proc in procs:
            proc.join()
        sampling.set()
        sampler.join()
        rss1, cpu1 = rss_mb(server.pid), cpu_s(server.pid)
        metrics = ""
        with contextlib.suppress(OSError):
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
    finally:
        died = server.poll()
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(15)
        err_lines = (server.stderr.read() if server.stderr else "").splitlines()
        r.delete(stream)
        shutil.rmtree(tmp, ignore_errors=True)
        for i in range(0, len(fams), 500):
            r.delete(*[store.key(f) for f in fams[i : i + 500]])

    outcomes = Counter(o for o, _, _ in results)
    snaps = [s for o, s, _ in results if s == s]
    dones = [d for o, _, d in results if o == "served"]
    total_events = sum(j[2] for j in jobs)
    print(
        f"serve-ws reconnect storm: {args.clients} clients in {args.procs} processes, "
        f"released at once; {args.backlog} events in the stream, {args.positions} distinct "
        f"since ids ({total_events:,} backlog events in all); server code: {loaded}"
    )
    print(f"  outcomes: {dict(outcomes.most_common())}")
    print(f"  served: {outcomes.get('served', 0)} / {args.clients}")
    if snaps:
        print(
            f"  time to snapshot: p50 {statistics.median(snaps):.2f} s, "
            f"p99 {pct(snaps, 0.99):.2f} s, all ({len(snaps)}) {max(snaps):.2f} s"
        )
    if dones:
        print(
            f"  time to complete backlog: p50 {statistics.median(dones):.2f} s, "
            f"p99 {pct(dones, 0.99):.2f} s, all ({len(dones)}) {max(dones):.2f} s"
        )
    print(f"  Redis connections opened by the storm (peak - before): {peak[0] - base_clients}")
    print(f"  server RSS {rss0:.0f} -> {rss1:.0f} MB, CPU {cpu1 - cpu0:.1f} s")
    if args.recent_events is not None:
        print(f"  recent events in memory: {args.recent_events}")
    if died is not None:
        print(f"  the server exited during the storm (code {died})")
    logged = Counter(line[:100] for line in err_lines if not line.startswith("WARNING: --auth"))
    for line, count in logged.most_common(3):
        print(f"  server stderr x{count}: {line}")
    for line in metrics.splitlines():
        if line.startswith(
            (
                "auren_ws_rejected",
                "auren_ws_stream_unavailable",
                "auren_ws_bad_messages",
                "auren_ws_internal",
            )
        ):
            print(f"  {line}")


if __name__ == "__main__":
    main()
