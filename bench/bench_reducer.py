"""Reducer throughput and snapshot cost, against bare decode of the same entries.

Method: build N encoded stream entries with a realistic type mix (LLM calls,
tools, tier lookups, knowledge, collaboration, lifecycle, hypotheses, a few
unknown/malformed), then in the same run time
  (a) bare ``decode`` of every entry (the baseline: what any reader pays),
  (b) ``decode`` + ``Reducer.apply_batch`` in batches of 500 (what ``auren top`` does),
best of ``--repeat`` runs each, timed in process CPU time (``time.process_time``:
the machine is shared, and CPU time is not inflated by waiting for a core).
apply-only cost = (b) - (a). Then time
``Reducer.state()`` and ``to_dict()`` with many active agents and items.

    .venv/bin/python bench/bench_reducer.py [--events 200000] [--agents 50] [--repeat 3]
        [--span SECONDS]   # e.g. --span 3000 --agents 1000: sparse agents, worst case
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from auren_core.events import decode, encode, make_event
from auren_core.state import Reducer

TARGET_EPS = 50_000


def entries(n: int, agents: int, t0: float, span_s: float, seed: int = 7) -> list[bytes]:
    rnd = random.Random(seed)
    names = [f"agent-{i}" for i in range(agents)]
    out: list[bytes] = []
    for i in range(n):
        ts = t0 + span_s * i / n
        a = names[i % agents]
        run = f"run-{i // 2000}"
        k = rnd.random()
        payload: dict[str, Any]
        if k < 0.35:
            typ, payload = (
                "llm_call",
                {
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "input_tokens": rnd.randint(100, 4000),
                    "output_tokens": rnd.randint(10, 800),
                    "cached_tokens": 0,
                    "cost_usd": None if rnd.random() < 0.05 else rnd.random() / 1000,
                    "cost_source": "genai-prices",
                    "latency_ms": rnd.uniform(100, 3000),
                    "ok": True,
                },
            )
        elif k < 0.50:
            typ, payload = "tool_used", {"tool": f"tool{rnd.randint(0, 9)}", "duration_ms": 12.5}
        elif k < 0.65:
            tier = rnd.choice(
                ["redis_immediate", "postgresql_structured", "chromadb_semantic", "miss"]
            )
            lat = {"redis": rnd.uniform(0.1, 2)}
            if tier != "redis_immediate":
                lat["postgresql"] = rnd.uniform(1, 20)
            if tier in ("chromadb_semantic", "miss"):
                lat["chromadb"] = rnd.uniform(5, 80)
            payload = {
                "tier_accessed": tier,
                "query": f"query {rnd.randint(0, 500)}",
                "latency_by_tier": lat,
                "items_retrieved": 0 if tier == "miss" else 3,
            }
            typ = "memory_tier_access"
        elif k < 0.78:
            typ, payload = (
                "knowledge_access",
                {
                    "item": f"doc-{rnd.randint(0, 300)}",
                    "source": "postgresql",
                    "hit": rnd.random() > 0.1,
                },
            )
        elif k < 0.83:
            typ, payload = (
                "collaboration",
                {
                    "to_agent": rnd.choice(names),
                    "kind": rnd.choice(["delegate", "ask"]),
                },
            )
        elif k < 0.90:
            typ, payload = rnd.choice(["task_started", "task_completed"]), {"task_id": f"t{i % 97}"}
        elif k < 0.95:
            typ, payload = (
                "hypothesis",
                {
                    "hypothesis_id": f"h{rnd.randint(0, 200)}",
                    "status": rnd.choice(["formed", "updated", "validated", "rejected"]),
                    "confidence": rnd.random(),
                    "statement": "sleep debt lowers HRV",
                },
            )
        elif k < 0.999:
            typ, payload = "agent_started", {"task_id": f"t{i % 97}"}
        else:
            out.append(b'{"v":1,"id":"x"')  # malformed
            continue
        out.append(encode(make_event(typ, payload, agent=a, run=run, ts=ts)))
    return out


def best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument(
        "--span",
        type=float,
        default=None,
        help="event-time span of the entries in s (default: as if they arrived at 50k/s;"
        " a long span makes almost every event open a new per-agent bucket)",
    )
    args = ap.parse_args()
    now = 1_800_000_000.0
    span = args.span if args.span else args.events / TARGET_EPS
    raw = entries(args.events, args.agents, now - span, span)
    sids = [f"{i}-0" for i in range(len(raw))]
    n = len(raw)

    def bare() -> None:
        for r, s in zip(raw, sids, strict=True):
            decode(r, s)

    def reduce() -> None:
        red = Reducer(clock=lambda: now)
        bs = args.batch
        for i in range(0, n, bs):
            chunk = [decode(r, s) for r, s in zip(raw[i : i + bs], sids[i : i + bs], strict=True)]
            red.apply_batch(chunk, last_id=sids[min(i + bs, n) - 1])

    decoded: list[Any] = []

    def apply_only() -> None:
        red = Reducer(clock=lambda: now)
        bs = args.batch
        for i in range(0, n, bs):
            red.apply_batch(decoded[i : i + bs])

    # interleaved repetitions, so a noisy neighbour hits all three alike; best of each
    t_bare = t_full = t_apply = float("inf")
    for _ in range(args.repeat):
        t_bare = min(t_bare, best(bare, 1))
        t_full = min(t_full, best(reduce, 1))
        decoded[:] = [decode(r, s) for r, s in zip(raw, sids, strict=True)]
        t_apply = min(t_apply, best(apply_only, 1))
        decoded.clear()  # free them: live objects slow the GC in the other runs
    print(
        f"entries: {n} over {span:g} s of event time, agents: {args.agents},"
        f" batch: {args.batch}, best of {args.repeat}"
    )
    print(
        f"(a) bare decode           : {n / t_bare:>10,.0f} events/s  ({t_bare * 1e6 / n:.2f} us/ev)"
    )
    print(
        f"(b) decode + apply_batch  : {n / t_full:>10,.0f} events/s  ({t_full * 1e6 / n:.2f} us/ev)"
    )
    print(
        f"    apply alone (pre-decoded): {n / t_apply:>10,.0f} events/s"
        f"  ({t_apply * 1e6 / n:.2f} us/ev); (b)-(a) = {(t_full - t_bare) * 1e6 / n:.2f} us/ev"
    )
    print(f"    (b)/(a) time ratio: {t_full / t_bare:.2f}x")
    verdict = "MET" if n / t_full >= TARGET_EPS else "MISSED"
    print(f"    target decode+apply >= {TARGET_EPS:,} events/s: {verdict}")

    # live: what `auren top` does at 50k events/s, 20 frames/s: each frame decodes
    # and applies 2,500 entries, then builds the state. CPU per simulated second
    # below 100% of one core means decode + reducer keep up (Redis I/O and
    # rendering come on top, in the TUI's own benchmark).
    per_frame = TARGET_EPS // 20
    frames = 40
    for n_agents in (args.agents, 1000):
        total = per_frame * (20 + frames)
        t0 = now - total / TARGET_EPS
        raw_l = entries(total, n_agents, t0, total / TARGET_EPS, seed=11)
        clock = [t0 + 1.0]
        red = Reducer(clock=lambda: clock[0])
        for f in range(20):  # warm up: keys and agents populated
            clock[0] = t0 + (f + 1) / 20
            red.apply_batch([decode(r, "") for r in raw_l[f * per_frame : (f + 1) * per_frame]])
        t = time.process_time()
        t_state = 0.0
        for f in range(20, 20 + frames):
            clock[0] = t0 + (f + 1) / 20  # the clock moves with the frames
            chunk = raw_l[f * per_frame : (f + 1) * per_frame]
            red.apply_batch([decode(r, f"{f}-{i}") for i, r in enumerate(chunk)])
            ts = time.process_time()
            red.state()
            t_state += time.process_time() - ts
        cpu = (time.process_time() - t) / (frames / 20)
        print(
            f"live 50k ev/s at 20 Hz, {n_agents} agents: decode+apply+state use"
            f" {cpu * 100:.0f}% of one core (state() {t_state / frames * 1e3:.2f} ms/frame)"
            f" -> {'keeps up' if cpu < 1 else 'FALLS BEHIND'}"
        )

    # idle refresh: state() again with no new events (caches hit), and to_dict() (the
    # WebSocket snapshot / --once --json), with many active agents and items
    for n_agents in (args.agents, 2000):
        red = Reducer(clock=lambda: now)
        ev = [decode(r, s) for r, s in zip(entries(100_000, n_agents, now - 250, 250), sids)]
        red.apply_batch(ev)
        st = red.state()
        s_state: list[float] = []
        s_dict: list[float] = []
        for _ in range(20):
            t = time.process_time()
            st = red.state()
            s_state.append(time.process_time() - t)
            t = time.process_time()
            st.to_dict()
            s_dict.append(time.process_time() - t)
        print(
            f"idle state() with {len(st.agents)} active agents, {len(st.knowledge.items)} heatmap"
            f" items, {len(st.collaboration)} edges, {len(st.log)} log lines:"
            f" median {statistics.median(s_state) * 1e3:.2f} ms"
            f" (at 20 Hz: {statistics.median(s_state) * 20 * 100:.1f}% of one core);"
            f" to_dict median {statistics.median(s_dict) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
