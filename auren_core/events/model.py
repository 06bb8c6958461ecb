"""The v1 event model: the envelope (:class:`Event`, :class:`Malformed`) and the typed
payloads, one struct per event type (:data:`PAYLOAD_TYPES`).

Every stream entry carries one field ``e``: a UTF-8 JSON object
``{"v":1,"id":...,"ts":...,"type":...,"agent":...,"run":...,"payload":{...}}``.

Encoding uses msgspec (fast, allocation-light). Decoding is defensive: whatever
bytes arrive, :func:`decode` returns either an :class:`Event` or a
:class:`Malformed` value and never raises, so one bad entry cannot stop a reader.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

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
]

SCHEMA_VERSION: Final = 1
FIELD: Final = b"e"
MAX_ENTRY_BYTES: Final = 1_000_000


# --------------------------------------------------------------------------- payloads
class _Payload(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Base for payloads: unknown fields are accepted (forward compatible)."""


class CrewStarted(_Payload):
    crew: str | None = None
    process: str | None = None
    agents: list[str] = []
    inputs: dict[str, Any] | None = None
    # the user's question: the inputs' query, else the first task's description (a stable
    # ``sha256:`` stand-in when queries are redacted); see auren_core.rules.query_label
    query: str | None = None


class CrewCompleted(_Payload):
    crew: str | None = None
    duration_ms: float | None = None
    ok: bool = True
    error: str | None = None


class TaskStarted(_Payload):
    task_id: str
    name: str | None = None
    description: str | None = None


class TaskEnded(_Payload):
    task_id: str
    name: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    output_chars: int | None = None


class AgentRegistered(_Payload):
    role: str
    goal: str | None = None
    tools: list[str] = []
    model: str | None = None
    capabilities: list[str] = []
    allow_delegation: bool = False


class AgentStarted(_Payload):
    task_id: str | None = None


class AgentEnded(_Payload):
    task_id: str | None = None
    duration_ms: float | None = None
    error: str | None = None


class LlmCall(_Payload):
    model: str
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    # thinking/reasoning tokens where the provider reports them (a part of output_tokens)
    reasoning_tokens: int = 0
    # the source's own call id (CrewAI 1.10+): one call is one event, never two
    call_id: str | None = None
    cost_usd: float | None = None
    cost_source: str = "unknown"
    latency_ms: float | None = None
    ok: bool = True
    error: str | None = None


class ToolUsed(_Payload):
    tool: str
    duration_ms: float | None = None
    ok: bool = True
    cost_usd: float | None = None
    from_cache: bool = False
    error: str | None = None
    # a short digest of the call's arguments (never the arguments themselves): two calls
    # with the same digest are "the same call" for loop detection
    args_hash: str | None = None


class Collaboration(_Payload):
    to_agent: str
    kind: Literal["delegate", "ask", "a2a"]
    task: str | None = None
    ok: bool | None = None  # a2a: set when the remote agent answered (or failed)


class Hypothesis(_Payload):
    hypothesis_id: str
    status: Literal["formed", "updated", "validated", "rejected"]
    confidence: float | None = None
    statement: str | None = None


class KnowledgeAccess(_Payload):
    item: str
    source: str | None = None
    hit: bool = True
    # optional (CrewAI knowledge/memory queries): the query (unless redacted), its latency
    query: str | None = None
    latency_ms: float | None = None
    error: str | None = None


class LatencyByTier(msgspec.Struct, kw_only=True, omit_defaults=True):
    redis: float | None = None
    postgresql: float | None = None
    chromadb: float | None = None


class MemoryTierAccess(_Payload):
    tier_accessed: Literal["redis_immediate", "postgresql_structured", "chromadb_semantic", "miss"]
    query: str | None = None
    latency_by_tier: LatencyByTier = msgspec.field(default_factory=LatencyByTier)
    items_retrieved: int = 0
    errors: dict[str, str] = {}
    # USD of this load's tier accesses (configured per tier); null when unpriced
    cost_usd: float | None = None
    cost_by_tier: dict[str, float] = {}


