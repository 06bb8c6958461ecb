"""Typed payloads (issue 12): decode once into the struct; unknown fields survive re-encoding."""

from __future__ import annotations

import orjson

from auren_core.events import Event, LlmCall, ToolUsed, decode, make_event
from auren_core.events.codec import (
    coerce_payload,
    encode,
    encode_fields,
    encode_with_sid,
    payload_json,
)
from auren_core.state import Reducer

T0 = 1_800_000_000.0
RAW = (
    b'{"v":1,"id":"a-1","ts":1800000000.0,"type":"llm_call","agent":"a","run":"r",'
    b'"payload":{"model":"m","input_tokens":7,"future_field":{"x":[1,2]},"ok":true}}'
)


def test_known_type_decodes_into_its_struct_and_keeps_unknown_fields() -> None:
    ev = decode(RAW, "5-0")
    assert isinstance(ev, Event) and isinstance(ev.payload, LlmCall)
    assert ev.payload.input_tokens == 7 and ev.payload.output_tokens == 0
    assert ev.payload.get("future_field") == {"x": [1, 2]} and "future_field" in ev.payload
    for out in (encode(ev), encode_with_sid(ev)):
        assert orjson.loads(out)["payload"] == orjson.loads(RAW)["payload"]
    assert orjson.loads(encode_with_sid(ev))["_sid"] == "5-0"
    assert orjson.loads(payload_json(ev.payload))["future_field"] == {"x": [1, 2]}


def test_unknown_type_keeps_a_dict() -> None:
    ev = decode(RAW.replace(b'"llm_call"', b'"new_kind"'), "1-0")
    assert isinstance(ev, Event) and type(ev.payload) is dict and not ev.known


def test_in_process_dicts_are_typed_once_with_the_rules_coercion() -> None:
    p = coerce_payload("tool_used", {"tool": ["x"], "cost_usd": "1", "duration_ms": 3})
    assert isinstance(p, ToolUsed) and p.cost_usd is None and p.duration_ms == 3.0
    assert coerce_payload("llm_call", {"model": "m", "input_tokens": 12.9}).input_tokens == 12
    assert isinstance(make_event("tool_used", {"tool": "t"}).payload, ToolUsed)
    r = Reducer(clock=lambda: T0)
    r.apply_batch(
        [
            make_event("llm_call", {"model": "m", "input_tokens": 5}, agent="a", ts=T0),
            Event(id="2", ts=T0, type="llm_call", agent="a", payload={"input_tokens": "lots"}),
            decode(RAW, "9-0"),
        ]
    )
    st = r.state()
    assert st.totals.llm_calls == 3 and st.totals.input_tokens == 12


def test_emitted_structs_encode_directly_and_decoded_ones_as_they_came() -> None:
    ev = decode(RAW, "5-0")
    assert isinstance(ev, Event)
    again = orjson.loads(encode_fields("llm_call", ev.payload, "a", "r"))
    assert again["payload"] == orjson.loads(RAW)["payload"]  # future_field kept
    built = decode(encode_fields("llm_call", LlmCall(model="m", input_tokens=3), None, None))
    assert isinstance(built, Event) and built.payload == LlmCall(model="m", input_tokens=3)


def test_readers_count_dicts_handed_over_as_the_structs_decoded_from_the_stream() -> None:
    """The recording as built in process (dict payloads) and as read back from its stream
    entries (decoded structs): the analytics, the flows, the registry and the live tail's
    summaries (all reading attributes now) agree."""
    from recorded_events import FROZEN_NOW, recorded, to_stream

    from auren_core.analytics import analyze
    from auren_core.export.tables import Accumulator
    from auren_core.state.registry import AgentRegistry
    from auren_core.state.summary import summarize

    given = recorded()
    read = [decode(raw, f"{i}-0") for i, raw in enumerate(to_stream(given))]
    evs = [e for e in given if isinstance(e, Event)]
    back = [e for e in read if isinstance(e, Event)]
    assert any(type(e.payload) is dict for e in evs) and len(evs) == len(back)
    assert all(type(e.payload) is not dict for e in back if e.known)
    assert analyze(given, now=FROZEN_NOW) == analyze(read, now=FROZEN_NOW)
    regs = [AgentRegistry(clock=lambda: FROZEN_NOW) for _ in range(2)]
    regs[0].observe_all(evs)
    regs[1].observe_all(back)
    assert regs[0].all() and regs[0].all() == regs[1].all()
    assert [summarize(e) for e in evs if e.known] == [summarize(e) for e in back if e.known]
    accs = [Accumulator(wanted={"flows"}) for _ in range(2)]
    accs[0].feed(given)
    accs[1].feed(read)
    assert accs[0].flow_steps and accs[0].flow_steps == accs[1].flow_steps
    assert accs[0].flow_waits == accs[1].flow_waits
