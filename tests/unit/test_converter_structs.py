"""Typed payloads at the converters (issue 12): every payload a converter builds is the
struct of its type (``PAYLOAD_TYPES[type]``, never a dict), it encodes to JSON that decodes
back into the same struct, and an unknown field name is refused where the struct is built."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from auren_core import emitter
from auren_core.events import (
    PAYLOAD_TYPES,
    AgentRegistered,
    CrewCompleted,
    Event,
    FlowStep,
    HumanInput,
    Hypothesis,
    LlmCall,
    decode,
    encode,
)
from auren_core.events.model import _Payload
from auren_core.integrations.crewai.convert import Converter
from auren_core.integrations.crewai.tap import Meta
from auren_core.memory._events import load_events
from auren_core.memory._types import MemoryItem, MemoryResult
from auren_core.otlp import SpanRec, TraceBuffer
from auren_core.otlp.mapping import Mapper
from auren_core.streams.publisher import Publisher

T0 = 1_800_000_000.0
Built = list[tuple[str, Any]]


def check_typed(built: Built) -> None:
    """Each payload is exactly its type's struct and survives the wire unchanged."""
    assert built
    for etype, p in built:
        assert type(p) is PAYLOAD_TYPES[etype], (etype, type(p))
        back = decode(encode(Event(id="x-1", ts=T0, type=etype, payload=p)), "1-0")
        assert isinstance(back, Event), (etype, back)
        assert back.payload == p, etype


