"""CrewAI Flows, agents outside crews, stacked instrumentors and checkpoint resume.

Real flows and agents on the offline ScriptedLLM -> listener -> real Redis -> decode.
Features a release lacks are skipped with the reason (this file runs on every release
of the CI matrix: 1.6.1, 1.10.1, 1.13.0 and the newest).
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crewai import Agent
from crewai.flow.flow import Flow, listen, start
from crews import BiomarkerTool, kick, sequential_crew
from test_crewai import by_type, read_events

import auren_core
from auren_core.events import Event
from auren_core.integrations.crewai import AurenListener
from auren_core.integrations.crewai.scripted_llm import ScriptedLLM


@pytest.fixture
def listener(redis_url: str, stream: str) -> Iterator[AurenListener]:
    lst = auren_core.instrument(redis_url=redis_url, stream=stream, dispatch="tap")
    yield lst
    lst.drain(2)
    lst.publisher.flush(2)


def settle(listener: AurenListener, redis_url: str, stream: str, done: str, n: int = 1) -> Any:
    import time

    deadline = time.monotonic() + 10
    while True:
        listener.drain(5)
        listener.publisher.flush(2)
        evs = read_events(redis_url, stream)
        if sum(1 for e in evs if e.type == done) >= n or time.monotonic() > deadline:
            return evs


def _specialist(llm: ScriptedLLM) -> Agent:
    return Agent(
        role="Sleep Specialist",
        goal="Improve the client's sleep quality",
        backstory="Clinical sleep researcher.",
        tools=[BiomarkerTool()],
        llm=llm,
        verbose=False,
    )


def _kickoff_agent(agent: Agent, prompt: str) -> str:
    if not hasattr(agent, "kickoff"):
        pytest.skip("this CrewAI release has no Agent.kickoff()")
    out = agent.kickoff(prompt)
    return str(getattr(out, "raw", out))


class CarePlanFlow(Flow):  # type: ignore[type-arg]
    """intake -> assess (an agent on its own) -> plan (a crew)."""

    llm: Any = None

    @start()
    def intake(self) -> str:
        return "client reports poor sleep"

    @listen(intake)
    def assess(self, note: str) -> str:
        return _kickoff_agent(_specialist(type(self).llm), f"Assess the client's sleep: {note}")

    @listen(assess)
    def plan(self, assessment: str) -> str:
        crew, _ = sequential_crew(llm=type(self).llm)
        return str(kick(crew).raw)


class FailingFlow(Flow):  # type: ignore[type-arg]
    @start()
    def intake(self) -> str:
        return "ok"

    @listen(intake)
    def explode(self, _: str) -> str:
        raise RuntimeError("lab API unavailable")


def _tokens(evs: list[Event]) -> tuple[int, int, int]:
    calls = [e for e in evs if e.type == "llm_call"]
    return (
        sum(e.payload["input_tokens"] for e in calls),
        sum(e.payload["output_tokens"] for e in calls),
        sum(e.payload["cached_tokens"] for e in calls),
    )


def _scripted(llm: ScriptedLLM) -> tuple[int, int, int]:
    return (
        sum(u.input_tokens for u in llm.calls),
        sum(u.output_tokens for u in llm.calls),
        sum(u.cached_tokens for u in llm.calls),
    )


def test_flow_with_agent_outside_crew(listener: AurenListener, redis_url: str, stream: str) -> None:
    llm = ScriptedLLM("gpt-4o-mini", seed=7)
    CarePlanFlow.llm = llm
    CarePlanFlow().kickoff()
    evs = settle(listener, redis_url, stream, "flow_completed")
    t = by_type(evs)
    # the flow: started, every method started then completed, completed
    assert len(t["flow_started"]) == 1 and len(t["flow_completed"]) == 1
    run = t["flow_started"][0].run
    assert run and t["flow_started"][0].payload["flow"] == "CarePlanFlow"
    steps = [(e.payload["method"], e.payload["phase"]) for e in t["flow_step"]]
    for m in ("intake", "assess", "plan"):
        assert (m, "started") in steps and (m, "completed") in steps, steps
    assert all(e.run == run for e in t["flow_step"] + t["flow_completed"])
    done = [e for e in t["flow_step"] if e.payload["phase"] == "completed"]
    assert all(e.payload["ok"] is True and e.payload["duration_ms"] > 0 for e in done)
    assert t["flow_completed"][0].payload["duration_ms"] >= max(
        e.payload["duration_ms"] for e in done
    )
    # the agent run on its own: registered with capabilities, timed, in the flow's run
    lone = [e for e in t["agent_started"] if e.payload.get("task_id") is None]
    assert [e.agent for e in lone] == ["sleep_specialist"] and lone[0].run == run
    fin = [e for e in t["agent_completed"] if e.payload.get("task_id") is None]
    assert len(fin) == 1 and fin[0].payload["duration_ms"] > 0 and fin[0].run == run
    reg = {e.agent: e.payload for e in t["agent_registered"]}
    assert "biomarker_lookup" in reg["sleep_specialist"]["capabilities"]
    lone_calls = [e for e in t["llm_call"] if e.run == run]
    assert lone_calls and all(e.agent == "sleep_specialist" for e in lone_calls)
    # the crew inside the flow: its own run, linked to the flow
    (crew,) = t["crew_started"]
    assert crew.run != run and crew.payload.get("flow_run") == run
    assert {e.run for e in t["crew_completed"]} == {crew.run}
    # every token the scripted LLM reported, exactly once
    assert len(t["llm_call"]) == len(llm.calls)
    assert _tokens(evs) == _scripted(llm)
    assert listener.counters()["handler_errors"] == 0


def test_failed_flow_step(listener: AurenListener, redis_url: str, stream: str) -> None:
    with pytest.raises(RuntimeError):
        FailingFlow().kickoff()
    evs = settle(listener, redis_url, stream, "flow_step", 4)
    t = by_type(evs)
    failed = [e for e in t["flow_step"] if e.payload["phase"] == "failed"]
    assert [e.payload["method"] for e in failed] == ["explode"]
    assert failed[0].payload["ok"] is False and "lab API" in failed[0].payload["error"]
    if t["flow_failed"]:  # FlowFailedEvent: releases that have it
        assert "lab API" in (t["flow_failed"][0].payload["error"] or "")


def test_agent_kickoff_alone_is_its_own_run(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    llm = ScriptedLLM("gpt-4o-mini", seed=11)
    _kickoff_agent(_specialist(llm), "How did the client sleep this week?")
    evs = settle(listener, redis_url, stream, "agent_completed")
    t = by_type(evs)
    (started,) = t["agent_started"]
    assert started.agent == "sleep_specialist" and started.run
    assert {e.run for e in evs if e.type != "agent_registered"} == {started.run}
    assert len(t["llm_call"]) == len(llm.calls) and _tokens(evs) == _scripted(llm)
    assert t["tool_used"] and t["tool_used"][0].payload["tool"] == "biomarker_lookup"


def test_tokens_exact_with_openinference_in_process(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    oi = pytest.importorskip(
        "openinference.instrumentation.crewai",
        reason="openinference-instrumentation-crewai needs crewai >= 1.10.1",
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = oi.CrewAIInstrumentor()
    for kw in ({"use_event_listener": True}, {}):
        try:
            inst.instrument(tracer_provider=provider, skip_dep_check=True, **kw)
            break
        except TypeError:
            continue
    try:
        crew, llms = sequential_crew(seed=21)
        kick(crew)
        evs = settle(listener, redis_url, stream, "crew_completed")
    finally:
        inst.uninstrument()
    assert len([e for e in evs if e.type == "llm_call"]) == len(llms[0].calls)
    assert _tokens(evs) == _scripted(llms[0])
    ids = [e.payload.get("call_id") for e in evs if e.type == "llm_call"]
    # the instrumentor needs CrewAI >= 1.10.1, where every call carries a call_id: one
    # event per call
    assert ids and all(ids) and len(set(ids)) == len(ids)


class ResumableFlow(Flow):  # type: ignore[type-arg]
    llm: Any = None
    fail_once: bool = True
    ran: Counter[str] = Counter()

    @start()
    def intake(self) -> str:
        type(self).ran["intake"] += 1
        return _kickoff_agent(_specialist(type(self).llm), "Summarise the client's sleep log.")

    @listen(intake)
    def plan(self, note: str) -> str:
        type(self).ran["plan"] += 1
        if type(self).fail_once:
            type(self).fail_once = False
            raise RuntimeError("interrupted")
        return "plan ready"


def test_checkpoint_resume_does_not_double_count(
    listener: AurenListener, redis_url: str, stream: str, tmp_path: Any
) -> None:
    try:
        from crewai.state.checkpoint_config import CheckpointConfig
    except ImportError:
        pytest.skip("checkpoints arrived in CrewAI 1.14.3")
    llm = ScriptedLLM("gpt-4o-mini", seed=5)
    ResumableFlow.llm = llm
    ResumableFlow.fail_once = True
    ResumableFlow.ran = Counter()
    loc = str(tmp_path / "ckpt")
    cfg = CheckpointConfig(location=loc, on_events=["*"])
    with pytest.raises(RuntimeError):
        ResumableFlow(checkpoint=cfg).kickoff()
    from crewai.events.event_bus import crewai_event_bus

    crewai_event_bus.flush(10)  # checkpoints are written by CrewAI's sync handlers
    first = settle(listener, redis_url, stream, "flow_step", 3)
    calls_first = len(llm.calls)
    assert calls_first > 0
    files = sorted(
        glob.glob(os.path.join(loc, "**", "*.json"), recursive=True), key=os.path.getmtime
    )
    # the last checkpoint taken after "intake" completed
    mark = '"checkpoint_completed_methods": ["intake"]'
    after = [f for f in files if mark in Path(f).read_text()]
    assert after, "no checkpoint written after intake"
    ResumableFlow().kickoff(from_checkpoint=CheckpointConfig(restore_from=after[-1]))
    evs = settle(listener, redis_url, stream, "flow_completed")
    t = by_type(evs)
    # whatever CrewAI replays on resume (completed methods' events, through
    # bus.replay) is not counted again: each method counts as often as it really ran,
    # and the tokens are exactly those of the calls really made
    done = Counter(e.payload["method"] for e in t["flow_step"] if e.payload["phase"] == "completed")
    ran = ResumableFlow.ran  # "plan" ran twice: failed once, then completed
    assert done == Counter({"intake": ran["intake"], "plan": ran["plan"] - 1}), (done, ran)
    assert len(t["llm_call"]) == len(llm.calls) and _tokens(evs) == _scripted(llm)
    assert len(first) < len(evs)
    # and an event replayed through the bus directly (what a resume does) is not seen
    from crewai.events import MethodExecutionFinishedEvent

    replayed = MethodExecutionFinishedEvent(
        flow_name="ResumableFlow", method_name="intake", state={}, result="x"
    )
    crewai_event_bus.replay(ResumableFlow(), replayed)
    crewai_event_bus.flush(5)
    assert len(settle(listener, redis_url, stream, "flow_completed")) == len(evs)
    assert listener.counters()["handler_errors"] == 0


def _cls(name: str) -> Any:
    from auren_core.integrations.crewai.tap import resolve

    cls = {c.__name__: c for c in resolve()}.get(name)
    if cls is None:
        pytest.skip(f"{name} is not in this CrewAI release")
    return cls


def test_human_feedback_wait_is_reported(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    from crewai.events.event_bus import crewai_event_bus

    req, got = _cls("HumanFeedbackRequestedEvent"), _cls("HumanFeedbackReceivedEvent")
    flow = CarePlanFlow()
    crewai_event_bus.emit(
        flow,
        req(flow_name="CarePlanFlow", method_name="review", output="draft", message="Approve?"),
    )
    crewai_event_bus.emit(
        flow, got(flow_name="CarePlanFlow", method_name="review", feedback="approved")
    )
    evs = settle(listener, redis_url, stream, "human_input", 2)
    h = [e for e in evs if e.type == "human_input"]
    assert [e.payload["state"] for e in h] == ["requested", "received"]
    assert h[0].payload["method"] == "review" and h[0].payload["message"] == "Approve?"
    assert h[1].payload["wait_ms"] is not None and h[1].payload["wait_ms"] >= 0


def test_a2a_delegation_is_collaboration(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    from crewai.events.event_bus import crewai_event_bus

    start_cls = _cls("A2ADelegationStartedEvent")
    agent = _specialist(ScriptedLLM())
    crewai_event_bus.emit(
        agent,
        start_cls(
            endpoint="http://lab.internal/a2a",
            task_description="Analyse the latest blood panel",
            agent_id="lab-agent",
            a2a_agent_name="Lab Analyst",
            from_agent=agent,
        ),
    )
    evs = settle(listener, redis_url, stream, "collaboration")
    (c,) = [e for e in evs if e.type == "collaboration"]
    assert c.agent == "sleep_specialist"
    # the agent card's name where the release carries it, else the remote host
    assert c.payload["kind"] == "a2a" and c.payload["to_agent"] in ("lab_analyst", "lab_internal")


def test_memory_retrieval_failure_is_a_miss(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    from crewai.events.event_bus import crewai_event_bus

    failed = _cls("MemoryRetrievalFailedEvent")
    crewai_event_bus.emit(object(), failed(error="vector store unavailable", task_id=None))
    evs = settle(listener, redis_url, stream, "knowledge_access")
    (k,) = [e for e in evs if e.type == "knowledge_access"]
    assert k.payload["hit"] is False and "vector store" in k.payload["error"]


def test_tool_reporting_failure_is_not_ok(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    try:
        from crewai.tools.tool_failure import ToolFailure
    except ImportError:
        pytest.skip("tools report failures from CrewAI 1.15.9")
    from crewai.tools import BaseTool

    class LabTool(BaseTool):
        name: str = "biomarker_lookup"
        description: str = "Look up the client's recent biomarker readings."

        def _run(self, query: str = "", **_: Any) -> Any:
            return ToolFailure(message="lab API returned 503")

    llm = ScriptedLLM("gpt-4o-mini", seed=3)
    agent = _specialist(llm)
    agent.tools = [LabTool()]
    _kickoff_agent(agent, "Check the client's HRV.")
    evs = settle(listener, redis_url, stream, "agent_completed")
    tools = [e for e in evs if e.type == "tool_used"]
    assert tools and tools[0].payload["ok"] is False
    assert "503" in (tools[0].payload["error"] or "")


def test_usage_from_the_completed_event_with_reasoning_tokens(
    listener: AurenListener, redis_url: str, stream: str
) -> None:
    """1.13+: a provider that reports usage only on LLMCallCompletedEvent.usage (not
    through the LLM's own tracker) is still counted exactly, reasoning tokens included."""
    import inspect

    from crewai.llms.base_llm import BaseLLM

    if "usage" not in inspect.signature(BaseLLM._emit_call_completed_event).parameters:
        pytest.skip("LLMCallCompletedEvent.usage arrived in CrewAI 1.13")
    llm = ScriptedLLM("gpt-4o-mini", seed=9, usage_via="event", reasoning_share=0.25)
    crew, _ = sequential_crew(llm=llm)
    kick(crew)
    evs = settle(listener, redis_url, stream, "crew_completed")
    calls = [e for e in evs if e.type == "llm_call"]
    assert len(calls) == len(llm.calls) and _tokens(evs) == _scripted(llm)
    assert sum(e.payload["reasoning_tokens"] for e in calls) == sum(
        u.reasoning_tokens for u in llm.calls
    ) > 0
    assert all(e.payload["cost_source"] == "genai-prices" for e in calls)
