"""Result types of the tiered memory: plain frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

__all__ = [
    "TIERS",
    "TIER_EVENT_NAMES",
    "DeleteResult",
    "ItemsResult",
    "MemoryItem",
    "MemoryResult",
    "SaveResult",
    "StoredItem",
    "TierAccessed",
    "TierName",
]

TierName = Literal["redis", "postgresql", "chromadb"]
TierAccessed = Literal["redis_immediate", "postgresql_structured", "chromadb_semantic", "miss"]

TIERS: Final[tuple[TierName, ...]] = ("redis", "postgresql", "chromadb")
# The short tier names (keys of ``latency_by_tier``) -> ``tier_accessed`` values.
TIER_EVENT_NAMES: Final[dict[TierName, TierAccessed]] = {
    "redis": "redis_immediate",
    "postgresql": "postgresql_structured",
    "chromadb": "chromadb_semantic",
}


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One knowledge item as returned by a load.

    ``score`` is tier-specific: ``ts_rank`` for PostgreSQL, ``1 - cosine distance``
    for ChromaDB; a Redis hit returns the score of the tier that first answered.
    ``source`` is the tier that served this load.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    source: TierName | None = None


@dataclass(frozen=True, slots=True)
class MemoryResult:
    """What a load returns: never an exception, at worst an empty miss with ``errors``."""

    items: list[MemoryItem]
    tier: TierAccessed
    latency_by_tier: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def hit(self) -> bool:
        return self.tier != "miss"

    def as_text(self, max_chars: int = 4000) -> str:
        """A compact text rendering for LLM tools (ids kept so agents can cite them)."""
        if not self.items:
            return "No knowledge found for this query."
        lines: list[str] = []
        used = 0
        for it in self.items:
            line = f"[{it.id}] {it.text}"
            if used + len(line) > max_chars:
                line = line[: max(0, max_chars - used)]
            lines.append(line)
            used += len(line)
            if used >= max_chars:
                break
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SaveResult:
    """Which durable tiers accepted a save; ``errors`` names the ones that did not."""

    item_ids: list[str]
    written: list[TierName]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One item as stored (not as a load answers it): for listing, fetching by id
    and deleting. ``updated_at`` is the time of its last save (UTC), when the tier
    that answered keeps one."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ItemsResult:
    """Stored items read from one durable tier (``source``; PostgreSQL when it can
    answer, else ChromaDB). Never an exception: ``source`` is None and ``errors``
    says why when no tier could answer."""

    items: list[StoredItem]
    source: TierName | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.source is not None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """How many items a delete removed (as counted by the first durable tier that
    took it), which tiers took it, and the errors of those that did not."""

    deleted: int
    tiers: list[TierName]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors
