"""Soak (issue 16): the whole product under steady load for a long time. Exit 1 on a failure.

  .venv/bin/python bench/soak.py [--duration 10m] [--clients 200] [--rate 10]
                                 [--redis-url URL] [--pg-dsn DSN] [--sample 10s]

Started, each a real ``auren`` process on a private stream and PostgreSQL schema:

* ``auren demo --headless --rate R``: the CrewAI demo crews on the scripted LLM, R times as busy;
* ``auren persist``: stream -> PostgreSQL (its own schema, dropped at the end);
* ``auren serve-ws --auth none`` (loopback) with ``--clients`` WebSocket clients, all in one
  separate client process (asyncio), each subscribed to everything from ``now``; a client that
  is disconnected counts a disconnect and reconnects with ``since=<last id>``;
* ``auren top``: the real dashboard in a pseudo-terminal (160x48), its output read and counted.

Every ``--sample`` (10 s) it records the RSS of every process (its whole process tree, from
/proc via psutil), the stream lag of serve-ws (``auren_stream_lag_entries`` on /metrics) and of
persist (``XINFO GROUPS`` lag), publisher drops (``auren_publisher_dropped``: the demo's own
``publisher_stats`` reports), client deliveries, disconnects and errors, and the end-to-end lag
of the events the clients received in that interval (receive time - event ``ts``: publisher
queue + XADD + XREAD + fan-out), and the bytes ``auren top`` drew.

Verdict (exit 1 on any): a process died; a process's stderr has a traceback; a client error;
or RSS still growing after warm-up: the least-squares slope of a process's RSS over the
second half of the run above ``--max-slope`` MB/min (default 2) **and** its second-half rise
above ``--max-rise`` MB (default 16; under that it is allocator noise). Client disconnects
are reported, not failed (serve-ws cuts slow clients by design).

The machine is shared: CPU figures are whatever it had to spare; use a short ``--duration``
for a check and the default 10 minutes for the figures in the README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.request
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auren_core.durations import parse_duration  # noqa: E402

ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()=>]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- WS clients


def clients_main(port: int, n: int, conn: Connection) -> None:
    """N WebSocket clients in one process; answers "sample" with the interval's figures."""
    asyncio.run(_clients(port, n, conn))


