"""Real CrewAI crews (offline ScriptedLLM) whose agents use the tiered memory.

The agents look knowledge up through :class:`KnowledgeLookupTool` (and, in the
second test, through CrewAI's external memory backed by the tiered memory); the
tier events they cause are read back from the real stream and fed to the same
reducer the dashboard, ``auren top --once --json`` and the HTTP API use.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from crewai import Agent, Crew, Process, Task
from crewai.agents.agent_builder.base_agent import BaseAgent

from auren_core.events import Event, decode
from auren_core.integrations.crewai.scripted_llm import (
    ScriptCall,
    ScriptedLLM,
    final_answer,
    react_action,
)
from auren_core.memory import TieredMemory
from auren_core.memory.crewai_storage import (
    crew_memory_kwargs,
    role_slug,
    unified_memory_available,
)
from auren_core.memory.crewai_tool import KnowledgeLookupTool
from auren_core.state import Reducer
from auren_core.streams.publisher import Publisher

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


# --------------------------------------------------------------------------- crew memory
# CrewAI's memory analysis prompts (1.10+: the memory's LLM distils task outputs into
# memories, files them under a scope, plans consolidation, analyses long queries).
_EXTRACT = "You extract discrete, reusable memory statements"
_SAVE = "You analyze content to be stored in a hierarchical memory system"
_QUERY = "You analyze a query for searching memory"
_CONSOLIDATE = "You are comparing new content against existing memories"
FINDING = "circadian anchoring improves sleep onset"


class MemoryScript:
    """Agents answer with a finding; memory-analysis prompts get the JSON CrewAI
    asks for. Records the prompt each agent saw (memory context included)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.analysis: list[str] = []

    def __call__(self, call: ScriptCall) -> str:
        prompt = call.prompt
        if _EXTRACT in prompt:
            self.analysis.append("extract")
            result = prompt.rsplit("Result:", 1)[-1].split("Final Answer:", 1)[-1]
            result = result.strip().splitlines()[0]
            return json.dumps({"memories": [result]})
        if _SAVE in prompt:
            self.analysis.append("save")
            return json.dumps(
                {
                    "suggested_scope": "/sleep",
                    "categories": ["finding"],
                    "importance": 0.8,
                    "extracted_metadata": {"entities": [], "dates": [], "topics": ["sleep"]},
                }
            )
        if _QUERY in prompt:
            self.analysis.append("query")
            query = prompt.split("Query:", 1)[-1].strip().splitlines()[0]
            return json.dumps(
                {
                    "keywords": [],
                    "suggested_scopes": [],
                    "complexity": "simple",
                    "recall_queries": [query],
                }
            )
        if _CONSOLIDATE in prompt:
            self.analysis.append("consolidate")
            return json.dumps({"actions": [], "insert_new": True, "insert_reason": "new"})
        if call.agent_role is None:  # any other memory prompt (exploration): plain text
            return "Nothing is missing."
        self.seen[call.agent_role] = prompt
        if call.agent_role == "Training Coach":
            return final_answer("Training Coach: noted what the team found before.")
        return final_answer(f"{call.agent_role} finding: {FINDING}.")


def memory_crew(mem: TieredMemory, llm: ScriptedLLM, roles: list[str], description: str) -> Crew:
    agents: list[BaseAgent] = [
        Agent(role=r, goal="Assess", backstory="AUREN specialist.", llm=llm, verbose=False)
        for r in roles
    ]
    tasks = [
        Task(description=description.format(role=r), expected_output="One finding.", agent=a)
        for r, a in zip(roles, agents, strict=True)
    ]
    return Crew(
        agents=agents,
        tasks=tasks,
        process=Process.sequential,
        verbose=False,
        **crew_memory_kwargs(mem),
    )


@pytest.mark.usefixtures("drop_table")
def test_crew_memory_is_the_tiered_memory(backends: Backends) -> None:
    """The one import path, on whichever CrewAI is installed: the agents' memory
    searches are tier accesses attributed to them, and what they found is saved
    where a later run (another crew, another Memory object) finds it."""
    script = MemoryScript()
    llm = ScriptedLLM("gpt-4o-mini", script=script, seed=4)
    roles = ["Sleep Specialist", "Neuroscientist"]
    ask = "Assess memory consolidation during sleep ({role})."
    memory_crew(backends.memory, llm, roles, ask).kickoff()

    searches = [e for e in backends.events() if e.type == "memory_tier_access"]
    assert searches and {e.agent for e in searches} == {role_slug(r) for r in roles}
    for r in roles:  # each agent's context search for its task is its own
        assert any(
            e.agent == role_slug(r) and ask.format(role=r) in e.payload["query"] for e in searches
        ), (r, [(e.agent, e.payload["query"]) for e in searches])
    assert all("redis" in e.payload["latency_by_tier"] for e in searches)

    # the outputs are knowledge now, attributed to the agents that saved them
    found = backends.memory.load_sync(FINDING, limit=10)
    assert found.hit
    saved = {i.id for i in found.items if FINDING in i.text}
    assert len(saved) == len(roles)
    stored = backends.memory.get_items_sync(saved)
    assert stored.ok and {i.agent for i in stored.items} == {role_slug(r) for r in roles}

    # a later run: a new crew (and a new CrewAI memory object) over the same store
    before = len(backends.events())
    later = ScriptedLLM("gpt-4o-mini", script=script, seed=5)
    ask_later = "Plan the client's week around circadian anchoring and sleep onset."
    memory_crew(backends.memory, later, ["Training Coach"], ask_later).kickoff()
    assert FINDING not in ask_later and FINDING in script.seen["Training Coach"]
    coach = [e for e in backends.events()[before:] if e.agent == "training_coach"]
    served = {e.payload["item"] for e in coach if e.type == "knowledge_access"}
    assert served & saved


