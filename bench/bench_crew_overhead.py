"""Cost of ``auren_core.instrument()`` on a real CrewAI crew (ScriptedLLM, offline).

Method
------
The same scripted crew (a fresh ``Crew`` object per kickoff, same seed, so the
same LLM calls, tool calls and events every time) is kicked off in three arms
*interleaved in one process*: plain (uninstrumented), instrumented with
``dispatch="tap"`` (default: our own conversion thread) and with
``dispatch="bus"`` (async handlers on CrewAI's bus). Each round runs every arm
once, in a rotating and alternating order, so drift and warm-up cancel.
Between kickoffs the listener is switched off and on (``uninstrument`` removes
the handlers and taps; ``instrument`` puts them back). After an instrumented
kickoff the bench waits, untimed, until every event is converted and sent to
Redis; every arm then sleeps ``--settle-ms`` so background threads finish.

Reported per instrumented arm, against plain:
- kickoff wall time: median of the paired differences, bootstrap 95% interval,
  as % of the plain median (the target, issue 2: <= 3%). On a shared 2-core machine this
  is noisy (CrewAI commits to SQLite during a kickoff; other processes run).
- process CPU time (all threads, kickoff to settled): the steadier figure; it
  includes our conversion thread and the publisher thread's XADD work.
- in-situ timings (perf_counter around each call) of the conversion (convert +
  encode + enqueue) and of the emission tap run in the agent's thread.

The LLM answers instantly by default (``--latency-ms 0``): the crew is pure
CrewAI CPU, the worst case for relative overhead. A real LLM call takes
hundreds of milliseconds; ``--latency-ms`` adds a per-call sleep to show that.

Run: ``.venv/bin/python bench/bench_crew_overhead.py [--pairs 45] [--crew delegating]``
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("CREWAI_TESTING", "true")  # no first-run tracing prompt
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _timed(cls: Any, name: str, sink: list[float]) -> None:
    """Wrap ``cls.name`` to record each call's duration (bench-only measurement)."""
    orig = getattr(cls, name)

    def wrapper(self: Any, *a: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(self, *a)
        finally:
            sink.append(time.perf_counter() - t0)

    setattr(cls, name, wrapper)


def _ci(diffs: list[float], n: int = 2000) -> tuple[float, float]:
    rng = random.Random(0)
    meds = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--crew", choices=("sequential", "delegating"), default="sequential")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--settle-ms", type=float, default=20.0)
    ap.add_argument(
        "--dispatch",
        nargs="+",
        choices=("tap", "bus"),
        default=["tap", "bus"],
        help="instrumented arms to compare with the plain one",
    )
    ap.add_argument(
        "--redis-url", default=os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = ap.parse_args()

    import crews
    import redis

    import auren_core
    from auren_core.integrations.crewai import convert as _crewai_convert
    from auren_core.integrations.crewai import tap as _crewai_tap
    from auren_core.integrations.crewai import uninstrument
    from auren_core.integrations.crewai.scripted_llm import ScriptedLLM
    from auren_core.streams.publisher import Publisher

    handler_s: list[float] = []
    tap_s: list[float] = []
    _timed(_crewai_convert.Converter, "convert", handler_s)
    _timed(_crewai_tap.Tap, "on_emit", tap_s)

    build: Callable[..., Any] = (
        crews.sequential_crew if args.crew == "sequential" else crews.delegating_crew
    )

    def new_crew() -> Any:
        llm = ScriptedLLM(seed=1, latency_s=args.latency_ms / 1000.0)
        return build(llm=llm)[0]

    stream = f"auren:bench:{uuid.uuid4().hex[:8]}"
    pub = Publisher(args.redis_url, stream)
    listener = auren_core.instrument(publisher=pub)
    arms = ["plain", *args.dispatch]

    def run(arm: str) -> tuple[float, float]:
        """(kickoff wall time, process CPU time from kickoff to settled)."""
        if arm == "plain":
            uninstrument()
        else:
            auren_core.instrument(publisher=pub, dispatch=arm)
        crew = new_crew()
        c0 = time.process_time()
        t0 = time.perf_counter()
        crew.kickoff()
        dt = time.perf_counter() - t0
        if arm != "plain":
            listener.drain(10)
            pub.flush(10)
        time.sleep(args.settle_ms / 1000.0)  # every arm: let background threads finish
        return dt, time.process_time() - c0

    for i in range(args.warmup):
        for arm in arms:
            run(arm)
    sent0 = pub.counters().sent
    handler_s.clear()
    tap_s.clear()
    wall: dict[str, list[float]] = {a: [] for a in arms}
    cpu: dict[str, list[float]] = {a: [] for a in arms}
    for i in range(args.pairs):
        k = i % len(arms)
        order = arms[k:] + arms[:k]  # rotate: each arm takes each position equally often
        if (i // len(arms)) % 2:
            order.reverse()
        for arm in order:
            w, c = run(arm)
            wall[arm].append(w)
            cpu[arm].append(c)
    uninstrument()
    events = (pub.counters().sent - sent0) / args.pairs / max(1, len(arms) - 1)
    pub.close()
    redis.Redis.from_url(args.redis_url).delete(stream)

    ms = 1000.0
    print(
        f"crew: {args.crew}; LLM latency {args.latency_ms:g} ms/call; {args.pairs} rounds, "
        f"arms {arms} interleaved in rotating order"
    )
    print(f"events published per instrumented kickoff: {events:.1f}")
    base_w = statistics.median(wall["plain"])
    base_c = statistics.median(cpu["plain"])
    print(
        f"plain: kickoff wall median {base_w * ms:.2f} ms, process CPU median {base_c * ms:.2f} ms"
    )
    for arm in arms[1:]:
        dw = [b - a for a, b in zip(wall["plain"], wall[arm], strict=True)]
        dc = [b - a for a, b in zip(cpu["plain"], cpu[arm], strict=True)]
        mw, mc = statistics.median(dw), statistics.median(dc)
        (lw, hw), (lc, hc) = _ci(dw), _ci(dc)
        print(f"[{arm}] kickoff wall median {statistics.median(wall[arm]) * ms:.2f} ms")
        print(
            f"[{arm}]   wall overhead: median paired diff {mw * ms:+.3f} ms "
            f"(95% CI {lw * ms:+.3f} .. {hw * ms:+.3f}) = {mw / base_w * 100:+.2f}% "
            f"(CI {lw / base_w * 100:+.2f}% .. {hw / base_w * 100:+.2f}%)"
        )
        print(
            f"[{arm}]   CPU overhead (all threads incl. conversion and publisher): "
            f"{mc * ms:+.3f} ms (CI {lc * ms:+.3f} .. {hc * ms:+.3f}) = {mc / base_c * 100:+.2f}%"
            f"; per event {mc / events * 1e6:+.1f} us"
        )
        verdict = "meets" if mw / base_w <= 0.03 else "MISSES"
        print(f"[{arm}]   target wall overhead <= 3%: {verdict} ({mw / base_w * 100:+.2f}%)")
    if handler_s:
        hs = sorted(handler_s)
        print(
            f"conversion per event (convert+encode+enqueue; both dispatch modes): "
            f"p50 {hs[len(hs) // 2] * 1e6:.1f} us, p99 {hs[int(len(hs) * 0.99)] * 1e6:.1f} us, "
            f"n={len(hs)}"
        )
    if tap_s:
        ts = sorted(tap_s)
        print(
            f"emission tap (agent thread, every bus event incl. the queue append): "
            f"p50 {ts[len(ts) // 2] * 1e6:.2f} us, p99 {ts[int(len(ts) * 0.99)] * 1e6:.2f} us, "
            f"n={len(ts)}"
        )


if __name__ == "__main__":
    main()
