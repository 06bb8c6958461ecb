"""CrewAI memory backed by the tiered memory, for whichever CrewAI is installed.

One import path for every supported release::

    from auren_core.memory import TieredMemory
    from auren_core.memory.crewai_storage import crew_memory_kwargs

    mem = TieredMemory.from_settings()
    crew = Crew(agents=..., tasks=..., **crew_memory_kwargs(mem))

- CrewAI 1.10+ (unified memory): ``{"memory": Memory(storage=TieredStorageBackend(mem),
  ...)}`` (:mod:`~auren_core.memory.crewai_unified`);
- CrewAI 1.6-1.9: ``{"external_memory": TieredExternalMemory(...)}``
  (:mod:`~auren_core.memory.crewai_external`).

:func:`crewai_memory` returns just the object. The release is told apart by
what it has (``crewai.memory.storage.backend``), not by its version string.
Either way the agents' memory searches are tracked loads (``memory_tier_access``
/ ``knowledge_access`` attributed to the agent) and task outputs are saved as
knowledge later runs can find.

(CrewAI's *knowledge* storage cannot be swapped the same way: ``Knowledge.storage``
must be its own Chroma-backed ``KnowledgeStorage``. Give agents
:class:`~auren_core.memory.crewai_tool.KnowledgeLookupTool` instead.)

Importing this module does not import crewai; calling its functions does
(``auren_core`` itself never does).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from ._crewai_common import TierStoreError, current_agent, memory_agent, role_slug
from .tiered import TieredMemory

if TYPE_CHECKING:
    from .crewai_external import TieredExternalMemory, TieredStorage, tiered_external_memory
    from .crewai_unified import (
        RecordingEmbedder,
        TieredCrewMemory,
        TieredStorageBackend,
        tiered_unified_memory,
    )

__all__ = [
    "RecordingEmbedder",
    "TierStoreError",
    "TieredCrewMemory",
    "TieredExternalMemory",
    "TieredStorage",
    "TieredStorageBackend",
    "crew_memory_kwargs",
    "crewai_memory",
    "current_agent",
    "memory_agent",
    "role_slug",
    "tiered_external_memory",
    "tiered_unified_memory",
    "unified_memory_available",
]

log = logging.getLogger("auren.memory")

_LAZY = {
    "TieredExternalMemory": "crewai_external",
    "TieredStorage": "crewai_external",
    "tiered_external_memory": "crewai_external",
    "RecordingEmbedder": "crewai_unified",
    "TieredCrewMemory": "crewai_unified",
    "TieredStorageBackend": "crewai_unified",
    "tiered_unified_memory": "crewai_unified",
}


def unified_memory_available() -> bool:
    """Does the installed CrewAI have the unified memory (``Memory(storage=...)``,
    CrewAI 1.10+)? Older releases have external memory instead."""
    try:
        return importlib.util.find_spec("crewai.memory.storage.backend") is not None
    except ImportError:  # no crewai at all, or no crewai.memory.storage
        return False


def crewai_memory(memory: TieredMemory, *, llm: Any = None, **options: Any) -> Any:
    """What the installed CrewAI takes as a crew's memory, over ``memory``.

    CrewAI 1.10+: a ``crewai.memory.Memory`` (a :class:`TieredCrewMemory`) for
    ``Crew(memory=...)`` or ``Agent(memory=...)``; ``llm`` and ``options`` go to it
    (see :func:`~auren_core.memory.crewai_unified.tiered_unified_memory`).
    Older releases: a :class:`TieredExternalMemory` for ``Crew(external_memory=...)``;
    they have no memory LLM nor options, so ``llm`` and ``options`` are not used.
    """
    if unified_memory_available():
        from .crewai_unified import tiered_unified_memory

        return tiered_unified_memory(memory, llm=llm, **options)
    from .crewai_external import tiered_external_memory

    if llm is not None or options:
        log.debug("auren memory: CrewAI external memory takes no llm/options: not used")
    return tiered_external_memory(memory)


def crew_memory_kwargs(memory: TieredMemory, *, llm: Any = None, **options: Any) -> dict[str, Any]:
    """``Crew(**crew_memory_kwargs(mem))``: ``{"memory": ...}`` on CrewAI 1.10+,
    ``{"external_memory": ...}`` before (see :func:`crewai_memory`)."""
    key = "memory" if unified_memory_available() else "external_memory"
    return {key: crewai_memory(memory, llm=llm, **options)}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        mod = importlib.import_module(f"{__package__}.{module}")
    except ImportError as exc:
        which = "1.10+" if module == "crewai_unified" else "1.6-1.9"
        raise ImportError(
            f"{name} needs CrewAI {which} (this CrewAI has "
            f"{'unified' if unified_memory_available() else 'external'} memory): "
            f"use crewai_memory() / crew_memory_kwargs(), which pick the right one"
        ) from exc
    value = getattr(mod, name)
    globals()[name] = value
    return value
