"""The v1 event envelope and its typed payloads (:mod:`.model`), their wire codec
(:mod:`.codec`) and the published JSON Schema (:mod:`.schema`).

Every stream entry carries one field ``e``: a UTF-8 JSON object
``{"v":1,"id":...,"ts":...,"type":...,"agent":...,"run":...,"payload":{...}}``.
"""

from __future__ import annotations

from ..rules import llm_call_cost  # the one definition (re-exported: auren_core.rules)
from .codec import (
    decode,
    encode,
    encode_fields,
    make_event,
    new_event_id,
    payload_as,
)
from .model import (
    EVENT_TYPES,
    FIELD,
    MAX_ENTRY_BYTES,
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    AgentEnded,
    AgentRegistered,
    AgentStarted,
    Collaboration,
    CrewCompleted,
    CrewStarted,
    Event,
    FlowEnded,
    FlowStarted,
    FlowStep,
    HumanInput,
    Hypothesis,
    KnowledgeAccess,
    LatencyByTier,
    LlmCall,
    Malformed,
    MemoryTierAccess,
    PublisherStats,
    TaskEnded,
    TaskStarted,
    ToolUsed,
)

__all__ = [
    "EVENT_TYPES",
    "FIELD",
    "MAX_ENTRY_BYTES",
    "PAYLOAD_TYPES",
    "SCHEMA_VERSION",
    "AgentEnded",
    "AgentRegistered",
    "AgentStarted",
    "Collaboration",
    "CrewCompleted",
    "CrewStarted",
    "Event",
    "FlowEnded",
    "FlowStarted",
    "FlowStep",
    "HumanInput",
    "Hypothesis",
    "KnowledgeAccess",
    "LatencyByTier",
    "LlmCall",
    "Malformed",
    "MemoryTierAccess",
    "PublisherStats",
    "TaskEnded",
    "TaskStarted",
    "ToolUsed",
    "decode",
    "encode",
    "encode_fields",
    "llm_call_cost",
    "make_event",
    "new_event_id",
    "payload_as",
]