class FlowStarted(_Payload):
    flow: str | None = None
    flow_id: str | None = None  # the flow's own state id (CrewAI ``flow.state.id``)
    inputs: dict[str, Any] | None = None


class FlowStep(_Payload):
    """One method of a flow: ``phase="started"`` when it begins (duration and ok null),
    then ``completed`` / ``failed`` (with duration) or ``paused`` (waiting for a human)."""

    method: str
    flow: str | None = None
    phase: Literal["started", "completed", "failed", "paused"] = "completed"
    duration_ms: float | None = None
    ok: bool | None = None
    error: str | None = None


class FlowEnded(_Payload):
    flow: str | None = None
    duration_ms: float | None = None
    ok: bool = True
    error: str | None = None


class HumanInput(_Payload):
    """A wait for human feedback (flow ``@human_feedback``, flow input, agent ``human_input``):
    ``requested`` opens the wait, ``received`` closes it (``wait_ms``)."""

    state: Literal["requested", "received"]
    flow: str | None = None
    method: str | None = None
    message: str | None = None
    wait_ms: float | None = None


class PublisherStats(_Payload):
    sent: int
    dropped: int
    queued: int
    errors: int = 0
    publisher: str | None = None  # host:pid:instance, so totals can be kept per process
    # an OTLP receiver (``auren serve-otlp``, kind "otlp") adds its span counters; its
    # ``sent`` is events written, ``dropped`` spans rejected, ``queued`` spans buffered
    kind: str | None = None
    received: int | None = None
    converted: int | None = None
    rejected: int | None = None
    rejected_by_reason: dict[str, int] | None = None
    evicted: int | None = None
    evicted_spans: int | None = None
    expired: int | None = None
    duplicates: int | None = None
    buffered: int | None = None
    traces: int | None = None
    # the publishing process's resource use (``auren top``'s agent screen, /metrics)
    rss_bytes: int | None = None
    cpu_seconds: float | None = None


PAYLOAD_TYPES: Final[dict[str, type[_Payload]]] = {
    "crew_started": CrewStarted,
    "crew_completed": CrewCompleted,
    "task_started": TaskStarted,
    "task_completed": TaskEnded,
    "task_failed": TaskEnded,
    "agent_registered": AgentRegistered,
    "agent_started": AgentStarted,
    "agent_completed": AgentEnded,
    "agent_failed": AgentEnded,
    "llm_call": LlmCall,
    "tool_used": ToolUsed,
    "collaboration": Collaboration,
    "hypothesis": Hypothesis,
    "knowledge_access": KnowledgeAccess,
    "memory_tier_access": MemoryTierAccess,
    "publisher_stats": PublisherStats,
    "flow_started": FlowStarted,
    "flow_step": FlowStep,
    "flow_completed": FlowEnded,
    "flow_failed": FlowEnded,
    "human_input": HumanInput,
}
EVENT_TYPES: Final = frozenset(PAYLOAD_TYPES)


# --------------------------------------------------------------------------- envelope
class Event(msgspec.Struct, kw_only=True, frozen=True):
    """One observed occurrence. ``payload`` is a plain dict, validated on decode.

    ``seq`` and ``parent`` keep the ordering information the source gives
    (CrewAI emits from a thread pool, so arrival order is not emission order).
    """

    v: int = SCHEMA_VERSION
    id: str
    ts: float
    type: str
    agent: str | None = None
    run: str | None = None
    payload: dict[str, Any] = {}
    seq: int | UnsetType | None = UNSET
    parent: str | UnsetType | None = UNSET
    # The stream entry id this event was read from; never encoded (UNSET is omitted).
    sid: str | UnsetType = msgspec.field(default=UNSET, name="_sid")

    @property
    def stream_id(self) -> str:
        return self.sid if isinstance(self.sid, str) else ""

    @property
    def known(self) -> bool:
        return self.type in EVENT_TYPES


class Malformed(msgspec.Struct, frozen=True):
    """A stream entry that could not be decoded; counted and shown, never fatal."""

    sid: str
    reason: str
    raw: bytes = b""
