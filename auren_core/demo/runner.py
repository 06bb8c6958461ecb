"""Runs the demo crews: real CrewAI crews, instrumented, using the tiered memory.

One user query = one crew kickoff: the AUREN Coordinator delegates to and questions the
specialists of that query; they look knowledge up through :class:`TieredMemory`, read
biomarkers and record hypotheses. With ``model`` set (and the provider's API key in the
environment) the agents talk to that real LLM instead of the scripted one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .traffic import COORDINATOR, KNOWLEDGE, SPECIALISTS, pause_after, plan_query

__all__ = ["DemoRunner", "DemoStats"]

log = logging.getLogger("auren.demo")


def quiet_crewai() -> None:
    """No interactive "view your execution traces?" prompt: it would block a headless run.
    Recorded in CrewAI's storage dir, which the demo command points at its own."""
    try:
        from crewai.events.listeners.tracing.utils import (
            has_user_declined_tracing,
            mark_first_execution_done,
        )

        if not has_user_declined_tracing():
            mark_first_execution_done(user_consented=False)
        # the trace listener singleton read the first-run flag when crewai was imported
        from crewai.events.listeners.tracing.trace_listener import TraceCollectionListener

        handler = getattr(TraceCollectionListener(), "first_time_handler", None)
        if handler is not None and hasattr(handler, "is_first_time"):
            handler.is_first_time = False
    except Exception as exc:  # a CrewAI without this module: nothing to silence
        log.debug("quiet_crewai: %s", exc)
    # The demo's scripted model failures are expected and shown on the dashboard (failed
    # llm_call / agent_failed events); CrewAI 1.1x also logs each one from its executor
    # flow ("Error executing listener ..."), which would scribble over the terminal.
    crewai_log = logging.getLogger("crewai")
    if not crewai_log.handlers:
        crewai_log.addHandler(logging.NullHandler())
    crewai_log.propagate = False


def slug(role: str) -> str:
    """The agent id the CrewAI instrumentation gives ``role`` (one definition)."""
    from ..integrations.crewai import slug as agent_slug

    return agent_slug(role) or "agent"


@dataclass
class DemoStats:
    queries: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    last_error: str = ""


class DemoRunner:
    def __init__(
        self,
        memory: Any,
        *,
        rate: float = 1.0,
        seed: int = 7,
        model: str | None = None,
        scripted_model: str = "gpt-4o-mini",
        coordinator_model: str = "gpt-4o",
    ) -> None:
        self.memory = memory
        self.rate = rate
        self.seed = seed
        self.model = model
        self.scripted_model = scripted_model
        # As many teams do, the scripted lead runs on the bigger model although its own
        # answers are short routing notes: the cost pane and the cheaper-model recommendation
        # show what that costs (priced by genai-prices like any other call).
        self.coordinator_model = coordinator_model
        self.stats = DemoStats()

    # ------------------------------------------------------------------ set-up
    def seed_knowledge(self) -> None:
        """Store the specialists' knowledge in PostgreSQL and ChromaDB (idempotent)."""
        self.memory.save_many_sync(
            [(item_id, text, {"topic": topic}, None) for item_id, text, topic in KNOWLEDGE]
        )

    def _llm(self, role: str | None = None) -> Any:
        if self.model:
            from crewai import LLM

            return LLM(model=self.model)
        from ..integrations.crewai.scripted_llm import ScriptCall, ScriptedLLM
        from .brain import respond

        def script(call: ScriptCall) -> str:
            return respond(call.agent_role or "Agent", call.task or call.prompt, call.step)

        model = self.coordinator_model if role == COORDINATOR else self.scripted_model
        return ScriptedLLM(model=model, script=script, seed=self.seed)

    def _agent(self, role: str, goal: str, backstory: str, delegate: bool) -> Any:
        from crewai import Agent

        from ..memory.crewai_tool import KnowledgeLookupTool
        from .tools import BiomarkerLookupTool, RecordHypothesisTool

        aid = slug(role)
        tools: list[Any] = [RecordHypothesisTool(agent_id=aid)]
        if not delegate:
            tools += [KnowledgeLookupTool(memory=self.memory, agent_id=aid), BiomarkerLookupTool()]
        else:
            tools.append(KnowledgeLookupTool(memory=self.memory, agent_id=aid))
        return Agent(
            role=role,
            goal=goal,
            backstory=backstory,
            tools=tools,
            llm=self._llm(role),
            allow_delegation=delegate,
            max_iter=12,
            max_retry_limit=0,
            verbose=False,
        )

    def build_crew(self, n: int) -> Any:
        from crewai import Crew, Process, Task

        q = plan_query(n, self.seed)
        specs = {s.role: s for s in SPECIALISTS}
        coordinator = self._agent(
            COORDINATOR,
            "Answer the user's question by combining the specialists' findings",
            "The lead of AUREN's specialist team; delegates and cross-checks.",
            True,
        )
        agents = [coordinator] + [
            self._agent(r, specs[r].goal, specs[r].backstory, False) for r in q.agents
        ]
        task = Task(
            description=q.description,
            expected_output="A short recommendation with the evidence behind it.",
            agent=coordinator,
        )
        return Crew(agents=agents, tasks=[task], process=Process.sequential, verbose=False)

    # ------------------------------------------------------------------ running
    def run_one(self, n: int) -> bool:
        """Kick off query ``n``; False when the crew failed (that is part of the demo)."""
        self.stats.queries += 1
        try:
            self.build_crew(n).kickoff()
            return True
        except Exception as exc:  # a scripted failure or a real LLM error
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
            log.info("demo query %d failed: %s", n, self.stats.last_error)
            return False

    def run(self, stop: threading.Event, duration: float | None = None) -> DemoStats:
        deadline = None if duration is None else time.monotonic() + duration
        n = 0
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self.run_one(n)
            pause = pause_after(n, self.rate)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            stop.wait(pause)
            n += 1
        return self.stats
