"""CrewAI instrumentation: real crews (ScriptedLLM) -> listener -> real Redis -> decode."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import redis
from crews import delegating_crew, hierarchical_crew, kick, sequential_crew
from waiting import wait_until

import auren_core
from auren_core.events import Event, decode
from auren_core.integrations.crewai import AurenListener, slug, uninstrument
from auren_core.integrations.crewai.convert import collab_kind
from auren_core.integrations.crewai.scripted_llm import (
    ScriptCall,
    ScriptedLLM,
    default_script,
    react_action,
    tool_named,
)
from auren_core.pricing import price

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def read_events(redis_url: str, stream: str) -> list[Event]:
    r = redis.Redis.from_url(redis_url)
    out: list[Event] = []
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(stream))
    for sid, fields in entries:
        raw = fields[b"e"]
        VALIDATOR.validate(json.loads(raw))  # every emitted entry matches the published schema
        ev = decode(raw, sid.decode())
        assert isinstance(ev, Event), ev
        out.append(ev)
    return out


def settle(listener: AurenListener, redis_url: str, stream: str, runs: int = 1) -> list[Event]:
    """Wait until every handler ran and the publisher sent (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        listener.drain(5)
        listener.publisher.flush(2)
        evs = read_events(redis_url, stream)
        done = sum(1 for e in evs if e.type == "crew_completed")
        if done >= runs or time.monotonic() > deadline:
            return evs
        time.sleep(0.02)


@pytest.fixture
def listener(
    request: pytest.FixtureRequest, redis_url: str, stream: str
) -> Iterator[AurenListener]:
    dispatch = getattr(request, "param", "tap")
    lst = auren_core.instrument(redis_url=redis_url, stream=stream, dispatch=dispatch)
    assert isinstance(lst, AurenListener) and lst.dispatch == dispatch
    yield lst
    lst.drain(2)
    lst.publisher.flush(2)
    auren_core.instrument(redis_url=redis_url, stream=stream, dispatch="tap")


def seq(e: Event) -> int:
    return e.seq if isinstance(e.seq, int) else -1


def by_type(evs: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for e in evs:
        out[e.type].append(e)
    return out


def test_slug() -> None:
    assert slug("Sleep Specialist") == "sleep_specialist"
    assert slug("  Neuro-Scientist (lead) ") == "neuro_scientist_lead"
    assert slug("sleep specialist") == slug("Sleep  Specialist")
    assert slug("") is None and slug("!!!") == "agent"


@pytest.mark.parametrize("listener", ["tap", "bus"], indirect=True)
def test_sequential_crew_events(listener: AurenListener, redis_url: str, stream: str) -> None:
    crew, llms = sequential_crew()
    out = kick(crew)
    evs = settle(listener, redis_url, stream)
    t = by_type(evs)
    for name in (
        "crew_started", "crew_completed", "task_started", "task_completed", "agent_registered",
        "agent_started", "agent_completed", "llm_call", "tool_used",
    ):  # fmt: skip
        assert t[name], f"no {name} event"
    runs = {e.run for e in evs}
    assert len(runs) == 1 and None not in runs
    agents = {"sleep_specialist", "nutritionist", "neuroscientist"}
    assert {e.agent for e in t["agent_started"]} == agents
    assert t["crew_started"][0].payload["agents"] == [
        "sleep_specialist",
        "nutritionist",
        "neuroscientist",
    ]
    # agent_registered once per agent, with capabilities
    assert Counter(e.agent for e in t["agent_registered"]) == Counter(agents)
    reg = {e.agent: e.payload for e in t["agent_registered"]}
    assert reg["sleep_specialist"]["tools"] == ["biomarker_lookup"]
    assert reg["sleep_specialist"]["role"] == "Sleep Specialist"
    assert reg["sleep_specialist"]["model"] == "gpt-4o-mini"
    assert reg["nutritionist"]["allow_delegation"] is False
    # durations
    for name in ("crew_completed", "task_completed", "agent_completed", "tool_used"):
        assert all((e.payload["duration_ms"] or 0) > 0 for e in t[name]), name
    assert all(e.payload["latency_ms"] > 0 and e.payload["ok"] for e in t["llm_call"])
    assert t["tool_used"][0].agent == "sleep_specialist"
    assert t["tool_used"][0].payload["tool"] == "biomarker_lookup"
    # ordering information: unique emission sequence; parents are emitted events
    seqs = [e.seq for e in evs if isinstance(e.seq, int)]
    assert len(seqs) == len(set(seqs)) == len(evs) - len(t["agent_registered"])
    if listener.dispatch == "tap":  # converted in emission order: the stream is in order too
        assert seqs == sorted(seqs)
    ids = {e.id for e in evs}
    assert len(ids) == len(evs)
    assert all(e.parent in ids for e in evs if isinstance(e.parent, str))
    for who in agents:  # per agent: started < llm calls < completed (by seq)
        mine = sorted((e for e in evs if e.agent == who and isinstance(e.seq, int)), key=seq)
        kinds = [e.type for e in mine]
        assert kinds[0] == "task_started" and kinds[1] == "agent_started", kinds
        assert kinds[-2:] == ["agent_completed", "task_completed"], kinds
        start = next(e for e in mine if e.type == "agent_started")
        assert all(e.parent == start.id for e in mine if e.type in ("llm_call", "tool_used"))
    # tokens: exactly what the scripted LLM reported, call by call
    calls = llms[0].calls
    assert len(t["llm_call"]) == len(calls)
    for field in ("input_tokens", "output_tokens", "cached_tokens"):
        assert sum(e.payload[field] for e in t["llm_call"]) == sum(getattr(u, field) for u in calls)
    per_agent: Counter[str] = Counter()
    for u in calls:
        per_agent[slug(u.agent) or ""] += u.input_tokens
    assert per_agent == Counter(
        {k: sum(e.payload["input_tokens"] for e in t["llm_call"] if e.agent == k) for k in agents}
    )
    # CrewAI 1.6.1's own figure counts a shared LLM once per agent using it
    assert out.token_usage.prompt_tokens == 3 * sum(u.input_tokens for u in calls)
    # costs: the price library's figure for the model
    for e in t["llm_call"]:
        p = e.payload
        assert p["model"] == "gpt-4o-mini" and p["provider"] == "openai"
        assert p["cost_source"] == "genai-prices"
        expect, _ = price(
            "gpt-4o-mini", "openai", p["input_tokens"], p["output_tokens"], p["cached_tokens"]
        )
        assert p["cost_usd"] == pytest.approx(expect) and p["cost_usd"] > 0
    assert listener.counters()["handler_errors"] == 0


def test_separate_llms_agree_with_crewai_and_cache_hits(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    long = " Guidelines: " + "keep answers evidence-based and specific. " * 120
    crew, llms = sequential_crew(shared_llm=False, backstory=long)
    out = kick(crew)
    t = by_type(settle(listener, redis_url, stream))
    reported = [u for llm in llms for u in llm.calls]
    assert len(llms) == 3 and len(t["llm_call"]) == len(reported)
    total_in = sum(e.payload["input_tokens"] for e in t["llm_call"])
    total_cached = sum(e.payload["cached_tokens"] for e in t["llm_call"])
    assert total_in == sum(u.input_tokens for u in reported)
    assert total_cached == sum(u.cached_tokens for u in reported) > 0  # long prompts hit the cache
    # one LLM object per agent: CrewAI's own total is right then
    assert out.token_usage.prompt_tokens == total_in
    assert out.token_usage.completion_tokens == sum(
        e.payload["output_tokens"] for e in t["llm_call"]
    )
    cached_call = next(e for e in t["llm_call"] if e.payload["cached_tokens"])
    p = cached_call.payload
    no_cache, _ = price("gpt-4o-mini", "openai", p["input_tokens"], p["output_tokens"], 0)
    assert no_cache is not None and p["cost_usd"] < no_cache


def _spy(seen: list[tuple[str, str]]) -> Any:
    def script(call: ScriptCall) -> str:
        answer = default_script(call)
        for tool, kind in (
            ("Delegate work to coworker", "delegate"),
            ("Ask question to coworker", "ask"),
        ):
            if f"Action: {tool}" in answer or f"Action: {tool.lower().replace(' ', '_')}" in answer:
                args = json.loads(answer.split("Action Input:", 1)[1])
                seen.append((kind, slug(args["coworker"]) or ""))
        return answer

    return script


@pytest.mark.parametrize("listener", ["tap", "bus"], indirect=True)
@pytest.mark.parametrize("builder", [delegating_crew, hierarchical_crew])
def test_collaboration(builder: Any, listener: AurenListener, redis_url: str, stream: str) -> None:
    seen: list[tuple[str, str]] = []
    crew, llms = builder(script=_spy(seen))
    kick(crew)
    evs = settle(listener, redis_url, stream)
    t = by_type(evs)
    boss = "performance_coordinator" if builder is delegating_crew else "crew_manager"
    got = [(e.payload["kind"], e.payload["to_agent"]) for e in sorted(t["collaboration"], key=seq)]
    assert got == seen and {k for k, _ in seen} == {"delegate", "ask"}
    assert all(e.agent == boss for e in t["collaboration"])
    reg = {e.agent: e.payload for e in t["agent_registered"]}
    assert reg[boss]["allow_delegation"] is True and "delegation" in reg[boss]["capabilities"]
    # the coworker's run is a child of the collaboration that started it
    for c in t["collaboration"]:
        child = [e for e in t["agent_started"] if e.parent == c.id]
        assert [e.agent for e in child] == [c.payload["to_agent"]]
    tools = Counter(collab_kind(e.payload["tool"]) for e in t["tool_used"])
    assert tools["delegate"] == 1 and tools["ask"] == 1
    assert sum(e.payload["input_tokens"] for e in t["llm_call"]) == sum(
        u.input_tokens for u in llms[0].calls
    )
    assert len({e.run for e in evs}) == 1


def test_unknown_model_cost_is_null(listener: AurenListener, redis_url: str, stream: str) -> None:
    crew, _ = sequential_crew(model="auren-local-7b")
    kick(crew)
    calls = by_type(settle(listener, redis_url, stream))["llm_call"]
    assert calls and all(e.payload["cost_usd"] is None for e in calls)
    assert all(
        e.payload["cost_source"] == "unknown" and e.payload["input_tokens"] > 0 for e in calls
    )


def test_tool_costs_from_configuration(redis_url: str, stream: str) -> None:
    lst = auren_core.instrument(
        redis_url=redis_url, stream=stream, tool_costs={"biomarker_lookup": 0.002}
    )
    crew, _ = sequential_crew()
    kick(crew)
    used = by_type(settle(lst, redis_url, stream))["tool_used"]
    assert [e.payload["cost_usd"] for e in used] == [0.002]
    auren_core.instrument(redis_url=redis_url, stream=stream, tool_costs={})


def test_instrument_twice_does_not_double(redis_url: str, stream: str) -> None:
    a = auren_core.instrument(redis_url=redis_url, stream=stream)
    b = auren_core.instrument(redis_url=redis_url, stream=stream)
    assert a is b
    crew, llms = sequential_crew()
    kick(crew)
    t = by_type(settle(a, redis_url, stream))
    assert len(t["crew_started"]) == 1 and len(t["llm_call"]) == len(llms[0].calls)
    assert len(t["agent_registered"]) == 3


def test_llm_failure_is_reported(listener: AurenListener, redis_url: str, stream: str) -> None:
    def broken(call: ScriptCall) -> str:
        if call.agent_role == "Nutritionist":
            raise RuntimeError("upstream 503")
        return default_script(call)

    crew, _ = sequential_crew(script=broken)
    for a in crew.agents:
        a.max_retry_limit = 0  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="503"):
        kick(crew)
    t = by_type(settle(listener, redis_url, stream))
    failed = [e for e in t["llm_call"] if not e.payload["ok"]]
    assert failed and failed[0].agent == "nutritionist" and "503" in failed[0].payload["error"]
    assert failed[0].payload["cost_usd"] is None
    assert [e.agent for e in t["agent_failed"]] == ["nutritionist"]
    assert [e.agent for e in t["task_failed"]] == ["nutritionist"]
    assert t["crew_completed"][0].payload["ok"] is False


def test_unencodable_argument_is_counted_and_repaired(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    def hostile(call: ScriptCall) -> str:
        if call.step == 0 and tool_named(call.tool_names, "Delegate work to coworker"):
            args = {"task": "check \ud800 sleep", "context": "x", "coworker": "Sleep Specialist"}
            return react_action("Delegate work to coworker", args)
        return default_script(call)

    before = listener.counters()["repaired"]
    crew, _ = delegating_crew(script=hostile)
    result = kick(crew)
    assert result.raw
    t = by_type(settle(listener, redis_url, stream))
    assert listener.counters()["repaired"] > before
    task = t["collaboration"][0].payload["task"]
    assert "\\ud800" in task and task.startswith("check ")  # escaped, not lost
    assert listener.counters()["handler_errors"] == 0


def test_redis_unreachable_crew_unaffected(redis_url: str, stream: str) -> None:
    uninstrument()
    crew, _ = sequential_crew(seed=7)
    plain = kick(crew).raw
    lst = auren_core.instrument(redis_url="redis://127.0.0.1:1/0", stream=stream)
    try:
        crew, _ = sequential_crew(seed=7)
        t0 = time.monotonic()
        dead = kick(crew).raw
        assert time.monotonic() - t0 < 10
        assert dead == plain
        lst.drain(5)
        assert lst.counters()["handled"] > 0
        c = lst.publisher.counters()
        assert c.produced > 0 and c.sent == 0 and not c.connected
    finally:
        auren_core.instrument(redis_url=redis_url, stream=stream)


def test_concurrent_kickoffs_keep_runs_apart(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    crews = [sequential_crew(seed=11)[0], delegating_crew(seed=12)[0]]
    threads = [threading.Thread(target=c.kickoff) for c in crews]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    evs = settle(listener, redis_url, stream, runs=2)
    started = by_type(evs)["crew_started"]
    assert len(started) == 2
    run_of = {e.payload["crew"]: e.run for e in started}
    assert len(set(run_of.values())) == 2
    for e in evs:
        if e.agent in ("performance_coordinator", "training_coach"):
            assert e.run == run_of["auren-delegating"], e
        if e.agent in ("nutritionist", "neuroscientist"):
            assert e.run == run_of["auren-sequential"], e


def test_knowledge_and_memory_events(listener: AurenListener, redis_url: str, stream: str) -> None:
    from crewai import Agent
    from crewai.events import (
        KnowledgeRetrievalCompletedEvent,
        MemoryQueryCompletedEvent,
        MemoryQueryFailedEvent,
        crewai_event_bus,
    )

    agent = Agent(role="Sleep Specialist", goal="g", backstory="b", llm=ScriptedLLM())
    bus = crewai_event_bus
    bus.emit(
        agent,
        KnowledgeRetrievalCompletedEvent(
            query="melatonin", retrieved_knowledge="K1: ...", from_agent=agent
        ),
    )
    bus.emit(
        agent,
        MemoryQueryCompletedEvent(
            query="last night",
            results=[{"m": 1}],
            limit=3,
            query_time_ms=2.5,
            source_type="short_term_memory",
            from_agent=agent,
        ),
    )
    bus.emit(
        agent,
        MemoryQueryFailedEvent(
            query="hrv", limit=3, error="store down", source_type="entity_memory", from_agent=agent
        ),
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listener.drain(1)
        listener.publisher.flush(1)
        ka = by_type(read_events(redis_url, stream))["knowledge_access"]
        if len(ka) == 3:
            break
        time.sleep(0.02)
    got = {e.payload["item"]: e.payload for e in ka}
    assert all(e.agent == "sleep_specialist" for e in ka)
    assert (
        got["crewai:knowledge"]["hit"] is True and got["crewai:knowledge"]["query"] == "melatonin"
    )
    assert (
        got["crewai:short_term_memory"]["latency_ms"] == 2.5
        and got["crewai:short_term_memory"]["hit"]
    )
    assert (
        got["crewai:entity_memory"]["hit"] is False
        and got["crewai:entity_memory"]["error"] == "store down"
    )


def test_scripted_llm_is_deterministic() -> None:
    a = kick(sequential_crew(seed=5)[0]).raw
    b = kick(sequential_crew(seed=5)[0]).raw
    c = kick(sequential_crew(seed=6)[0]).raw
    assert a == b and a != c


def test_worker_wakes_from_idle(listener: AurenListener, redis_url: str, stream: str) -> None:
    """The publisher's thread (which also converts) sleeps when idle; the first tapped
    event wakes it, and it converts and sends without anyone calling drain()."""
    listener.publisher.flush(2)
    # nothing queued: the thread goes to sleep until an event wakes it
    wait_until(lambda: listener.publisher._idle, "the publisher's thread asleep", timeout=5)
    assert listener.publisher._idle
    crew, llms = sequential_crew()
    kick(crew)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # no drain(), no flush(): the wake-up does it all
        t = by_type(read_events(redis_url, stream))
        if t["crew_completed"]:
            break
        time.sleep(0.01)
    assert len(t["llm_call"]) == len(llms[0].calls) and t["crew_completed"]
    assert listener.worker.pending() is False


def test_long_running_process_forgets_old_ids(
    listener: AurenListener, redis_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auren_core.integrations.crewai import tap as _crewai_tap

    monkeypatch.setattr(_crewai_tap, "MAX_MAPPED", 4)
    for seed in range(4):
        kick(sequential_crew(seed=seed)[0])
    evs = settle(listener, redis_url, stream, runs=4)
    tap = listener.tap
    assert len(tap.run_of_task) <= 8 and len(tap.run_of_agent) <= 8 and len(tap.open) <= 8
    started = by_type(evs)["crew_started"]
    assert len({e.run for e in started}) == 4
    assert all(e.run is not None for e in evs)
