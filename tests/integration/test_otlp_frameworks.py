"""Two real non-CrewAI frameworks, offline, on their own fake/test model classes, traced by
their real instrumentation and exported with the SDK's OTLP/HTTP exporter to serve-otlp:

* LangGraph (prebuilt ReAct agents as subgraphs of a team graph) on LangChain's
  ``GenericFakeChatModel``, traced by ``openinference-instrumentation-langchain``
  (the OpenInference dialect);
* Pydantic AI (an agent delegating to another through a tool) on its ``FunctionModel``,
  traced by Pydantic AI's own OpenTelemetry instrumentation (the GenAI semantic
  conventions dialect).

The OpenAI Agents SDK was the first choice for the second framework; it pins
``websockets<17``, which serve-ws needs, so it cannot share the dev environment.

Tokens and attribution must equal what the fake models reported.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from otlp_helpers import agents_by_id, collab, otlp_server, sdk_provider, top_json

from auren_core import pricing

pytestmark = pytest.mark.timeout(180)


def _exporter(port: int) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")


def test_langgraph_with_openinference(redis_url: str, stream: str) -> None:
    pytest.importorskip("langgraph")
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, MessagesState, StateGraph
    from openinference.instrumentation.langchain import LangChainInstrumentor

    class FakeChat(GenericFakeChatModel):
        """LangChain's fake chat model, with a model name (for the price) and tools."""

        model_name: str = "gpt-4o-mini"

        def bind_tools(self, tools: Any, **kw: Any) -> Any:
            return self

        @property
        def _identifying_params(self) -> dict[str, Any]:
            return {"model_name": self.model_name}

    def usage(i: int, o: int) -> dict[str, int]:
        return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}

    @tool
    def lookup(q: str) -> str:
        """Look up a fact."""
        return "deep sleep is 20% of the night"

    @tool
    def transfer_to_writer() -> str:
        """Hand the conversation to the writer."""
        return "transferred"

    with otlp_server(redis_url, stream) as (srv, rec, pub):
        tp = sdk_provider(_exporter(srv.port), batch=True)
        inst = LangChainInstrumentor()
        inst.instrument(tracer_provider=tp)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from langgraph.prebuilt import create_react_agent

                researcher = create_react_agent(
                    FakeChat(messages=iter([
                        AIMessage(content="", tool_calls=[
                            {"name": "lookup", "args": {"q": "deep sleep"}, "id": "c1"},
                            {"name": "transfer_to_writer", "args": {}, "id": "c2"},
                        ], usage_metadata=usage(100, 20)),
                        AIMessage(content="found it", usage_metadata=usage(130, 5)),
                    ])),
                    [lookup, transfer_to_writer],
                    name="researcher",
                )
                writer = create_react_agent(
                    FakeChat(model_name="gpt-4o", messages=iter([
                        AIMessage(content="the report", usage_metadata=usage(50, 7)),
                    ])),
                    [],
                    name="writer",
                )
            g = StateGraph(MessagesState)
            g.add_node("researcher", researcher)
            g.add_node("writer", writer)
            g.add_edge(START, "researcher")
            g.add_edge("researcher", "writer")
            g.add_edge("writer", END)
            out = g.compile(name="sleep_team").invoke({"messages": [("user", "deep sleep?")]})
            assert out["messages"][-1].content == "the report"
            tp.force_flush()
        finally:
            inst.uninstrument()
            tp.shutdown()
        assert rec.received > 10 and not rec.rejected
        assert rec.buffer.pending == 0
        pub.flush()
    doc = top_json(redis_url, stream)
    ag = agents_by_id(doc)
    assert set(ag) == {"researcher", "writer"}
    r, w = ag["researcher"], ag["writer"]
    assert (r["input_tokens"], r["output_tokens"], r["llm_calls"]) == (230, 25, 2)
    assert (w["input_tokens"], w["output_tokens"], w["llm_calls"]) == (50, 7, 1)
    assert r["tools"] == ["lookup"] and r["tool_calls"] == 1 and r["model"] == "gpt-4o-mini"
    c1, _ = pricing.price("gpt-4o-mini", "fake", 230, 25, 0)
    c2, _ = pricing.price("gpt-4o", "fake", 50, 7, 0)
    # the snapshot rounds costs to 6 decimals
    assert r["cost_usd"] == pytest.approx(c1, abs=1e-6)
    assert w["cost_usd"] == pytest.approx(c2, abs=1e-6)
    assert doc["totals"]["input_tokens"] == 280 and doc["totals"]["output_tokens"] == 32
    assert collab(doc) == {("researcher", "writer", "delegate")}


def test_pydantic_ai_with_its_own_instrumentation(redis_url: str, stream: str) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.usage import RequestUsage

    def research_fn(messages: Any, info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("8 hours")],
                             usage=RequestUsage(input_tokens=300, output_tokens=40))

    turns = iter([
        ModelResponse(parts=[ToolCallPart("ask_researcher", {"q": "sleep"})],
                      usage=RequestUsage(input_tokens=100, output_tokens=20)),
        ModelResponse(parts=[ToolCallPart("sleep_score", {"night": 1})],
                      usage=RequestUsage(input_tokens=120, output_tokens=15)),
        ModelResponse(parts=[TextPart("done")],
                      usage=RequestUsage(input_tokens=150, output_tokens=10)),
    ])

    def lead_fn(messages: Any, info: AgentInfo) -> ModelResponse:
        return next(turns)

    with otlp_server(redis_url, stream) as (srv, rec, pub):
        tp = sdk_provider(_exporter(srv.port), batch=True)
        researcher = Agent(FunctionModel(research_fn, model_name="gpt-4o-mini"),
                           name="researcher")
        lead = Agent(FunctionModel(lead_fn, model_name="gpt-4o"), name="Lead Coach")

        @lead.tool_plain
        async def ask_researcher(q: str) -> str:
            return (await researcher.run(q)).output

        @lead.tool_plain
        def sleep_score(night: int) -> int:
            return 87

        Agent.instrument_all(InstrumentationSettings(tracer_provider=tp))
        try:
            assert lead.run_sync("how much sleep?").output == "done"
            tp.force_flush()
        finally:
            Agent.instrument_all(False)
            tp.shutdown()
        assert not rec.rejected and rec.buffer.pending == 0
        pub.flush()
    doc = top_json(redis_url, stream)
    ag = agents_by_id(doc)
    assert set(ag) == {"lead_coach", "researcher"}
    lc, rs = ag["lead_coach"], ag["researcher"]
    assert (lc["input_tokens"], lc["output_tokens"], lc["llm_calls"]) == (370, 45, 3)
    assert (rs["input_tokens"], rs["output_tokens"], rs["llm_calls"]) == (300, 40, 1)
    assert set(lc["tools"]) == {"ask_researcher", "sleep_score"} and lc["tool_calls"] == 2
    assert lc["role"] == "Lead Coach"
    assert collab(doc) == {("lead_coach", "researcher", "delegate")}
    assert doc["totals"]["cost_usd"] > 0 and doc["totals"]["unpriced_llm_calls"] == 0
