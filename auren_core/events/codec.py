"""Encoding and decoding of v1 stream entries.

Encoding uses msgspec (fast, allocation-light). Decoding is defensive: whatever bytes
arrive, :func:`decode` returns either an :class:`~auren_core.events.model.Event` or a
:class:`~auren_core.events.model.Malformed` value and never raises, so one bad entry cannot
stop a reader.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import msgspec
from msgspec import UNSET

from ..rules import MAX_DEPTH, MAX_TS, MIN_TS, timestamp_problem
from .model import (
    MAX_ENTRY_BYTES,
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    Event,
    Malformed,
    _Payload,
)

__all__ = [
    "decode",
    "encode",
    "encode_fields",
    "make_event",
    "new_event_id",
    "payload_as",
]


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
