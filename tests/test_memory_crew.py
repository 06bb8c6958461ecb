"""Real CrewAI crews (offline ScriptedLLM) whose agents use the tiered memory.

The agents look knowledge up through :class:`KnowledgeLookupTool` (and, in the
second test, through CrewAI's external memory backed by the tiered memory); the
tier events they cause are read back from the real stream and fed to the same
reducer the dashboard, ``auren top --once --json`` and the HTTP API use.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from crewai import Agent, Crew, Process, Task
from crewai.agents.agent_builder.base_agent import BaseAgent

from auren_core.events import Event, decode
from auren_core.memory import TieredMemory
from auren_core.memory.crewai_storage import role_slug, tiered_external_memory
from auren_core.memory.crewai_tool import KnowledgeLookupTool
from auren_core.publisher import Publisher
from auren_core.scripted_llm import ScriptCall, ScriptedLLM, final_answer, react_action
from auren_core.state import Reducer

KNOWLEDGE: list[tuple[str, str, dict[str, Any] | None]] = [
    ("sleep-1", "Sleep deprivation impairs memory consolidation in the hippocampus", None),
    ("sleep-2", "Slow-wave sleep replays the day's experiences to the neocortex", None),
    ("nutr-1", "A protein intake of 1.6 g/kg per day supports muscle protein synthesis", None),
]
# role -> the lookup its agent makes, and the tier that must serve it (in crew order)
LOOKUPS = [
    ("Sleep Specialist", "memory consolidation", "postgresql_structured"),
    ("Neuroscientist", "memory consolidation", "redis_immediate"),  # promoted by the first
    ("Nutritionist", "how does losing sleep hurt memory", "chromadb_semantic"),
    ("Training Coach", "quantum chromodynamics on a lattice", "miss"),
]


def lookup_script(call: ScriptCall) -> str:
    """Step 0: look the role's question up; then answer citing the observation."""
    query = next(q for role, q, _ in LOOKUPS if role == call.agent_role)
    if call.step == 0 and "knowledge_lookup" in call.tool_names:
        return react_action("knowledge_lookup", {"query": query}, thought="Check the store.")
    return final_answer(f"{call.agent_role}: {call.last_observation[:200] or 'no data'}")


class Backends:
    def __init__(self, redis_url: str, pg_dsn: str, stream: str, tmp: Path) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.pg_dsn = pg_dsn
        self.namespace = f"auren-crew-{uuid.uuid4().hex[:10]}"
        self.table = f"mem_{uuid.uuid4().hex[:12]}"
        self.publisher = Publisher(redis_url, stream, stats_interval=3600)
        self.memory = TieredMemory(
            redis_url,
            pg_dsn,
            chroma_path=str(tmp / "chroma"),
            publisher=self.publisher,
            namespace=self.namespace,
            pg_table=self.table,
        )

    def events(self) -> list[Event]:
        self.memory.flush_events()
        assert self.publisher.flush(10)
        rows: Any = redis.Redis.from_url(self.redis_url).xrange(self.stream)
        out = [decode(f[b"e"], sid.decode()) for sid, f in rows]
        assert all(isinstance(e, Event) for e in out)
        return out  # type: ignore[return-value]

    def reduced(self) -> dict[str, Any]:
        red = Reducer()
        red.apply_batch(self.events())
        return red.state().to_dict()


@pytest.fixture
def backends(redis_url: str, pg_dsn: str, stream: str, tmp_path: Path) -> Iterator[Backends]:
    b = Backends(redis_url, pg_dsn, stream, tmp_path)
    assert b.memory.save_many_sync(KNOWLEDGE).ok
    yield b
    b.memory.close()
    b.publisher.close()
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(match=f"{b.namespace}:*"))
    if keys:
        r.delete(*keys)


