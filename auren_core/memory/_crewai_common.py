"""What the CrewAI memory adapters share: which agent a memory call is for.

No crewai import at module level (the release-specific adapters import it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["TierStoreError", "current_agent", "memory_agent", "role_slug"]

# Which agent is searching or saving right now (set by the adapters, or by the
# user with memory_agent()); contextvars follow CrewAI into its worker threads.
_current_agent: ContextVar[str | None] = ContextVar("auren_memory_agent", default=None)


class TierStoreError(RuntimeError):
    """A write (or an explicit listing) that no durable tier could carry out."""


def role_slug(role: str) -> str:
    """The agent id AUREN's CrewAI instrumentation uses for a role:
    "Sleep Specialist" -> "sleep_specialist"."""
    from ..integrations.crewai import slug

    return slug(role) or "agent"


def current_agent() -> str | None:
    """The agent id memory calls in this context are attributed to, if any."""
    return _current_agent.get()


@contextmanager
def memory_agent(agent_id: str | None) -> Iterator[None]:
    """Attribute the CrewAI memory calls made inside the block to ``agent_id``
    (e.g. a Flow calling ``memory.recall`` itself, outside any agent)."""
    token = _current_agent.set(agent_id)
    try:
        yield
    finally:
        _current_agent.reset(token)
