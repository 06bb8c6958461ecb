"""Scale of the work: 10,000 agents, 1,000,000 queries and items, 24 hours at 1k ev/s.

Everything goes through the real path: encoded stream entries -> ``decode`` ->
``Reducer.apply_batch`` (batches of 500, as ``auren top``'s worker does) -> ``state()``
-> ``trim_state`` (what the worker ships) -> the real Textual app's main screen, painted
headless at 160x48 (``TopApp`` with no stream worker: the bench hands it each state as the
worker would, ``app.latest`` + the app's own frame tick; frame time = from handing the
state over to the app's painted-frame callback, ``call_after_refresh``, median of the
frames after 3 warm-ups). Reducer CPU is process CPU time (``time.process_time``; the
machine is shared); frames are wall time. "state bytes" is the reducer's deep size (every
object reachable from it, each counted once, code and classes excluded; walked in a forked
child, so the walk's bookkeeping never counts in the RSS figures); RSS is this whole
process (reducer + app + states; ``auren top`` splits them over two processes, so this is
the worse figure).

Baseline (same run): decode + apply of the bench's event mix on a small state (50 agents,
keys from small pools), and the frame of a 100-agent state. Growth is reported against it.

1. agents: 100, 1k, 3k, 10k agents, each registered and active (agent_registered,
   task_started/completed, llm_call, tool_used, collaboration, tier and knowledge events).
   "edge": the state() of a 50 ms frame across the window's edge moving to a new 10 s
   bucket (no new minute); "at :00": of one across the minute turning (every agent spent
   in the last hour: every sparkline moves) and the edge moving, the worst of a minute.
   Bounds: per-agent state bytes at 10k <= 1.5x of 1k (linear at most); the agents table
   holds at most MAX_ROWS rows plus one "+K more" line; frame at 10k <= 2x of 100 agents.
   Also the per-agent worst case: agents whose capped per-agent structures are full
   (300 tasks finished, 60 distinct tools and partners, 25 hypotheses): the marginal
   bytes per agent, in the window and two hours later; bound: what 10,000 of them leave
   behind after the window (finished-task ids, records) x 10,000 <= 300 MB. (In the
   window, the windowed per-agent keys cost more: bounded by the window, reported.)
2. distinct keys: 1,000,000 user queries (crew_started with distinct run ids and
   queries), 1,000,000 knowledge items (knowledge_access, distinct item) and 1,000,000
   memory-tier lookups with distinct queries (every 4th a miss: a distinct gap), all
   inside the one-hour window (event times spread over it). Reported at 10k, 100k, 1M
   of each. Bound: state bytes at 1M <= 1.25x of 100k; state() at 1M <= 2x of 100k.
3. 24 hours at 1,000 ev/s (86.4M events) through the reducer with event-time jumps.
   Default: of each simulated minute, the first ``--sample-s`` seconds are fed in full
   (1,000 events per simulated second, event time and the reducer's clock advancing
   1 ms per event), then event time and the clock jump to the next minute: every window
   move, expiry and minute turn of the 24 hours happens, with 1/60 of the events per
   second fed by default (``--sample-s 1``). ``--full``: all 86.4M events, no jumps.
   Keys are distinct where they are in production (run ids, task ids, knowledge items,
   lookup queries). Reported each simulated hour. Bounds: state bytes at hour 24 <= 1.1x
   of hour 18 (it stops growing: the windowed parts are full from hour 1, the finished-task
   ids reach their registry-wide cap later), state() at hour 24 <= 2x of hour 2.

Everywhere: RSS <= 300 MB, and a phase that measured nothing fails the run (exit 1).

    .venv/bin/python bench/bench_scale.py [--agents 10000] [--keys 1000000]
        [--hours 24] [--sample-s 1] [--full] [--day-agents 1000] [--only agents|keys|day]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import msgspec
import psutil

from auren_core.events import decode
from auren_core.state import DashboardState, Reducer

NOW = 1_800_000_000.0
BATCH = 500
RSS_BOUND = 300 * 2**20
_enc = msgspec.json.Encoder()
_PROC = psutil.Process()


class BenchFailed(Exception):
    """A bound broken, or a phase that measured nothing: exit non-zero."""


FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    """A broken bound is reported and makes the run fail at the end (every phase runs)."""
    print(f"   bound: {what}: {'ok' if ok else 'BROKEN'}")
    if not ok:
        FAILURES.append(what)


def rss() -> int:
    return int(_PROC.memory_info().rss)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


_SKIP = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.MethodType,
)


def _deep_size(root: object) -> int:
    seen: set[int] = set()
    stack = [root]
    total = 0
    getsize = sys.getsizeof
    refs = gc.get_referents
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        total += getsize(obj)
        stack.extend(refs(obj))
        if isinstance(obj, dict):  # gc does not visit the str keys of a dict: count them
            stack.extend(obj)
    return total


def deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root``, each once (no code, classes, modules).
    Walked in a forked child: the walk's own bookkeeping (a set of millions of ids) must not
    count in this process's RSS."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: walk, write, leave at once
        try:
            os.write(w, str(_deep_size(root)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    if not out:
        raise BenchFailed("the state-size walk failed")
    return int(out)


# --------------------------------------------------------------------------- events

_SEQ = [0]


def entry(
    typ: str, payload: dict[str, Any], agent: str | None, run: str | None, ts: float
) -> bytes:
    """One stream entry as the publisher writes it (``encode_fields`` with a given ts)."""
    _SEQ[0] += 1
    return _enc.encode(
        {
            "v": 1,
            "id": f"b5ca1e000001-{_SEQ[0]}",
            "ts": ts,
            "type": typ,
            "agent": agent,
            "run": run,
            "payload": payload,
        }
    )


_TIERS = ("redis_immediate", "postgresql_structured", "chromadb_semantic", "miss")


def mix(i: int, ts: float, agents: int, items: int, runs: int, agent: str | None = None) -> bytes:
    """Event ``i`` of the bench's mix: LLM calls 35 %, tools 15 %, tier lookups 15 %,
    knowledge 15 %, collaboration, task start/end, crew kickoffs 5 % each. Keys come from
    pools of ``agents`` (unless ``agent`` is given), ``items`` (knowledge items and lookup
    queries) and ``runs``."""
    k = i % 20
    a = agent or f"agent-{i % agents}"
    run = f"run-{(i // 20) % runs}"
    if k < 7:
        return entry(
            "llm_call",
            {
                "model": "gpt-4o-mini",
                "provider": "openai",
                "input_tokens": 100 + i % 3000,
                "output_tokens": 10 + i % 500,
                "cost_usd": None if i % 50 == 0 else (i % 997) / 1e6,
                "latency_ms": 100.0 + i % 2000,
            },
            a,
            run,
            ts,
        )
    if k < 10:
        return entry("tool_used", {"tool": f"tool{i % 9}", "duration_ms": 12.5}, a, run, ts)
    if k < 13:
        tier = _TIERS[(i // 20) % 4]
        lat = {"redis": 0.4}
        if tier != "redis_immediate":
            lat["postgresql"] = 3.0
        if tier in ("chromadb_semantic", "miss"):
            lat["chromadb"] = 20.0
        return entry(
            "memory_tier_access",
            {
                "tier_accessed": tier,
                "query": f"lookup {i % items}",
                "latency_by_tier": lat,
                "items_retrieved": 0 if tier == "miss" else 3,
            },
            a,
            run,
            ts,
        )
    if k < 16:
        item = f"doc-{i % items}"
        hit = i % 10 != 3
        return entry("knowledge_access", {"item": item, "source": "pg", "hit": hit}, a, run, ts)
    if k == 16:
        to = f"agent-{(i * 7 + 1) % agents}"
        return entry("collaboration", {"to_agent": to, "kind": "delegate"}, a, run, ts)
    if k == 17:
        return entry("task_started", {"task_id": f"task-{i}"}, a, run, ts)
    if k == 18:  # the end of the task event i - 1 started, by the same agent
        prev = agent or f"agent-{(i - 1) % agents}"
        return entry("task_completed", {"task_id": f"task-{i - 1}"}, prev, run, ts)
    return entry("crew_started", {"crew": "c", "query": f"question {i % runs}"}, a, run, ts)


class Feeder:
    """Feeds entries through decode + apply_batch in batches of 500, timing only that."""

    def __init__(self, red: Reducer, clock: list[float]) -> None:
        self.red = red
        self.clock = clock
        self.cpu = 0.0
        self.n = 0
        self._sid = 0

    def feed(self, raw: list[bytes], clock_to: float | None = None) -> None:
        red = self.red
        if clock_to is not None:
            self.clock[0] = clock_to
        for j in range(0, len(raw), BATCH):
            chunk = raw[j : j + BATCH]
            base = self._sid
            self._sid += len(chunk)
            t = time.process_time()
            evs = [decode(r, f"{base + x + 1}-0") for x, r in enumerate(chunk)]
            red.apply_batch(evs, last_id=f"{self._sid}-0")
            self.cpu += time.process_time() - t
        self.n += len(raw)

    @property
    def rate(self) -> float:
        return self.n / self.cpu if self.cpu > 0 else 0.0


def reducer(clock: list[float]) -> Reducer:
    return Reducer(clock=lambda: clock[0])


# --------------------------------------------------------------------------- the app


class NoWorker:
    """The stream worker's interface, doing nothing: the bench hands the app its states."""

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 3.0) -> None:
        pass

    def set_view(self, *a: Any) -> None:
        pass

    def set_analytics(self, active: bool) -> None:
        pass


