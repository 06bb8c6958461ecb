"""serve-otlp with the OpenTelemetry SDK's real OTLP exporters (HTTP protobuf, gRPC) and
OTLP JSON built from the SDK's own encoder; GenAI and OpenInference dialects; child-first
spans over separate requests; a trace that never completes; the buffer's bounds."""

from __future__ import annotations

import base64
import gzip
import json
import time
import urllib.request
from typing import Any

import pytest
import redis
from otlp_helpers import agents_by_id, collab, otlp_server, sdk_provider, top_json
from waiting import wait_until

from auren_core import pricing
from auren_core.events import Event, decode
from auren_core.otlp import SpanRec, TraceBuffer
from auren_core.otlp.spans import AGENT, LLM

pytestmark = pytest.mark.timeout(120)


def _gen(tr: Any, name: str, **attrs: Any) -> Any:
    return tr.start_as_current_span(name, attributes=attrs)


def stream_events(redis_url: str, stream: str) -> list[Event]:
    r = redis.Redis.from_url(redis_url)
    out = []
    for sid, f in r.xrange(stream):
        ev = decode(f[b"e"], sid.decode())
        assert isinstance(ev, Event), ev
        out.append(ev)
    return out


def post(url: str, body: bytes, ctype: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", ctype)
    for k, v in headers.items():
        req.add_header(k.replace("_", "-"), v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


# --------------------------------------------------------------------------- GenAI, HTTP protobuf


def test_http_protobuf_exporter_genai_dialect(redis_url: str, stream: str) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    with otlp_server(redis_url, stream) as (srv, rec, pub):
        exp = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{srv.port}/v1/traces", compression=Compression.Gzip
        )
        # one request per span, as each ends: every child reaches us before its parent
        tp = sdk_provider(exp)
        tr = tp.get_tracer("genai-test")
        with _gen(tr, "invoke_workflow nightly", **{"gen_ai.operation.name": "invoke_workflow",
                                                   "gen_ai.workflow.name": "nightly"}) as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            with _gen(tr, "invoke_agent Sleep Specialist", **{
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "Sleep Specialist",
                "gen_ai.agent.description": "reads sleep data",
            }):
                with _gen(tr, "chat gpt-4o-mini", **{
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 300,
                    "gen_ai.usage.cache_read.input_tokens": 200,
                    "gen_ai.usage.reasoning.output_tokens": 100,
                }):
                    pass
                with _gen(tr, "execute_tool hrv_lookup", **{
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "hrv_lookup"}):
                    pass
                with _gen(tr, "retrieval sleep-kb", **{
                    "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "sleep-kb"}):
                    pass
                with _gen(tr, "invoke_agent", **{
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.id": "nutritionist-7",
                    "gen_ai.agent.name": "Nutritionist",
                }):
                    # an older SDK: deprecated names
                    with _gen(tr, "chat", **{
                        "gen_ai.operation.name": "chat",
                        "gen_ai.system": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.prompt_tokens": 500,
                        "gen_ai.usage.completion_tokens": 50,
                    }):
                        pass
                    with _gen(tr, "chat", **{
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "no-such-model-xyz",
                        "gen_ai.usage.input_tokens": 7,
                        "gen_ai.usage.output_tokens": 3,
                    }):
                        pass
        tp.shutdown()
        assert rec.requests["http_ok"] == 8
        pub.flush()
    doc = top_json(redis_url, stream)
    t = doc["totals"]
    assert (t["llm_calls"], t["input_tokens"], t["output_tokens"]) == (3, 1707, 353)
    assert t["tool_calls"] == 1
    c1, _ = pricing.price("gpt-4o-mini", "openai", 1200, 300, 200)
    c2, _ = pricing.price("gpt-4o", "openai", 500, 50, 0)
    assert c1 and c2
    assert t["cost_usd"] == pytest.approx(c1 + c2, abs=1e-6)  # the snapshot rounds to 6 decimals
    assert t["unpriced_llm_calls"] == 1  # the unknown model: null, never 0
    ag = agents_by_id(doc)
    assert set(ag) == {"sleep_specialist", "nutritionist-7"}
    s = ag["sleep_specialist"]
    assert (s["input_tokens"], s["output_tokens"], s["role"]) == (1200, 300, "Sleep Specialist")
    assert s["tools"] == ["hrv_lookup"] and "hrv_lookup" in s["capabilities"]
    assert s["model"] == "gpt-4o-mini" and s["goal"] == "reads sleep data"
    assert ag["nutritionist-7"]["input_tokens"] == 507
    assert collab(doc) == {("sleep_specialist", "nutritionist-7", "delegate")}
    evs = stream_events(redis_url, stream)
    assert {e.run for e in evs if e.type != "publisher_stats"} == {trace_id}
    crew = [e for e in evs if e.type == "crew_completed"]
    assert len(crew) == 1 and crew[0].payload["crew"] == "nightly"
    llm = [e for e in evs if e.type == "llm_call"]
    mini = next(e for e in llm if e.payload["model"] == "gpt-4o-mini")
    assert mini.payload["cached_tokens"] == 200 and mini.payload["reasoning_tokens"] == 100
    assert mini.payload["cost_source"] == pricing.SOURCE and mini.payload["latency_ms"] >= 0
    unknown = next(e for e in llm if e.payload["model"] == "no-such-model-xyz")
    assert unknown.payload["cost_usd"] is None and unknown.payload["cost_source"] == "unknown"
    kn = [e for e in evs if e.type == "knowledge_access"]
    assert [(e.agent, e.payload["item"]) for e in kn] == [("sleep_specialist", "sleep-kb")]
    stats = [e for e in evs if e.type == "publisher_stats" and e.payload.get("kind") == "otlp"]
    assert stats and stats[-1].payload["received"] == 8 and stats[-1].payload["converted"] == 8


# --------------------------------------------------------------------------- OpenInference, JSON


def _otlp_json(spans: list[Any]) -> dict[str, Any]:
    """OTLP JSON from the SDK's own protobuf encoder: ids as hex (OTLP spec), enums ints."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    doc = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:
                        sp[k] = base64.b64decode(sp[k]).hex()
    return doc


def test_http_json_openinference_dialect_split_requests(redis_url: str, stream: str) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    tp = sdk_provider(mem)
    tr = tp.get_tracer("oi-test")
    kind = "openinference.span.kind"
    with _gen(tr, "Crew", **{kind: "CHAIN"}), _gen(
        tr, "Planner", **{kind: "AGENT", "agent.name": "Planner"}
    ):
        with _gen(tr, "ChatOpenAI", **{
            kind: "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
            "llm.token_count.prompt": 800, "llm.token_count.completion": 90,
            "llm.token_count.prompt_details.cache_read": 100,
        }):
            pass
        with _gen(tr, "search", **{kind: "TOOL", "tool.name": "web_search"}):
            pass
        with _gen(tr, "kb", **{kind: "RETRIEVER"}):
            pass
        with _gen(tr, "handoff to Writer", **{kind: "TOOL", "output.value": "Writer"}):
            pass
        with _gen(tr, "Critic", **{kind: "AGENT", "agent.name": "Critic"}), _gen(
            tr, "ChatAnthropic", **{
                kind: "LLM", "llm.model_name": "claude-3-5-haiku-latest",
                "llm.provider": "anthropic", "llm.token_count.prompt": 40,
                "llm.token_count.completion": 4, "llm.cost.total": 0.5,
            }):
            pass
    tp.shutdown()
    spans = mem.get_finished_spans()
    assert len(spans) == 8
    with otlp_server(redis_url, stream) as (srv, rec, pub):
        url = f"http://127.0.0.1:{srv.port}/v1/traces"
        # children in a first request, the agents and the root in later ones
        for part in (spans[:4], spans[4:6], spans[6:]):
            code, body, hdr = post(url, json.dumps(_otlp_json(list(part))).encode(),
                                   "application/json")
            assert code == 200 and hdr["Content-Type"] == "application/json"
            assert json.loads(body) == {}
        assert rec.buffer.pending == 0
        pub.flush()
    doc = top_json(redis_url, stream)
    ag = agents_by_id(doc)
    assert set(ag) == {"planner", "critic"}
    assert (ag["planner"]["input_tokens"], ag["planner"]["output_tokens"]) == (800, 90)
    assert ag["planner"]["tools"] == ["web_search"]
    assert ag["critic"]["cost_usd"] == pytest.approx(0.5)  # the span's own cost wins
    c, _ = pricing.price("gpt-4o-mini", "openai", 800, 90, 100)
    assert doc["totals"]["cost_usd"] == pytest.approx(0.5 + (c or 0), abs=1e-6)
    assert collab(doc) == {("planner", "critic", "delegate"), ("planner", "writer", "delegate")}
    evs = stream_events(redis_url, stream)
    assert [e.payload["crew"] for e in evs if e.type == "crew_started"] == ["Crew"]
    assert [e.agent for e in evs if e.type == "knowledge_access"] == ["planner"]


# --------------------------------------------------------------------------- gRPC


def test_grpc_exporter_split_batches_and_a_trace_that_never_completes(
    redis_url: str, stream: str
) -> None:
    from opentelemetry import trace as api
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    with otlp_server(redis_url, stream, grpc=True, max_wait=0.5) as (srv, rec, pub):
        exp = OTLPSpanExporter(endpoint=f"127.0.0.1:{srv.grpc_port}", insecure=True)
        tp = sdk_provider(exp, batch=True)
        tr = tp.get_tracer("grpc-test")
        with _gen(tr, "invoke_agent Coach", **{"gen_ai.operation.name": "invoke_agent",
                                                "gen_ai.agent.name": "Coach"}):
            with _gen(tr, "chat", **{"gen_ai.operation.name": "chat",
                                     "gen_ai.request.model": "gpt-4o-mini",
                                     "gen_ai.usage.input_tokens": 10,
                                     "gen_ai.usage.output_tokens": 5}):
                pass
            tp.force_flush()  # the child in one export...
            wait_until(lambda: rec.buffer.pending == 1, "the child span buffered", timeout=5)
            assert rec.buffer.pending == 1  # ...waiting for its agent
        tp.force_flush()  # ...the agent in another
        # a trace whose parent is never exported (a crashed process, a sampled-out root)
        ghost = api.SpanContext(
            trace_id=0xABC, span_id=0xDEF, is_remote=True,
            trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED),
        )
        ctx = api.set_span_in_context(api.NonRecordingSpan(ghost))
        with tr.start_as_current_span("chat", context=ctx, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 1}):
            pass
        tp.force_flush()
        tp.shutdown()
        assert rec.requests["grpc_ok"] >= 3
        deadline = time.monotonic() + 5
        while rec.buffer.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rec.buffer.pending == 0 and rec.buffer.expired == 1
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics").read().decode()
        assert "auren_otlp_spans_expired_total 1" in metrics
        assert "auren_otlp_spans_received_total 3" in metrics
        pub.flush()
    doc = top_json(redis_url, stream)
    assert doc["totals"]["input_tokens"] == 1010  # the orphan is counted, unattributed
    assert agents_by_id(doc)["coach"]["input_tokens"] == 10


# --------------------------------------------------------------------------- buffer rules


def _span(trace: str, sid: str, parent: str, role_attrs: dict[str, Any], end: int = 2) -> SpanRec:
    return SpanRec(trace, sid, parent, "s" + sid, 1, end, False, None, role_attrs)


AG = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "A"}
CH = {"gen_ai.operation.name": "chat"}


def test_buffer_waits_for_the_agent_then_attributes() -> None:
    b = TraceBuffer(max_wait=10)
    assert b.add([_span("t", "2", "1", CH)], now=0) == []
    assert b.pending == 1
    out = b.add([_span("t", "1", "", AG, end=3)], now=1)
    assert sorted((r.span.role, r.agent or "", r.self_agent or "") for r in out) == [
        (AGENT, "", "a"),
        (LLM, "a", ""),
    ]
    # a late child of a known agent: at once
    assert [r.agent for r in b.add([_span("t", "3", "1", CH)], now=2)] == ["a"]


def test_buffer_max_wait_eviction_duplicates_and_cycles() -> None:
    b = TraceBuffer(max_wait=5, max_spans=3, retain_s=5)
    b.add([_span("t1", "2", "1", CH)], now=0)
    assert b.expire(now=4.9) == []
    out = b.expire(now=5.0)
    assert len(out) == 1 and out[0].expired and out[0].agent is None and b.expired == 1
    # a retried batch is counted once
    b.add([_span("t2", "2", "9", CH)], now=6)
    b.add([_span("t2", "2", "9", CH)], now=6)
    assert b.duplicates == 1 and b.pending == 1
    # over max_spans: the least recently active trace is evicted, its spans released
    out = b.add([_span("t3", "1", "8", CH), _span("t3", "2", "8", CH),
                 _span("t3", "3", "8", CH)], now=7)
    assert b.evicted_traces == 1 and [r.span.trace for r in out] == ["t2"]
    # a parent cycle cannot hang the walk
    b2 = TraceBuffer()
    out = b2.add([_span("c", "1", "2", CH), _span("c", "2", "1", CH)], now=0)
    assert len(out) == 2
    # memory: idle traces are forgotten
    b3 = TraceBuffer(max_wait=1, retain_s=1)
    b3.add([_span("x", "1", "", AG)], now=0)
    b3.expire(now=10)
    assert b3.traces == 0 and b3.spans == 0


def test_json_gzip_and_partial_success(redis_url: str, stream: str) -> None:
    good = "0af7651916cd43dd8448eb211c80319c"
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": good, "spanId": "b7ad6b7169203331", "name": "chat",
         "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
         "kind": 3, "status": {"code": 2, "message": "rate limited"},
         "attributes": [
             {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
             {"key": "gen_ai.agent.name", "value": {"stringValue": "Solo"}},
             {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
             {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}]},
        {"traceId": "00000000000000000000000000000000", "spanId": "b7ad6b7169203332",
         "name": "x", "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
        {"traceId": good, "spanId": "b7ad6b7169203333", "name": "y",
         "startTimeUnixNano": "5", "endTimeUnixNano": "2"},
    ]}]}]}
    with otlp_server(redis_url, stream) as (srv, _rec, pub):
        url = f"http://127.0.0.1:{srv.port}/v1/traces"
        code, body, _ = post(url, gzip.compress(json.dumps(doc).encode()), "application/json",
                             Content_Encoding="gzip")
        assert code == 200
        ps = json.loads(body)["partialSuccess"]
        assert ps["rejectedSpans"] == "2"
        assert "invalid_trace_id: 1" in ps["errorMessage"]
        assert "invalid_timestamps: 1" in ps["errorMessage"]
        pub.flush()
    llm = [e for e in stream_events(redis_url, stream) if e.type == "llm_call"]
    assert len(llm) == 1
    p = llm[0].payload
    assert (llm[0].agent, p["ok"], p["error"], p["input_tokens"]) == ("solo", False,
                                                                     "rate limited", 12)
    assert llm[0].ts == pytest.approx(1700000001.0)


def test_openai_agents_shaped_trace() -> None:
    """Spans as openinference-instrumentation-openai-agents makes them: an unnamed AGENT
    root (the SDK's trace) around named AGENT spans, handoffs as TOOL spans."""
    from auren_core.otlp import Mapper

    oi = "openinference.span.kind"
    spans = [
        SpanRec("t", "3", "2", "handoff to Billing", 3, 4, False, None,
                {oi: "TOOL", "input.value": "Triage", "output.value": "Billing"}),
        SpanRec("t", "4", "2", "response", 2, 3, False, None,
                {oi: "LLM", "llm.model_name": "gpt-4o-mini", "llm.token_count.prompt": 9}),
        SpanRec("t", "2", "1", "Triage", 1, 5, False, None,
                {oi: "AGENT", "agent.name": "Triage", "graph.node.id": "Triage"}),
        SpanRec("t", "5", "1", "Billing", 6, 8, False, None,
                {oi: "AGENT", "agent.name": "Billing", "graph.node.parent_id": "Triage"}),
        SpanRec("t", "1", "", "Agent workflow", 0, 9, False, None, {oi: "AGENT"}),
    ]
    b = TraceBuffer()
    ready = b.add(spans[:3], now=0) + b.add(spans[3:], now=1)
    evs = Mapper().events(ready)
    types = [(t, a, p.get("to_agent")) for _, t, a, _, p in evs]
    assert ("crew_started", None, None) in types
    assert ("collaboration", "triage", "billing") in types
    assert [x for x in types if x[0] == "collaboration"] == [("collaboration", "triage",
                                                              "billing")]
    assert {a for t, a, _ in types if t == "agent_started"} == {"triage", "billing"}
    assert [(a, p["input_tokens"]) for _, t, a, _, p in evs if t == "llm_call"] == [("triage", 9)]
