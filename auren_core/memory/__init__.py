"""Tier-tracked knowledge store: Redis -> PostgreSQL -> ChromaDB, every load observed.

Importing this package imports neither chromadb nor asyncpg (nor crewai): they
load on first use. The CrewAI faces live in :mod:`auren_core.memory.crewai_tool`
and :mod:`auren_core.memory.crewai_storage`.
"""

from __future__ import annotations

from ._loop import WrongLoopError
from ._types import (
    DeleteResult,
    ItemsResult,
    MemoryItem,
    MemoryResult,
    SaveResult,
    StoredItem,
    TierAccessed,
    TierName,
)
from .embedding import Embedder, HashingEmbedder
from .tiered import TieredMemory

__all__ = [
    "DeleteResult",
    "Embedder",
    "HashingEmbedder",
    "ItemsResult",
    "MemoryItem",
    "MemoryResult",
    "SaveResult",
    "StoredItem",
    "TierAccessed",
    "TierName",
    "TieredMemory",
    "WrongLoopError",
]
