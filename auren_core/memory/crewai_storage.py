"""CrewAI storage adapter: a crew's external memory backed by the tiered memory.

CrewAI 1.6 lets a crew plug its own store in as *external memory*: before each
task an agent searches it for context, and after each task the agent's output
is saved into it. With this adapter those lookups are tracked tier accesses
(``memory_tier_access`` / ``knowledge_access`` attributed to the agent), and the
task outputs become knowledge other agents (and later runs) can find::

    from auren_core.memory import TieredMemory
    from auren_core.memory.crewai_storage import tiered_external_memory

    mem = TieredMemory.from_settings()
    crew = Crew(agents=..., tasks=..., external_memory=tiered_external_memory(mem))

CrewAI's ``score_threshold`` is not applied: tier scores are not on one scale
(PostgreSQL ``ts_rank`` vs cosine similarity); each tier already has its own
relevance rule (full-text match; ``chroma_max_distance``).

(CrewAI's *knowledge* storage cannot be swapped the same way: ``Knowledge.storage``
must be its own Chroma-backed ``KnowledgeStorage``. Give agents
:class:`~auren_core.memory.crewai_tool.KnowledgeLookupTool` instead.)

Importing this module imports crewai (``auren_core`` itself never does).
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar, Token
from typing import Any

from crewai.memory.external.external_memory import ExternalMemory
from crewai.memory.storage.interface import Storage

from .crewai_tool import current_run
from .tiered import TieredMemory

__all__ = ["TieredExternalMemory", "TieredStorage", "role_slug", "tiered_external_memory"]

# Which agent is searching or saving right now (set by TieredExternalMemory).
_current_agent: ContextVar[str | None] = ContextVar("auren_memory_agent", default=None)
_MAX_META_CHARS = 2000


def role_slug(role: str) -> str:
    """The agent id AUREN's CrewAI instrumentation uses for a role:
    "Sleep Specialist" -> "sleep_specialist"."""
    from ..integrations.crewai import slug

    return slug(role) or "agent"


class TieredStorage(Storage):
    """CrewAI ``Storage`` over :class:`TieredMemory` (sync: CrewAI calls it from
    worker threads). Search never raises: a failed lookup is an empty result."""

    def __init__(self, memory: TieredMemory, *, prefix: str = "crew-output") -> None:
        self.memory = memory
        self.prefix = prefix

    def save(self, value: Any, metadata: dict[str, Any]) -> None:
        text = str(value)
        agent = _current_agent.get()
        meta: dict[str, Any] = {}
        for k, v in (metadata or {}).items():
            # CrewAI passes the whole conversation as "messages": far too big to keep.
            if k != "messages" and isinstance(v, str | int | float | bool):
                meta[k] = v[:_MAX_META_CHARS] if isinstance(v, str) else v
        if agent:
            meta.setdefault("agent", agent)
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        item_id = f"{self.prefix}/{agent or 'crew'}/{digest}"
        res = self.memory.save_sync(item_id, text, meta, agent=agent)
        if not res.written:
            raise RuntimeError(f"auren memory: save reached no tier: {res.errors}")

    def search(self, query: str, limit: int = 5, score_threshold: float = 0.6) -> list[Any]:
        res = self.memory.load_sync(query, limit, agent=_current_agent.get(), run=current_run())
        return [
            {"id": i.id, "content": i.text, "metadata": i.metadata, "score": i.score}
            for i in res.items
        ]

    def reset(self) -> None:
        errors = self.memory.reset_sync()
        if errors:
            raise RuntimeError(f"auren memory: reset failed: {errors}")


class TieredExternalMemory(ExternalMemory):
    """CrewAI ``ExternalMemory`` that tells the storage which agent is asking."""

    def agent_id(self) -> str | None:
        """The id of the agent now searching or saving (override to map differently)."""
        agent = self.agent
        return role_slug(str(agent.role)) if agent is not None else None

    def _scoped(self) -> Token[str | None]:
        return _current_agent.set(self.agent_id())

    def save(self, value: Any, metadata: dict[str, Any] | None = None) -> None:
        token = self._scoped()
        try:
            super().save(value, metadata)
        finally:
            _current_agent.reset(token)

    def search(self, query: str, limit: int = 5, score_threshold: float = 0.6) -> Any:
        token = self._scoped()
        try:
            return super().search(query, limit, score_threshold)
        finally:
            _current_agent.reset(token)


def tiered_external_memory(memory: TieredMemory) -> TieredExternalMemory:
    """``Crew(external_memory=tiered_external_memory(mem))``."""
    return TieredExternalMemory(storage=TieredStorage(memory))
