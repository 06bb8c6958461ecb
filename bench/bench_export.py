"""Export of 1,000,000 events to CSV, against a csv.writer baseline, in the same run.

Method: N events of a realistic mix (llm calls, tool calls, tier accesses, knowledge reads,
collaboration, crew/task lifecycle) are generated and encoded to their stream form (bytes) -
not timed. Then:

* baseline - ``csv.writer`` writing N pre-built flat rows (ts, type, agent, run, model,
  tokens, cost) to a StringIO: the cost of merely *writing* a CSV line per event;
* export   - what ``auren export --format csv --report all`` does after reading the entries:
  decode each entry (``auren_core.events.decode``), ``build_reports(..., ["all"])`` and
  ``render(..., "csv")``;
* stream   - optional (``--stream-events M``): the same export end-to-end through the CLI
  from a real Redis stream of M events (XRANGE reading included).

Target: export of 1,000,000 events <= 10 s.
Usage: .venv/bin/python bench/bench_export.py [--events 1000000] [--stream-events 100000]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from auren_core.events import Event, decode, encode, make_event
from auren_core.export import build_reports, render

AGENTS = ["neuroscientist", "sleep_specialist", "nutritionist", "coach", "planner"]
TIERS = ["redis_immediate", "postgresql_structured", "chromadb_semantic", "miss"]


def make_events(n: int, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    t0 = time.time() - n * 0.05
    out = []
    for i in range(n):
        a, run, ts = AGENTS[i % 5], f"run{i // 500}", t0 + i * 0.05
        k = rng.random()
        if k < 0.45:
            p = {
                "model": rng.choice(["gpt-4o-mini", "gpt-4o"]),
                "provider": "openai",
                "input_tokens": rng.randint(100, 3000),
                "output_tokens": rng.randint(5, 800),
                "cached_tokens": 0,
                "cost_usd": rng.random() / 100,
                "latency_ms": 900.0,
            }
            out.append(make_event("llm_call", p, agent=a, run=run, ts=ts))
        elif k < 0.65:
            p = {
                "tool": rng.choice(["web_search", "calc", "pubmed"]),
                "duration_ms": 50.0,
                "ok": True,
                "cost_usd": 0.001,
            }
            out.append(make_event("tool_used", p, agent=a, run=run, ts=ts))
        elif k < 0.85:
            p = {
                "tier_accessed": rng.choice(TIERS),
                "query": f"q{rng.randint(0, 200)}",
                "latency_by_tier": {"redis": 0.4, "postgresql": 4.0, "chromadb": 40.0},
                "items_retrieved": 2,
            }
            out.append(make_event("memory_tier_access", p, agent=a, run=run, ts=ts))
        elif k < 0.93:
            p = {"item": f"doc{rng.randint(0, 300)}.md", "source": "chromadb", "hit": True}
            out.append(make_event("knowledge_access", p, agent=a, run=run, ts=ts))
        elif k < 0.97:
            p = {"to_agent": AGENTS[(i + 1) % 5], "kind": "delegate"}
            out.append(make_event("collaboration", p, agent=a, run=run, ts=ts))
        else:
            out.append(make_event("task_completed", {"task_id": f"t{i}"}, agent=a, run=run, ts=ts))
    return out  # fmt: skip


def baseline(events: list[Event]) -> tuple[float, float]:
    rows = [
        (e.ts, e.type, e.agent, e.run, e.payload.get("model"), e.payload.get("input_tokens"),
         e.payload.get("output_tokens"), e.payload.get("cost_usd"))
        for e in events
    ]  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(("ts", "type", "agent", "run", "model", "in", "out", "cost"))
    w.writerows(rows)
    buf.getvalue().encode()
    return time.perf_counter() - t0, time.process_time() - c0


def export(raws: list[bytes]) -> tuple[float, float, int]:
    """Wall and process-CPU seconds (CPU time is less distorted by a busy shared machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    data = render(build_reports((decode(raw) for raw in raws), ["all"]), "csv")
    return time.perf_counter() - t0, time.process_time() - c0, len(data)


def via_stream(events: list[Event]) -> float:
    url = os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    stream = f"auren:bench:{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(url)
    try:
        for i in range(0, len(events), 5000):
            pipe = r.pipeline(transaction=False)
            for e in events[i : i + 5000]:
                pipe.xadd(stream, {"e": encode(e)})
            pipe.execute()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:  # CSV --report all: one file per report
            subprocess.run(
                [sys.executable, "-m", "auren_tui", "export", "--redis-url", url, "--stream",
                 stream, "--since", "30d", "--source", "stream", "-o", out],
                check=True, cwd=Path(__file__).resolve().parent.parent, capture_output=True,
            )  # fmt: skip
            return time.perf_counter() - t0
    finally:
        r.delete(stream)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--stream-events", type=int, default=100_000)
    args = ap.parse_args()
    n = args.events
    events = make_events(n)
    raws = [encode(e) for e in events]
    base, base_cpu = baseline(events)
    exp, exp_cpu, size = export(raws)
    print(f"events: {n:,}  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"baseline csv.writer, {n:,} pre-built rows: {base:6.2f} s wall, {base_cpu:6.2f} s CPU")
    print(f"export decode+build_reports(all)+render csv: {exp:6.2f} s wall, {exp_cpu:6.2f} s CPU "
          f"({n / exp:,.0f} events/s, {size:,} bytes)")  # fmt: skip
    print(f"export / baseline: {exp / base:.2f}x   target <= 10 s: "
          f"{'met' if exp <= 10 else 'MISSED'}")  # fmt: skip
    if args.stream_events:
        m = args.stream_events
        t = via_stream(events[:m])
        print(f"end-to-end `auren export` from a Redis stream of {m:,} events (incl. process "
              f"start): {t:6.2f} s ({m / t:,.0f} events/s)")  # fmt: skip


if __name__ == "__main__":
    main()
