"""CrewAI face of the tiered memory: a knowledge lookup tool for agents.

Importing this module imports crewai (``auren_core`` itself never does)::

    from auren_core.memory import TieredMemory
    from auren_core.memory.crewai_tool import KnowledgeLookupTool

    mem = TieredMemory.from_settings()
    Agent(role="Neuroscientist", ..., tools=[KnowledgeLookupTool(memory=mem,
                                                                  agent_id="neuroscientist")])

Each call is one tracked load, so the dashboard's tier pane sees the crew's
lookups attributed to the agent, and, when the crew is instrumented
(``auren_core.instrument()``), to the crew kickoff (``run``) it belongs to.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from crewai.tools import BaseTool
from pydantic import BaseModel, Field

from .tiered import TieredMemory

__all__ = ["KnowledgeLookupInput", "KnowledgeLookupTool"]


def current_run() -> str | None:
    """The kickoff id of the instrumented crew running in this context, if any."""
    tap = sys.modules.get("auren_core.integrations.crewai.tap")
    var = getattr(tap, "_RUN", None)
    try:
        run = var.get() if var is not None else None
    except Exception:  # another version of the integration: no run, no harm
        return None
    return run if isinstance(run, str) else None


def _never_cache(_args: Any = None, _result: Any = None) -> bool:
    return False


class KnowledgeLookupInput(BaseModel):
    query: str = Field(description="What to look up in the shared knowledge store.")


class KnowledgeLookupTool(BaseTool):
    """Looks a question up in AUREN's tiered memory and answers in plain text."""

    name: str = "knowledge_lookup"
    description: str = (
        "Look up facts in AUREN's shared knowledge store (cache, structured and semantic "
        "memory). Input: a short question or keywords. Returns matching knowledge items "
        "with their ids, or says that nothing is known."
    )
    args_schema: type[BaseModel] = KnowledgeLookupInput
    memory: TieredMemory
    agent_id: str | None = None
    limit: int = 5
    max_chars: int = 4000
    # CrewAI caches tool results per crew (same tool, same input): that would hide
    # repeated lookups from the tier pane and serve answers a later save made stale.
    # The tiered memory is the cache, so CrewAI's is switched off for this tool.
    cache_function: Callable[..., bool] = _never_cache

    def to_structured_tool(self) -> Any:
        # CrewAI 1.6 consults ``cache_function`` on the structured copy it runs, and
        # does not copy it there itself: without this the crew cache still applies.
        structured = super().to_structured_tool()
        structured.cache_function = self.cache_function  # type: ignore[attr-defined]
        return structured

    def _run(self, query: str, **_: Any) -> str:
        # CrewAI runs tools in worker threads: the sync face uses the memory's own loop.
        res = self.memory.load_sync(query, self.limit, agent=self.agent_id, run=current_run())
        return res.as_text(self.max_chars)

    async def _arun(self, query: str, **_: Any) -> str:
        res = await self.memory.load(query, self.limit, agent=self.agent_id, run=current_run())
        return res.as_text(self.max_chars)
