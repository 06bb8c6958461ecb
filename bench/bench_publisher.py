"""Publisher benchmarks (issue 2). Prints figures with their method; asserts nothing.

  .venv/bin/python bench/bench_publisher.py [--redis-url URL] [--payload dict|struct]

``--payload struct`` emits the llm_call payload as its ``LlmCall`` struct (what the converters
build; msgspec encodes it directly, every field written, defaults too) instead of the dict.

1. hot path: cost of one ``emit`` in the caller's thread (p50/p99), background
   thread live and sending to real Redis; timer overhead measured and subtracted.
2. throughput: publisher end-to-end (emit N, flush) vs a bare redis-py pipelined
   XADD loop of the same pre-encoded entries, same run, alternating 3 rounds.
3. latency: emit -> visible to a blocking XREAD in another process, at 1k and 10k
   events/s (paced emitter), p50/p99/max.
4. memory: extra RSS of a process that imports auren_core and emits 100k events,
   over a bare interpreter that imports redis-py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import redis

from auren_core.events import LlmCall, encode_fields
from auren_core.streams.publisher import Publisher


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


PAYLOAD = {
    "model": "gpt-4o-mini",
    "provider": "openai",
    "input_tokens": 812,
    "output_tokens": 145,
    "cached_tokens": 0,
    "cost_usd": 0.000209,
    "cost_source": "genai-prices",
    "latency_ms": 812.4,
    "ok": True,
}


PAYLOAD_STRUCT = LlmCall(**PAYLOAD)
PAYLOADS: dict[str, Any] = {"dict": PAYLOAD, "struct": PAYLOAD_STRUCT}
payload: Any = PAYLOAD  # the one emitted (--payload)


def hot_path(url: str) -> None:
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    pub = Publisher(url, stream, maxlen=200_000, stats_interval=3600)
    clock = time.perf_counter_ns
    timer = []
    for _ in range(100_000):
        a = clock()
        b = clock()
        timer.append(b - a)
    t0 = statistics.median(timer)
    samples: list[float] = []
    for i in range(200_000):
        a = clock()
        pub.emit("llm_call", payload, agent="neuroscientist", run="run-1", seq=i)
        b = clock()
        samples.append((b - a - t0) / 1000)
        if i % 1000 == 999:
            time.sleep(0.0005)  # a realistic caller does other work between events
    pub.flush(30)
    c = pub.counters()
    redis.Redis.from_url(url).delete(stream)
    pub.close()
    print(f"[hot path] emit() in caller thread, n=200000, timer overhead {t0:.0f} ns subtracted")
    print(
        f"  p50 {pct(samples, 50):.2f} us   p99 {pct(samples, 99):.2f} us   "
        f"p99.9 {pct(samples, 99.9):.2f} us   (targets: p50 <= 5 us, p99 <= 25 us)"
    )
    print(f"  sent {c.sent} dropped {c.dropped} queued {c.queued}")


def bare_loop(url: str, n: int, batch: int) -> float:
    r = redis.Redis.from_url(url)
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    data = [encode_fields("llm_call", payload, "neuroscientist", "run-1") for _ in range(batch)]
    t = time.perf_counter()
    for _ in range(n // batch):
        pipe = r.pipeline(transaction=False)
        for d in data:
            pipe.xadd(stream, {"e": d}, maxlen=1_000_000, approximate=True)
        pipe.execute()
    el = time.perf_counter() - t
    r.delete(stream)
    return n / el


def publisher_loop(url: str, n: int, batch: int) -> tuple[float, int]:
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    pub = Publisher(url, stream, buffer_size=n + 1, batch_size=batch, stats_interval=3600)
    t = time.perf_counter()
    for _ in range(n):
        pub.emit("llm_call", payload, agent="neuroscientist", run="run-1")
    pub.flush(120)
    el = time.perf_counter() - t
    c = pub.counters()
    n_in = redis.Redis.from_url(url).xlen(stream)
    redis.Redis.from_url(url).delete(stream)
    pub.close()
    assert c.sent == n == n_in, (c, n_in)
    return n / el, c.dropped


def throughput(url: str) -> None:
    n, batch = 200_000, 1000
    bare, mine = [], []
    for _ in range(3):
        bare.append(bare_loop(url, n, batch))
        mine.append(publisher_loop(url, n, batch)[0])
    b, m = statistics.median(bare), statistics.median(mine)
    print(f"[throughput] {n} events, batches of {batch}, 3 alternating rounds, median")
    print(f"  bare redis-py pipelined XADD loop: {b:,.0f} ev/s (pre-encoded entries)")
    print(f"  auren Publisher emit+flush:        {m:,.0f} ev/s (includes JSON encoding)")
    print(f"  ratio {m / b:.0%}   (target >= 70%)")


LAT_READER = textwrap.dedent("""
    import sys, time, orjson, redis
    url, stream, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    r = redis.Redis.from_url(url)
    last, lat = "$", []
    print("ready", flush=True)
    while len(lat) < n:
        resp = r.xread({stream: last}, block=1000, count=10000)
        now = time.time()
        for _, entries in resp or []:
            for sid, f in entries:
                last = sid
                d = orjson.loads(f[b"e"])
                if d["type"] == "tool_used":
                    lat.append((now - d["payload"]["t"]) * 1000)
    print(orjson.dumps(lat).decode())