def external_script(call: ScriptCall) -> str:
    return final_answer(f"{call.agent_role} finding: {FINDING}.")


@pytest.mark.skipif(
    unified_memory_available(), reason="CrewAI 1.10 removed external memory (unified memory)"
)
@pytest.mark.usefixtures("drop_table")
def test_crew_external_memory_is_the_tiered_memory(backends: Backends) -> None:
    from auren_core.memory.crewai_storage import tiered_external_memory

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
    r = backends.memory.load_sync(FINDING, limit=10)
    assert r.hit
    saved = [i for i in r.items if i.id.startswith("crew-output/")]
    assert {i.metadata.get("agent") for i in saved} == {role_slug(x) for x in roles}
    tiers = backends.reduced()["tiers"]
    assert tiers["queries"] == len(searches) + 1
    # CrewAI's own reset command empties every tier of the namespace
    crew.reset_memories(command_type="external")
    assert backends.memory.load_sync(FINDING).tier == "miss"


# --------------------------------------------------------------------------- CrewAI 1.10+
unified = pytest.mark.skipif(
    not unified_memory_available(),
    reason="needs CrewAI's unified memory (1.10+); this CrewAI has external memory",
)


def _events_of(backends: Backends, etype: str, start: int = 0) -> list[Event]:
    return [e for e in backends.events()[start:] if e.type == etype]


