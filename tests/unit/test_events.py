"""Event model: round trips, defensive decoding, and the published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auren_core.events import (
    EVENT_TYPES,
    PAYLOAD_TYPES,
    Event,
    Malformed,
    decode,
    encode,
    encode_fields,
    make_event,
)
from auren_core.events.schema import event_schema

SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "event.schema.json"

GOOD = {
    "llm_call": {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "cost_usd": 0.0001,
        "cost_source": "genai-prices",
        "latency_ms": 12.5,
        "ok": True,
    },
    "tool_used": {
        "tool": "search",
        "duration_ms": 3.0,
        "ok": True,
        "cost_usd": None,
        "from_cache": False,
    },
    "collaboration": {"to_agent": "sleep_specialist", "kind": "delegate"},
    "hypothesis": {"hypothesis_id": "h1", "status": "formed", "confidence": 0.4, "statement": "x"},
    "knowledge_access": {"item": "circadian", "source": "redis", "hit": True},
    "memory_tier_access": {
        "tier_accessed": "postgresql_structured",
        "query": "q",
        "latency_by_tier": {"redis": 0.3, "postgresql": 2.1},
        "items_retrieved": 2,
    },
    "publisher_stats": {"sent": 1, "dropped": 0, "queued": 0},
    "agent_registered": {
        "role": "Neuroscientist",
        "tools": ["search"],
        "capabilities": ["search"],
        "model": "gpt-4o",
    },
    "task_started": {"task_id": "t1"},
    "agent_failed": {"duration_ms": 5.0, "error": "boom"},
}


def test_published_schema_is_current() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(orjson.dumps(event_schema()))


@pytest.mark.parametrize("etype", sorted(GOOD))
def test_round_trip_and_schema(etype: str) -> None:
    ev = make_event(etype, GOOD[etype], agent="neuroscientist", run="r1")
    raw = encode(ev)
    jsonschema.validate(orjson.loads(raw), event_schema())
    back = decode(raw, "1-0")
    assert isinstance(back, Event)
    assert back.type == etype and back.stream_id == "1-0"
    # decoded once into its struct; the JSON it came from is kept (and written back)
    assert isinstance(back.payload, PAYLOAD_TYPES[etype])
    assert back.payload == msgspec.convert(GOOD[etype], PAYLOAD_TYPES[etype])
    assert back.payload.to_dict() == GOOD[etype]
    assert b"_sid" not in encode(back)


def test_hot_path_encoding_matches_envelope() -> None:
    raw = encode_fields("tool_used", GOOD["tool_used"], "a", "r", seq=3, parent="p")
    doc = orjson.loads(raw)
    jsonschema.validate(doc, event_schema())
    assert doc["seq"] == 3 and doc["parent"] == "p" and doc["v"] == 1


def test_ids_are_unique() -> None:
    ids = {make_event("crew_started").id for _ in range(10_000)}
    assert len(ids) == 10_000


@pytest.mark.parametrize(
    "raw, reason",
    [
        (None, "no 'e'"),
        (b"", "bad envelope"),
        (b"not json", "bad envelope"),
        (b"[1,2]", "bad envelope"),
        (b'{"v":1,"id":"x","ts":"yesterday","type":"t","payload":{}}', "bad envelope"),
        (b'{"v":2,"id":"x","ts":1,"type":"t","payload":{}}', "unsupported version"),
        (
            b'{"v":1,"id":"x","ts":1767225600,"type":"llm_call","payload":{"input_tokens":3}}',
            "bad llm_call payload",
        ),
        (
            b'{"v":1,"id":"x","ts":1767225600,"type":"collaboration",'
            b'"payload":{"to_agent":"a","kind":"shout"}}',
            "bad collaboration payload",
        ),
        (b"\xff\xfe\x00", "bad envelope"),
        (b'{"v":1,"id":"x","ts":1,"type":"t","payload":{}' + b" " * 1_000_001 + b"}", "too large"),
    ],
)
def test_malformed_becomes_a_value(raw: bytes | None, reason: str) -> None:
    out = decode(raw, "5-1")
    assert isinstance(out, Malformed)
    assert reason in out.reason and out.sid == "5-1"


def test_unknown_type_and_fields_are_kept_not_fatal() -> None:
    raw = b'{"v":1,"id":"x","ts":1767225600,"type":"brand_new","payload":{"a":1},"extra":true}'
    ev = decode(raw)
    assert isinstance(ev, Event) and not ev.known and ev.payload == {"a": 1}
    assert "llm_call" in EVENT_TYPES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_decode_never_raises(raw: bytes | str) -> None:
    assert isinstance(decode(raw), Event | Malformed)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=10,
        ),
        max_size=6,
    ),
    st.sampled_from(sorted(EVENT_TYPES)),
)
def test_arbitrary_payloads_never_raise(payload: dict, etype: str) -> None:
    raw = orjson.dumps({"v": 1, "id": "i", "ts": 1.0, "type": etype, "payload": payload})
    assert isinstance(decode(raw), Event | Malformed)