""")


def latency(url: str, rate: int, seconds: float) -> None:
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    n = int(rate * seconds)
    proc = subprocess.Popen(
        [sys.executable, "-c", LAT_READER, url, stream, str(n)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.2)
    pub = Publisher(url, stream, stats_interval=3600)
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        while (d := target - time.perf_counter()) > 0:
            time.sleep(min(d, 0.001))
        pub.emit("tool_used", {"tool": "search", "t": time.time()})
    out, _ = proc.communicate(timeout=60)
    lat = [float(x) for x in out.strip().strip("[]").split(",") if x]
    pub.close()
    redis.Redis.from_url(url).delete(stream)
    print(
        f"[latency] emit -> readable by XREAD BLOCK in another process, {rate}/s for "
        f"{seconds:.0f}s (n={len(lat)}): p50 {pct(lat, 50):.2f} ms  p99 {pct(lat, 99):.2f} ms"
        f"  max {max(lat):.2f} ms" + ("   (target p99 <= 5 ms)" if rate >= 10_000 else "")
    )


MEM = textwrap.dedent("""
    import sys, resource
    def rss():
        for line in open('/proc/self/status'):
            if line.startswith('VmRSS'):
                return int(line.split()[1]) / 1024
    import redis
    base = rss()
    if sys.argv[1] == 'auren':
        from auren_core.streams.publisher import Publisher
        p = Publisher(sys.argv[2], 'bench:mem', maxlen=1000, stats_interval=3600)
        for i in range(100_000):
            p.emit('tool_used', {'tool': 'search', 'duration_ms': 1.0}, agent='a', run='r')
        p.flush(60)
        redis.Redis.from_url(sys.argv[2]).delete('bench:mem')
    print(rss() - base, rss())
""")


def memory(url: str) -> None:
    res = {}
    for mode in ("bare", "auren"):
        out = subprocess.run(
            [sys.executable, "-c", MEM, mode, url], capture_output=True, text=True, check=True
        ).stdout.split()
        res[mode] = (float(out[0]), float(out[1]))
    extra = res["auren"][1] - res["bare"][1]
    print(
        f"[memory] RSS after importing redis-py: bare {res['bare'][1]:.1f} MB; after importing"
        f" auren_core and emitting 100k events: {res['auren'][1]:.1f} MB"
    )
    print(f"  extra resident memory {extra:.1f} MB   (target <= 25 MB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--only", default="")
    ap.add_argument("--payload", choices=sorted(PAYLOADS), default="dict")
    a = ap.parse_args()
    global payload
    payload = PAYLOADS[a.payload]
    redis.Redis.from_url(a.redis_url).ping()
    print(f"python {sys.version.split()[0]}, redis at {a.redis_url}, payload {a.payload}")
    if a.only in ("", "hot"):
        hot_path(a.redis_url)
    if a.only in ("", "throughput"):
        throughput(a.redis_url)
    if a.only in ("", "latency"):
        latency(a.redis_url, 1_000, 5)
        latency(a.redis_url, 10_000, 5)
    if a.only in ("", "memory"):
        memory(a.redis_url)


if __name__ == "__main__":
    main()