class Painter:
    """The real app's main screen, headless 160x48; ``paint`` hands it a state."""

    def __init__(self) -> None:
        from auren_tui.app import TopApp

        self.app = TopApp(
            worker_factory=lambda post: NoWorker(), stream="auren:events", mode="bench"
        )
        self._ctx: Any = None
        self.pilot: Any = None

    async def __aenter__(self) -> Painter:
        self._ctx = self.app.run_test(size=(160, 48))
        self.pilot = await self._ctx.__aenter__()
        await self.pilot.pause(0.2)
        # warm-up: the first frames build every pane (not part of any figure)
        clock = [NOW]
        red, feeder = populate(50, clock)
        states, _, _ = frame_states(red, clock, feeder, 50, n=6)
        await self.frames(states)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._ctx.__aexit__(*exc)

    async def paint(self, state: DashboardState) -> float:
        """Seconds from handing ``state`` over to its painted frame."""
        app = self.app
        done: list[float] = []

        def hook(t: float, st: DashboardState) -> None:
            if st is state:
                done.append(time.perf_counter())

        app.on_frame = hook
        app.latest = state
        app._drawn = None
        app._last_draw = 0.0  # the app's frame throttle would only add waiting
        t0 = time.perf_counter()
        app._tick()
        deadline = t0 + 30
        while not done:
            if time.perf_counter() > deadline:
                raise BenchFailed("a state handed to the app was never painted")
            await asyncio.sleep(0)
        return done[0] - t0

    async def frames(self, states: list[DashboardState], warm: int = 3) -> float:
        """Median frame ms over ``states`` (the first ``warm`` are warm-ups)."""
        times = [await self.paint(s) for s in states]
        rest = times[warm:] or times
        return statistics.median(rest) * 1e3

    def table(self) -> tuple[int, str]:
        """(rows in the agents table, its last row's first cell)."""
        from auren_tui.widgets import AgentsTable

        t = self.app.screen.query_one(AgentsTable)
        last = t.get_row_at(t.row_count - 1)[0] if t.row_count else ""
        return t.row_count, str(last)


