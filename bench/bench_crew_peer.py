"""AUREN's CrewAI instrumentation against the peer to beat, on the same crew, same run.

Method
------
Four arms, interleaved in one process, in a rotating order each round (drift and warm-up
cancel): ``plain`` (uninstrumented), ``auren`` (``auren_core.instrument()`` publishing to a
real Redis stream), ``openinference`` (``openinference-instrumentation-crewai``'s default
wrapt patches) and ``oi-events`` (its ``use_event_listener=True`` mode, which also makes LLM
and tool spans), both with the OpenTelemetry SDK, a SimpleSpanProcessor and an in-memory
span exporter: nothing leaves the process, so these are its cheapest configurations. Each
arm is switched on only for its own kickoffs (``uninstrument()`` on all). Two crews, each a
configuration of its own: the sequential crew (three agents, a tool) and the delegating
crew (delegation and questions between agents), on ScriptedLLM (instant answers: pure
CrewAI CPU, the worst case for relative overhead). After an
instrumented kickoff AUREN's queue is drained untimed, so its background work is counted in
the CPU figure, not hidden.

Reported: median kickoff wall time and process CPU per arm, and each instrumented arm's
median paired difference against plain, in ms and %. Target (issue 2): auren <= 3 %.

Run: ``.venv/bin/python bench/bench_crew_peer.py [--rounds 30]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("CREWAI_TESTING", "true")  # no first-run tracing prompt
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.pop("OTEL_SDK_DISABLED", None)  # the peer needs a live OpenTelemetry SDK
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--crew", choices=("sequential", "delegating", "both"), default="both")
    ap.add_argument(
        "--redis-url", default=os.environ.get("AUREN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = ap.parse_args()

    import crews
    import redis
    from openinference.instrumentation.crewai import CrewAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import auren_core
    from auren_core.integrations.crewai import uninstrument
    from auren_core.integrations.crewai.scripted_llm import ScriptedLLM
    from auren_core.streams.publisher import Publisher

    stream = f"auren:bench:{uuid.uuid4().hex[:8]}"
    pub = Publisher(args.redis_url, stream)
    listener = auren_core.instrument(publisher=pub)
    uninstrument()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    oi = CrewAIInstrumentor()

    def run(arm: str, build: Any) -> tuple[float, float]:
        if arm == "auren":
            auren_core.instrument(publisher=pub)
        elif arm == "openinference":
            oi.instrument(tracer_provider=provider, skip_dep_check=True)
        elif arm == "oi-events":
            oi.instrument(tracer_provider=provider, skip_dep_check=True, use_event_listener=True)
        crew = build(llm=ScriptedLLM(seed=1))[0]
        c0 = time.process_time()
        t0 = time.perf_counter()
        crew.kickoff()
        wall = time.perf_counter() - t0
        if arm == "auren":
            listener.drain(10)
            pub.flush(10)
            uninstrument()
        elif arm != "plain":
            oi.uninstrument()
        time.sleep(0.02)
        return wall, time.process_time() - c0

    import crewai

    print(__doc__.split("Method", 1)[1].split("Run:", 1)[0].rstrip())
    print(f"\ncrewai {crewai.__version__}; {args.rounds} rounds per crew")
    arms = ["plain", "auren", "openinference", "oi-events"]
    builds = {"sequential": crews.sequential_crew, "delegating": crews.delegating_crew}
    names = list(builds) if args.crew == "both" else [args.crew]
    for name in names:
        build = builds[name]
        for _ in range(args.warmup):
            for arm in arms:
                run(arm, build)
        exporter.clear()
        sent0 = pub.counters().sent
        wall: dict[str, list[float]] = {a: [] for a in arms}
        cpu: dict[str, list[float]] = {a: [] for a in arms}
        for i in range(args.rounds):
            order = arms[i % len(arms) :] + arms[: i % len(arms)]
            for arm in order:
                w, c = run(arm, build)
                wall[arm].append(w)
                cpu[arm].append(c)
        spans = len(exporter.get_finished_spans())
        events = pub.counters().sent - sent0
        print(
            f"\n[{name} crew] auren published {events / args.rounds:.0f} events per kickoff; "
            f"openinference (both modes) recorded {spans / args.rounds / 2:.0f} spans per kickoff"
        )
        base_w = statistics.median(wall["plain"])
        base_c = statistics.median(cpu["plain"])
        print(
            f"{'arm':<14}{'wall ms':>10}{'cpu ms':>10}{'d wall ms':>11}{'d wall %':>10}"
            f"{'d cpu %':>9}"
        )
        for arm in arms:
            mw = statistics.median(wall[arm]) * 1000
            mc = statistics.median(cpu[arm]) * 1000
            if arm == "plain":
                print(f"{arm:<14}{mw:>10.1f}{mc:>10.1f}")
                continue
            dw = statistics.median(a - b for a, b in zip(wall[arm], wall["plain"], strict=True))
            dc = statistics.median(a - b for a, b in zip(cpu[arm], cpu["plain"], strict=True))
            print(
                f"{arm:<14}{mw:>10.1f}{mc:>10.1f}{dw * 1000:>11.2f}"
                f"{100 * dw / base_w:>9.1f}%{100 * dc / base_c:>8.1f}%"
            )
    pub.close()
    redis.Redis.from_url(args.redis_url).delete(stream)
    print("\ntarget: auren wall overhead <= 3 % of plain, and below openinference's in every row")


if __name__ == "__main__":
    main()
