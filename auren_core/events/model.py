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
    "MemoryTierStorage",
    "PublisherStats",
    "TaskEnded",
    "TaskStarted",
    "ToolUsed",
]

SCHEMA_VERSION: Final = 1
FIELD: Final = b"e"
MAX_ENTRY_BYTES: Final = 1_000_000


# --------------------------------------------------------------------------- payloads
class _Payload(msgspec.Struct, kw_only=True, omit_defaults=False, dict=True):
    """Base for payloads: unknown fields are accepted (forward compatible).

    :func:`~auren_core.events.codec.decode` decodes a known type's payload once, into its
    struct, and keeps the original JSON beside it (:meth:`raw`): the stream entry is the
    source of truth, so re-encoding (serve-ws frames, the store's jsonb, dead letters)
    writes those bytes back and a field this version does not know is never lost. Read the
    fields as attributes. :meth:`get`, ``p[key]`` and ``key in p`` are the read-only
    mapping view over the fields and, for decoded payloads, the unknown fields
    (:meth:`extra`) - for readers not yet converted to attributes.
    """

    def raw(self) -> bytes | None:
        """The JSON this payload was decoded from, or the JSON of the dict it was converted
        from (:func:`~auren_core.events.codec.make_event`); None when built as a struct."""
        d = self.__dict__
        r: bytes | None = d.get("_raw")
        if r is None:
            src = d.get("_src")
            if src is not None:
                r = d["_raw"] = _src_encoder.encode(src)
        return r

    def extra(self) -> dict[str, Any]:
        """The fields of the original JSON that are not fields of this struct (decoded once,
        on first use; empty for payloads built in process)."""
        d = self.__dict__
        ex: dict[str, Any] | None = d.get("_extra")
        if ex is None:
            raw = d.get("_raw")
            src = d.get("_src")
            ex = {}
            if src is not None:
                fields = _fields_of(type(self))
                ex = {k: v for k, v in src.items() if k not in fields}
            elif raw is not None:
                try:
                    doc = msgspec.json.decode(raw)
                except (msgspec.DecodeError, RecursionError):  # pragma: no cover - decoded once
                    doc = {}
                if type(doc) is dict:
                    fields = _fields_of(type(self))
                    ex = {k: v for k, v in doc.items() if k not in fields}
            d["_extra"] = ex
        return ex

    def get(self, key: str, default: Any = None) -> Any:
        """``payload.get(key, default)`` as on the JSON object (fields, then unknown fields)."""
        if key in _fields_of(type(self)):
            return getattr(self, key)
        return self.extra().get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key in _fields_of(type(self)):
            return getattr(self, key)
        return self.extra()[key]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` carries a value: a field not at its default, or an unknown field."""
        if not isinstance(key, str):
            return False
        if key in _fields_of(type(self)):
            return bool(getattr(self, key) != _defaults_of(type(self)).get(key, _NO_DEFAULT))
        return key in self.extra()

    def to_dict(self) -> dict[str, Any]:
        """The payload as a JSON object (the original one when it was decoded)."""
        raw = self.raw()
        if raw is not None:
            doc = msgspec.json.decode(raw)
            if type(doc) is dict:
                return doc
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


_NO_DEFAULT: Final = object()
_src_encoder = msgspec.json.Encoder()
_FIELDS: dict[type, frozenset[str]] = {}
_DEFAULTS: dict[type, dict[str, Any]] = {}


def _fields_of(cls: type[_Payload]) -> frozenset[str]:
    f = _FIELDS.get(cls)
    if f is None:
        f = _FIELDS[cls] = frozenset(cls.__struct_fields__)
    return f


def _defaults_of(cls: type[_Payload]) -> dict[str, Any]:
    d = _DEFAULTS.get(cls)
    if d is None:
        d = {}
        for fi in msgspec.structs.fields(cls):
            if fi.default is not msgspec.NODEFAULT:
                d[fi.name] = fi.default
            elif fi.default_factory is not msgspec.NODEFAULT:
                d[fi.name] = fi.default_factory()
        _DEFAULTS[cls] = d
    return d


class CrewStarted(_Payload):
    crew: str | None = None
    process: str | None = None
    agents: list[str] = []
    inputs: dict[str, Any] | None = None
    # the user's question: the inputs' query, else the first task's description (a stable
    # ``sha256:`` stand-in when queries are redacted); see auren_core.rules.query_label
    query: str | None = None
    # the flow run this crew runs inside (CrewAI Flows: a crew kicked off by a flow method)
    flow_run: str | None = None


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
    # ms per tier tried: the keys of LatencyByTier, validated as those; other keys (the
    # aliases of rules.TIER_ALIASES) are kept and counted by the rules, as before
    latency_by_tier: dict[str, Any] = {}
    items_retrieved: int = 0
    errors: dict[str, str] = {}
    # USD of this load's tier accesses (configured per tier); null when unpriced
    cost_usd: float | None = None
    cost_by_tier: dict[str, float] = {}

    def __post_init__(self) -> None:
        lat = self.latency_by_tier
        if lat:
            for k in _LATENCY_KEYS:
                v = lat.get(k)
                if v is not None and type(v) is not float and type(v) is not int:
                    raise TypeError(
                        f"Expected `float | null`, got `{type(v).__name__}` - at "
                        f"`$.latency_by_tier.{k}`"
                    )


_LATENCY_KEYS: Final = tuple(LatencyByTier.__struct_fields__)


class MemoryTierStorage(_Payload):
    """Bytes a TieredMemory namespace holds in each tier (measured, never guessed): Redis =
    MEMORY USAGE of its keys, PostgreSQL = pg_total_relation_size of its table, ChromaDB = the
    PersistentClient directory; null when unknown (tier absent, failed, or an HTTP client)."""

    namespace: str
    redis_bytes: int | None = None
    postgresql_bytes: int | None = None
    chromadb_bytes: int | None = None
    # what was measured: one table / directory may hold many namespaces (counted once)
    postgresql_table: str | None = None
    chromadb_path: str | None = None


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
    "memory_tier_storage": MemoryTierStorage,
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
    """One observed occurrence. ``payload`` is the typed struct of a known type
    (:data:`PAYLOAD_TYPES`; decoded once by ``decode``, built directly by the converters) and
    a plain dict for an unknown type (or one handed over in process that did not validate).

    ``seq`` and ``parent`` keep the ordering information the source gives
    (CrewAI emits from a thread pool, so arrival order is not emission order).
    """

    v: int = SCHEMA_VERSION
    id: str
    ts: float
    type: str
    agent: str | None = None
    run: str | None = None
    payload: Any = {}
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