def frame_states(
    red: Reducer, clock: list[float], feeder: Feeder, agents: int, n: int = 12
) -> tuple[list[DashboardState], float, float]:
    """``n`` successive trimmed states, as the worker posts them at 20 Hz: 50 ms of event and
    clock time and 100 new events between two (the mix, small key pools, from 20 busy
    agents: the same rows change per frame whatever the number of agents). Returns
    (states, median CPU ms of state(), of trim_state), the first two frames not counted.
    ``agents`` is the population (kept for the signature of the phases)."""
    from auren_tui.agent_order import trim_state

    out = []
    t_state: list[float] = []
    t_trim: list[float] = []
    for f in range(n):
        t1 = clock[0] + 0.05
        busy = min(agents, 20)
        raw = [mix(f * 100 + j, t1 - 0.05 + j * 5e-4, busy, 100, 50) for j in range(100)]
        feeder.feed(raw, clock_to=t1)
        t = time.process_time()
        st = red.state()
        t_state.append(time.process_time() - t)
        t = time.process_time()
        out.append(trim_state(st))
        t_trim.append(time.process_time() - t)
    return out, statistics.median(t_state[2:]) * 1e3, statistics.median(t_trim[2:]) * 1e3


def frame_across(red: Reducer, clock: list[float], edge: float) -> float:
    """CPU ms of the state() of a 50 ms frame that crosses event time ``edge`` (the frame
    before it, 30 ms short of the edge, absorbs the clock's jump to there)."""
    clock[0] = edge - 0.03
    red.state()
    clock[0] = edge + 0.02
    t = time.process_time()
    red.state()
    return (time.process_time() - t) * 1e3


