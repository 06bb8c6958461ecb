"""Analytics on constructed histories whose answers are known in advance."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec

from auren_core.analytics import (
    analyze,
    collaboration_patterns,
    detect_loops,
    detect_stalls,
    forecast_series,
    knowledge_patterns,
    recommendations,
    token_forecast,
)
from auren_core.events import Event, Malformed, make_event

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def ev(type: str, payload: dict[str, Any], *, agent: str | None = None, run: str | None = None,
       ts: float = T0) -> Event:  # fmt: skip
    return make_event(type, payload, agent=agent, run=run, ts=ts)


def llm(agent: str, ts: float, *, cost: float | None = 0.01, out: int = 100, model: str = "m",
        inp: int = 400, run: str | None = "r1") -> Event:  # fmt: skip
    return ev("llm_call", {"model": model, "input_tokens": inp, "output_tokens": out,
                           "cost_usd": cost}, agent=agent, run=run, ts=ts)  # fmt: skip


def tool(agent: str, ts: float, name: str, args: Any, *, cost: float | None = None) -> Event:
    return ev("tool_used", {"tool": name, "args": args, "cost_usd": cost}, agent=agent,
              run="r1", ts=ts)  # fmt: skip


# --------------------------------------------------------------------------- loops and stalls
def test_planted_loop_is_found_with_its_cost_and_varied_work_is_not() -> None:
    evs: list[Event] = []
    t = T0
    for i in range(4):  # varied work: never the same call twice in a row
        evs += [tool("planner", t, "search", {"q": f"topic {i}"}), llm("planner", t + 1)]
        t += 2
    for _ in range(6):  # the planted loop: same tool, same args, an LLM call between each
        evs += [tool("researcher", t, "web_search", {"q": "sleep"}, cost=0.005),
                llm("researcher", t + 1, cost=0.02)]  # fmt: skip
        t += 2
    evs.append(tool("researcher", t, "summarise", {"n": 1}))
    evs.append(llm("researcher", t + 1, cost=9.0))  # after the loop: not its cost
    random.Random(1).shuffle(evs)  # arrival order is not emission order
    loops = detect_loops(evs, min_repeats=3)
    assert len(loops) == 1
    lp = loops[0]
    assert (lp["agent"], lp["kind"], lp["repeats"]) == ("researcher", "tool", 6)
    assert "web_search" in lp["signature"]
    # 6 tool calls + the 5 LLM calls between the first and the last repeat
    assert math.isclose(lp["cost_usd"], 6 * 0.005 + 5 * 0.02)
    assert lp["tokens"] == 5 * 500


def test_repeated_prompt_counts_as_a_loop() -> None:
    evs = [
        ev(
            "llm_call",
            {"model": "m", "prompt_hash": "abc", "cost_usd": 0.1, "input_tokens": 1},
            agent="a",
            run="r",
            ts=T0 + i,
        )
        for i in range(4)
    ]
    (lp,) = detect_loops(evs)
    assert (lp["kind"], lp["repeats"], lp["cost_usd"]) == ("prompt", 4, 0.4)


def test_stall_is_an_agent_silent_with_a_task_in_flight() -> None:
    now = T0 + 1000
    evs = [
        ev("agent_started", {"task_id": "t1"}, agent="stuck", run="r", ts=T0),
        llm("stuck", T0 + 10, cost=0.25, run="r"),
        ev("agent_started", {"task_id": "t2"}, agent="done", run="r", ts=T0),
        ev("agent_completed", {"task_id": "t2"}, agent="done", run="r", ts=T0 + 20),
        ev("agent_started", {"task_id": "t3"}, agent="busy", run="r", ts=T0),
        llm("busy", now - 30, run="r"),
    ]
    stalls = detect_stalls(evs, now=now, silent_s=120)
    assert [(s["agent"], s["task_id"]) for s in stalls] == [("stuck", "t1")]
    assert stalls[0]["silent_s"] == 990.0 and stalls[0]["cost_usd"] == 0.25


# --------------------------------------------------------------------------- knowledge
def _tier(query: str, tier: str, ts: float, agent: str = "a", ms: float = 5.0) -> Event:
    short = {"redis_immediate": "redis", "postgresql_structured": "postgresql",
             "chromadb_semantic": "chromadb"}.get(tier)  # fmt: skip
    lat = {short: ms} if short else {}
    return ev("memory_tier_access", {"tier_accessed": tier, "query": query,
              "latency_by_tier": lat, "items_retrieved": 1}, agent=agent, ts=ts)  # fmt: skip


def test_planted_gap_and_access_patterns() -> None:
    evs = [_tier("melatonin dosage", "miss", T0 + i, agent=f"ag{i % 2}") for i in range(4)]
    evs += [_tier("sleep cycles", "miss", T0), _tier("sleep cycles", "chromadb_semantic", T0)]
    evs += [ev("knowledge_access", {"item": "circadian.md"}, agent="neuro", ts=T0 + 3 * 3600 + i)
            for i in range(5)]  # fmt: skip
    evs += [ev("knowledge_access", {"item": "diet.md"}, agent="nutri", ts=T0 + 3 * 3600)]
    evs += [ev("knowledge_access", {"item": "circadian.md"}, agent="sleep", ts=T0 + 9 * 3600)]
    k = knowledge_patterns(evs)
    # a knowledge gap is a lookup nothing answered (auren_core.rules), most first; how often
    # the same question was answered is beside it
    assert [(g["query"], g["misses"], g["answered"]) for g in k["gaps"]] == [
        ("melatonin dosage", 4, 0),
        ("sleep cycles", 1, 1),
    ]
    assert k["gaps"][0]["agents"] == ["ag0", "ag1"] and k["gaps"][0]["source"] == "memory"
    assert k["by_hour"]["3"][0] == {"item": "circadian.md", "accesses": 5}
    assert k["readers"]["circadian.md"] == {"neuro": 5, "sleep": 1}
    m = k["hour_matrix"]  # hour of day x item and x agent (answered lookups only)
    circ = next(r for r in m["items"] if r["item"] == "circadian.md")
    assert circ["total"] == 6 and circ["hours"][3] == 5 and circ["hours"][9] == 1
    assert sum(circ["hours"]) == 6 and len(circ["hours"]) == 24
    assert m["items"][0]["item"] == "circadian.md"  # most read first
    neuro = next(r for r in m["agents"] if r["agent"] == "neuro")
    assert neuro["hours"][3] == 5 and neuro["total"] == 5
    assert m["items_total"] == 3  # circadian.md, diet.md, sleep cycles (answered once)


# --------------------------------------------------------------------------- collaboration
def _runs(n: int, pair_in: int) -> list[Event]:
    evs: list[Event] = []
    for i in range(n):
        run = f"run{i}"
        evs.append(ev("crew_started", {}, run=run, ts=T0 + i))
        for a in ("neuroscientist", "sleep_specialist", "nutritionist"):
            evs.append(ev("agent_started", {}, agent=a, run=run, ts=T0 + i))
        if i < pair_in:
            evs.append(ev("collaboration", {"to_agent": "sleep_specialist", "kind": "delegate"},
                          agent="neuroscientist", run=run, ts=T0 + i))  # fmt: skip
            evs.append(ev("collaboration", {"to_agent": "neuroscientist", "kind": "ask"},
                          agent="sleep_specialist", run=run, ts=T0 + i))  # fmt: skip
        if i < 3:
            evs.append(ev("collaboration", {"to_agent": "neuroscientist", "kind": "ask"},
                          agent="nutritionist", run=run, ts=T0 + i))  # fmt: skip
        evs.append(ev("crew_completed", {"ok": i < pair_in}, run=run, ts=T0 + i + 1))
    return evs


def test_planted_collaboration_share_and_completion() -> None:
    c = collaboration_patterns(_runs(10, 8))
    assert c["runs"] == 10
    top = c["pairs"][0]
    assert top["agents"] == ["neuroscientist", "sleep_specialist"]
    assert (top["runs"], top["share_of_runs"], top["interactions"]) == (8, 0.8, 16)
    assert top["summary"] == "neuroscientist and sleep_specialist collaborate in 80% of runs"
    assert (top["completion_rate_with"], top["completion_rate_without"]) == (1.0, 0.0)
    second = c["pairs"][1]
    assert second["agents"] == ["neuroscientist", "nutritionist"]
    assert second["share_of_runs"] == 0.3


# --------------------------------------------------------------------------- forecast
def _seasonal(hours: int, seed: int = 5) -> list[float]:
    rng = random.Random(seed)
    return [
        1000 + 600 * math.sin(2 * math.pi * h / 24) + 2 * h + rng.gauss(0, 20) for h in range(hours)
    ]


def test_seasonal_forecast_tracks_the_daily_cycle_and_beats_the_naive_baseline() -> None:
    y = _seasonal(24 * 7 + 1)
    f = forecast_series(y[:-1])
    assert f.method.startswith("holt-winters")
    truth = 1000 + 600 * math.sin(2 * math.pi * (24 * 7) / 24) + 2 * (24 * 7)
    assert abs(f.next - truth) < 80  # noise sd is 20; the swing is 1200
    assert f.mae is not None and f.baseline_mae is not None
    assert f.mae < 60 and f.mae <= f.baseline_mae * 1.2
    short = forecast_series([100.0, 110.0, 120.0, 130.0, 140.0])
    assert short.method.startswith("holt linear") and abs(short.next - 150.0) < 15


def test_token_forecast_per_agent_and_budget_alert() -> None:
    now = T0 + 72 * 3600 + 1800
    evs = []
    for h, v in enumerate(_seasonal(72)):
        evs.append(llm("a", T0 + h * 3600 + 60, inp=int(v), out=0, cost=v / 1000))
        evs.append(llm("b", T0 + h * 3600 + 120, inp=100, out=0, cost=0.1))
    f = token_forecast(evs, now=now, budget_usd_per_hour=0.5)
    assert [a["agent"] for a in f["agents"]] == ["a", "b"]
    fa = f["agents"][0]["tokens"]["next"]
    truth = 1000 + 600 * math.sin(2 * math.pi * 72 / 24) + 2 * 72
    assert abs(fa - truth) < 100
    assert abs(f["agents"][1]["cost_usd"]["next"] - 0.1) < 1e-6
    assert f["alerts"] and f["alerts"][0]["level"] == "alert"
    assert token_forecast(evs, now=now, budget_usd_per_hour=50.0)["alerts"] == []


def _steady(agent: str, start: float, end: float, usd_per_hour: float, every_s: float = 6.0,
            jitter: float = 0.0, seed: int = 3) -> list[Event]:  # fmt: skip
    rng = random.Random(seed)
    per_call = usd_per_hour * every_s / 3600
    n = int((end - start) // every_s)
    return [llm(agent, start + i * every_s,
                cost=per_call * (1 + rng.uniform(-jitter, jitter))) for i in range(n)]  # fmt: skip


def test_forecast_in_the_first_minutes_is_the_minute_rate_with_a_narrowing_interval() -> None:
    start = T0 + 7 * 60 + 13  # not on a minute boundary
    early = token_forecast(_steady("a", start, start + 6 * 60, 7.40, jitter=0.2),
                           now=start + 6 * 60)  # fmt: skip
    late = token_forecast(_steady("a", start, start + 40 * 60, 7.40, jitter=0.2),
                          now=start + 40 * 60)  # fmt: skip
    for f in (early, late):
        usd = f["agents"][0]["cost_usd"]
        assert usd["method"] == "minute rate" and usd["unit"] == "minute"
        assert abs(usd["next"] - 7.40) < 0.08 * 7.40, usd  # agrees with the burn rate
        assert usd["low"] < 7.40 < usd["high"]
        assert f["total_cost_low_usd"] <= f["total_cost_usd"] <= f["total_cost_high_usd"]
    width = [f["agents"][0]["cost_usd"]["high"] - f["agents"][0]["cost_usd"]["low"]
             for f in (early, late)]  # fmt: skip
    assert width[1] < width[0]  # more history, a narrower interval
    assert early["agents"][0]["cost_usd"]["points"] == 5  # the first minute is incomplete


def test_a_partial_hour_is_never_extrapolated_as_a_whole_one() -> None:
    """$7.40/h from 20:50: at 22:10 the 20:00 hour holds 10 minutes of it. Counting it as a
    whole hour forecast about half the burn; a complete-hours-only forecast is the burn."""
    start = T0 + 20 * 3600 + 50 * 60
    now = T0 + 22 * 3600 + 10 * 60
    f = token_forecast(_steady("a", start, now, 7.40), now=now, budget_usd_per_hour=7.0)
    usd = f["agents"][0]["cost_usd"]
    assert abs(usd["next"] - 7.40) < 0.02 * 7.40, usd
    assert f["alerts"] and f["alerts"][0]["level"] == "alert"  # over a $7/h budget


def test_forecast_of_an_agent_seen_only_in_the_current_minute_is_not_zero_history() -> None:
    f = token_forecast([llm("new", T0 + 30)], now=T0 + 45)
    assert f["agents"] == [] and f["total_cost_usd"] == 0.0


# --------------------------------------------------------------------------- recommendations
def test_recommendations_each_carry_their_evidence() -> None:
    evs = [_tier("user profile", "postgresql_structured", T0 + i, ms=40.0) for i in range(6)]
    evs += [_tier("sleep research", "chromadb_semantic", T0 + i, ms=120.0) for i in range(5)]
    evs += [_tier("hot key", "redis_immediate", T0 + i, ms=1.0) for i in range(20)]
    evs += [llm("triage", T0 + i, model="big-model", out=20, inp=300, cost=0.05)
            for i in range(8)]  # fmt: skip
    evs += [llm("writer", T0 + i, model="small-model", out=900, inp=300, cost=0.0012)
            for i in range(8)]  # fmt: skip
    pairs = collaboration_patterns(_runs(5, 5))["pairs"]
    recs = recommendations(evs, pairs=pairs)
    kinds = {(r["kind"], r["target"]) for r in recs}
    assert all("estimated_saving" in r for r in recs)
    assert ("cache_in_redis", "user profile") in kinds
    assert ("cache_in_redis", "sleep research") in kinds
    assert ("precompute_embedding", "sleep research") in kinds
    assert ("cheaper_model", "triage:big-model") in kinds
    assert ("pair_always_together", "neuroscientist+sleep_specialist") in kinds
    assert not any(t[1] == "hot key" for t in kinds)  # already served from Redis
    assert not any(t[1].startswith("writer") for t in kinds)  # long outputs, cheap model
    cache = next(r for r in recs if r["target"] == "user profile")
    assert cache["evidence"]["slow_tier_hits"] == 6
    assert cache["evidence"]["latency_saved_ms"] == 6 * (40.0 - 1.0)
    model = next(r for r in recs if r["kind"] == "cheaper_model")
    assert model["evidence"]["suggested_model"] == "small-model"
    assert model["evidence"]["calls"] == 8


def test_the_specifications_80_percent_pair_produces_a_recommendation() -> None:
    """Neuroscientist and sleep specialist together in 8 of 10 runs (80 %)."""
    evs = _runs(10, 8)
    pairs = collaboration_patterns(evs)["pairs"]
    recs = [r for r in recommendations(evs, pairs=pairs) if r["kind"] == "pair_always_together"]
    assert [r["target"] for r in recs] == ["neuroscientist+sleep_specialist"]
    assert recs[0]["evidence"]["share_of_runs"] == 0.8


def test_a_pair_in_80_percent_of_one_agents_runs_is_a_pair() -> None:
    evs: list[Event] = []
    for i in range(20):  # the lead takes part in half of the runs: 8 of its 10 with sleep
        evs.append(ev("crew_started", {}, run=f"other{i}", agent="x", ts=T0 + i))
    for i in range(10):
        run = f"r{i}"
        evs.append(ev("crew_started", {}, run=run, ts=T0 + i))
        to = "sleep" if i < 8 else "nutri"
        evs.append(ev("collaboration", {"to_agent": to, "kind": "delegate"}, agent="lead",
                      run=run, ts=T0 + i))  # fmt: skip
    pairs = collaboration_patterns(evs)["pairs"]
    (rec,) = [r for r in recommendations(evs, pairs=pairs) if r["kind"] == "pair_always_together"]
    assert rec["target"] == "lead+sleep" and rec["evidence"]["partner_share"] == 0.8
    assert rec["evidence"]["share_of_runs"] < 0.8  # of all 30 runs: 8
    assert rec["text"].startswith("lead works with sleep 80% of the time")


def test_one_loop_seen_in_several_runs_is_one_entry_and_unknown_args_are_not_a_loop() -> None:
    evs: list[Event] = []
    for r in range(3):
        for k in range(4):
            evs.append(ev("tool_used", {"tool": "search", "args_hash": "abc"}, agent="res",
                          run=f"run{r}", ts=T0 + r * 100 + k))  # fmt: skip
            evs.append(ev("tool_used", {"tool": "delegate"}, agent="lead", run=f"run{r}",
                          ts=T0 + r * 100 + k))  # fmt: skip
    loops = detect_loops(evs, min_repeats=3)
    assert len(loops) == 1
    lp = loops[0]
    assert (lp["agent"], lp["repeats"], lp["occurrences"], lp["runs"]) == ("res", 4, 3, 3)
    assert lp["signature"] == "search args#abc"
    recs = recommendations(evs, loops=loops)
    assert [r["kind"] for r in recs] == ["stop_loop"]


def test_thresholds_are_configurable() -> None:
    from auren_core.analytics import Thresholds

    evs = [_tier("q", "postgresql_structured", T0 + i, ms=40.0) for i in range(3)]
    evs += [_tier("q0", "redis_immediate", T0, ms=1.0)]
    assert [r["kind"] for r in recommendations(evs)] == ["cache_in_redis"]
    assert recommendations(evs, thresholds=Thresholds(min_slow_serves=4)) == []


def test_analyze_is_json_ready_and_skips_malformed() -> None:
    evs: list[Event | Malformed] = list(_runs(4, 3))
    evs.append(Malformed("1-0", "bad"))
    out = analyze(evs, now=T0 + 3600, budget_usd_per_hour=1.0)
    assert msgspec.json.decode(msgspec.json.encode(out)) == out
    assert out["events"] == len(evs) - 1
    assert set(out) >= {"knowledge", "collaboration", "forecast", "loops", "stalls", "alerts",
                        "recommendations"}  # fmt: skip