@unified
@pytest.mark.usefixtures("drop_table")
def test_storage_backend_maps_records_onto_the_tiers(backends: Backends) -> None:
    from crewai.memory.storage.backend import StorageBackend
    from crewai.memory.types import MemoryRecord

    from auren_core.memory.crewai_storage import (
        TieredStorageBackend,
        TierStoreError,
        memory_agent,
    )

    store = TieredStorageBackend(backends.memory)
    assert isinstance(store, StorageBackend)  # the runtime-checkable protocol, every method
    # items saved without CrewAI are records in the default scope
    foreign = store.get_record("sleep-1")
    assert foreign is not None and foreign.scope == "/knowledge"
    assert (foreign.content, foreign.metadata, foreign.importance) == (KNOWLEDGE[0][1], {}, 0.5)
    assert store.get_record("no-such-id") is None

    t0 = datetime(2026, 1, 1, 8, 30)
    recs = [
        MemoryRecord(
            id="r1",
            content="Caffeine after 14:00 delays sleep onset by forty minutes",
            scope="/sleep/habits",
            categories=["habit"],
            metadata={"topic": "sleep", "n": 3},
            importance=0.9,
            created_at=t0,
            last_accessed=t0 + timedelta(hours=1),
            source="client-7",
            private=True,
        ),
        MemoryRecord(
            id="r2",
            content="Zone-2 volume improves resting HRV",
            scope="/training",
            categories=["training"],
            metadata={"topic": "training"},
            created_at=t0 + timedelta(days=1),
        ),
        MemoryRecord(
            id="r3",
            content="A deload week every fourth week sustains progress",
            scope="/training/plan",
            categories=["training", "plan"],
            created_at=t0 + timedelta(days=2),
        ),
    ]
    with memory_agent("sleep_specialist"):
        store.save(recs)
    for rec in recs:  # every field round-trips
        assert store.get_record(rec.id) == rec
    stored = backends.memory.get_items_sync(["r1", "r2", "r3"])
    assert {i.agent for i in stored.items} == {"sleep_specialist"}

    # listings: newest first; foreign items carry their save time (newest here)
    assert [r.id for r in store.list_records()][-3:] == ["r3", "r2", "r1"]
    assert [r.id for r in store.list_records("/training")] == ["r3", "r2"]
    assert [r.id for r in store.list_records("/training", limit=1, offset=1)] == ["r2"]
    assert store.list_records("/train") == []  # path prefixes, not string prefixes
    assert store.list_scopes("/") == ["/knowledge", "/sleep", "/training"]
    assert store.list_scopes("/training") == ["/training/plan"]
    assert store.list_categories() == {"habit": 1, "training": 2, "plan": 1}
    assert store.list_categories("/training") == {"training": 2, "plan": 1}
    assert (store.count(), store.count("/training"), store.count("/knowledge")) == (6, 2, 3)
    info = store.get_scope_info("/training")
    assert (info.path, info.record_count, info.categories) == ("/training", 2, ["plan", "training"])
    assert (info.oldest_record, info.newest_record) == (recs[1].created_at, recs[2].created_at)
    assert info.child_scopes == ["/training/plan"]

    # search: one tracked load of the query's text, attributed, filtered, scored
    start = len(backends.events())
    (vec,) = store.embedder(["caffeine delays sleep onset"])
    with memory_agent("neuroscientist"):
        hits = store.search(vec, limit=5)
        assert [r.id for r, _ in store.search(vec, scope_prefix="/training")] == []
        assert store.search(vec, categories=["nope"]) == []
        assert [r.id for r, _ in store.search(vec, metadata_filter={"n": 3})] == ["r1"]
    assert hits[0][0].id == "r1" and hits[0][0] == recs[0].model_copy(
        update={"embedding": hits[0][0].embedding}
    )
    assert all(0 < s <= 1 for _, s in hits) and [s for _, s in hits] == sorted(
        (s for _, s in hits), reverse=True
    )
    tier = _events_of(backends, "memory_tier_access", start)
    assert [e.agent for e in tier] == ["neuroscientist"] * 4
    assert {e.payload["query"] for e in tier} == {"caffeine delays sleep onset"}
    know = _events_of(backends, "knowledge_access", start)
    assert ("neuroscientist", "r1") in {(e.agent, e.payload["item"]) for e in know}

    # update replaces the item (the saving agent is kept); the cache does not go stale
    store.update(recs[1].model_copy(update={"content": "Zone-2 work lowers resting heart rate"}))
    changed = store.get_record("r2")
    assert changed is not None and changed.content == "Zone-2 work lowers resting heart rate"
    assert backends.memory.get_items_sync(["r2"]).items[0].agent == "sleep_specialist"
    (vec2,) = store.embedder(["zone-2 resting heart rate"])
    assert [r.id for r, _ in store.search(vec2, limit=1)] == ["r2"]

    # delete: every criterion given must hold
    assert store.delete(record_ids=["r3", "nope"]) == 1 and store.get_record("r3") is None
    assert store.delete(record_ids=[]) == 0
    assert store.delete(categories=["habit"], scope_prefix="/training") == 0
    assert store.delete(categories=["habit"]) == 1
    assert store.delete(scope_prefix="/knowledge", metadata_filter={"x": 1}) == 0
    assert store.delete(scope_prefix="/knowledge", older_than=datetime(2000, 1, 1)) == 0
    assert store.delete(scope_prefix="/knowledge", older_than=datetime(2100, 1, 1)) == 3
    assert [r.id for r in store.list_records()] == ["r2"]

    # async faces, reset of a scope, reset of everything
    async def async_faces() -> None:
        await store.asave([recs[2]])
        assert [r.id for r, _ in await store.asearch(vec2, limit=1)] == ["r2"]
        assert await store.adelete(record_ids=["r3"]) == 1

    asyncio.run(async_faces())
    store.save([recs[2]])
    store.reset("/training/plan")
    assert [r.id for r in store.list_records()] == ["r2"]
    store.reset()
    assert store.count() == 0 and backends.memory.load_sync("resting heart rate").tier == "miss"

    # a vector this storage's embedder did not make: no text to look up, an empty answer
    assert store.search([0.5] * len(vec)) == []
    with pytest.raises(TierStoreError):
        TieredStorageBackend(TieredMemory(None, None)).count()


@unified
def test_storage_backend_never_raises_from_a_lookup(tmp_path: Path) -> None:
    from crewai.memory.types import MemoryRecord
    from servers import free_port

    from auren_core.memory.crewai_storage import TieredStorageBackend, TierStoreError

    dead = TieredMemory(
        f"redis://127.0.0.1:{free_port()}/0",
        f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        track=False,
        redis_timeout=0.2,
        pg_timeout=0.5,
    )
    store = TieredStorageBackend(dead)
    try:
        (vec,) = store.embedder(["memory consolidation"])
        assert store.search(vec) == []
        assert store.list_scopes() == [] and store.list_categories() == {}
        assert store.get_scope_info("/").record_count == 0
        with pytest.raises(TierStoreError):
            store.get_record("x")
        with pytest.raises(TierStoreError):
            store.list_records()
        with pytest.raises(TierStoreError):
            store.save([MemoryRecord(content="lost")])
    finally:
        dead.close()


