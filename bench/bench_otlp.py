"""serve-otlp benchmark (issue 11). Prints figures with their method; asserts nothing.

  .venv/bin/python bench/bench_otlp.py [--redis-url URL] [--requests N] [--rounds R]

Workload: OTLP/HTTP protobuf requests of 512 spans each, pre-serialized: 64 traces per
request, each a workflow root, an agent, four chat spans (GenAI conventions, priced
model, tokens) and two tool spans, children listed before their parents (as the SDK
exports them), ~20 attributes per span including a 300-character prompt attribute the
mapping never reads. Every request has fresh trace ids.

1. throughput: a client *process* posts the requests over one keep-alive connection
   (2 connections in parallel) to an in-process ``OtlpServer`` (HTTP, real receiver,
   buffer, mapping, publisher to real Redis); spans/s from the first request sent to
   the last event visible in the stream (XLEN). Baseline, same run, alternating rounds:
   a bare loop that decodes the same protobuf bodies (``ParseFromString``, counts the
   spans) and XADDs pre-built events (the same number of entries as the receiver writes,
   already encoded) in one pipeline per request.
2. request latency at 5k spans/s: the client paces ~10 requests/s of 512 spans for
   ~10 s; per-request time from send to the response read (p50/p99/max).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid

import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from auren_core.otlp import OtlpReceiver, OtlpServer, ReceiverConfig
from auren_core.streams.publisher import Publisher

SPANS_PER_REQUEST = 512
PROMPT = "You are a sleep specialist. " * 11


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def make_request(seed: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add(key="service.name")
    kv.value.string_value = "bench"
    ss = rs.scope_spans.add()
    ss.scope.name = "bench"
    base = 1_700_000_000_000_000_000
    for t in range(SPANS_PER_REQUEST // 8):
        tid = os.urandom(16)
        root, agent = os.urandom(8), os.urandom(8)

        def span(sid: bytes, parent: bytes, name: str, start: int, end: int,
                 attrs: dict[str, object], tid: bytes = tid) -> None:
            sp = ss.spans.add()
            sp.trace_id, sp.span_id, sp.name = tid, sid, name
            if parent:
                sp.parent_span_id = parent
            sp.kind = 1
            sp.start_time_unix_nano, sp.end_time_unix_nano = base + start, base + end
            sp.status.code = 1
            for k, v in attrs.items():
                a = sp.attributes.add(key=k)
                if isinstance(v, int):
                    a.value.int_value = v
                else:
                    a.value.string_value = str(v)

        common = {f"app.attr.{i}": f"value-{i}" for i in range(10)}
        for i in range(4):
            span(os.urandom(8), agent, "chat gpt-4o-mini", 10 + i * 100, 90 + i * 100, {
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 800 + i, "gen_ai.usage.output_tokens": 120,
                "gen_ai.usage.cache_read.input_tokens": 100, "gen_ai.response.id": "resp-x",
                "gen_ai.input.messages": PROMPT, **common})
        for i in range(2):
            span(os.urandom(8), agent, "execute_tool search", 500 + i, 550 + i, {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": f"tool_{i}",
                "gen_ai.tool.call.id": "call-1", **common})
        span(agent, root, "invoke_agent Sleep", 5, 900, {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": f"agent {t % 8}",
            **common})
        span(root, b"", "invoke_workflow nightly", 0, 1000, {
            "gen_ai.operation.name": "invoke_workflow", **common})
    return req.SerializeToString()


# --------------------------------------------------------------------------- client process
def _client(port: int, bodies: list[bytes], conns: int, rate: float, out: mp.Queue) -> None:
    import threading

    lat: list[float] = []
    lock = threading.Lock()
    per = [bodies[i::conns] for i in range(conns)]
    t_start = time.perf_counter()

    def run(mine: list[bytes], k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for j, b in enumerate(mine):
            if rate:
                due = t_start + (j * conns + k) / rate
                d = due - time.perf_counter()
                if d > 0:
                    time.sleep(d)
            t0 = time.perf_counter()
            c.request("POST", "/v1/traces", body=b,
                      headers={"Content-Type": "application/x-protobuf"})
            r = c.getresponse()
            r.read()
            dt = time.perf_counter() - t0
            if r.status != 200:
                raise SystemExit(f"HTTP {r.status}")
            with lock:
                lat.append(dt)
        c.close()

    ts = [threading.Thread(target=run, args=(m, k)) for k, m in enumerate(per)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((t_start, lat))


def run_receiver(
    url: str, bodies: list[bytes], conns: int, rate: float
) -> tuple[float, list[float], int]:
    stream = f"bench:otlp:{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(url)
    pub = Publisher(url, stream, maxlen=None, buffer_size=1_000_000, stats_interval=3600)
    rec = OtlpReceiver(pub, ReceiverConfig(stats_interval=3600))
    srv = OtlpServer(rec, "127.0.0.1", 0, None)
    srv.start()
    q: mp.Queue = mp.Queue()
    p = mp.get_context("fork").Process(target=_client, args=(srv.port, bodies, conns, rate, q))
    t0 = time.perf_counter()
    p.start()
    _, lat = q.get(timeout=600)
    p.join()
    pub.flush(120)
    expected = rec.events
    while int(r.xlen(stream)) < expected:
        time.sleep(0.001)
    dt = time.perf_counter() - t0
    srv.stop()
    pub.close()
    n = int(r.xlen(stream))
    r.delete(stream)
    return dt, lat, n


def run_bare(url: str, bodies: list[bytes], events_per_request: int) -> float:
    """Decode each body and XADD pre-built, pre-encoded events, one pipeline per request."""
    from auren_core.events import encode_fields

    stream = f"bench:bare:{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(url)
    prebuilt = [
        encode_fields("llm_call", {"model": "gpt-4o-mini", "input_tokens": 800,
                                   "output_tokens": 120, "cost_usd": 0.0002}, "agent_1", "t")
        for _ in range(events_per_request)
    ]
    t0 = time.perf_counter()
    for b in bodies:
        req = ExportTraceServiceRequest()
        req.ParseFromString(b)
        n = 0
        for rs in req.resource_spans:  # reach every span (upb parsed them eagerly)
            for ss in rs.scope_spans:
                n += len(ss.spans)
        assert n == SPANS_PER_REQUEST
        pipe = r.pipeline(transaction=False)
        for e in prebuilt:
            pipe.xadd(stream, {"e": e})
        pipe.execute()
    dt = time.perf_counter() - t0
    r.delete(stream)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", default=os.environ.get("AUREN_REDIS_URL",
                                                          "redis://127.0.0.1:6379/0"))
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gc", default="default", choices=["default", "tuned"])
    a = ap.parse_args()
    if a.gc == "tuned":
        from auren_core.otlp.receiver import tune_gc

        tune_gc()
    print(__doc__)
    print(f"gc: {a.gc}")
    print(f"python {sys.version.split()[0]}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.2f}")
    bodies = [make_request(i) for i in range(a.requests)]
    spans = a.requests * SPANS_PER_REQUEST
    print(f"{a.requests} requests x {SPANS_PER_REQUEST} spans = {spans} spans, "
          f"{statistics.mean(len(b) for b in bodies) / 1024:.0f} KiB per request")
    # warm-up (pricing cache, imports)
    run_receiver(a.redis_url, bodies[:4], 1, 0)
    ours, bare = [], []
    for rnd in range(a.rounds):
        dt, _, n = run_receiver(a.redis_url, bodies, 2, 0)
        ours.append(spans / dt)
        per_req = max(1, n // a.requests)
        db = run_bare(a.redis_url, bodies, per_req)
        bare.append(spans / db)
        print(f"round {rnd + 1}: receiver {spans / dt:,.0f} spans/s ({n} events), "
              f"bare decode+XADD {spans / db:,.0f} spans/s ({per_req} events/request)")
    mo, mb = statistics.median(ours), statistics.median(bare)
    print(f"throughput: receiver median {mo:,.0f} spans/s; bare {mb:,.0f} spans/s; "
          f"ratio {mo / mb:.0%}  (target >= 20,000 spans/s and >= 60 %)")
    # latency at 5k spans/s
    rate = 5000 / SPANS_PER_REQUEST
    n_req = int(rate * 10)
    lat_bodies = [make_request(i) for i in range(n_req)]
    _, lat, _ = run_receiver(a.redis_url, lat_bodies, 1, rate)
    ms = [x * 1000 for x in lat]
    print(f"request latency at 5k spans/s ({n_req} requests of {SPANS_PER_REQUEST}): "
          f"p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms "
          f"(target p99 <= 50 ms)")


if __name__ == "__main__":
    main()