# --------------------------------------------------------------------------- phases


def baseline() -> float:
    """decode + apply of the mix, 50 agents, small key pools: events/s (best of 3)."""
    best = 0.0
    raw = [mix(i, NOW - 100 + i * 1e-3, 50, 100, 50) for i in range(100_000)]
    for _ in range(3):
        clock = [NOW]
        f = Feeder(reducer(clock), clock)
        f.feed(raw)
        best = max(best, f.rate)
    return best


def populate(agents: int, clock: list[float]) -> tuple[Reducer, Feeder]:
    """``agents`` agents, each registered and active in the last 4 minutes: 8 events each."""
    red = reducer(clock)
    feeder = Feeder(red, clock)
    t0 = NOW - 240.0
    per = 8
    total = agents * per
    raw: list[bytes] = []
    for i in range(total):
        a = i % agents
        ts = t0 + 240.0 * i / total
        aid = f"agent-{a}"
        if i < agents:
            raw.append(
                entry(
                    "agent_registered",
                    {
                        "role": f"Specialist {a}",
                        "goal": "answer",
                        "tools": ["search", "calc"],
                        "model": "gpt-4o-mini",
                    },
                    aid,
                    None,
                    ts,
                )
            )
        else:
            # the mix, each agent going through its kinds of event round by round
            raw.append(mix((i // agents) * 7 + a, ts, agents, 2000, 2000, aid))
        if len(raw) >= 20_000:
            feeder.feed(raw)
            raw = []
    feeder.feed(raw)
    return red, feeder


async def phase_agents(p: Painter, max_agents: int, base_rate: float) -> None:
    print("\n1. agents (each registered and active; the frame is the real main screen)")
    print(
        f"   {'agents':>7} {'apply ev/s':>11} {'vs base':>7} {'state()':>9} {'edge':>9}"
        f" {'at :00':>9}"
        f" {'trim':>8}"
        f" {'frame':>8} {'vs 100':>6} {'state bytes':>12} {'per agent':>10} {'RSS':>9}"
    )
    empty = deep_size(reducer([NOW]))
    per_agent: dict[int, float] = {}
    frame: dict[int, float] = {}
    for n in sorted({100, 1000, 3000, max_agents}):
        if n > max_agents:
            continue
        clock = [NOW]
        red, feeder = populate(n, clock)
        states, t_state, t_trim = frame_states(red, clock, feeder, n)
        # a 20 Hz frame (50 ms) across the window's edge moving to a new 10 s bucket (not
        # a new minute), then one across the minute turning (and the edge): every agent
        # spent in the last hour, so every sparkline moves
        t_edge = (clock[0] // 10 + 1) * 10
        if t_edge % 60 == 0:
            t_edge += 10
        t_move = frame_across(red, clock, t_edge)
        t_turn = frame_across(red, clock, (clock[0] // 60 + 1) * 60)
        more_states, _, _ = frame_states(red, clock, feeder, n, n=3)
        fr = await p.frames(states + more_states)
        rows, last = p.table()
        size = deep_size(red)
        per_agent[n] = (size - empty) / n
        frame[n] = fr
        print(
            f"   {n:>7,} {feeder.rate:>11,.0f} {feeder.rate / base_rate:>6.2f}x"
            f" {t_state:>6.2f} ms {t_move:>6.2f} ms {t_turn:>6.2f} ms {t_trim:>5.2f} ms"
            f" {fr:>5.1f} ms"
            f" {fr / frame[min(frame)]:>5.2f}x {mb(size):>12} {per_agent[n]:>8,.0f} B"
            f" {mb(rss()):>9}"
        )
        from auren_tui.agent_order import MAX_ROWS

        more = n - MAX_ROWS
        if more > 0:
            check(
                rows == MAX_ROWS + 1 and last == f"+{more:,} more",
                f"{n:,} agents: table shows {MAX_ROWS} rows + '+{more:,} more' (has {rows}"
                f" rows, last {last!r})",
            )
        else:
            check(rows == n, f"{n} agents: table shows all {n} rows (has {rows})")
        del red, feeder, states, more_states
        gc.collect()
    check(len(frame) >= 2, "agents phase measured at least two sizes")
    lo = 1000 if 1000 in per_agent else min(per_agent)
    hi = max(per_agent)
    check(
        per_agent[hi] <= 1.5 * per_agent[lo],
        f"per-agent state bytes at {hi:,} ({per_agent[hi]:,.0f}) <= 1.5x of {lo:,}"
        f" ({per_agent[lo]:,.0f})",
    )
    check(
        frame[hi] <= 2.0 * frame[min(frame)],
        f"frame at {hi:,} agents ({frame[hi]:.1f} ms) <= 2x of {min(frame)} agents"
        f" ({frame[min(frame)]:.1f} ms)",
    )
    worst_case_agent(max_agents)


def full_agents(n: int) -> Iterator[list[bytes]]:
    """``n`` agents with every capped per-agent structure full: 300 tasks finished (UUID
    task ids, as CrewAI's), 60 distinct tools and partners, 25 hypotheses, in 200 s; the
    entries of 20 agents at a time."""
    raw: list[bytes] = []
    t0 = NOW - 200.0
    step = 200.0 / (n * 700)
    done = [0]

    def add(typ: str, payload: dict[str, Any], a: int) -> None:
        raw.append(entry(typ, payload, f"agent-{a}", "run-w", t0 + done[0] * step))
        done[0] += 1

    for a in range(n):
        if a % 20 == 0 and raw:
            yield raw
            raw = []
        add("agent_registered", {"role": f"Specialist {a}", "tools": ["search"]}, a)
        for k in range(300):
            tid = f"{a:08x}-{k:04x}-4000-8000-{k:012x}"
            add("task_started", {"task_id": tid}, a)
            add("task_completed", {"task_id": tid}, a)
        for k in range(60):
            add("tool_used", {"tool": f"tool-{k}"}, a)
            add("collaboration", {"to_agent": f"agent-{(a + 1 + k) % n}", "kind": "ask"}, a)
        for k in range(25):
            add("hypothesis", {"hypothesis_id": f"h-{a}-{k}", "status": "formed"}, a)
    yield raw


def worst_case_agent(max_agents: int) -> None:
    """The marginal state bytes of one more agent with every capped per-agent structure
    full (:func:`full_agents`; state bytes at 600 such agents minus at 300, over 300),
    while its events are in the window and two hours later (what an agent leaves behind
    for the rest of the day), times ``max_agents``."""
    inside: dict[int, int] = {}
    after: dict[int, int] = {}
    kept = 0
    for n in (300, 600):
        clock = [NOW]
        red = reducer(clock)
        feeder = Feeder(red, clock)
        for chunk in full_agents(n):
            feeder.feed(chunk)
        inside[n] = deep_size(red)
        clock[0] = NOW + 7200.0
        red.state()
        after[n] = deep_size(red)
        kept = sum(len(r.finished) for r in red.registry._agents.values())
        del red, feeder
    per_in = (inside[600] - inside[300]) / 300
    per_after = (after[600] - after[300]) / 300
    print(
        f"   worst case per agent (300 tasks finished, 60 distinct tools, 60 partners, 25"
        f" hypotheses, in 200 s; {kept:,} finished-task ids kept over 600 agents):"
        f" {per_in:,.0f} B/agent in the window -> x{max_agents:,} = {mb(per_in * max_agents)};"
        f" 2 h later {per_after:,.0f} B/agent -> x{max_agents:,} = {mb(per_after * max_agents)}"
    )
    check(
        per_after * max_agents <= RSS_BOUND,
        f"what {max_agents:,} such agents leave behind after the window"
        f" ({mb(per_after * max_agents)}) <= 300 MB",
    )


def keys_stream(k0: int, k1: int, total: int, agents: int = 100) -> Iterator[bytes]:
    """For each key k: a crew kickoff (run q-k, its own question), a knowledge access of
    item doc-k and a memory lookup of query lookup-k (every 4th a miss: gap lookup-k);
    event times spread over the hour before NOW, so all of them are in the window."""
    span = 3600.0 - 1.0
    for k in range(k0, k1):
        ts = NOW - span + span * k / total
        a = f"agent-{k % agents}"
        run = f"q-{k}"
        yield entry("crew_started", {"crew": "c", "query": f"user question number {k}"}, a, run, ts)
        yield entry("knowledge_access", {"item": f"doc-{k}", "source": "pg"}, a, run, ts)
        tier = _TIERS[k % 4]
        lat = {"redis": 0.4, "postgresql": 3.0}
        if tier in ("chromadb_semantic", "miss"):
            lat["chromadb"] = 20.0
        yield entry(
            "memory_tier_access",
            {"tier_accessed": tier, "query": f"lookup-{k}", "latency_by_tier": lat},
            a,
            run,
            ts,
        )


async def phase_keys(p: Painter, keys: int, base_rate: float) -> None:
    print(
        f"\n2. distinct keys in the window: user queries (crew_started), knowledge items,"
        f" memory lookups ({keys:,} each, 3 events per key)"
    )
    print(
        f"   {'keys':>9} {'apply ev/s':>11} {'vs base':>7} {'state()':>9} {'frame':>8}"
        f" {'state bytes':>12} {'RSS':>9}  kept: runs / items / gaps (tier, knowledge)"
    )
    clock = [NOW]
    red = reducer(clock)
    feeder = Feeder(red, clock)
    done = 0
    steps = [s for s in (10_000, 100_000, 1_000_000) if s < keys] + [keys]
    size: dict[int, int] = {}
    st_ms: dict[int, float] = {}
    for target in steps:
        f_cpu, f_n = feeder.cpu, feeder.n
        gen = keys_stream(done, target, keys)
        while True:
            raw = [r for _, r in zip(range(30_000), gen, strict=False)]
            if not raw:
                break
            feeder.feed(raw)
        done = target
        rate = (feeder.n - f_n) / (feeder.cpu - f_cpu)
        states, t_state, _ = frame_states(red, clock, feeder, 100)
        st = states[-1]
        fr = await p.frames(states)
        size[target] = deep_size(red)
        st_ms[target] = t_state
        s = red.s
        print(
            f"   {target:>9,} {rate:>11,.0f} {rate / base_rate:>6.2f}x {t_state:>6.2f} ms"
            f" {fr:>5.1f} ms {mb(size[target]):>12} {mb(rss()):>9}  {len(red._runs)} /"
            f" {len(s.know.tot)} / {len(s.tier_gaps.tot)}, {len(s.know_gaps.tot)}"
            f" (refused: items {s.know.overflow:,}, gaps {s.tier_gaps.overflow:,})"
        )
        check(len(st.costs.runs) > 0, f"{target:,} keys: the state shows runs")
    check(feeder.n >= 3 * keys, f"keys phase applied {feeder.n:,} events")
    if len(size) >= 2:
        hi = max(size)
        lo = sorted(size)[-2]
        check(
            size[hi] <= 1.25 * size[lo],
            f"state bytes at {hi:,} keys ({mb(size[hi])}) <= 1.25x of {lo:,} ({mb(size[lo])})",
        )
        check(
            st_ms[hi] <= 2 * st_ms[lo] + 0.5,
            f"state() at {hi:,} keys ({st_ms[hi]:.2f} ms) <= 2x of {lo:,} ({st_ms[lo]:.2f} ms)",
        )


def day_second(sec: int, t: float, agents: int, rate: int) -> list[bytes]:
    """Simulated second ``sec``: ``rate`` events, 1/rate s apart from event time ``t``;
    distinct run ids (one per 20 events), task ids, items and lookup queries."""
    i0 = sec * rate
    out = []
    for j in range(rate):
        i = i0 + j
        out.append(mix(i, t + j / rate, agents, 10**12, 10**12))
    return out


async def phase_day(
    p: Painter, hours: int, sample_s: int, full: bool, base_rate: float, agents: int = 1000
) -> None:
    rate = 1000
    per_min = 60 if full else sample_s
    print(
        f"\n3. {hours} h at {rate:,} ev/s through the reducer ({agents:,} agents; "
        + (
            "every event fed"
            if full
            else f"of each simulated minute the first {per_min} s fed in full, then event"
            f" time and the clock jump to the next minute: {per_min * rate * 60 * hours:,}"
            f" of {rate * 3600 * hours:,} events"
        )
        + ")"
    )
    print(
        f"   {'hour':>4} {'events fed':>11} {'apply ev/s':>11} {'vs base':>7} {'state()':>9}"
        f" {'frame':>8} {'state bytes':>12} {'RSS':>9} {'window ev':>10}"
    )
    t_start = NOW - hours * 3600.0
    clock = [t_start]
    red = reducer(clock)
    feeder = Feeder(red, clock)
    size: dict[int, int] = {}
    st_ms: dict[int, float] = {}
    sec_no = 0
    for h in range(hours):
        f_cpu, f_n = feeder.cpu, feeder.n
        for m in range(60):
            t_min = t_start + h * 3600.0 + m * 60.0
            for s in range(per_min):
                t = t_min + s
                raw = day_second(sec_no, t, agents, rate)
                sec_no += 1
                # the clock follows event time: the second's events, then its end
                half = len(raw) // 2
                feeder.feed(raw[:half], clock_to=t + 0.5)
                feeder.feed(raw[half:], clock_to=t + 1.0)
            # the jump: the rest of the minute passes without events
            clock[0] = t_min + 60.0
        apply_rate = (feeder.n - f_n) / (feeder.cpu - f_cpu)
        n_fed = feeder.n
        states, t_state, _ = frame_states(red, clock, feeder, agents)
        st = states[-1]
        fr = await p.frames(states)
        size[h + 1] = deep_size(red)
        st_ms[h + 1] = t_state
        print(
            f"   {h + 1:>4} {n_fed:>11,} {apply_rate:>11,.0f} {apply_rate / base_rate:>6.2f}x"
            f" {t_state:>6.2f} ms {fr:>5.1f} ms {mb(size[h + 1]):>12} {mb(rss()):>9}"
            f" {st.totals.events:>10,}",
            flush=True,
        )
    check(feeder.n > 0, f"day phase applied {feeder.n:,} events")
    if hours >= 8:
        # bounded = it stops growing: the finished-task ids reach their registry-wide cap
        # (MAX_FINISHED) late in a sampled day, the windowed parts are full from hour 1
        q = hours * 3 // 4
        check(
            size[hours] <= 1.1 * size[q],
            f"state bytes at hour {hours} ({mb(size[hours])}) <= 1.1x of hour {q} ({mb(size[q])})",
        )
        check(
            st_ms[hours] <= 2 * st_ms[2] + 0.5,
            f"state() at hour {hours} ({st_ms[hours]:.2f} ms) <= 2x of hour 2 ({st_ms[2]:.2f} ms)",
        )


async def run(a: argparse.Namespace) -> None:
    print(
        f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f};"
        f" batches of {BATCH}; RSS at start {mb(rss())}"
    )
    t0 = time.monotonic()
    base = baseline()
    async with Painter() as p:
        # baseline frame: 100 agents
        print(f"baseline: decode + apply_batch, 50 agents, small key pools: {base:,.0f} ev/s")
        if a.only in (None, "agents"):
            await phase_agents(p, a.agents, base)
        if a.only in (None, "keys"):
            await phase_keys(p, a.keys, base)
        if a.only in (None, "day"):
            await phase_day(p, a.hours, a.sample_s, a.full, base, a.day_agents)
    peak = peak_rss()
    print(f"\npeak RSS of the process: {mb(peak)}; run took {time.monotonic() - t0:.0f} s")
    check(peak <= RSS_BOUND, f"peak RSS {mb(peak)} <= 300 MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--sample-s", type=int, default=1, help="seconds fed of each minute")
    ap.add_argument("--full", action="store_true", help="feed all 86.4M events (no jumps)")
    ap.add_argument("--day-agents", type=int, default=1000, help="agents of the 24 h phase")
    ap.add_argument("--only", choices=["agents", "keys", "day"])
    a = ap.parse_args()
    if not 1 <= a.sample_s <= 60:
        ap.error("--sample-s must be 1..60")
    try:
        asyncio.run(run(a))
    except BenchFailed as exc:
        sys.exit(f"bench_scale: FAILED: {exc}")
    if FAILURES:
        sys.exit("bench_scale: FAILED: " + "; ".join(FAILURES))


if __name__ == "__main__":
    main()
