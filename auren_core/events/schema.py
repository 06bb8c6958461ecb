"""JSON Schema (draft 2020-12) of the v1 stream entry, generated from the typed model.

``python -m auren_core.events.schema > docs/event.schema.json`` regenerates the published
file; a test checks the published file is current and validates real events with it.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import orjson

from . import PAYLOAD_TYPES, SCHEMA_VERSION, LatencyByTier

__all__ = ["event_schema"]


def event_schema() -> dict[str, Any]:
    types = sorted(PAYLOAD_TYPES)
    (refs, components) = msgspec.json.schema_components(
        [*(PAYLOAD_TYPES[t] for t in types), LatencyByTier], ref_template="#/$defs/{name}"
    )
    refs = refs[: len(types)]
    # the struct keeps latency_by_tier as a dict (tier aliases are counted too) and checks
    # the three tier keys as LatencyByTier does: published as LatencyByTier
    components["MemoryTierAccess"]["properties"]["latency_by_tier"] = {
        "$ref": "#/$defs/LatencyByTier"
    }
    lat = components.pop("LatencyByTier")
    components = {
        k: v
        for name, c in components.items()
        for k, v in ((name, c), ("LatencyByTier", lat))[: 2 if name == "MemoryTierAccess" else 1]
    }
    branches = [
        {
            "if": {"properties": {"type": {"const": t}}, "required": ["type"]},
            "then": {"properties": {"payload": ref}},
        }
        for t, ref in zip(types, refs, strict=True)
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://auren.dev/schemas/event-v1.json",
        "title": "AUREN Observatory stream entry (field 'e'), version 1",
        "description": (
            "Unknown fields are ignored by readers; unknown types are counted, never fatal. "
            "Payload fields listed per known type; extra payload fields are allowed."
        ),
        "type": "object",
        "required": ["v", "id", "ts", "type", "payload"],
        "properties": {
            "v": {"const": SCHEMA_VERSION},
            "id": {"type": "string", "minLength": 1},
            "ts": {"type": "number", "minimum": 0},
            "type": {"type": "string", "minLength": 1, "examples": types},
            "agent": {"type": ["string", "null"]},
            "run": {"type": ["string", "null"]},
            "payload": {"type": "object"},
            "seq": {"type": ["integer", "null"], "description": "source emission sequence"},
            "parent": {"type": ["string", "null"], "description": "source parent event id"},
        },
        "allOf": branches,
        "$defs": components,
    }


def main() -> None:
    sys.stdout.buffer.write(orjson.dumps(event_schema(), option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