@unified
@pytest.mark.usefixtures("drop_table")
def test_recall_is_one_tracked_load_per_query(backends: Backends) -> None:
    """CrewAI's recall searches every child scope with the same vector: the tiers
    are asked once, and the lookup is the asking agent's."""
    from crewai.memory.types import MemoryRecord

    from auren_core.memory.crewai_storage import crewai_memory, memory_agent

    script = MemoryScript()
    memory = crewai_memory(backends.memory, llm=ScriptedLLM("gpt-4o-mini", script=script))
    memory._storage.save(  # records in two more scopes: recall fans out over three
        [
            MemoryRecord(content="Sleep spindles support memory consolidation", scope="/sleep"),
            MemoryRecord(content="Memory consolidation needs protein", scope="/nutrition"),
        ]
    )
    for depth in ("deep", "shallow"):
        start = len(backends.events())
        with memory_agent("neuroscientist"):
            matches = memory.recall("memory consolidation", limit=5, depth=depth)
        texts = {m.record.content for m in matches}
        assert {"Sleep spindles support memory consolidation", KNOWLEDGE[0][1]} <= texts
        (tier,) = _events_of(backends, "memory_tier_access", start)
        assert tier.agent == "neuroscientist" and tier.payload["query"] == "memory consolidation"

    # a search in a thread that lost the context (CrewAI 1.10's pools do not copy
    # it) belongs to the one recall or save in progress
    store = memory._storage
    (vec,) = store.embedder(["sleep spindles"])
    start = len(backends.events())
    with store.operation("sleep_specialist"):
        worker = threading.Thread(target=store.search, args=(vec,))
        worker.start()
        worker.join()
    (tier,) = _events_of(backends, "memory_tier_access", start)
    assert tier.agent == "sleep_specialist"

    # remember(): explicit fields, so no analysis call; attributed like the lookups
    with memory_agent("nutritionist"):
        rec = memory.remember(
            "Tart cherry intake lengthens sleep", scope="/nutrition", categories=[], importance=0.6
        )
    assert rec is not None and script.analysis == []
    assert backends.memory.get_items_sync([rec.id]).items[0].agent == "nutritionist"
    memory.close()


@unified
@pytest.mark.usefixtures("drop_table")
def test_unified_crew_memory_adds_no_warnings_and_resets(
    backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """The adapter adds no warnings or log noise to a crew run (compared with the
    same crew without memory), and CrewAI's reset empties every tier."""
    import logging
    import warnings

    ask = "Assess memory consolidation during sleep ({role})."

    def run(with_memory: bool) -> tuple[set[tuple[str, str]], list[str], Crew]:
        script = MemoryScript()
        llm = ScriptedLLM("gpt-4o-mini", script=script, seed=6)
        crew = memory_crew(backends.memory, llm, ["Sleep Specialist"], ask)
        if not with_memory:
            crew = Crew(agents=crew.agents, tasks=crew.tasks, verbose=False)
        caplog.clear()
        with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            crew.kickoff()
        noisy = [
            f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING
        ]
        return {(w.category.__name__, str(w.message)) for w in caught}, noisy, crew

    plain_warnings, plain_logs, _ = run(with_memory=False)
    mem_warnings, mem_logs, crew = run(with_memory=True)
    assert mem_warnings <= plain_warnings, mem_warnings - plain_warnings
    assert mem_logs == plain_logs == []
    assert backends.memory.load_sync(FINDING).hit

    crew.reset_memories(command_type="memory")
    assert backends.memory.list_items_sync().items == []
    assert backends.memory.load_sync(FINDING).tier == "miss"


def test_one_import_path_picks_the_release(tmp_path: Path) -> None:
    """``crewai_memory`` / ``crew_memory_kwargs`` give what the installed CrewAI
    takes; the other release's classes say how to get the right one."""
    import auren_core.memory.crewai_storage as cs

    mem = TieredMemory(None, None, chroma_path=str(tmp_path / "chroma"), track=False)
    try:
        kwargs = cs.crew_memory_kwargs(mem)
        if cs.unified_memory_available():
            from crewai.memory import Memory

            assert list(kwargs) == ["memory"] and isinstance(kwargs["memory"], Memory)
            assert isinstance(kwargs["memory"]._storage, cs.TieredStorageBackend)
            with pytest.raises(ImportError, match="crewai_memory"):
                cs.tiered_external_memory
        else:
            from crewai.memory.external.external_memory import ExternalMemory

            assert list(kwargs) == ["external_memory"]
            assert isinstance(kwargs["external_memory"], ExternalMemory)
            with pytest.raises(ImportError, match="crewai_memory"):
                cs.TieredStorageBackend
        assert type(cs.crewai_memory(mem)) is type(next(iter(kwargs.values())))
    finally:
        mem.close()
