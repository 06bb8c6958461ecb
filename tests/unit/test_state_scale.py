"""Issue 14 (scale): per-frame cost with many agents (bench/bench_scale.py measures it).

``state()`` used to rebuild every agent's view whenever the window's edge moved (every
10 s) or the minute turned, and read every agent's status and load on every frame: with
10,000 agents a few ms of views per frame and a spike every 10 s. A view now depends on
its own agent's changes only; these tests pin that unchanged agents keep their views and
that the changes that do matter (a bucket of the agent leaving the window, the minute
turning under its sparkline) still show. ``trim_state`` orders only the agents that can
reach the table's first rows, giving the same rows as ordering all of them.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from auren_core.events import Event, make_event
from auren_core.state import AgentView, Reducer
from auren_tui.agent_order import SORT_KEYS, first_agents, order_agents

T0 = 1_800_000_000.0  # divisible by 60 and by the 10 s bucket


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ev(type: str, payload: dict[str, Any], agent: str, ts: float) -> Event:
    return make_event(type, payload, agent=agent, ts=ts)


def llm(agent: str, ts: float, inp: int, cost: float | None) -> Event:
    payload = {"model": "gpt-4o-mini", "input_tokens": inp, "output_tokens": 1, "cost_usd": cost}
    return ev("llm_call", payload, agent, ts)


def old_agents(r: Reducer, n: int) -> None:
    """``n`` agents first seen over an hour ago (their $/hour span is the whole window),
    active 100 s ago, without costs (no sparkline)."""
    batch = []
    for i in range(n):
        batch.append(ev("agent_started", {}, f"a{i}", T0 - 3700))
        batch.append(ev("tool_used", {"tool": "search"}, f"a{i}", T0 - 100))
    r.apply_batch(batch)


def test_unchanged_agents_keep_their_views_when_the_window_moves() -> None:
    clock = Clock()
    r = Reducer(clock=clock)
    old_agents(r, 200)
    first = r.state().agents
    assert len(first) == 200
    clock.now = T0 + 25  # the window's edge moves 2-3 buckets; same minute
    again = r.state().agents
    assert again == first
    assert all(a is b for a, b in zip(again, first, strict=True))  # not rebuilt
    # one agent's event: its view alone is new
    r.apply(llm("a7", T0 + 20, 500, None))
    third = r.state().agents
    assert third[0].id == "a7" and third[0].input_tokens == 500
    assert [a.id for a in third if all(a is not b for b in again)] == ["a7"]


def test_a_bucket_leaving_the_window_updates_its_agent() -> None:
    clock = Clock()
    r = Reducer(clock=clock)
    old_agents(r, 3)
    r.apply(llm("a1", T0 - 3590, 1000, None))  # in the window now, out of it in 20 s
    before = {a.id: a for a in r.state().agents}
    assert before["a1"].input_tokens == 1000 and before["a1"].llm_calls == 1
    clock.now = T0 + 20
    after = {a.id: a for a in r.state().agents}
    assert after["a1"].input_tokens == 0 and after["a1"].llm_calls == 0
    assert after["a0"] is before["a0"] and after["a2"] is before["a2"]


def test_the_minute_turning_moves_a_sparkline() -> None:
    clock = Clock(T0 + 5)
    r = Reducer(clock=clock)
    old_agents(r, 2)
    r.apply(llm("a1", T0 - 30, 10, 0.01))  # the minute before T0's
    before = {a.id: a for a in r.state().agents}
    assert before["a1"].cost_per_minute[-2:] == (0.01, 0.0)
    clock.now = T0 + 65  # the next minute
    after = {a.id: a for a in r.state().agents}
    assert after["a1"].cost_per_minute[-3:] == (0.01, 0.0, 0.0)
    assert after["a0"] is before["a0"]  # no sparkline: nothing to move


def test_first_agents_are_the_head_of_the_whole_order() -> None:
    rnd = random.Random(14)
    statuses = ["running", "idle", "failed", "waiting_human"]
    for trial in range(30):
        n = rnd.choice([3, 50, 400])
        agents = [
            AgentView(
                id=f"agent-{rnd.randint(0, 10**6)}-{i}",
                role=rnd.choice(["Coach", "coach", "Nutritionist", "", "Zed"]),
                status=rnd.choice(statuses),  # type: ignore[arg-type]
                last_activity=T0 - rnd.choice([0, 1, 1, 5, 30]),
                current_load=rnd.choice([0, 0, 1, 3]),
                cost_usd=rnd.choice([0.0, 0.0, 0.1, 0.25, rnd.random()]),
                usd_per_hour=rnd.choice([0.0, 1.5, rnd.random()]),
                input_tokens=rnd.choice([0, 100, rnd.randint(0, 10**6)]),
                output_tokens=rnd.choice([0, 10, 100]),
            )
            for i in range(n)
        ]
        for key, _ in SORT_KEYS:
            for reverse in (False, True):
                for limit in (1, 7, 100):
                    want = [a.id for a in order_agents(agents, key, reverse)[:limit]]
                    got = [a.id for a in first_agents(agents, key, reverse, limit)]
                    assert got == want, (trial, key, reverse, limit)


def test_an_idle_agent_gives_its_tables_back() -> None:
    """A dict keeps its table when emptied: an agent that once used 60 tools and partners
    held kilobytes of empty tables after its window had passed, and one whose finished-task
    ids were forgotten (the registry-wide bound) a 256-entry table; 10,000 of them held
    ~150 MB for nothing (bench_scale, worst case per agent)."""
    clock = Clock()
    r = Reducer(clock=clock)
    r.registry.max_finished = 100
    batch = []
    for k in range(60):
        ts = T0 - 100 + k
        batch.append(ev("tool_used", {"tool": f"tool-{k}"}, "busy", ts))
        batch.append(ev("collaboration", {"to_agent": f"peer-{k}", "kind": "ask"}, "busy", ts))
        batch.append(ev("task_started", {"task_id": f"t{k}"}, "busy", ts))
        batch.append(ev("task_completed", {"task_id": f"t{k}"}, "busy", ts))
    r.apply_batch(batch)
    acc = r._accs["busy"]
    assert len(acc.tools.tot) == 60 and len(acc.partners.tot) == 60
    # others finish their tasks: the registry forgets busy's ids, oldest first
    r.apply_batch(
        [ev("task_completed", {"task_id": f"o{k}"}, f"other-{k}", T0 - 1) for k in range(100)]
    )
    rec = r.registry.record("busy")
    assert rec is not None and not rec.finished
    empty = sys.getsizeof({})
    assert sys.getsizeof(rec.finished) == empty
    clock.now = T0 + 7200  # the window has passed
    r.state()
    assert not acc.tools.tot and not acc.partners.tot
    assert sys.getsizeof(acc.tools.tot) == empty and sys.getsizeof(acc.partners.tot) == empty
    assert sys.getsizeof(acc.tools.buckets) == empty
