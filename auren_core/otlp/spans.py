"""OTLP trace requests -> :class:`SpanRec` records (decoding, validation, bounds).

Pure: no I/O. A request body is decoded once (protobuf with upb, or OTLP JSON), each span
is validated and reduced to the few attributes the mapping reads (everything else, prompt
and completion text included, is never copied), and each span gets its role.

OTLP JSON differs from the protobuf JSON mapping in two ways (OTLP spec, "JSON Protobuf
Encoding"): trace and span ids are hex strings, not base64, and enum values are integers.
:func:`parse_json` converts the ids, then lets protobuf's own JSON parser check the types.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Any, Final

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .. import rules

_NS_LO: Final = int(rules.MIN_TS * 1e9)
_NS_HI: Final = int(rules.MAX_TS * 1e9)

__all__ = [
    "MAX_ATTRIBUTES",
    "BadRequest",
    "SpanRec",
    "extract",
    "parse_json",
    "parse_protobuf",
]

# a span with more attributes than this is rejected (the SDK's own default limit is 128)
MAX_ATTRIBUTES: Final = 4096
MAX_NAME: Final = 256
STR_LIMIT: Final = 2000

# the attributes the mapping reads; anything else is never copied out of the message
KEYS: Final = frozenset(
    {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.agent.id",
        "gen_ai.agent.name",
        "gen_ai.agent.description",
        "gen_ai.workflow.name",
        "gen_ai.data_source.id",
        "gen_ai.tool.name",
        "gen_ai.tool.type",
        "openinference.span.kind",
        "llm.model_name",
        "llm.provider",
        "llm.system",
        "llm.token_count.prompt",
        "llm.token_count.completion",
        "llm.token_count.prompt_details.cache_read",
        "llm.token_count.completion_details.reasoning",
        "llm.cost.total",
        "operation.cost",
        "tool.name",
        "agent.name",
        "graph.node.id",
        "graph.node.parent_id",
        "metadata",
        "input.value",
        "output.value",
        "error.type",
    }
)

# roles (what a span is, for the mapping)
LLM: Final = "llm"
EMBEDDING: Final = "embedding"
TOOL: Final = "tool"
HANDOFF: Final = "handoff"
RETRIEVER: Final = "retriever"
AGENT: Final = "agent"  # an agent span that names its agent
AGENT_IMPLICIT: Final = "agent?"  # OpenInference AGENT without a name: decided by its children
LG_LOOP: Final = "lg_loop"  # LangGraph's prebuilt agent's model-calling node ("agent")
CREATE_AGENT: Final = "create_agent"
WORKFLOW: Final = "workflow"
CHAIN: Final = "chain"

_LLM_OPS = frozenset({"chat", "text_completion", "generate_content"})
STATUS_ERROR: Final = 2


class BadRequest(Exception):
    """The whole request is undecodable: HTTP 400 / gRPC INVALID_ARGUMENT."""


class SpanRec:
    """One span, reduced to what the mapping needs."""

    __slots__ = (
        "agent_name",
        "arrived",
        "attrs",
        "done",
        "end",
        "error",
        "message",
        "name",
        "parent",
        "raw_id",
        "role",
        "service",
        "sid",
        "start",
        "trace",
    )

    def __init__(
        self,
        trace: str,
        sid: str,
        parent: str,
        name: str,
        start: int,
        end: int,
        error: bool,
        message: str | None,
        attrs: dict[str, Any],
        service: str | None = None,
    ) -> None:
        self.trace = trace
        self.sid = sid
        self.parent = parent
        self.name = name
        self.start = start
        self.end = end
        self.error = error
        self.message = message
        self.attrs = attrs
        self.service = service
        self.arrived = 0.0
        self.done = False
        self.role, self.agent_name = classify(name, attrs)
        # gen_ai.agent.id is used as it is; a name becomes an id through slug()
        self.raw_id = bool(self.agent_name) and attrs.get("gen_ai.agent.id") == self.agent_name

    def __repr__(self) -> str:
        return f"SpanRec({self.role} {self.name!r} {self.trace[:8]}/{self.sid} <- {self.parent})"


def _agent_name(attrs: dict[str, Any]) -> str | None:
    for k in ("gen_ai.agent.id", "gen_ai.agent.name", "agent.name"):
        v = attrs.get(k)
        if isinstance(v, str) and v.strip():
            return v
    return None


def lg_node(attrs: dict[str, Any]) -> str | None:
    """LangGraph's node name from OpenInference's ``metadata`` attribute (JSON)."""
    md = attrs.get("metadata")
    if not isinstance(md, str) or "langgraph_node" not in md:
        return None
    try:
        doc = orjson.loads(md)
    except orjson.JSONDecodeError:
        return None
    node = doc.get("langgraph_node") if isinstance(doc, dict) else None
    return node if isinstance(node, str) else None


def classify(name: str, attrs: dict[str, Any]) -> tuple[str, str | None]:
    """The span's role and, for an agent span, its agent's name (see docs/otlp.md)."""
    op = attrs.get("gen_ai.operation.name")
    kind = attrs.get("openinference.span.kind")
    kind = kind.upper() if isinstance(kind, str) else None
    explicit = _agent_name(attrs)
    if op in _LLM_OPS or kind == "LLM":
        return LLM, explicit
    if op == "embeddings" or kind == "EMBEDDING":
        return EMBEDDING, explicit
    if op == "execute_tool" or kind == "TOOL":
        tool = attrs.get("gen_ai.tool.name") or attrs.get("tool.name") or name
        if name.startswith("handoff to ") or str(tool).startswith("transfer_to_"):
            return HANDOFF, explicit
        return TOOL, explicit
    if op == "retrieval" or kind == "RETRIEVER":
        return RETRIEVER, explicit
    if op == "invoke_agent":
        return AGENT, explicit or (name.removeprefix("invoke_agent ").strip() or "agent")
    if op == "create_agent":
        return CREATE_AGENT, explicit or (name.removeprefix("create_agent ").strip() or "agent")
    if op == "invoke_workflow":
        return WORKFLOW, None
    if kind == "AGENT":
        if explicit:
            return AGENT, explicit
        if name == "agent" and lg_node(attrs) == "agent":
            return LG_LOOP, None
        return AGENT_IMPLICIT, None
    return CHAIN, None


# --------------------------------------------------------------------------- decoding
def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BadRequest(f"undecodable protobuf ExportTraceServiceRequest: {exc}") from None
    return req


def _hex_to_b64(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise BadRequest(f"{what} must be a hex string, got {type(v).__name__}")
    try:
        return base64.b64encode(bytes.fromhex(v)).decode("ascii")
    except ValueError:
        raise BadRequest(f"{what} is not hex: {v[:40]!r}") from None


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object (ExportTraceServiceRequest)")
    try:
        for rs in doc.get("resourceSpans") or doc.get("resource_spans") or ():
            for ss in rs.get("scopeSpans") or rs.get("scope_spans") or ():
                for sp in ss.get("spans") or ():
                    for k in ("traceId", "spanId", "parentSpanId"):
                        if k in sp:
                            sp[k] = _hex_to_b64(sp[k], k)
                    for k in ("trace_id", "span_id", "parent_span_id"):
                        if k in sp:
                            sp[k] = _hex_to_b64(sp[k], k)
                    # links carry hex ids too and are not read: drop them
                    sp.pop("links", None)
    except (AttributeError, TypeError):
        raise BadRequest("wrong JSON types in resourceSpans/scopeSpans/spans") from None
    req = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, req, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
        raise BadRequest(f"invalid OTLP JSON: {str(exc)[:300]}") from None
    return req


def _value(av: Any) -> Any:
    which = av.WhichOneof("value")
    if which == "string_value":
        s: str = av.string_value
        return s if len(s) <= STR_LIMIT else s[:STR_LIMIT]
    if which == "int_value":
        return av.int_value
    if which == "double_value":
        return av.double_value
    if which == "bool_value":
        return av.bool_value
    return None


def extract(
    req: ExportTraceServiceRequest, rejected: Counter[str]
) -> tuple[list[SpanRec], int]:
    """Valid spans of ``req`` and the number of spans in it; reasons for the rest are
    counted in ``rejected``."""
    out: list[SpanRec] = []
    total = 0
    keys = KEYS
    for rs in req.resource_spans:
        service: str | None = None
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                v = _value(kv.value)
                service = v[:MAX_NAME] if isinstance(v, str) else None
                break
        for ss in rs.scope_spans:
            for sp in ss.spans:
                total += 1
                tid = sp.trace_id
                if len(tid) != 16 or not any(tid):
                    rejected["invalid_trace_id"] += 1
                    continue
                sid = sp.span_id
                if len(sid) != 8 or not any(sid):
                    rejected["invalid_span_id"] += 1
                    continue
                par = sp.parent_span_id
                if par and len(par) != 8:
                    rejected["invalid_parent_span_id"] += 1
                    continue
                start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
                # the readers' time rule (auren_core.rules): refused here, with a reason the
                # exporter sees, rather than published and counted malformed by every reader
                if not start or end < start or not _NS_LO <= start <= end < _NS_HI:
                    rejected["invalid_timestamps"] += 1
                    continue
                attrs_pb = sp.attributes
                if len(attrs_pb) > MAX_ATTRIBUTES:
                    rejected["too_many_attributes"] += 1
                    continue
                attrs: dict[str, Any] = {}
                for kv in attrs_pb:
                    k = kv.key
                    if k in keys:
                        attrs[k] = _value(kv.value)
                name = sp.name
                status = sp.status
                out.append(
                    SpanRec(
                        binascii.hexlify(tid).decode(),
                        binascii.hexlify(sid).decode(),
                        binascii.hexlify(par).decode() if par and any(par) else "",
                        name if len(name) <= MAX_NAME else name[:MAX_NAME],
                        start,
                        end,
                        status.code == STATUS_ERROR,
                        status.message[:STR_LIMIT] or None,
                        attrs,
                        service,
                    )
                )
    return out, total