@pytest.fixture
async def drop_table(backends: Backends) -> AsyncIterator[None]:
    yield
    conn = await asyncpg.connect(backends.pg_dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {backends.table}")
    finally:
        await conn.close()


def crew_with_lookup_tools(mem: TieredMemory, llm: ScriptedLLM) -> Crew:
    agents: list[BaseAgent] = []
    tasks: list[Task] = []
    for role, _, _ in LOOKUPS:
        agent = Agent(
            role=role,
            goal=f"Answer as the {role}",
            backstory="AUREN specialist.",
            tools=[KnowledgeLookupTool(memory=mem, agent_id=role_slug(role))],
            llm=llm,
            allow_delegation=False,
            max_iter=4,
            verbose=False,
        )
        agents.append(agent)
        tasks.append(
            Task(
                description=f"{role}: review the client's week.",
                expected_output="Notes.",
                agent=agent,
            )
        )
    return Crew(agents=agents, tasks=tasks, process=Process.sequential, verbose=False)


@pytest.fixture
def instrumented(backends: Backends) -> Iterator[None]:
    from auren_core.integrations.crewai import instrument, uninstrument

    instrument(publisher=backends.publisher)
    yield
    uninstrument()


@pytest.mark.usefixtures("drop_table", "instrumented")
def test_crew_lookups_reach_the_tier_pane(backends: Backends) -> None:
    llm = ScriptedLLM("gpt-4o-mini", script=lookup_script, seed=3)
    out = crew_with_lookup_tools(backends.memory, llm).kickoff()
    assert "Training Coach" in str(out)
    # The crew is instrumented: its lookups belong to its kickoff (run).
    runs = {e.run for e in backends.events() if e.type == "crew_started"}
    assert len(runs) == 1 and None not in runs
    assert {e.run for e in backends.events() if e.type == "memory_tier_access"} == runs

    tier_events = [e for e in backends.events() if e.type == "memory_tier_access"]
    assert [(e.agent, e.payload["tier_accessed"]) for e in tier_events] == [
        (role_slug(role), tier) for role, _, tier in LOOKUPS
    ]
    tiers = backends.reduced()["tiers"]
    assert [tiers[t]["hits"] for t in ("redis", "postgresql", "chromadb")] == [1, 1, 1]
    assert tiers["misses"] == 1
    # Tried: Redis by all 4, PostgreSQL by the 3 that missed the cache, Chroma by 2.
    stats = Reducer()
    stats.apply_batch(backends.events())
    ts = stats.state().tier_stats()
    assert ts["tried"] == {"redis": 4, "postgresql": 3, "chromadb": 2}
    assert ts["tier_hit_rates"]["redis"] == pytest.approx(1 / 4)
    assert all(ts["average_latencies_ms"][t] > 0 for t in ("redis", "postgresql", "chromadb"))
    # `auren top --once --json` (another process, reading the real stream) agrees.
    cmd = [sys.executable, "-m", "auren_tui.cli", "top", "--once", "--json"]
    proc = subprocess.run(
        [*cmd, "--redis-url", backends.redis_url, "--stream", backends.stream],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    top = json.loads(proc.stdout)["tiers"]
    assert [top[t]["hits"] for t in ("redis", "postgresql", "chromadb")] == [1, 1, 1]
    assert top["misses"] == 1
    # The gap and the items are on the knowledge heatmap, per agent.
    know = [e for e in backends.events() if e.type == "knowledge_access"]
    assert ("training_coach", False) in {(e.agent, e.payload["hit"]) for e in know}
    assert {e.payload["item"] for e in know if e.payload["hit"]} >= {"sleep-1"}


def external_script(call: ScriptCall) -> str:
    return final_answer(f"{call.agent_role} finding: circadian anchoring improves sleep onset.")


@pytest.mark.usefixtures("drop_table")
def test_crew_external_memory_is_the_tiered_memory(backends: Backends) -> None:
    llm = ScriptedLLM("gpt-4o-mini", script=external_script, seed=4)
    roles = ["Sleep Specialist", "Neuroscientist"]
    agents: list[BaseAgent] = [
        Agent(role=r, goal="Assess", backstory="AUREN specialist.", llm=llm, verbose=False)
        for r in roles
    ]
    tasks = [
        Task(
            description=f"Assess memory consolidation during sleep ({r}).",
            expected_output="One finding.",
            agent=a,
        )
        for r, a in zip(roles, agents, strict=True)
    ]
    crew = Crew(
        agents=agents,
        tasks=tasks,
        process=Process.sequential,
        external_memory=tiered_external_memory(backends.memory),
        verbose=False,
    )
    crew.kickoff()

    evs = backends.events()
    searches = [e for e in evs if e.type == "memory_tier_access"]
    # one context search per task, attributed to the agent doing the task
    assert [e.agent for e in searches] == [role_slug(r) for r in roles]
    assert all(set(e.payload["latency_by_tier"]) >= {"redis"} for e in searches)
    # every task output was saved as knowledge, attributed to its agent
    r = backends.memory.load_sync("circadian anchoring improves sleep onset", limit=10)
    assert r.hit
    saved = [i for i in r.items if i.id.startswith("crew-output/")]
    assert {i.metadata.get("agent") for i in saved} == {role_slug(x) for x in roles}
    tiers = backends.reduced()["tiers"]
    assert tiers["queries"] == len(searches) + 1
    # CrewAI's own reset command empties every tier of the namespace
    crew.reset_memories(command_type="external")
    assert backends.memory.load_sync("circadian anchoring improves sleep onset").tier == "miss"