async def _clients(port: int, n: int, conn: Connection) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    stats: dict[str, Any] = {
        "events": 0,
        "frames": 0,
        "disconnects": 0,
        "errors": 0,
        "connected": 0,
        "codes": {},
        "last_error": "",
    }
    lags: list[float] = []
    stop = asyncio.Event()

    async def one(i: int) -> None:
        since = "now"
        while not stop.is_set():
            try:
                async with connect(
                    f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=30
                ) as ws:
                    await ws.send(json.dumps({"type": "subscribe", "since": since}))
                    stats["connected"] += 1
                    try:
                        async for raw in ws:
                            frame = json.loads(raw)
                            stats["frames"] += 1
                            if frame.get("type") == "events":
                                now = time.time()
                                evs = frame.get("events", [])
                                stats["events"] += len(evs)
                                if i < 20:  # lag from a sample of clients (cheap)
                                    lags.extend(now - float(e["ts"]) for e in evs if "ts" in e)
                                since = frame.get("last_id", since)
                    finally:
                        stats["connected"] -= 1
                if not stop.is_set():
                    stats["disconnects"] += 1
            except ConnectionClosed as exc:
                if stop.is_set():
                    return
                stats["disconnects"] += 1
                code = str(exc.rcvd.code if exc.rcvd else "none")
                stats["codes"][code] = stats["codes"].get(code, 0) + 1
                await asyncio.sleep(0.5)
            except Exception as exc:  # refused, timeout, bad frame: an error
                if stop.is_set():
                    return
                stats["errors"] += 1
                stats["last_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
                await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd == "stop":
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            conn.send(dict(stats))
            return
        taken, lags[:] = list(lags), []
        taken.sort()
        conn.send(
            {
                **stats,
                "codes": dict(stats["codes"]),
                "lag_n": len(taken),
                "lag_p50": taken[len(taken) // 2] if taken else None,
                "lag_p99": taken[int(len(taken) * 0.99)] if taken else None,
            }
        )


# --------------------------------------------------------------------------- processes


class Pty:
    """``auren top`` in a pseudo-terminal; a thread drains and counts its output."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
        # Textual draws on stderr: all three are the terminal; the last 64 KB go to ``log``
        self.log = log
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.bytes = 0
        self.tracebacks = 0
        self.tail = b""
        threading.Thread(target=self._drain, daemon=True).start()

    def status_lag(self) -> int | None:
        """The stream lag on the dashboard's status line, as last drawn (or None)."""
        text = ANSI.sub(b" ", self.tail)
        found = re.findall(rb"\blag (\d+) ", text)
        return int(found[-1]) if found else None

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.bytes += len(chunk)
            self.tracebacks += (self.tail[-16:] + chunk).count(b"Traceback")
            self.tail = (self.tail + chunk)[-65536:]
            if b"Traceback" in chunk:
                self.log.write_bytes(self.tail)


def metrics(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.decode().splitlines():
        m = re.match(r"^(auren_[a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m and "{" not in line:
            out[m.group(1)] = float(m.group(2))
    return out


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def tree_rss_mb(p: psutil.Process) -> float:
    try:
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total / 2**20


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [t / 60 for t, _ in points], [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default="10m")
    ap.add_argument("--sample", default="10s")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument(
        "--redis-url", default=os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ap.add_argument(
        "--pg-dsn",
        default=os.environ.get("AUREN_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument("--max-slope", type=float, default=2.0, help="MB/min, second half")
    ap.add_argument("--max-rise", type=float, default=16.0, help="MB, second half")
    ap.add_argument(
        "--ws-window",
        default=None,
        help="serve-ws --window (diagnostic: a short window bounds "
        "its reducer sooner; default: serve-ws's own, 1h)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the stream and schema")
    args = ap.parse_args()
    duration = parse_duration(args.duration)
    sample = parse_duration(args.sample)

    tag = uuid.uuid4().hex[:8]
    stream, schema = f"auren:soak:{tag}", f"soak_{tag}"
    home = Path(tempfile.mkdtemp(prefix="auren-soak-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
        "AUREN_REDIS_URL": args.redis_url,
        "AUREN_STREAM": stream,
        "AUREN_PG_DSN": args.pg_dsn,
        "CREWAI_DISABLE_TELEMETRY": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TESTING": "true",
        "TERM": "xterm-256color",
        "AUREN_CONFIG": str(home / "auren.toml"),
        "PYTHONUNBUFFERED": "1",
    }
    auren = [sys.executable, "-m", "auren_tui"]
    ws_port = free_port()
    logs = {n: home / f"{n}.log" for n in ("demo", "persist", "serve-ws", "top")}
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, argv: list[str]) -> None:
        with open(logs[name], "wb") as err:  # the child keeps its own copy of the fd
            procs[name] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True
            )

    print(
        f"soak: {duration:g}s, sample {sample:g}s, demo rate x{args.rate:g}, "
        f"{args.clients} ws clients, stream {stream}, schema {schema}, logs {home}",
        flush=True,
    )
    start(
        "serve-ws",
        [*auren, "serve-ws", "--auth", "none", "--port", str(ws_port), "--conn-rate", "0"]
        + (["--window", args.ws_window] if args.ws_window else []),
    )
    start("persist", [*auren, "persist", "--schema", schema, "--quiet"])
    deadline = time.monotonic() + 30
    while not metrics(ws_port):
        if time.monotonic() > deadline or procs["serve-ws"].poll() is not None:
            print(logs["serve-ws"].read_text(), file=sys.stderr)
            return 1
        time.sleep(0.2)
    parent, child = mp.Pipe()
    cproc = mp.get_context("spawn").Process(
        target=clients_main, args=(ws_port, args.clients, child)
    )
    cproc.start()
    top = Pty([*auren, "top", "--since", "0"], env, logs["top"])
    procs["top"] = top.proc  # type: ignore[assignment]
    start("demo", [*auren, "demo", "--headless", "--rate", f"{args.rate:g}"])

    watched = {
        **{n: psutil.Process(p.pid) for n, p in procs.items()},
        "ws-clients": psutil.Process(cproc.pid),
    }
    r = redis.Redis.from_url(args.redis_url, decode_responses=True)
    rows: list[dict[str, Any]] = []
    died: dict[str, int | None] = {}
    t0 = time.monotonic()
    prev_events, prev_top, prev_len = 0, 0, 0
    try:
        while True:
            elapsed = time.monotonic() - t0
            parent.send("sample")
            cs = parent.recv()
            m = metrics(ws_port)
            try:
                groups = r.xinfo_groups(stream)
                plag = next((g.get("lag") for g in groups if g["name"] == "auren-persist"), None)
                slen = int(r.xlen(stream))
            except redis.RedisError:
                plag, slen = None, 0
            row = {
                "t": elapsed,
                "rss": {n: tree_rss_mb(p) for n, p in watched.items()},
                "xadd_s": (slen - prev_len) / sample if rows else 0.0,
                "ws_lag": m.get("auren_stream_lag_entries"),
                "persist_lag": plag,
                "drops": m.get("auren_publisher_dropped"),
                "slow_cut": m.get("auren_ws_slow_disconnects_total"),
                "ws_clients": m.get("auren_ws_clients"),
                "deliv_s": (cs["events"] - prev_events) / sample if rows else 0.0,
                "lag_p50": cs["lag_p50"],
                "lag_p99": cs["lag_p99"],
                "disc": cs["disconnects"],
                "errs": cs["errors"],
                "top_kb_s": (top.bytes - prev_top) / 1024 / sample if rows else 0.0,
                "top_lag": top.status_lag(),
            }
            prev_events, prev_top, prev_len = cs["events"], top.bytes, slen
            rows.append(row)
            print(
                f"{elapsed:6.0f}s rss "
                + " ".join(f"{n}={v:.0f}" for n, v in row["rss"].items())
                + f" MB | xadd/s {row['xadd_s']:.0f} deliv/s {row['deliv_s']:.0f} "
                f"lag p50/p99 {ms(row['lag_p50'])}/{ms(row['lag_p99'])} ms | "
                f"ws-lag {row['ws_lag']} "
                f"persist-lag {plag} drops {row['drops']} disc {row['disc']} errs {row['errs']} "
                f"top {row['top_kb_s']:.1f} KB/s lag {row['top_lag']}",
                flush=True,
            )
            for n, p in procs.items():
                if p.poll() is not None:
                    died[n] = p.returncode
            if not cproc.is_alive():
                died["ws-clients"] = cproc.exitcode
            if died or elapsed >= duration:
                break
            time.sleep(max(0.0, sample - (time.monotonic() - t0 - elapsed)))
    finally:
        final = {"disconnects": 0, "errors": 0, "codes": {}, "last_error": ""}
        if cproc.is_alive():
            parent.send("stop")
            if parent.poll(30):
                final = parent.recv()
            cproc.join(10)
            if cproc.is_alive():
                cproc.kill()
        for p in procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        stored = None
        with contextlib.suppress(Exception):
            out = subprocess.run(
                ["psql", args.pg_dsn, "-Atc", f"select count(*) from {schema}.events"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            stored = out.stdout.strip() or out.stderr.strip()[:100]
        if not args.keep:
            with contextlib.suppress(Exception):
                r.delete(stream, *r.scan_iter(f"{stream}:*"))  # and persist's status keys
                subprocess.run(
                    ["psql", args.pg_dsn, "-qc", f"drop schema if exists {schema} cascade"],
                    capture_output=True,
                    timeout=60,
                )

    # ---------------------------------------------------------------- verdict
    failures: list[str] = []
    for n, rc in died.items():
        failures.append(f"{n} died (exit {rc}): see {logs.get(n, '')}")
    logs["top"].write_bytes(top.tail)  # the terminal's last 64 KB
    tracebacks = {
        n: log.read_text(errors="replace").count("Traceback")
        for n, log in logs.items()
        if log.exists() and n != "top"
    }
    tracebacks["top"] = top.tracebacks
    for n, c in tracebacks.items():
        if c:
            failures.append(f"{n}: {c} traceback(s) in {logs[n]}")
    if final.get("errors"):
        failures.append(f"ws clients: {final['errors']} errors (last: {final.get('last_error')})")
    half = [row for row in rows if row["t"] >= rows[-1]["t"] / 2]
    print(
        f"\nRSS (MB) of each process tree, sampled every {sample:g}s; slope = least squares over "
        f"the second half ({len(half)} samples, t >= {half[0]['t']:.0f}s)"
    )
    head = ("start", "peak", "end")
    print(f"{'process':12} " + " ".join(f"{h:>7}" for h in head) + "  2nd-half rise  slope MB/min")
    for n in rows[0]["rss"]:
        series = [row["rss"][n] for row in rows]
        pts = [(row["t"], row["rss"][n]) for row in half]
        rise = pts[-1][1] - pts[0][1]
        sl = slope_mb_per_min(pts)
        print(
            f"{n:12} {series[0]:7.0f} {max(series):7.0f} {series[-1]:7.0f} {rise:14.1f} {sl:13.2f}"
        )
        if sl > args.max_slope and rise > args.max_rise:
            failures.append(
                f"{n}: RSS still growing after warm-up ({sl:.1f} MB/min, +{rise:.0f} MB)"
            )
    steady = rows[1:] or rows
    p99s = [row["lag_p99"] for row in steady if row["lag_p99"] is not None]
    p50s = [row["lag_p50"] for row in steady if row["lag_p50"] is not None]
    xadd = statistics.fmean(x["xadd_s"] for x in steady)
    deliv = statistics.fmean(x["deliv_s"] for x in steady)
    top_kb = statistics.fmean(x["top_kb_s"] for x in steady)
    print(
        f"\nload: demo x{args.rate:g}: {xadd:.0f} events/s into the stream; {args.clients} ws "
        f"clients: {deliv:.0f} deliveries/s; auren top drew {top_kb:.1f} KB/s"
    )
    if p50s:
        print(
            "end-to-end lag (event ts -> client receive): median of the per-interval p50s "
            f"{statistics.median(p50s) * 1000:.0f} ms, worst interval p99 {max(p99s) * 1000:.0f} ms"
        )
    ws_lag = max((x["ws_lag"] or 0) for x in rows)
    top_lag = max((x["top_lag"] or 0) for x in rows)
    persist_lag = max((x["persist_lag"] or 0) for x in rows)
    print(
        f"stream lag max: serve-ws {ws_lag:.0f}, persist group {persist_lag}, auren top status "
        f"line {top_lag} entries; "
        f"publisher drops {rows[-1]['drops']}; slow-client cuts {rows[-1]['slow_cut']}"
    )
    print(
        f"client disconnects {final.get('disconnects')} (close codes {final.get('codes')}); "
        f"client errors {final.get('errors')}; tracebacks {tracebacks}; "
        f"rows stored by persist {stored}"
    )
    if duration < 300:
        print(
            f"note: a {duration:g}s run judges RSS at t >= {half[0]['t']:.0f}s, likely inside "
            "warm-up (the 1 h windows of serve-ws and top are still filling): use the default 10m"
        )
    if failures:
        print("\nFAIL:\n  " + "\n  ".join(failures))
        return 1
    print(
        "\nOK: every process alive, no errors; no RSS over both thresholds in the second half "
        f"(slope > {args.max_slope:g} MB/min and rise > {args.max_rise:g} MB)"
    )
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
