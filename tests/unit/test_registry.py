"""AgentRegistry: built from events, and in-process from real CrewAI agents."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from auren_core.events import AgentRegistered, make_event
from auren_core.state.registry import MAX_FINISHED, AgentRegistry, agent_capabilities

T0 = 1_800_000_000.0


def ev(type: str, payload: dict[str, Any] | None = None, *, agent: str | None, ts: float) -> Any:
    return make_event(type, payload or {}, agent=agent, ts=ts)


def test_agent_appears_with_its_first_event_of_any_type() -> None:
    reg = AgentRegistry(clock=lambda: T0)
    reg.observe(ev("llm_call", {"model": "m"}, agent="neuro", ts=T0 - 10))
    reg.observe(ev("crew_started", agent=None, ts=T0))  # no agent: nothing to register
    reg.observe(ev("some_future_type", agent="sleep", ts=T0 - 5))
    assert len(reg) == 2 and "neuro" in reg and "sleep" in reg
    info = reg.get("neuro")
    assert info is not None
    assert (info.role, info.status, info.current_load, info.capabilities) == (
        "neuro",
        "idle",
        0,
        (),
    )
    assert info.first_seen == info.last_activity == T0 - 10


def test_capabilities_and_last_activity_in_event_time() -> None:
    reg = AgentRegistry()
    reg.observe(ev("tool_used", {"tool": "x"}, agent="neuro", ts=T0 - 3))
    reg.observe(
        ev(
            "agent_registered",
            {
                "role": "Neuroscientist",
                "goal": "HRV",
                "tools": ["pubmed"],
                "model": "gpt-4o",
                "capabilities": ["hrv"],
                "allow_delegation": True,
            },
            agent="neuro",
            ts=T0 - 9,  # older than what we already saw: last activity stays
        )
    )
    info = reg.get("neuro")
    assert info is not None
    assert info.role == "Neuroscientist" and info.capabilities == ("hrv",)
    assert info.tools == ("pubmed",) and info.model == "gpt-4o" and info.allow_delegation
    assert info.last_activity == T0 - 3 and info.first_seen == T0 - 9


def test_active_window() -> None:
    reg = AgentRegistry(clock=lambda: T0)
    for name, age in [("a", 10), ("b", 299), ("c", 301), ("d", 3000)]:
        reg.observe(ev("agent_started", agent=name, ts=T0 - age))
    assert [a.id for a in reg.active()] == ["a", "b"]  # default window 300 s, clock's now
    assert [a.id for a in reg.active(window=400, now=T0)] == ["a", "b", "c"]
    assert [a.id for a in reg.active(window=300, now=T0 + 100)] == ["a"]


def test_load_and_status_transitions() -> None:
    reg = AgentRegistry()
    reg.observe(ev("task_started", {"task_id": "1"}, agent="a", ts=T0))
    reg.observe(ev("task_started", {"task_id": "2"}, agent="a", ts=T0 + 1))
    info = reg.get("a")
    assert info is not None and (info.current_load, info.status) == (2, "running")
    reg.observe(ev("task_completed", {"task_id": "1"}, agent="a", ts=T0 + 2))
    reg.observe(ev("agent_failed", {"task_id": "2", "error": "rate limit"}, agent="a", ts=T0 + 3))
    info = reg.get("a")
    assert info is not None and (info.current_load, info.status) == (0, "failed")
    assert info.last_error == "rate limit"
    # a completion without a start (started before we began reading) never goes negative
    reg.observe(ev("agent_completed", {}, agent="a", ts=T0 + 4))
    info = reg.get("a")
    assert info is not None and info.current_load == 0


def test_bounded_number_of_agents() -> None:
    reg = AgentRegistry(max_agents=100)
    for i in range(1000):
        reg.observe(ev("agent_started", agent=f"agent-{i}", ts=T0 + i))
    assert len(reg) <= 100 and reg.evicted >= 900
    assert "agent-999" in reg and "agent-0" not in reg  # the least recently active go first


def test_register_agent_duck_typed() -> None:
    tool = SimpleNamespace(name="pubmed_search")

    class Calculator:  # a tool without a name attribute
        pass

    agent = SimpleNamespace(
        role="Sleep Specialist",
        goal="better sleep",
        tools=[tool, Calculator()],
        allow_delegation=True,
        llm=SimpleNamespace(model="claude-3-5-haiku"),
    )
    reg = AgentRegistry(clock=lambda: T0)
    info = reg.register_agent(agent)
    assert info.id == "Sleep Specialist" and info.role == "Sleep Specialist"
    assert info.tools == ("pubmed_search", "Calculator")
    assert info.capabilities == ("pubmed_search", "Calculator", "delegation")
    assert info.model == "claude-3-5-haiku" and info.goal == "better sleep"
    assert info.last_activity == T0
    assert [a.id for a in reg.active(now=T0)] == ["Sleep Specialist"]
    # a string llm, no tools, custom id
    other = reg.register_agent(
        SimpleNamespace(role="Coach", llm="gpt-4o-mini"), agent_id="coach-1", ts=T0 - 1
    )
    assert (other.id, other.model, other.tools, other.allow_delegation) == (
        "coach-1",
        "gpt-4o-mini",
        (),
        False,
    )
    # then events for the same id keep the registered capabilities
    reg.observe(ev("task_started", {"task_id": "t"}, agent="coach-1", ts=T0))
    info2 = reg.get("coach-1")
    assert info2 is not None and info2.role == "Coach" and info2.current_load == 1


def test_register_real_crewai_agent() -> None:
    crewai = pytest.importorskip("crewai")
    from crewai.tools import BaseTool

    from auren_core.integrations.crewai.scripted_llm import ScriptedLLM

    class Biomarkers(BaseTool):
        name: str = "biomarker_lookup"
        description: str = "Look up a biomarker."

        def _run(self, query: str) -> str:
            return "ok"

    agent = crewai.Agent(
        role="Neuroscientist",
        goal="Explain HRV changes",
        backstory="A careful scientist.",
        tools=[Biomarkers()],
        allow_delegation=True,
        llm=ScriptedLLM("gpt-4o-mini"),
    )
    payload = agent_capabilities(agent)
    assert payload == AgentRegistered(
        role="Neuroscientist",
        goal="Explain HRV changes",
        tools=["biomarker_lookup"],
        model="gpt-4o-mini",
        capabilities=["biomarker_lookup", "delegation"],
        allow_delegation=True,
    )
    info = AgentRegistry(clock=lambda: T0).register_agent(agent)
    assert info.id == "Neuroscientist" and info.model == "gpt-4o-mini"


def test_finished_task_ids_are_bounded_over_all_agents() -> None:
    """Issue 14 (scale): each agent kept up to 256 finished-task ids for late starts, for
    ever: 10,000 agents running their tasks for a day held ~400 MB of them. The registry
    now keeps ``MAX_FINISHED`` over all agents, the oldest forgotten first (idle agents'
    too), and a late start right after its end is still not counted as work."""
    reg = AgentRegistry(clock=lambda: T0)
    agents, tasks = 400, 300  # 120,000 ends: 102,400 ids kept before, at 256 per agent
    ts = T0
    for a in range(agents):
        for k in range(tasks):
            ts += 0.001
            tid = f"{a:08x}-{k:04x}-4000-8000-{k:012x}"
            reg.observe(ev("task_started", {"task_id": tid}, agent=f"a{a}", ts=ts))
            reg.observe(ev("task_completed", {"task_id": tid}, agent=f"a{a}", ts=ts))
    kept = sum(len(r.finished) for r in reg._agents.values())
    assert kept <= MAX_FINISHED < agents * 256
    assert len(reg._finished) <= MAX_FINISHED
    # the first agents, idle since, forgot theirs; the last one keeps its recent ones
    first, last = reg.record("a0"), reg.record(f"a{agents - 1}")
    assert first is not None and not first.finished
    assert last is not None and len(last.finished) == 256
    # the end of a task arrives before its start: still not counted as work
    reg.observe(ev("task_completed", {"task_id": "late"}, agent="a0", ts=ts + 2))
    reg.observe(ev("task_started", {"task_id": "late"}, agent="a0", ts=ts + 1))
    info = reg.get("a0")
    assert info is not None and info.current_load == 0


def test_finished_ids_of_a_forgotten_agent_do_not_break_the_bound() -> None:
    reg = AgentRegistry(clock=lambda: T0, max_agents=10, max_finished=50)
    for i in range(200):  # agents come and go (evicted), each ending a task
        a = f"agent-{i}"
        reg.observe(ev("task_started", {"task_id": f"t{i}"}, agent=a, ts=T0 + i))
        reg.observe(ev("task_completed", {"task_id": f"t{i}"}, agent=a, ts=T0 + i))
        reg.observe(ev("task_completed", {"task_id": f"t{i}"}, agent=a, ts=T0 + i + 0.5))
    assert len(reg) <= 10 and len(reg._finished) <= 50
    assert sum(len(r.finished) for r in reg._agents.values()) <= 10
