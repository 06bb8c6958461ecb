"""CrewAI < 1.10: the tiered memory as a crew's *external memory*.

CrewAI 1.6-1.9 let a crew plug its own store in as external memory: before each
task an agent searches it for context, and after each task the agent's output is
saved into it. With this adapter those lookups are tracked tier accesses
(``memory_tier_access`` / ``knowledge_access`` attributed to the agent), and the
task outputs become knowledge other agents (and later runs) can find.

Use :func:`auren_core.memory.crewai_storage.crewai_memory` (it picks this
adapter or the unified-memory one for the installed release); this module
imports ``crewai.memory.external``, which CrewAI 1.10 removed.

CrewAI's ``score_threshold`` is not applied: tier scores are not on one scale
(PostgreSQL ``ts_rank`` vs cosine similarity); each tier already has its own
relevance rule (full-text match; ``chroma_max_distance``).
"""

from __future__ import annotations

import hashlib
import logging
from contextvars import Token
from typing import Any

from crewai.memory.external.external_memory import ExternalMemory
from crewai.memory.storage.interface import Storage

from ._crewai_common import TierStoreError, _current_agent, role_slug
from ._health import describe
from .crewai_tool import current_run
from .tiered import TieredMemory

__all__ = ["TieredExternalMemory", "TieredStorage", "tiered_external_memory"]

log = logging.getLogger("auren.memory")
_MAX_META_CHARS = 2000


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
            raise TierStoreError(f"auren memory: save reached no tier: {res.errors}")

    def search(self, query: str, limit: int = 5, score_threshold: float = 0.6) -> list[Any]:
        try:
            res = self.memory.load_sync(query, limit, agent=_current_agent.get(), run=current_run())
        except Exception as exc:  # e.g. called from the memory's own loop: no answer
            log.warning("auren memory: CrewAI lookup failed: %s", describe(exc))
            return []
        return [
            {"id": i.id, "content": i.text, "metadata": i.metadata, "score": i.score}
            for i in res.items
        ]

    def reset(self) -> None:
        errors = self.memory.reset_sync()
        if errors:
            raise TierStoreError(f"auren memory: reset failed: {errors}")


class TieredExternalMemory(ExternalMemory):
    """CrewAI ``ExternalMemory`` that tells the storage which agent is asking."""

    def agent_id(self) -> str | None:
        """The id of the agent now searching or saving (override to map differently)."""
        agent = self.agent
        return role_slug(str(agent.role)) if agent is not None else _current_agent.get()

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
    """``Crew(external_memory=tiered_external_memory(mem))`` (CrewAI < 1.10)."""
    return TieredExternalMemory(storage=TieredStorage(memory))