def test_an_unknown_field_is_refused_where_the_payload_is_built() -> None:
    with pytest.raises(TypeError, match="input_token"):
        LlmCall(model="m", input_token=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        FlowStep(method="m", phase="done", wait_ms=1.0)  # type: ignore[call-arg, arg-type]


# ------------------------------------------------------------------ CrewAI
class _Recorder:
    """The publisher's side of the converter: the encoded entries it was handed."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    def enqueue_raw(self, data: bytes) -> None:
        self.raw.append(data)


class _Conv(Converter):
    def __init__(self, pub: Any) -> None:
        super().__init__(pub, tap=None)  # type: ignore[arg-type]
        self.built: Built = []

    def send(self, type: str, payload: Any, meta: Meta, **kw: Any) -> None:
        self.built.append((type, payload))
        super().send(type, payload, meta, **kw)


def _ev(name: str, **attrs: Any) -> Any:
    """A stand-in for a CrewAI event: the converter branches on the class name."""
    return type(name, (SimpleNamespace,), {})(**attrs)


def _meta(**kw: Any) -> Meta:
    return Meta(1, "e-1", T0, run="run-1", duration_ms=12.5, **kw)


def test_every_crewai_conversion_builds_its_struct() -> None:
    pub = _Recorder()
    conv = _Conv(pub)
    llm = SimpleNamespace(model="gpt-4o-mini", provider="openai")
    agent = SimpleNamespace(
        role="Sleep Specialist", goal="g", tools=[SimpleNamespace(name="search")],
        llm=llm, allow_delegation=True, knowledge_sources=None, a2a=None,
    )  # fmt: skip
    task = SimpleNamespace(id="t-1", name="t", description="what", agent=agent)
    crew = SimpleNamespace(agents=[agent], process="sequential", tasks=[task])
    conv._crew_started(crew, _ev("CrewKickoffStartedEvent", inputs={"query": "q"},
                                 crew_name="c"), _meta())  # fmt: skip
    for name, err in (("CrewKickoffCompletedEvent", None), ("CrewKickoffFailedEvent", "boom")):
        conv._crew_ended(crew, _ev(name, crew_name="c", error=err), _meta())
    for name in ("TaskStartedEvent", "TaskCompletedEvent", "TaskFailedEvent"):
        conv._task(None, _ev(name, task=task, task_id="t-1", error="x",
                             output=SimpleNamespace(raw="answer")), _meta())  # fmt: skip
    for name in ("AgentExecutionStartedEvent", "AgentExecutionCompletedEvent",
                 "AgentExecutionErrorEvent"):  # fmt: skip
        conv._agent(None, _ev(name, agent=agent, task=task, error="x"), _meta())
    for name in ("LiteAgentExecutionStartedEvent", "LiteAgentExecutionCompletedEvent",
                 "LiteAgentExecutionErrorEvent"):  # fmt: skip
        conv._lite_agent(agent, _ev(name, agent_info={}, error="x"), _meta())
    for name in ("LLMCallCompletedEvent", "LLMCallFailedEvent"):
        conv._llm(llm, _ev(name, model="gpt-4o-mini", usage={"prompt_tokens": 5},
                           call_id="c-1", agent_role="Sleep Specialist", error="x"),
                  _meta())  # fmt: skip
    delegate = _ev("ToolUsageStartedEvent", tool_name="Delegate work to coworker",
                   tool_args={"coworker": "Writer", "task": "do"}, agent_role="a")  # fmt: skip
    conv._tool_started(None, delegate, _meta())
    now = dt.datetime(2027, 1, 1)
    for name in ("ToolUsageFinishedEvent", "ToolUsageErrorEvent"):
        conv._tool_ended(None, _ev(name, tool_name="search", started_at=now, finished_at=now,
                                   tool_args={"q": 1}, agent_role="a", error="x"),
                         _meta())  # fmt: skip
    for ev in (
        _ev("KnowledgeRetrievalCompletedEvent", retrieved_knowledge="k", agent_role="a"),
        _ev("KnowledgeQueryFailedEvent", error="down", query="q"),
        _ev("MemoryQueryCompletedEvent", source_type="short_term", results=[1],
            query_time_ms=3.5, query="q"),
        _ev("MemoryRetrievalCompletedEvent", memory_content="m", retrieval_time_ms=2),
    ):  # fmt: skip
        conv._knowledge(None, ev, _meta())
    flow = SimpleNamespace(state={"id": "f-1"})
    conv._flow_started(flow, _ev("FlowStartedEvent", flow_name="F", inputs={"a": 1}), _meta())
    for name in ("FlowFinishedEvent", "FlowFailedEvent"):
        conv._flow_ended(flow, _ev(name, flow_name="F", error="x"), _meta())
    for name in Converter._PHASES:
        conv._flow_step(flow, _ev(name, flow_name="F", method_name="m", error="x"), _meta())
    for name in ("HumanFeedbackRequestedEvent", "HumanFeedbackReceivedEvent"):
        conv._human(flow, _ev(name, flow_name="F", method_name="m", message="ok?",
                              agent_role=None), _meta())  # fmt: skip
    conv._a2a(None, _ev("A2ADelegationStartedEvent", a2a_agent_name="Remote",
                        task_description="t", agent_role="a"), _meta())  # fmt: skip
    check_typed(conv.built)
    assert conv.repaired == 0 and len(pub.raw) == len(conv.built)
    assert {t for t, _ in conv.built} == set(PAYLOAD_TYPES) - {
        "hypothesis", "memory_tier_access", "memory_tier_storage", "publisher_stats"
    }
    for raw in pub.raw:  # what the publisher was handed is a valid v1 entry
        assert isinstance(decode(raw, "1-0"), Event)


# ------------------------------------------------------------------ OTLP
def test_every_otlp_mapping_builds_its_struct() -> None:
    oi = "openinference.span.kind"
    spans = [
        SpanRec("t", "1", "", "workflow", 0, 90, False, None,
                {"gen_ai.operation.name": "invoke_workflow"}),
        SpanRec("t", "2", "1", "Triage", 1, 80, False, None,
                {oi: "AGENT", "agent.name": "Triage"}),
        SpanRec("t", "3", "2", "Billing", 2, 70, True, "failed",
                {oi: "AGENT", "agent.name": "Billing"}),
        SpanRec("t", "4", "3", "chat", 3, 4, False, None,
                {oi: "LLM", "llm.model_name": "gpt-4o-mini", "llm.token_count.prompt": 9}),
        SpanRec("t", "5", "3", "search", 5, 6, True, "tool failed", {oi: "TOOL"}),
        SpanRec("t", "6", "3", "handoff to Refunds", 7, 8, False, None, {oi: "TOOL"}),
        SpanRec("t", "7", "3", "docs", 9, 10, False, None, {oi: "RETRIEVER"}),
        SpanRec("t", "8", "3", "embed", 11, 12, False, None, {oi: "EMBEDDING"}),
        SpanRec("t", "9", "1", "create_agent Planner", 13, 14, False, None,
                {"gen_ai.operation.name": "create_agent"}),
    ]  # fmt: skip
    b = TraceBuffer()
    evs = Mapper().events(b.add(spans, now=0) + b.flush_all())
    check_typed([(t, p) for _, t, _, _, p in evs])
    assert {t for _, t, _, _, p in evs} >= {
        "crew_started", "crew_completed", "agent_registered", "agent_started",
        "agent_completed", "agent_failed", "llm_call", "tool_used", "collaboration",
        "knowledge_access",
    }  # fmt: skip


# ------------------------------------------------------------------ memory, stats, emit
def test_memory_loads_build_their_structs() -> None:
    hit = MemoryResult([MemoryItem("i-1", "x", source="redis")], "redis_immediate",
                       {"redis": 0.51234})  # fmt: skip
    miss = MemoryResult([], "miss", {"redis": 1.0, "postgresql": 2.0}, {"chromadb": "down"})
    for res in (hit, miss):
        for costs in (None, {"redis": 0.001, "postgresql": 0.01}):
            check_typed(list(load_events("q", res, tier_costs=costs)))
    (_, load), _ = load_events("q", miss, tier_costs={"redis": 0.001})
    assert "errors" in load and load.cost_by_tier == {"redis": 0.001}


def test_publisher_stats_and_hypotheses_are_structs(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: Built = []

    def record(type: str, payload: Any = None, **kw: Any) -> None:
        sent.append((type, payload))

    pub = Publisher("redis://127.0.0.1:1/0", "test:typed", stats_interval=3600)
    try:
        monkeypatch.setattr(pub, "emit", record)
        pub._emit_stats()
        monkeypatch.setattr(emitter, "_publisher", pub)
        emitter.hypothesis("h-1", "formed", agent="a", confidence=0.5, statement="s")
    finally:
        monkeypatch.setattr(emitter, "_publisher", None)
        pub.close(timeout=0.1)
    check_typed(sent)
    assert [t for t, _ in sent] == ["publisher_stats", "hypothesis"]


def test_structs_whose_fields_the_dicts_had_encode_to_the_same_bytes() -> None:
    """Where the former dict held every field in the struct's order, the wire bytes are
    unchanged (the other converters' payloads now also carry their defaults explicitly)."""
    enc = msgspec.json.Encoder().encode
    pairs: list[tuple[_Payload, dict[str, Any]]] = [
        (FlowStep(method="m", flow="F", phase="failed", duration_ms=3.0, ok=False, error="e"),
         {"method": "m", "flow": "F", "phase": "failed", "duration_ms": 3.0, "ok": False,
          "error": "e"}),
        (HumanInput(state="received", flow="F", method="m", message=None, wait_ms=5.0),
         {"state": "received", "flow": "F", "method": "m", "message": None, "wait_ms": 5.0}),
        (AgentRegistered(role="r", goal=None, tools=["t"], model="m", capabilities=["t"],
                         allow_delegation=False),
         {"role": "r", "goal": None, "tools": ["t"], "model": "m", "capabilities": ["t"],
          "allow_delegation": False}),
        (CrewCompleted(crew="c", duration_ms=1.5, ok=True, error=None),
         {"crew": "c", "duration_ms": 1.5, "ok": True, "error": None}),
        (Hypothesis(hypothesis_id="h", status="formed", confidence=0.5, statement="s"),
         {"hypothesis_id": "h", "status": "formed", "confidence": 0.5, "statement": "s"}),
    ]  # fmt: skip
    for struct, old in pairs:
        assert enc(struct) == enc(old)
