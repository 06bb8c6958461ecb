"""The v1 event envelope and its typed payloads.

Every stream entry carries one field ``e``: a UTF-8 JSON object
``{"v":1,"id":...,"ts":...,"type":...,"agent":...,"run":...,"payload":{...}}``.

Encoding uses msgspec (fast, allocation-light). Decoding is defensive: whatever
bytes arrive, :func:`decode` returns either an :class:`Event` or a
:class:`Malformed` value and never raises, so one bad entry cannot stop a reader.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from .rules import (
    MAX_DEPTH,
    MAX_TS,
    MIN_TS,
    llm_call_cost,  # the one definition (re-exported: auren_core.rules)
    timestamp_problem,
)

__all__ = [
    "EVENT_TYPES",
    "PAYLOAD_TYPES",
    "SCHEMA_VERSION",
    "Event",
    "Malformed",
    "decode",
    "encode",
    "llm_call_cost",
    "make_event",
    "new_event_id",
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


# ids: a per-process random prefix and a counter: unique, cheap (no uuid4 per event).
_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)


def new_event_id() -> str:
    return f"{_PREFIX}-{next(_COUNTER)}"


_encoder = msgspec.json.Encoder()
_env_decoder = msgspec.json.Decoder(Event)


def make_event(
    type: str,
    payload: dict[str, Any] | None = None,
    *,
    agent: str | None = None,
    run: str | None = None,
    ts: float | None = None,
    seq: int | None = None,
    parent: str | None = None,
) -> Event:
    return Event(
        id=new_event_id(),
        ts=time.time() if ts is None else ts,
        type=type,
        agent=agent,
        run=run,
        payload=payload or {},
        seq=UNSET if seq is None else seq,
        parent=UNSET if parent is None else parent,
    )


def encode(event: Event) -> bytes:
    """Encode to the stream's JSON form (the ``_sid`` field is never written)."""
    if event.sid is not UNSET:
        event = msgspec.structs.replace(event, sid=UNSET)
    return _encoder.encode(event)


def encode_fields(
    type: str,
    payload: dict[str, Any] | None,
    agent: str | None,
    run: str | None,
    seq: int | None = None,
    parent: str | None = None,
) -> bytes:
    """Hot-path encoding without building an Event object first."""
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": new_event_id(),
        "ts": time.time(),
        "type": type,
        "agent": agent,
        "run": run,
        "payload": payload or {},
    }
    if seq is not None:
        doc["seq"] = seq
    if parent is not None:
        doc["parent"] = parent
    return _encoder.encode(doc)


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        t = type(o)
        if t is dict:
            if d > limit:
                return True
            stack.extend((v, d + 1) for v in o.values())
        elif t is list:
            if d > limit:
                return True
            stack.extend((v, d + 1) for v in o)
    return False


def decode(raw: bytes | str | None, sid: str = "") -> Event | Malformed:
    """Decode one entry's ``e`` field. Never raises: bad input becomes a :class:`Malformed`
    (besides a bad envelope, version or payload: a time outside the range of
    :func:`auren_core.rules.timestamp_problem`, a payload nested deeper than
    :data:`auren_core.rules.MAX_DEPTH`).
    Stream entries go through :func:`auren_core.streams.decode_entry`, which finds the
    field in whatever shape the client returned it and calls this."""
    if raw is None:
        return Malformed(sid, "entry has no 'e' field")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_ENTRY_BYTES:
        return Malformed(sid, f"entry too large ({len(raw)} bytes)", raw[:200])
    try:
        ev = _env_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Malformed(sid, f"bad envelope: {exc}", raw[:200])
    except RecursionError:
        return Malformed(sid, f"payload nested too deep (at most {MAX_DEPTH} levels)", raw[:200])
    except Exception as exc:  # pragma: no cover - msgspec should only raise the above
        return Malformed(sid, f"undecodable: {type(exc).__name__}", raw[:200])
    if ev.v != SCHEMA_VERSION:
        return Malformed(sid, f"unsupported version {ev.v}", raw[:200])
    if not MIN_TS <= ev.ts < MAX_TS:  # rules.timestamp_ok, inlined (NaN fails too)
        return Malformed(sid, str(timestamp_problem(ev.ts)), raw[:200])
    # a payload that nests deeper than MAX_DEPTH would exhaust the stack of whoever encodes
    # or walks it next (serve-ws frames, the store's jsonb, a deep caller): refused here.
    # Counting brackets is a C loop; only entries with many of them are walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(ev.payload, MAX_DEPTH):
        return Malformed(sid, f"payload nested too deep (at most {MAX_DEPTH} levels)", raw[:200])
    ptype = PAYLOAD_TYPES.get(ev.type)
    if ptype is not None:
        try:
            msgspec.convert(ev.payload, ptype)
        except msgspec.ValidationError as exc:
            return Malformed(sid, f"bad {ev.type} payload: {exc}", raw[:200])
    if sid:
        ev = msgspec.structs.replace(ev, sid=sid)
    return ev


def payload_as(event: Event, ptype: type[_Payload]) -> Any:
    """Typed view of a (validated) payload."""
    return msgspec.convert(event.payload, ptype)
