"""Real CrewAI crews on the offline ScriptedLLM, shared by tests and benchmarks.

Nothing here is mocked: these are ordinary ``crewai.Crew`` objects; only the
LLM is offline (and deterministic given its seed).
"""

from __future__ import annotations

import os
from typing import Any

# CrewAI asks first-time users about tracing (a 20 s prompt) unless it is under test.
os.environ.setdefault("CREWAI_TESTING", "true")
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")

from crewai import Agent, Crew, CrewOutput, Process, Task
from crewai.tools import BaseTool
from pydantic import BaseModel, Field

from auren_core.integrations.crewai.scripted_llm import Script, ScriptedLLM

__all__ = ["BiomarkerTool", "delegating_crew", "hierarchical_crew", "kick", "sequential_crew"]


class BiomarkerInput(BaseModel):
    query: str = Field(description="Which biomarker or metric to look up.")


class BiomarkerTool(BaseTool):
    """A deterministic local lookup: stands in for a lab-results API."""

    name: str = "biomarker_lookup"
    description: str = "Look up the client's recent biomarker readings (HRV, sleep, glucose)."
    args_schema: type[BaseModel] = BiomarkerInput

    def _run(self, query: str, **_: Any) -> str:
        n = sum(map(ord, query)) % 40
        return (
            f"{query[:60]}: HRV {48 + n} ms, deep sleep {14 + n % 9}%, "
            f"fasting glucose {82 + n % 11} mg/dL"
        )


def _llm(llm: ScriptedLLM | None, model: str, seed: int, script: Script | None) -> ScriptedLLM:
    return llm if llm is not None else ScriptedLLM(model, seed=seed, script=script)


def sequential_crew(
    *,
    shared_llm: bool = True,
    model: str = "gpt-4o-mini",
    seed: int = 1,
    script: Script | None = None,
    llm: ScriptedLLM | None = None,
    backstory: str = "",
) -> tuple[Crew, list[ScriptedLLM]]:
    """Three specialists in sequence; the sleep specialist has a tool.

    ``shared_llm``: one LLM object for all agents (as many crews do), else one each.
    ``backstory``: extra text in every agent's backstory (long prompts hit the
    simulated prompt cache). Returns the crew and its distinct LLM objects.
    """
    shared = _llm(llm, model, seed, script) if shared_llm else None
    llms: list[ScriptedLLM] = []

    def pick(i: int) -> ScriptedLLM:
        one = shared or ScriptedLLM(model, seed=seed + i, script=script)
        if all(one is not x for x in llms):  # identity: LLMs may compare equal by value
            llms.append(one)
        return one

    sleep = Agent(
        role="Sleep Specialist",
        goal="Improve the client's sleep quality",
        backstory="Clinical sleep researcher." + backstory,
        tools=[BiomarkerTool()],
        llm=pick(0),
        allow_delegation=False,
        verbose=False,
    )
    nutrition = Agent(
        role="Nutritionist",
        goal="Align nutrition with recovery",
        backstory="Sports dietitian." + backstory,
        llm=pick(1),
        allow_delegation=False,
        verbose=False,
    )
    neuro = Agent(
        role="Neuroscientist",
        goal="Synthesise findings into a plan",
        backstory="Cognitive neuroscientist." + backstory,
        llm=pick(2),
        allow_delegation=False,
        verbose=False,
    )
    tasks = [
        Task(
            description="Review the client's sleep over the last two weeks.",
            expected_output="A short sleep assessment.",
            agent=sleep,
        ),
        Task(
            description="Propose nutrition changes supporting better sleep.",
            expected_output="Three nutrition recommendations.",
            agent=nutrition,
        ),
        Task(
            description="Combine the findings into one recovery plan.",
            expected_output="A recovery plan.",
            agent=neuro,
        ),
    ]
    crew = Crew(
        agents=[sleep, nutrition, neuro],
        tasks=tasks,
        process=Process.sequential,
        verbose=False,
        name="auren-sequential",
    )
    return crew, llms


def delegating_crew(
    *,
    model: str = "gpt-4o-mini",
    seed: int = 2,
    script: Script | None = None,
    llm: ScriptedLLM | None = None,
) -> tuple[Crew, list[ScriptedLLM]]:
    """A coordinator (allow_delegation=True) that delegates to and asks coworkers."""
    one = _llm(llm, model, seed, script)
    coordinator = Agent(
        role="Performance Coordinator",
        goal="Coordinate the specialists into one answer",
        backstory="Leads the AUREN specialist team.",
        llm=one,
        allow_delegation=True,
        verbose=False,
    )
    sleep = Agent(
        role="Sleep Specialist",
        goal="Assess sleep",
        backstory="Sleep researcher.",
        tools=[BiomarkerTool()],
        llm=one,
        allow_delegation=False,
        verbose=False,
    )
    coach = Agent(
        role="Training Coach",
        goal="Plan training load",
        backstory="Strength and conditioning coach.",
        llm=one,
        allow_delegation=False,
        verbose=False,
    )
    task = Task(
        description="Build this week's recovery and training plan for the client.",
        expected_output="A weekly plan.",
        agent=coordinator,
    )
    crew = Crew(
        agents=[coordinator, sleep, coach],
        tasks=[task],
        process=Process.sequential,
        verbose=False,
        name="auren-delegating",
    )
    return crew, [one]


def hierarchical_crew(
    *,
    model: str = "gpt-4o-mini",
    seed: int = 3,
    script: Script | None = None,
    llm: ScriptedLLM | None = None,
) -> tuple[Crew, list[ScriptedLLM]]:
    """``Process.hierarchical``: CrewAI's own manager agent delegates the tasks."""
    one = _llm(llm, model, seed, script)
    sleep = Agent(
        role="Sleep Specialist",
        goal="Assess sleep",
        backstory="Sleep researcher.",
        tools=[BiomarkerTool()],
        llm=one,
        verbose=False,
    )
    nutrition = Agent(
        role="Nutritionist",
        goal="Align nutrition with recovery",
        backstory="Sports dietitian.",
        llm=one,
        verbose=False,
    )
    task = Task(
        description="Decide tonight's recovery routine for the client.",
        expected_output="A short routine.",
    )
    crew = Crew(
        agents=[sleep, nutrition],
        tasks=[task],
        process=Process.hierarchical,
        manager_llm=one,
        verbose=False,
        name="auren-hierarchical",
    )
    return crew, [one]


def kick(crew: Crew, **kw: Any) -> CrewOutput:
    """``crew.kickoff()`` for a non-streaming crew (typed)."""
    out = crew.kickoff(**kw)
    assert isinstance(out, CrewOutput)
    return out
