"""The pure reducer: constructed event sequences with known answers, no servers."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auren_core.events import EVENT_TYPES, Event, Malformed, decode, encode, make_event
from auren_core.state import DashboardState, Reducer
from auren_core.state.window import BUCKET_S

T0 = 1_800_000_000.0  # a round "now" (divisible by 60 and by BUCKET_S)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ev(
    type: str,
    payload: dict[str, Any] | None = None,
    *,
    agent: str | None = None,
    run: str | None = None,
    ts: float,
) -> Event:
    return make_event(type, payload or {}, agent=agent, run=run, ts=ts)


def llm(
    agent: str, ts: float, inp: int, out: int, cost: float | None, *, run: str | None = None
) -> Event:
    return ev(
        "llm_call",
        {"model": "gpt-4o-mini", "input_tokens": inp, "output_tokens": out, "cost_usd": cost},
        agent=agent,
        run=run,
        ts=ts,
    )


def tier(ts: float, served: str, lat: dict[str, float], **extra: Any) -> Event:
    agent = extra.pop("agent", "neuro")
    payload = {"tier_accessed": served, "latency_by_tier": lat, **extra}
    return ev("memory_tier_access", payload, agent=agent, ts=ts)


def reducer(clock: Clock | None = None, **kw: Any) -> tuple[Reducer, Clock]:
    c = clock or Clock()
    return Reducer(clock=c, **kw), c


# --------------------------------------------------------------------------- totals
def test_tokens_and_costs_with_unknown_price_counted_separately() -> None:
    r, _ = reducer(tool_costs={"web_search": 0.005})
    r.apply_batch(
        [
            llm("neuro", T0 - 30, 1000, 200, 0.0021),
            llm("neuro", T0 - 20, 500, 100, None),  # unknown price: never counted as 0
            llm("sleep", T0 - 10, 300, 50, 0.0009),
            ev("llm_call", {"model": "m", "cached_tokens": 40, "ok": False}, agent="sleep", ts=T0),
            ev("tool_used", {"tool": "web_search"}, agent="neuro", ts=T0 - 5),  # configured
            ev("tool_used", {"tool": "calc", "cost_usd": 0.01}, agent="neuro", ts=T0 - 4),
            ev("tool_used", {"tool": "calc", "ok": False}, agent="sleep", ts=T0 - 3),
        ]
    )
    st = r.state()
    t = st.totals
    assert t.events == 7
    assert t.llm_calls == 4
    assert (t.input_tokens, t.output_tokens, t.cached_tokens) == (1800, 350, 40)
    assert t.unpriced_llm_calls == 2  # the one with cost None and the one without cost_usd
    assert (t.unpriced_input_tokens, t.unpriced_output_tokens) == (500, 100)
    assert t.llm_cost_usd == pytest.approx(0.0030)
    assert t.tool_calls == 3 and t.tool_errors == 1 and t.llm_errors == 1
    assert t.tool_cost_usd == pytest.approx(0.015)
    assert t.cost_usd == pytest.approx(0.0030 + 0.015)  # LLM + tools
    neuro = st.agent("neuro")
    sleep = st.agent("sleep")
    assert neuro is not None and sleep is not None
    assert (neuro.input_tokens, neuro.output_tokens, neuro.llm_calls) == (1500, 300, 2)
    assert neuro.unpriced_llm_calls == 1
    assert neuro.cost_usd == pytest.approx(0.0021 + 0.015)
    assert (neuro.tool_calls, sleep.cached_tokens, sleep.llm_calls) == (2, 40, 2)
    assert dict(neuro.tools_used) == {"web_search": 1, "calc": 1}
    assert sleep.cost_usd == pytest.approx(0.0009)
    d = st.to_dict()["totals"]
    assert d["cost_usd"] == pytest.approx(0.018) and d["unpriced_llm_calls"] == 2


def test_usd_per_hour_over_the_window_and_young_agents() -> None:
    r, _ = reducer(window_s=3600)
    r.apply_batch(
        [
            ev("agent_started", agent="old", ts=T0 - 3590),
            llm("old", T0 - 100, 10, 10, 0.5),
            llm("young", T0 - 200, 10, 10, 0.1),
        ]
    )
    st = r.state()
    old, young = st.agent("old"), st.agent("young")
    assert old is not None and young is not None
    assert old.usd_per_hour == pytest.approx(0.5 * 3600 / 3590)  # measured over its 3590 s
    assert young.usd_per_hour == pytest.approx(0.1 * 3600 / 200)


# --------------------------------------------------------------------------- windows
def test_window_expiry_with_frozen_clock() -> None:
    r, clock = reducer(window_s=600, active_window_s=300)
    t = T0 - 100
    r.apply_batch([llm("neuro", t, 100, 10, 0.01), ev("tool_used", {"tool": "x"}, ts=t)])
    r.apply_batch([llm("neuro", T0, 1, 1, 0.001)])
    assert r.state().totals.llm_calls == 2
    # just inside the window: the bucket of t ends after now - window
    clock.now = t + 600 + BUCKET_S - 1
    st = r.state()
    assert st.totals.input_tokens == 101 and st.totals.tool_calls == 1
    # once the whole bucket is older than the window, it is gone everywhere
    clock.now = t + 600 + BUCKET_S
    st = r.state()
    assert st.totals.input_tokens == 1 and st.totals.tool_calls == 0
    assert st.totals.cost_usd == pytest.approx(0.001)
    assert st.totals.events == 1
    clock.now = T0 + 600 + BUCKET_S
    st = r.state()
    assert st.totals.events == 0 and st.totals.cost_usd == 0.0
    assert st.agents == ()  # and no agent is active any more
    # a late event older than the window counts in health, not in the window
    r.apply_batch([llm("neuro", T0 - 5000, 7, 7, 1.0)])
    st = r.state()
    assert st.totals.events == 0 and st.health.out_of_window == 1
    assert st.health.events_total == 4


def test_active_agent_window() -> None:
    r, clock = reducer(active_window_s=300)
    r.apply_batch(
        [
            ev("agent_started", agent="a", ts=T0 - 100),
            ev("agent_started", agent="b", ts=T0 - 400),
            ev("agent_started", agent="c", ts=T0 - 299),
        ]
    )
    assert [a.id for a in r.state().agents] == ["a", "c"]  # most recent first
    assert [a.id for a in r.registry.active(300, now=T0)] == ["a", "c"]
    assert [a.id for a in r.registry.active(500, now=T0)] == ["a", "c", "b"]
    clock.now = T0 + 2
    assert [a.id for a in r.state().agents] == ["a"]


# --------------------------------------------------------------------------- load and status
def test_load_in_flight_failed_status_and_out_of_order_ends() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            ev("task_started", {"task_id": "t1"}, agent="a", ts=T0 - 50),
            ev("agent_started", {"task_id": "t1"}, agent="a", ts=T0 - 50),  # same work
            ev("task_started", {"task_id": "t2"}, agent="a", ts=T0 - 49),
            ev("agent_started", {}, agent="a", ts=T0 - 48),  # execution without task id
        ]
    )
    a = r.state().agent("a")
    assert a is not None and a.current_load == 3 and a.status == "running"
    r.apply_batch(
        [
            ev("agent_completed", {"task_id": "t1"}, agent="a", ts=T0 - 40),
            ev("task_completed", {"task_id": "t1"}, agent="a", ts=T0 - 40),
            ev("agent_completed", {}, agent="a", ts=T0 - 39),
        ]
    )
    a = r.state().agent("a")
    assert a is not None and a.current_load == 1 and a.status == "running"
    # the end of t3 arrives before its start (thread-pool delivery order)
    r.apply_batch(
        [
            ev("task_completed", {"task_id": "t3"}, agent="a", ts=T0 - 30),
            ev("task_started", {"task_id": "t3"}, agent="a", ts=T0 - 35),
        ]
    )
    a = r.state().agent("a")
    assert a is not None and a.current_load == 1
    r.apply(ev("task_failed", {"task_id": "t2", "error": "boom"}, agent="a", ts=T0 - 20))
    a = r.state().agent("a")
    assert a is not None and a.status == "failed" and a.current_load == 0
    assert a.last_error == "boom"
    # an older start delivered late does not clear the failure
    r.apply(ev("agent_started", {"task_id": "t0"}, agent="a", ts=T0 - 60))
    a = r.state().agent("a")
    assert a is not None and a.status == "failed"
    r.apply(ev("task_started", {"task_id": "t9"}, agent="a", ts=T0 - 10))
    a = r.state().agent("a")
    assert a is not None and a.status == "running"


def test_capabilities_from_agent_registered() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            ev(
                "agent_registered",
                {
                    "role": "Neuroscientist",
                    "goal": "explain HRV",
                    "tools": ["pubmed", "calc"],
                    "model": "gpt-4o-mini",
                    "capabilities": ["hrv", "sleep"],
                },
                agent="neuro",
                ts=T0 - 5,
            ),
            ev(
                "agent_registered",
                {"role": "Coach", "tools": ["plan"], "allow_delegation": True},
                agent="coach",
                ts=T0 - 5,
            ),
        ]
    )
    st = r.state()
    n, c = st.agent("neuro"), st.agent("coach")
    assert n is not None and c is not None
    assert (n.role, n.capabilities, n.tools, n.model) == (
        "Neuroscientist",
        ("hrv", "sleep"),
        ("pubmed", "calc"),
        "gpt-4o-mini",
    )
    assert c.capabilities == ("plan", "delegation")  # derived when none given
    assert (n.goal, n.allow_delegation, c.allow_delegation) == ("explain HRV", False, True)
    assert n.first_seen == n.last_activity == T0 - 5 and (n.llm_calls, n.tool_calls) == (0, 0)
    assert (n.status, n.current_load, n.last_error, n.cached_tokens) == ("idle", 0, None, 0)
    assert st.to_dict()["agents"][0]["capabilities"] in (["hrv", "sleep"], ["plan", "delegation"])


# --------------------------------------------------------------------------- memory tiers
def test_tier_hit_rates_fall_through_and_gaps() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            tier(T0 - 9, "redis_immediate", {"redis": 1.0}, query="hrv"),
            tier(T0 - 8, "postgresql_structured", {"redis": 2.0, "postgresql": 10.0}),
            tier(
                T0 - 7,
                "chromadb_semantic",
                {"redis": 1.0, "postgresql": 10.0, "chromadb": 40.0},
            ),
            tier(
                T0 - 6,
                "miss",
                {"redis": 1.0, "postgresql": 10.0, "chromadb": 50.0},
                query="melatonin dose",
                agent="sleep",
            ),
            tier(
                T0 - 5,
                "miss",
                {"redis": 1.0},
                query="melatonin dose",
                errors={"postgresql": "down"},
            ),
        ]
    )
    ti = r.state().tiers
    assert (ti.queries, ti.misses) == (5, 2) and ti.miss_rate == pytest.approx(0.4)
    assert (ti.redis.tried, ti.redis.hits) == (5, 1)
    assert ti.redis.hit_rate == pytest.approx(0.2) and ti.redis.fall_through_rate == 0.8
    assert (ti.postgresql.tried, ti.postgresql.hits, ti.postgresql.errors) == (3, 1, 1)
    assert ti.postgresql.fall_through_rate == pytest.approx(2 / 3)
    assert (ti.chromadb.tried, ti.chromadb.hits) == (2, 1)
    assert ti.chromadb.fall_through_rate == pytest.approx(0.5)
    assert ti.chromadb.share == pytest.approx(0.2)
    assert ti.redis.mean_ms == pytest.approx(6.0 / 5)
    assert ti.chromadb.mean_ms == pytest.approx(45.0)
    assert [(g.query, g.count, g.agents) for g in ti.gaps] == [
        ("melatonin dose", 2, ("neuro", "sleep"))
    ]
    assert ti.cost_note  # no event carried a price: said so, costs are 0
    assert ti.redis.cost_usd == 0.0
    # HTTP tier-stats (DESIGN.md): tier_hit_rates = share of all lookups each tier served,
    # local_hit_rates = hits / lookups that reached the tier
    stats = r.state().tier_stats()
    assert stats["tier_hit_rates"] == {"redis": 0.2, "postgresql": 0.2, "chromadb": 0.2}
    assert stats["local_hit_rates"] == {"redis": 0.2, "postgresql": 0.333333, "chromadb": 0.5}


def test_tier_percentiles_from_histogram() -> None:
    r, _ = reducer()
    # redis latencies 1..100 ms, postgresql 10x that
    r.apply_batch(
        [
            tier(T0 - 1, "postgresql_structured", {"redis": float(i), "postgresql": 10.0 * i})
            for i in range(1, 101)
        ]
    )
    ti = r.state().tiers
    assert ti.redis.p50_ms == pytest.approx(50.0, rel=0.05)
    assert ti.redis.p95_ms == pytest.approx(95.0, rel=0.05)
    assert ti.postgresql.p50_ms == pytest.approx(500.0, rel=0.05)
    assert ti.postgresql.p95_ms == pytest.approx(950.0, rel=0.05)
    assert ti.chromadb.p50_ms is None and ti.chromadb.tried == 0
    stats = r.state().tier_stats()
    assert set(stats) >= {"tier_hit_rates", "average_latencies_ms", "cost_by_tier"}
    assert stats["tier_hit_rates"] == {"redis": 0.0, "postgresql": 1.0, "chromadb": 0.0}
    assert stats["average_latencies_ms"]["redis"] == pytest.approx(50.5)


def test_tier_costs_from_breakdown_or_total() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            tier(
                T0 - 3,
                "postgresql_structured",
                {"redis": 1.0, "postgresql": 3.0},
                cost_by_tier={"redis": 0.0001, "postgresql": 0.001},
                cost_usd=0.0011,
            ),
            tier(T0 - 2, "chromadb_semantic", {"redis": 1.0, "chromadb": 9.0}, cost_usd=0.002),
            tier(T0 - 1, "miss", {"redis": 1.0, "postgresql": 2.0}, cost_usd=0.0005),
        ]
    )
    st = r.state()
    costs = st.tier_stats()["cost_by_tier"]
    assert costs["redis"] == pytest.approx(0.0001)
    assert costs["postgresql"] == pytest.approx(0.0015)  # the miss is charged to the deepest
    assert costs["chromadb"] == pytest.approx(0.002)
    assert st.tiers.cost_note == ""
    # memory costs are part of cost_usd (auren_core.rules: LLM + tools + memory)
    t = st.totals
    assert t.memory_cost_usd == pytest.approx(0.0036) and t.llm_cost_usd == 0.0
    assert t.cost_usd == pytest.approx(t.llm_cost_usd + t.tool_cost_usd + t.memory_cost_usd)


# --------------------------------------------------------------------------- collaboration
def test_collaboration_counts_and_collaborators() -> None:
    r, _ = reducer()
    evs = [
        ev("collaboration", {"to_agent": "B", "kind": "delegate"}, agent="A", ts=T0 - i)
        for i in range(3)
    ]
    evs += [ev("collaboration", {"to_agent": "B", "kind": "ask"}, agent="A", ts=T0 - 5)]
    evs += [
        ev("collaboration", {"to_agent": "C", "kind": "ask"}, agent="B", ts=T0 - i)
        for i in range(2)
    ]
    evs += [ev("agent_started", agent="C", ts=T0)]
    r.apply_batch(evs)
    st = r.state()
    got = [(e.from_agent, e.to_agent, e.kind, e.count) for e in st.collaboration]
    assert got == [("A", "B", "delegate", 3), ("B", "C", "ask", 2), ("A", "B", "ask", 1)]
    assert st.to_dict()["collaboration"][0] == {
        "from": "A",
        "to": "B",
        "kind": "delegate",
        "count": 3,
    }
    a, b = st.agent("A"), st.agent("B")
    assert a is not None and b is not None
    assert a.collaborators == ("B",) and b.collaborators == ("A", "C")


# --------------------------------------------------------------------------- economics
@pytest.mark.parametrize(
    ("used", "status"), [(0.5, "ok"), (0.85, "warning"), (1.05, "alert"), (3.0, "alert")]
)
def test_budget_thresholds(used: float, status: str) -> None:
    budget = 2.0
    r, _ = reducer(budget_usd_per_hour=budget)
    span = 3590.0
    cost = used * budget * span / 3600.0
    r.apply_batch([ev("agent_started", agent="a", ts=T0 - span), llm("a", T0 - 1, 1, 1, cost)])
    c = r.state().costs
    assert c.burn_usd_per_hour == pytest.approx(used * budget)
    assert c.budget_used == pytest.approx(used)
    assert c.budget_status == status
    assert c.projected_day_usd == pytest.approx(used * budget * 24)
    assert c.projected_month_usd == pytest.approx(used * budget * 24 * 30)


def test_budget_unset_and_burn_with_short_history() -> None:
    r, _ = reducer()
    r.apply_batch([llm("a", T0 - 600, 1, 1, 0.1), llm("a", T0 - 1, 1, 1, 0.2)])
    c = r.state().costs
    assert c.budget_status == "unset" and c.budget_used is None
    assert c.span_s == 600.0
    assert c.burn_usd_per_hour == pytest.approx(0.3 * 6)


def test_cost_per_run_and_sparklines() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            ev("crew_started", run="r1", ts=T0 - 200),
            llm("a", T0 - 190, 10, 5, 0.1, run="r1"),
            llm("b", T0 - 130, 10, 5, 0.2, run="r1"),
            ev("crew_completed", {"ok": True}, run="r1", ts=T0 - 120),
            ev("crew_started", run="r2", ts=T0 - 100),
            llm("a", T0 - 30, 10, 5, 0.3, run="r2"),
            llm("a", T0 - 20, 10, 5, None, run="r2"),
            ev("crew_completed", {"ok": True}, run="r2", ts=T0 - 10),
            ev("crew_started", run="r3", ts=T0 - 5),
            llm("b", T0 - 4, 10, 5, 1.0, run="r3"),  # still running: not in the mean
        ]
    )
    c = r.state().costs
    assert c.cost_per_run_usd == pytest.approx(0.3)
    runs = {x.run: x for x in c.runs}
    assert runs["r1"].cost_usd == pytest.approx(0.3) and runs["r1"].status == "completed"
    assert runs["r2"].unpriced_llm_calls == 1 and runs["r2"].llm_calls == 2
    assert runs["r3"].status == "running" and runs["r3"].ended is None
    a = r.state().agent("a")
    assert a is not None and len(a.cost_per_minute) == 60
    # T0 is a minute boundary: T0-30 and T0-20 fall in the last full minute, T0-190 three back
    assert a.cost_per_minute[-1] == 0.0
    assert a.cost_per_minute[-2] == pytest.approx(0.3)
    assert a.cost_per_minute[-5] == pytest.approx(0.1)
    assert sum(c.cost_per_minute) == pytest.approx(1.6)


# --------------------------------------------------------------------------- knowledge, hypotheses
def test_knowledge_heatmap_and_gaps() -> None:
    r, _ = reducer()
    evs = []
    for agent, item, n in [("a", "doc1", 3), ("b", "doc1", 1), ("b", "doc2", 2), ("c", "doc3", 1)]:
        evs += [ev("knowledge_access", {"item": item}, agent=agent, ts=T0 - 1)] * n
    evs += [ev("knowledge_access", {"item": "q?", "hit": False}, agent="a", ts=T0 - 1)] * 2
    evs += [
        ev(
            "knowledge_access",
            {"item": "crew-knowledge", "hit": False, "query": "HRV after alcohol?"},
            agent="b",
            ts=T0 - 1,
        )
    ]
    r.apply_batch(evs)
    k = r.state().knowledge
    assert k.items == ("doc1", "doc2", "doc3")
    assert k.agents == ("a", "b", "c")  # a and b tie at 3: first seen first
    cell = {(i, a): k.counts[x][y] for x, i in enumerate(k.items) for y, a in enumerate(k.agents)}
    assert cell[("doc1", "a")] == 3 and cell[("doc1", "b")] == 1 and cell[("doc2", "a")] == 0
    assert k.item_totals == (4, 2, 1)
    assert [(g.query, g.count, g.agents) for g in k.gaps] == [
        ("q?", 2, ("a",)),
        ("HRV after alcohol?", 1, ("b",)),
    ]
    assert k.accesses == 10 and k.hit_rate == pytest.approx(7 / 10)


def test_hypothesis_latest_status_by_event_time() -> None:
    r, _ = reducer()
    h = "h-sleep-hrv"
    r.apply_batch(
        [
            ev(
                "hypothesis",
                {"hypothesis_id": h, "status": "formed", "confidence": 0.4},
                agent="neuro",
                ts=T0 - 30,
            ),
            ev(
                "hypothesis",
                {"hypothesis_id": h, "status": "validated", "confidence": 0.9},
                agent="neuro",
                ts=T0 - 10,
            ),
            # delivered late: older than the validation
            ev(
                "hypothesis",
                {"hypothesis_id": h, "status": "updated", "confidence": 0.6},
                agent="neuro",
                ts=T0 - 20,
            ),
            ev(
                "hypothesis",
                {"hypothesis_id": "h2", "status": "rejected"},
                agent="sleep",
                ts=T0 - 5,
            ),
        ]
    )
    st = r.state()
    hyps = {x.id: x for x in st.hypotheses}
    assert hyps[h].status == "validated" and hyps[h].confidence == 0.9 and hyps[h].updates == 3
    assert hyps["h2"].status == "rejected"
    neuro = st.agent("neuro")
    assert neuro is not None and neuro.hypotheses == (h,)


# --------------------------------------------------------------------------- health
def test_malformed_unknown_and_publisher_drops_per_identity() -> None:
    r, _ = reducer()
    bad = [decode(b"{not json", "1-1"), decode(b'{"v":1}', "1-2"), Malformed("1-3", "no e")]
    stats = [
        ev(
            "publisher_stats",
            {"sent": 9, "dropped": 3, "queued": 0, "publisher": "h:1:a"},
            ts=T0 - 20,
        ),
        ev(
            "publisher_stats",
            {"sent": 20, "dropped": 5, "queued": 0, "publisher": "h:1:a"},
            ts=T0 - 10,
        ),
        # an older report from the same publisher, delivered late: ignored
        ev(
            "publisher_stats",
            {"sent": 5, "dropped": 1, "queued": 0, "publisher": "h:1:a"},
            ts=T0 - 30,
        ),
        ev(
            "publisher_stats",
            {"sent": 1, "dropped": 2, "queued": 0, "publisher": "h:2:a"},
            ts=T0 - 10,
        ),
    ]
    unknown = [ev("quantum_event", {"x": 1}, agent="a", ts=T0), ev("quantum_event", ts=T0)]
    r.apply_batch([*bad, *stats, *unknown], last_id="9-9", lag=42)
    r.set_connection("reconnecting", "Connection refused")
    h = r.state().health
    assert h.malformed == 3 and len(h.malformed_reasons) == 3
    assert h.malformed_reasons[-1] == "1-3: no e"
    assert h.unknown_types == 2 and h.unknown_type_names == (("quantum_event", 2),)
    assert h.publisher_dropped == 7 and h.publishers == 2
    assert (h.lag, h.last_id, h.connection) == (42, "9-9", "reconnecting")
    assert h.connection_detail == "Connection refused"
    log = r.state().log
    assert [e.malformed for e in log[:3]] == [True, True, True]
    d = r.state().to_dict()["health"]
    assert (d["malformed"], d["unknown_types"], d["publisher_dropped"], d["lag"]) == (3, 2, 7, 42)


def test_events_per_second_from_arrivals() -> None:
    from auren_core.state.agents import MIN_SPAN_S
    from auren_core.state.build import RATE_WINDOW_S

    r, clock = reducer()
    r.apply_batch([ev("agent_started", agent="a", ts=T0)] * 100)
    # one burst (a backfill, --once): the rate is over the events' times, never the count
    assert r.state().health.events_per_s == pytest.approx(100 / MIN_SPAN_S)
    clock.now = T0 + 2
    r.apply_batch([ev("agent_started", agent="a", ts=T0)] * 50)
    assert r.state().health.events_per_s == pytest.approx(150 / MIN_SPAN_S)
    # arrivals observed for RATE_WINDOW_S: the live arrival rate over that window
    clock.now = T0 + RATE_WINDOW_S + 3  # the bursts at T0 and T0 + 2 are out of it
    r.apply_batch([ev("agent_started", agent="a", ts=clock.now)] * 40)
    assert r.state().health.events_per_s == pytest.approx(40 / RATE_WINDOW_S)
    clock.now = T0 + 30
    assert r.state().health.events_per_s == 0.0


def test_bad_timestamps_and_payload_types_are_counted_not_fatal() -> None:
    r, _ = reducer()
    weird: list[Any] = [
        Event(id="1", ts=math.nan, type="llm_call", agent="a"),
        Event(id="2", ts=math.inf, type="llm_call"),
        Event(id="3", ts=T0, type="llm_call", agent="a", payload={"input_tokens": "lots"}),
        Event(id="4", ts=T0, type="tool_used", agent="a", payload={"tool": ["x"], "cost_usd": "1"}),
        Event(id="5", ts=T0, type="collaboration", agent="a", payload={"to_agent": {"x": 1}}),
        Event(id="6", ts=T0, type="memory_tier_access", payload={"latency_by_tier": [1, 2]}),
        Event(id="7", ts="soon", type="llm_call"),  # type: ignore[arg-type]
        Event(id="8", ts=T0, type="hypothesis", payload=[1, 2]),  # type: ignore[arg-type]
        "not an event",
    ]
    r.apply_batch(weird)
    st = r.state()
    assert st.health.events_total == len(weird)
    assert st.health.malformed == 5  # nan, inf, "soon", list payload, the string
    assert st.totals.llm_calls == 1 and st.totals.input_tokens == 0
    orjson.dumps(st.to_dict())


# --------------------------------------------------------------------------- log and snapshot
def test_event_log_is_bounded_newest_last_and_raw() -> None:
    r, _ = reducer(log_size=5)
    hostile = "[bold red]x\x1b]8;;http://e\x07\u202e"
    r.apply_batch([ev("tool_used", {"tool": f"t{i}"}, agent=hostile, ts=T0) for i in range(8)])
    log = r.state().log
    assert len(log) == 5
    assert [e.summary.split()[0] for e in log] == ["t3", "t4", "t5", "t6", "t7"]
    assert log[-1].agent == hostile  # raw: sanitising is the renderer's job


SNAPSHOT_KEYS = {
    "generated_at": None,
    "window_s": None,
    "totals": {"events", "llm_calls", "input_tokens", "output_tokens", "cost_usd", "tool_calls"},
    "agents": None,
    "tiers": {"redis", "postgresql", "chromadb", "misses"},
    "collaboration": None,
    "health": {"malformed", "unknown_types", "publisher_dropped", "lag"},
}
AGENT_KEYS = {
    "id",
    "role",
    "status",
    "last_activity",
    "current_load",
    "capabilities",
    "input_tokens",
    "output_tokens",
    "cost_usd",
}


def scenario() -> list[Event]:
    out = [
        ev("agent_registered", {"role": "Neuro", "tools": ["t"]}, agent="neuro", ts=T0 - 50),
        ev("crew_started", run="r", ts=T0 - 49),
        ev("task_started", {"task_id": "x"}, agent="neuro", run="r", ts=T0 - 48),
        llm("neuro", T0 - 47, 100, 10, 0.001, run="r"),
        tier(T0 - 46, "redis_immediate", {"redis": 0.7}),
        ev("collaboration", {"to_agent": "sleep", "kind": "ask"}, agent="neuro", ts=T0 - 45),
        ev("knowledge_access", {"item": "doc"}, agent="neuro", ts=T0 - 44),
        ev("hypothesis", {"hypothesis_id": "h", "status": "formed"}, agent="neuro", ts=T0 - 43),
    ]
    # through the real wire format, with stream ids
    return [decode(encode(e), f"{i + 1}-0") for i, e in enumerate(out)]  # type: ignore[misc]


def test_snapshot_has_design_keys_and_is_deterministic_json() -> None:
    a, _ = reducer(budget_usd_per_hour=1.0)
    b, _ = reducer(budget_usd_per_hour=1.0)
    a.apply_batch(scenario(), last_id="8-0")
    b.apply_batch(scenario(), last_id="8-0")
    d = a.state().to_dict()
    for key, sub in SNAPSHOT_KEYS.items():
        assert key in d
        if sub:
            assert sub <= set(d[key]), key
    for t in ("redis", "postgresql", "chromadb"):
        assert {"hits", "hit_rate", "p50_ms", "p95_ms"} <= set(d["tiers"][t])
    assert set(d["agents"][0]) >= AGENT_KEYS
    assert {"events_per_s", "connection", "last_id"} <= set(d["health"])
    assert {"burn_usd_per_hour", "budget_status", "cost_per_run_usd", "runs"} <= set(d["costs"])
    assert {"items", "agents", "counts", "gaps"} <= set(d["knowledge"])
    assert d["generated_at"] == T0 and d["health"]["last_id"] == "8-0"
    # event ids differ between the two runs' encodings only if make_event ran twice: compare
    # everything but the log ids
    da, db = a.state().to_dict(), b.state().to_dict()
    for x in (da, db):
        for e in x["log"]:
            e.pop("id")
    assert orjson.dumps(da) == orjson.dumps(db)
    assert orjson.dumps(a.state().to_dict()) == orjson.dumps(a.state().to_dict())


def test_state_is_frozen_and_independent_of_later_events() -> None:
    r, _ = reducer()
    r.apply_batch(scenario())
    st = r.state()
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.totals.events = 3  # type: ignore[misc]
    before = st.totals.events
    r.apply(llm("neuro", T0, 1, 1, 0.1))
    assert st.totals.events == before and r.state().totals.events == before + 1
    assert isinstance(st, DashboardState)


# --------------------------------------------------------------------------- property
_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
_json = st.recursive(
    _scalar,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3),
    max_leaves=8,
)
_tiers = st.sampled_from(
    [
        "redis",
        "postgresql",
        "chromadb",
        "redis_immediate",
        "postgresql_structured",
        "chromadb_semantic",
        "miss",
        "bogus",
    ]
)
_keys = st.sampled_from(
    [
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_usd",
        "ok",
        "tool",
        "to_agent",
        "kind",
        "hypothesis_id",
        "status",
        "confidence",
        "item",
        "hit",
        "publisher",
        "dropped",
        "task_id",
        "role",
        "tools",
        "capabilities",
        "allow_delegation",
        "query",
        "error",
        "reasoning_tokens",
        "flow",
        "flow_id",
        "flow_run",
        "method",
        "phase",
        "state",
        "message",
        "wait_ms",
        "duration_ms",
    ]
)
_payload = st.one_of(
    st.dictionaries(_keys | _text, _json, max_size=6),
    st.fixed_dictionaries(
        {
            "method": st.sampled_from(["plan", "review"]) | _json,
            "phase": st.sampled_from(["started", "completed", "failed", "paused"]) | _json,
            "state": st.sampled_from(["requested", "received"]) | _json,
            "flow": st.none() | st.just("F") | _json,
            "flow_run": st.sampled_from(["r1", "r2"]) | _json,
            "duration_ms": _json,
        }
    ),
    st.fixed_dictionaries(
        {
            "tier_accessed": _tiers,
            "latency_by_tier": st.dictionaries(_tiers, _json, max_size=4) | _json,
            "cost_by_tier": st.dictionaries(_tiers, _json, max_size=3) | _json,
            "cost_usd": _json,
            "errors": st.dictionaries(_tiers, _text, max_size=2) | _json,
            "query": _json,
        }
    ),
)
_near = st.floats(T0 - 8000, T0 + 100)
_ts = st.one_of(_near, _near, _near, _near, st.floats(allow_nan=True, allow_infinity=True))
_event = st.builds(
    lambda t, p, a, r, ts, i: Event(id=i, ts=ts, type=t, agent=a, run=r, payload=p),
    st.one_of(*[st.sampled_from(sorted(EVENT_TYPES))] * 4, _text),
    _payload,
    st.none() | st.sampled_from(["a", "b", "c"]) | _text,
    st.none() | st.sampled_from(["r1", "r2"]) | _text,
    _ts,
    _text,
)
_item = st.one_of(_event, _event, _event, st.builds(Malformed, _text, _text))


def _check_invariants(s: DashboardState) -> None:
    t = s.totals
    assert min(t.events, t.llm_calls, t.input_tokens, t.output_tokens, t.tool_calls) >= 0
    assert t.cost_usd >= 0 and t.unpriced_llm_calls <= t.llm_calls <= t.events
    for tv in s.tiers.by_name().values():
        assert 0 <= tv.hits <= tv.tried <= s.tiers.queries
        assert 0.0 <= tv.hit_rate <= 1.0 and 0.0 <= tv.fall_through_rate <= 1.0
        if tv.p50_ms is not None:
            assert tv.p95_ms is not None and tv.p50_ms <= tv.p95_ms
    assert 0 <= s.tiers.misses <= s.tiers.queries
    for a in s.agents:
        assert a.current_load >= 0 and a.cost_usd >= 0 and a.input_tokens >= 0
        assert a.status in ("running", "idle", "failed", "waiting_human")
        assert len(a.cost_per_minute) == 60
        assert (a.waiting_since is not None) == (a.status == "waiting_human")
    for f in s.flows:
        assert f.status in ("running", "waiting_human", "completed", "failed")
        assert f.steps_completed >= 0 and f.steps_failed >= 0 and f.steps_running >= 0
        assert f.duration_ms is None or f.duration_ms >= 0
        assert (f.waiting_since is not None) == (f.status == "waiting_human")
        assert (f.ended is None) == (f.status in ("running", "waiting_human"))
        assert f.ended is not None or f.last_activity >= s.generated_at - s.window_s
    assert len(s.flows) <= 70
    assert all(e.count > 0 for e in s.collaboration)
    assert len(s.log) <= 50 and s.health.malformed <= s.health.events_total
    assert s.costs.budget_status in ("ok", "warning", "alert")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(_item, max_size=12), max_size=6),
    nows=st.lists(st.floats(T0 - 100, T0 + 8000), min_size=1, max_size=4),
    window=st.sampled_from([60.0, 600.0, 3600.0]),
)
def test_arbitrary_event_streams_never_raise(
    batches: list[list[Any]], nows: list[float], window: float
) -> None:
    clock = Clock()
    r = Reducer(clock=clock, window_s=window, budget_usd_per_hour=1.0, log_size=50)
    total = 0
    for batch, now in zip(batches, nows * len(batches)):
        clock.now = now
        r.apply_batch(batch, last_id="1-1", lag=0)
        total += len(batch)
        snap = r.state()
        assert snap.health.events_total == total
        _check_invariants(snap)
        orjson.dumps(snap.to_dict())
        orjson.dumps(snap.tier_stats())
    s = r.state(now=T0 + 10_000_000)  # everything expired: the window is empty again
    assert s.totals.events == 0 and s.tiers.queries == 0 and s.collaboration == ()
    assert s.totals.cost_usd == 0.0 and s.knowledge.items == ()
    assert s.flows == ()


def test_log_tail_is_built_incrementally_and_stays_ordered() -> None:
    r, _ = reducer(log_size=5)
    r.apply_batch([ev("tool_used", {"tool": f"t{i}"}, ts=T0) for i in range(3)])
    first = r.state().log
    assert [e.summary.split()[0] for e in first] == ["t0", "t1", "t2"]
    r.apply_batch([ev("tool_used", {"tool": f"t{i}"}, ts=T0) for i in range(3, 7)])
    r.apply(Malformed("7-0", "truncated"))
    log = r.state().log
    assert [e.type for e in log] == ["tool_used"] * 4 + ["malformed"]
    assert [e.summary.split()[0] for e in log[:4]] == ["t3", "t4", "t5", "t6"]
    assert log[-1].malformed and log[-1].sid == "7-0" and log[-1].summary == "truncated"
    assert r.state().log is log  # nothing new: the same tuple, no rebuilding


def test_events_from_a_clock_running_ahead_stay_bounded() -> None:
    r, clock = reducer(window_s=600)
    r.apply_batch([llm("a", T0 + 86_400, 10, 1, 1.0)])  # a day ahead
    st = r.state()
    assert st.totals.cost_usd == 1.0
    # placed at most 5 minutes ahead, so it leaves the window like a recent event
    clock.now = T0 + 300 + 600 + BUCKET_S
    assert r.state().totals.cost_usd == 0.0 and r.state().totals.events == 0


def test_in_process_registration_shows_in_state() -> None:
    r, _ = reducer()

    class Tool:
        name = "pubmed"

    class Agent:
        role = "Neuroscientist"
        goal = "HRV"
        tools = [Tool()]
        allow_delegation = False
        llm = "gpt-4o-mini"

    r.registry.register_agent(Agent(), ts=T0 - 1)
    a = r.state().agent("Neuroscientist")
    assert a is not None and a.capabilities == ("pubmed",) and a.model == "gpt-4o-mini"
    assert a.status == "idle" and a.input_tokens == 0


# --------------------------------------------------------------------------- window structures
def test_window_structures_expire_exactly_and_stay_bounded() -> None:
    from auren_core.state.window import Expiry, KeyedCounts, LogHistogram, NestedCounts, Sums

    e = Expiry()
    sums = Sums(2, e)
    kc: KeyedCounts[str] = KeyedCounts(e, max_keys=2)
    nc = NestedCounts(e, max_rows=10, max_cols=10, max_cells=3)
    for b, key in [(1, "x"), (2, "y"), (3, "x"), (1000, "y")]:
        bk = sums.at(b)
        bk[0] += 1
        sums.tot[0] += 1
        kc.add(b, key)
    assert not kc.add(5, "z") and kc.overflow == 1  # key cap
    for row, col in [("i", "a"), ("i", "b"), ("j", "a"), ("j", "b"), ("k", "a")]:
        nc.add(1, row, col)
    assert nc.cells == 3 and nc.overflow == 2 and nc.tot == {"i": {"a": 1, "b": 1}, "j": {"a": 1}}
    e.advance(2)  # drops buckets 1 and 2
    assert sums.tot[0] == 2 and kc.tot == {"x": 1, "y": 1}
    assert nc.cells == 0 and nc.tot == {} and nc.row_tot == {}
    e.advance(10**6)  # a long jump: everything goes, by scanning, not by counting up
    assert sums.tot == [0.0, 0.0] and kc.tot == {} and not e.due
    assert kc.add(10**6 + 1, "z")  # room again once keys expired

    h = LogHistogram(e)
    assert h.quantiles((0.5,)) == (None,)
    for ms in [0.0, -1.0, float("nan"), 1e12]:  # odd values land in the end bins, no error
        h.add(10**6 + 1, ms)
    assert h.quantiles((0.5, 1.0))[1] == pytest.approx(LogHistogram.value_of(LogHistogram.MAX_BIN))


def test_sparkline_updates_incrementally_and_for_late_events() -> None:
    r, clock = reducer()
    clock.now = T0 + 30  # minute M = T0/60
    r.apply(llm("a", T0 + 1, 1, 1, 0.1))
    a = r.state().agent("a")
    assert a is not None and a.cost_per_minute[-1] == pytest.approx(0.1)
    r.apply(llm("a", T0 + 2, 1, 1, 0.2))  # same minute
    a = r.state().agent("a")
    assert a is not None and a.cost_per_minute[-1] == pytest.approx(0.3)
    r.apply(llm("a", T0 - 100, 1, 1, 0.05))  # late: two minutes back
    a = r.state().agent("a")
    assert a is not None and a.cost_per_minute[-3] == pytest.approx(0.05)
    assert a.cost_per_minute[-1] == pytest.approx(0.3)
    clock.now = T0 + 90  # the minute turns: the series shifts left
    a = r.state().agent("a")
    assert a is not None and a.cost_per_minute[-2] == pytest.approx(0.3)
    assert a.cost_per_minute[-1] == 0.0 and a.cost_per_minute[-4] == pytest.approx(0.05)
    assert sum(a.cost_per_minute) == pytest.approx(0.35) == r.state().totals.cost_usd


def test_failed_llm_call_without_usage_is_not_an_unknown_price() -> None:
    from auren_core.events import make_event
    from auren_core.state import Reducer

    now = 1_800_000_000.0
    r = Reducer(clock=lambda: now)
    failed = {
        "model": "gpt-4o-mini",
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": None,
        "cost_source": "unknown",
        "ok": False,
        "error": "upstream 503",
    }
    unknown = {
        "model": "mystery",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_usd": None,
        "cost_source": "unknown",
        "ok": True,
    }
    for payload in (failed, unknown):
        r.apply(make_event("llm_call", payload, agent="a", ts=now - 1))
    totals = r.state().to_dict()["totals"]
    assert totals["llm_calls"] == 2 and totals["unpriced_llm_calls"] == 1
    assert totals["llm_errors"] == 1


def test_clock_that_jumps_forward_after_construction_keeps_events() -> None:
    """A replay clock starts before the first event is known, then jumps to event time."""
    from auren_core.events import make_event
    from auren_core.state import Reducer

    now = [0.0]
    r = Reducer(clock=lambda: now[0])
    day_ago = 1_800_000_000.0 - 86_400
    now[0] = day_ago
    for i in range(10):
        r.apply(
            make_event("llm_call", {"model": "m", "input_tokens": 1}, agent="a", ts=day_ago - i)
        )
    r.apply_batch(
        [make_event("llm_call", {"model": "m", "input_tokens": 1}, agent="a", ts=day_ago)]
    )
    assert r.state().totals.llm_calls == 11


# --------------------------------------------------------------------------- flows
def flow(type: str, run: str | None, ts: float, **payload: Any) -> Event:
    agent = payload.pop("agent", None)
    return ev(type, payload, agent=agent, run=run, ts=ts)


def step(run: str, method: str, phase: str, ts: float, **payload: Any) -> Event:
    return flow("flow_step", run, ts, method=method, phase=phase, flow="Research", **payload)


def one_flow(r: Reducer, run: str = "f1") -> Any:
    got = [f for f in r.state().flows if f.run == run]
    assert len(got) == 1, [f.run for f in r.state().flows]
    return got[0]


def test_flow_start_steps_and_completion() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            flow("flow_started", "f1", T0 - 100, flow="Research", flow_id="st-1", inputs={}),
            step("f1", "plan", "started", T0 - 99),
            step("f1", "plan", "completed", T0 - 90, duration_ms=9000.0, ok=True),
            step("f1", "gather", "started", T0 - 89),
            step("f1", "draft", "started", T0 - 88),  # parallel: the newest is current
        ]
    )
    f = one_flow(r)
    assert (f.flow, f.flow_id, f.status) == ("Research", "st-1", "running")
    assert (f.current_step, f.step_started, f.steps_running) == ("draft", T0 - 88, 2)
    assert (f.steps_completed, f.steps_failed, f.last_step) == (1, 0, "plan")
    assert f.started == T0 - 100 and f.ended is None
    assert f.duration_ms == pytest.approx(100_000.0)  # runs on with the clock
    r.apply_batch(
        [
            step("f1", "draft", "completed", T0 - 50, duration_ms=38000.0),
            step("f1", "gather", "completed", T0 - 40),
        ]
    )
    f = one_flow(r)
    assert (f.current_step, f.steps_completed, f.last_step) == (None, 3, "gather")
    r.apply(flow("flow_completed", "f1", T0 - 30, flow="Research", duration_ms=69500.0, ok=True))
    f = one_flow(r)
    assert (f.status, f.ended, f.duration_ms, f.current_step) == (
        "completed",
        T0 - 30,
        69500.0,
        None,
    )
    assert f.steps_running == 0 and f.waiting_since is None
    run = next(x for x in r.state().costs.runs if x.run == "f1")
    assert (run.status, run.ended) == ("completed", T0 - 30)  # the run ends with its flow
    d = r.state().to_dict()["flows"][0]
    assert d["run"] == "f1" and d["status"] == "completed" and d["steps_completed"] == 3
    assert set(d) >= {
        "flow", "current_step", "step_started", "started", "last_activity", "ended",
        "duration_ms", "steps_failed", "waiting_since", "waiting_message", "human_waits",
    }  # fmt: skip


def test_flow_duration_without_payload_is_end_minus_start() -> None:
    r, _ = reducer()
    r.apply_batch(
        [flow("flow_started", "f1", T0 - 20, flow="F"), flow("flow_completed", "f1", T0 - 5)]
    )
    assert one_flow(r).duration_ms == pytest.approx(15_000.0)


def test_flow_pause_and_human_wait() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            flow("flow_started", "f1", T0 - 100, flow="Research"),
            step("f1", "plan", "started", T0 - 99),
            step("f1", "plan", "completed", T0 - 98),
            step("f1", "review", "started", T0 - 97),
            step("f1", "review", "paused", T0 - 96),
            flow(
                "human_input",
                "f1",
                T0 - 96,
                state="requested",
                method="review",
                message="Approve the draft?",
            ),
            step("f1", "side", "started", T0 - 95),  # newer, but the wait is what matters
        ]
    )
    f = one_flow(r)
    assert f.status == "waiting_human"
    assert (f.current_step, f.step_started) == ("review", T0 - 97)
    assert (f.waiting_since, f.waiting_message, f.human_waits) == (
        T0 - 96,
        "Approve the draft?",
        1,
    )  # the pause and the request are one wait
    r.apply(flow("human_input", "f1", T0 - 60, state="received", method="review", wait_ms=36000))
    f = one_flow(r)
    assert f.status == "running" and f.waiting_since is None
    assert f.current_step == "side"
    # a second pause of the same method, answered by the method's end
    r.apply_batch(
        [
            step("f1", "review", "paused", T0 - 50),
            step("f1", "review", "completed", T0 - 40),
        ]
    )
    f = one_flow(r)
    assert f.status == "running" and f.human_waits == 2 and f.current_step == "side"
    # a wait that names no method (flow-level input), closed by a reply naming none
    r.apply(flow("human_input", "f1", T0 - 30, state="requested", message="budget?"))
    assert one_flow(r).status == "waiting_human"
    assert one_flow(r).current_step == "side"  # no method waits: the running one
    r.apply(flow("human_input", "f1", T0 - 20, state="received"))
    assert one_flow(r).status == "running"


def test_flow_end_closes_waits_and_failures() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            flow("flow_started", "f1", T0 - 100, flow="Billing"),
            step("f1", "charge", "started", T0 - 99),
            step("f1", "charge", "failed", T0 - 98, error="card declined"),
            step("f1", "notify", "started", T0 - 97),
            step("f1", "notify", "completed", T0 - 96, ok=False),  # ok false: a failure
            step("f1", "review", "paused", T0 - 95),
            flow("flow_failed", "f1", T0 - 90, flow="Billing", ok=False, error="declined"),
        ]
    )
    f = one_flow(r)
    assert (f.status, f.error, f.steps_failed, f.steps_completed) == (
        "failed",
        "declined",
        2,
        0,
    )
    assert f.waiting_since is None and f.current_step is None and f.last_step == "notify"
    assert next(x for x in r.state().costs.runs if x.run == "f1").status == "failed"
    # flow_completed with ok=false is a failure too
    r.apply(flow("flow_completed", "f2", T0 - 10, flow="Other", ok=False))
    assert one_flow(r, "f2").status == "failed"


def test_flow_events_out_of_order() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            # the end of a step before its start: not left running
            step("f1", "plan", "completed", T0 - 90, duration_ms=5.0),
            step("f1", "plan", "started", T0 - 91),
            flow("flow_started", "f1", T0 - 100, flow="Research"),  # late start
            # a reply before its request: no open wait
            flow("human_input", "f1", T0 - 70, state="received", method="review"),
            flow("human_input", "f1", T0 - 80, state="requested", method="review"),
        ]
    )
    f = one_flow(r)
    assert (f.status, f.current_step, f.started, f.steps_completed) == (
        "running",
        None,
        T0 - 100,
        1,
    )
    assert f.human_waits == 1 and f.waiting_since is None
    # the end arrives before the last step's events: they do not re-open the flow
    r.apply_batch(
        [
            flow("flow_completed", "f1", T0 - 30, flow="Research"),
            step("f1", "write", "started", T0 - 60),
            step("f1", "write", "completed", T0 - 40),
            flow("flow_completed", "f1", T0 - 50, flow="Research"),  # an older duplicate end
        ]
    )
    f = one_flow(r)
    assert (f.status, f.ended, f.steps_completed, f.current_step) == (
        "completed",
        T0 - 30,
        2,
        None,
    )
    # a step that starts after the end: the flow was resumed
    r.apply(step("f1", "write", "started", T0 - 10))
    f = one_flow(r)
    assert (f.status, f.current_step, f.ended) == ("running", "write", None)


def test_flow_unknown_run_and_events_without_run() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            # no flow_started ever: the flow is known from its first event
            step("f9", "load", "started", T0 - 50),
            # without a run nothing can tell executions apart: not tracked
            Event(id="n1", ts=T0 - 40, type="flow_step", payload={"method": "m"}),
            flow("flow_started", None, T0 - 40, flow="Anon"),
            # an agent's wait in a crew run (not a flow): the agent waits, no flow appears
            flow("human_input", "crew-7", T0 - 30, state="requested", agent="writer"),
        ]
    )
    st = r.state()
    assert [f.run for f in st.flows] == ["f9"]
    f = st.flows[0]
    assert (f.flow, f.started, f.current_step, f.status) == ("Research", T0 - 50, "load", "running")
    w = st.agent("writer")
    assert w is not None and w.status == "waiting_human" and w.waiting_since == T0 - 30
    # a wait with no agent in an unknown run is a flow's (nobody else waits without one)
    r.apply(flow("human_input", "f10", T0 - 20, state="requested", flow="Intake"))
    f10 = one_flow(r, "f10")
    assert (f10.flow, f10.status, f10.current_step) == ("Intake", "waiting_human", None)


def test_flow_window_ordering_and_bounds() -> None:
    r, clock = reducer(window_s=600)
    r.apply_batch(
        [
            flow("flow_started", "old", T0 - 900, flow="Old"),
            flow("flow_completed", "old", T0 - 700),  # ended before the window
            flow("flow_started", "stale", T0 - 900, flow="Stale"),  # silent since
            flow("flow_started", "done", T0 - 300, flow="Done"),
            flow("flow_completed", "done", T0 - 200),
            flow("flow_started", "run1", T0 - 100, flow="A"),
            flow("flow_started", "run2", T0 - 50, flow="B"),
            flow("flow_started", "wait", T0 - 400, flow="C"),
            step("wait", "ask", "paused", T0 - 390),
        ]
    )
    st = r.state()
    # waiting first, then running (newest first), then ended in the window
    assert [f.run for f in st.flows] == ["wait", "run2", "run1", "done"]
    # a late end for an event older than the window still ends its flow
    r.apply(flow("flow_failed", "stale", T0 - 800))
    assert r._flows["stale"].status() == "failed"
    clock.now = T0 + 10_000
    assert r.state().flows == ()
    # bounded: thousands of runs never grow the tracked set past the cap
    r2, _ = reducer()
    r2.apply_batch([flow("flow_started", f"r{i}", T0 - 1, flow="F") for i in range(2000)])
    assert len(r2._flows) <= 500 and len(r2._flow_of) <= 500
    assert len(r2.state().flows) == 50


def test_flow_links_its_agents_and_crews_and_costs() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            flow("flow_started", "f1", T0 - 100, flow="Research"),
            step("f1", "quick_answer", "started", T0 - 99),
            ev("agent_started", {}, agent="solo", run="f1", ts=T0 - 98),  # Agent.kickoff()
            llm("solo", T0 - 97, 100, 10, 0.01, run="f1"),
            ev("crew_started", {"crew": "c", "flow_run": "f1"}, run="c1", ts=T0 - 90),
            llm("neuro", T0 - 80, 100, 10, 0.02, run="c1"),
            llm("neuro", T0 - 70, 100, 10, None, run="c1"),
            llm("other", T0 - 60, 100, 10, 0.5, run="elsewhere"),
        ]
    )
    f = one_flow(r)
    assert f.agents == ("solo", "neuro") and f.crews == ("c1",)
    assert f.cost_usd == pytest.approx(0.03) and f.llm_calls == 3
    assert f.unpriced_llm_calls == 1 and f.last_activity == T0 - 70


def test_agent_waits_for_a_human() -> None:
    r, _clock = reducer(active_window_s=300)
    r.apply_batch(
        [
            ev("agent_started", {"task_id": "t1"}, agent="writer", ts=T0 - 1000),
            flow(
                "human_input",
                "c1",
                T0 - 900,
                state="requested",
                agent="writer",
                message="Is this final?",
            ),
            ev("agent_started", {"task_id": "t2"}, agent="editor", ts=T0 - 10),
        ]
    )
    st = r.state()
    w = st.agent("writer")
    # silent for 900 s (> active window) but waiting: still listed, and first when sorting
    assert w is not None and w.status == "waiting_human"
    assert (w.waiting_since, w.waiting_message) == (T0 - 900, "Is this final?")
    d = next(a for a in st.to_dict()["agents"] if a["id"] == "writer")
    assert d["status"] == "waiting_human" and d["waiting_since"] == T0 - 900
    r.apply(flow("human_input", "c1", T0 - 5, state="received", agent="writer", wait_ms=895000))
    w = r.state().agent("writer")
    assert w is not None and w.status == "running" and w.waiting_since is None
    # the agent's end closes a wait whose reply never came
    r.apply_batch(
        [
            flow("human_input", "c1", T0 - 4, state="requested", agent="editor"),
            ev("agent_completed", {"task_id": "t2"}, agent="editor", ts=T0 - 2),
        ]
    )
    e = r.state().agent("editor")
    assert e is not None and e.status == "idle"
    # out of order: the reply first
    r.apply_batch(
        [
            flow("human_input", None, T0 - 1, state="received", agent="late"),
            flow("human_input", None, T0 - 3, state="requested", agent="late"),
        ]
    )
    late = r.state().agent("late")
    assert late is not None and late.status == "idle"
    # a failure after the request: failed wins (by event time), and the wait is closed
    r.apply_batch(
        [
            flow("human_input", None, T0 - 3, state="requested", agent="x"),
            ev("agent_failed", {"error": "boom"}, agent="x", ts=T0 - 1),
        ]
    )
    x = r.state().agent("x")
    assert x is not None and x.status == "failed"


def test_collaboration_kind_a2a_and_reasoning_tokens() -> None:
    r, _ = reducer()
    r.apply_batch(
        [
            ev(
                "collaboration",
                {"to_agent": "remote-planner", "kind": "a2a", "ok": True},
                agent="A",
                ts=T0 - 3,
            ),
            ev(
                "collaboration",
                {"to_agent": "remote-planner", "kind": "a2a", "ok": False},
                agent="A",
                ts=T0 - 2,
            ),
            ev(
                "llm_call",
                {
                    "model": "o3",
                    "input_tokens": 10,
                    "output_tokens": 50,
                    "reasoning_tokens": 40,
                    "call_id": "c-1",
                    "cost_usd": 0.1,
                },
                agent="A",
                ts=T0 - 1,
            ),
        ]
    )
    st = r.state()
    assert [(e.from_agent, e.to_agent, e.kind, e.count) for e in st.collaboration] == [
        ("A", "remote-planner", "a2a", 2)
    ]
    a = st.agent("A")
    assert a is not None and a.collaborators == ("remote-planner",)
    assert st.totals.reasoning_tokens == 40 and a.reasoning_tokens == 40
    assert st.totals.output_tokens == 50  # reasoning is a part of output, not added to it
    d = st.to_dict()
    assert d["totals"]["reasoning_tokens"] == 40 and d["agents"][0]["reasoning_tokens"] == 40


def test_state_pickles_by_field_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """auren top's worker process ships the frozen state up to 20 times a second: it
    pickles as (class, field values), never through ``dataclasses.fields`` per object
    (the slotted-dataclass default, 3-5x slower), and comes back equal."""
    import pickle

    from recorded_events import frozen_clock, recorded

    r = Reducer(clock=frozen_clock)
    r.apply_batch(recorded(), last_id="9-0")
    state = dataclasses.replace(r.state(), log=())
    assert state.agents and state.collaboration

    def no_fields(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("dataclasses.fields called while pickling")

    monkeypatch.setattr(dataclasses, "fields", no_fields)
    back = pickle.loads(pickle.dumps(state, 5))
    monkeypatch.undo()
    assert back == state
    assert type(back.agents[0]) is type(state.agents[0])
