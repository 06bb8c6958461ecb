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
from msgspec import UNSET, UnsetType

from ..rules import MAX_DEPTH, MAX_TS, MIN_TS, name, timestamp_problem, tokens
from .model import (
    EVENT_TYPES,
    MAX_ENTRY_BYTES,
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    Event,
    Malformed,
    _Payload,
)

__all__ = [
    "coerce_payload",
    "decode",
    "encode",
    "encode_fields",
    "encode_with_sid",
    "make_event",
    "new_event_id",
    "payload_as",
    "payload_from_json",
    "payload_json",
    "typed_event",
    "typed_payload",
    "wire",
]


# ids: a per-process random prefix and a counter: unique, cheap (no uuid4 per event).
_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)


def new_event_id() -> str:
    return f"{_PREFIX}-{next(_COUNTER)}"


_encoder = msgspec.json.Encoder()


class _Envelope(msgspec.Struct, kw_only=True):
    """The envelope as read: the payload left as its JSON text, decoded next by its type."""

    v: int = SCHEMA_VERSION
    id: str
    ts: float
    type: str
    agent: str | None = None
    run: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"{}")
    seq: int | UnsetType | None = UNSET
    parent: str | UnsetType | None = UNSET


class _Wire(msgspec.Struct, kw_only=True):
    """An event as written: ``payload`` is the original JSON (``msgspec.Raw``) when there is
    one, so fields this version does not know are written back as they came."""

    v: int
    id: str
    ts: float
    type: str
    agent: str | None
    run: str | None
    payload: Any
    seq: int | UnsetType | None = UNSET
    parent: str | UnsetType | None = UNSET
    sid: str | UnsetType = msgspec.field(default=UNSET, name="_sid")


_env_decoder = msgspec.json.Decoder(_Envelope)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_payload_decoders = {t: msgspec.json.Decoder(pt) for t, pt in PAYLOAD_TYPES.items()}


def typed_payload(etype: str, payload: Any) -> Any:
    """The payload of a ``type`` event as its struct (the one accessor for payloads handed over
    in process): a struct is returned as is, a dict of a known type is converted (raises
    ``msgspec.ValidationError`` when it does not validate), anything else is returned as is."""
    if type(payload) is not dict:
        return payload
    ptype = PAYLOAD_TYPES.get(etype)
    return payload if ptype is None else msgspec.convert(payload, ptype)


_TOO_DEEP = f"payload nested too deep (at most {MAX_DEPTH} levels)"
_FIELD_INFO: dict[type, tuple[msgspec.structs.FieldInfo, ...]] = {}


def coerce_payload(etype: str, payload: dict[str, Any]) -> Any:
    """A dict handed over in process as the ``etype`` struct, never raising (the reducer's and
    the export's one accessor for such dicts): a dict that validates is converted; otherwise
    each field that validates keeps its value and the others become what the rules count
    them as (:mod:`auren_core.rules`): a count by ``rules.tokens``, a required name by
    ``rules.name``, anything else its default. The dict stays the source of truth."""
    ptype = PAYLOAD_TYPES[etype]
    try:
        p = msgspec.convert(payload, ptype)
    except (msgspec.ValidationError, TypeError, ValueError):
        infos = _FIELD_INFO.get(ptype)
        if infos is None:
            infos = _FIELD_INFO[ptype] = msgspec.structs.fields(ptype)
        kw: dict[str, Any] = {}
        for f in infos:
            present = f.encode_name in payload
            v = payload.get(f.encode_name)
            if present:
                try:
                    kw[f.name] = msgspec.convert(v, f.type)
                    continue
                except (msgspec.ValidationError, TypeError, ValueError):
                    pass
            if f.type is int:
                kw[f.name] = tokens(v)
            elif f.required:
                kw[f.name] = name(v)
        try:
            p = ptype(**kw)
        except (TypeError, ValueError):  # __post_init__ refused a field: its default then
            kw.pop("latency_by_tier", None)
            p = ptype(**kw)
    p.__dict__["_src"] = payload
    return p


def typed_event(ev: Event) -> Event:
    """``ev`` with a known type's payload as its struct: a dict handed over in process is
    typed once by :func:`coerce_payload` (never raising), anything else is returned as is.
    The one boundary for readers that take events from anywhere (analytics, metrics, the
    live tail, the registry): past it, a known type's payload is its struct."""
    p = ev.payload
    if type(p) is dict and ev.type in EVENT_TYPES:
        return msgspec.structs.replace(ev, payload=coerce_payload(ev.type, p))
    return ev


def _typed_or_dict(etype: str, payload: Any) -> Any:
    """A dict of a known type as its struct, the dict kept as the source of truth (encoded,
    it is written as given: unknown fields too); a dict that does not validate stays a dict
    (left to the reader to count: the reducer calls it a bad payload)."""
    if type(payload) is not dict:
        return payload
    ptype = PAYLOAD_TYPES.get(etype)
    if ptype is None:
        return payload
    try:
        p = msgspec.convert(payload, ptype)
    except (msgspec.ValidationError, TypeError, ValueError):
        return payload
    p.__dict__["_src"] = payload
    return p


def payload_from_json(etype: str, data: bytes | str) -> Any:
    """A stored payload's JSON (the store's jsonb text) as its typed struct, the JSON kept as
    the source of truth; a dict for an unknown type or one that does not validate."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    pdec = _payload_decoders.get(etype)
    if pdec is not None:
        try:
            p = pdec.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            p.__dict__["_raw"] = data
            return p
    return _dict_decoder.decode(data)


def payload_json(payload: Any) -> bytes:
    """The payload's JSON: the original bytes of a decoded payload, else its encoding."""
    if isinstance(payload, _Payload):
        raw = payload.raw()
        if raw is not None:
            return raw
    return _encoder.encode(payload if payload is not None else {})


def wire(event: Event, *, with_sid: bool = False) -> _Wire:
    """What to encode for ``event`` (with its stream id as ``_sid`` when ``with_sid``)."""
    p = event.payload
    if isinstance(p, _Payload):
        raw = p.raw()
        if raw is not None:
            p = msgspec.Raw(raw)
    return _Wire(
        v=event.v,
        id=event.id,
        ts=event.ts,
        type=event.type,
        agent=event.agent,
        run=event.run,
        payload=p,
        seq=event.seq,
        parent=event.parent,
        sid=event.sid if with_sid else UNSET,
    )


def make_event(
    type: str,
    payload: _Payload | dict[str, Any] | None = None,
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
        payload=_typed_or_dict(type, {} if payload is None else payload),
        seq=UNSET if seq is None else seq,
        parent=UNSET if parent is None else parent,
    )


def encode(event: Event) -> bytes:
    """Encode to the stream's JSON form (the ``_sid`` field is never written; a decoded
    payload is written as it was read)."""
    return _encoder.encode(wire(event))


def encode_with_sid(event: Event) -> bytes:
    """The event's JSON with its stream id as ``_sid`` (serve-ws frames)."""
    return _encoder.encode(wire(event, with_sid=True))


def encode_fields(
    type: str,
    payload: _Payload | dict[str, Any] | None,
    agent: str | None,
    run: str | None,
    seq: int | None = None,
    parent: str | None = None,
) -> bytes:
    """Hot-path encoding without building an Event object first. A struct is encoded by
    msgspec as it is (a decoded or converted one as its original JSON: unknown fields
    kept); a dict as given."""
    p: Any = payload
    if not isinstance(p, dict):  # (``type`` is the event type here)
        if p is None:
            p = {}
        elif p.__dict__:  # decoded or converted: its original JSON (built: nothing kept)
            raw = p.raw()
            if raw is not None:
                p = msgspec.Raw(raw)
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": new_event_id(),
        "ts": time.time(),
        "type": type,
        "agent": agent,
        "run": run,
        "payload": p,
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
        env = _env_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Malformed(sid, f"bad envelope: {exc}", raw[:200])
    except RecursionError:
        return Malformed(sid, f"payload nested too deep (at most {MAX_DEPTH} levels)", raw[:200])
    except Exception as exc:  # pragma: no cover - msgspec should only raise the above
        return Malformed(sid, f"undecodable: {type(exc).__name__}", raw[:200])
    if env.v != SCHEMA_VERSION:
        return Malformed(sid, f"unsupported version {env.v}", raw[:200])
    if not MIN_TS <= env.ts < MAX_TS:  # rules.timestamp_ok, inlined (NaN fails too)
        return Malformed(sid, str(timestamp_problem(env.ts)), raw[:200])
    praw = bytes(env.payload)
    t = env.type
    # a payload that nests deeper than MAX_DEPTH would exhaust the stack of whoever encodes
    # or walks it next (serve-ws frames, the store's jsonb, a deep caller): refused here.
    # Counting brackets is a C loop; only entries with many of them are walked.
    pdec = _payload_decoders.get(t)
    payload: Any
    try:
        if praw.count(b"[") + praw.count(b"{") > MAX_DEPTH and _too_deep(
            _dict_decoder.decode(praw), MAX_DEPTH
        ):
            return Malformed(sid, _TOO_DEEP, raw[:200])
        if pdec is None:
            payload = _dict_decoder.decode(praw)
        else:
            payload = pdec.decode(praw)
            payload.__dict__["_raw"] = praw
    except msgspec.ValidationError as exc:
        if pdec is None:
            return Malformed(sid, f"bad envelope: {exc} - at `$.payload`", raw[:200])
        return Malformed(sid, f"bad {t} payload: {exc}", raw[:200])
    except msgspec.DecodeError as exc:  # pragma: no cover - the envelope decoded it
        return Malformed(sid, f"bad envelope: {exc}", raw[:200])
    except RecursionError:
        return Malformed(sid, f"payload nested too deep (at most {MAX_DEPTH} levels)", raw[:200])
    return Event(
        v=env.v,
        id=env.id,
        ts=env.ts,
        type=t,
        agent=env.agent,
        run=env.run,
        payload=payload,
        seq=env.seq,
        parent=env.parent,
        sid=sid if sid else UNSET,
    )


def payload_as(event: Event, ptype: type[_Payload]) -> Any:
    """Typed view of a (validated) payload."""
    p = event.payload
    if isinstance(p, ptype):
        return p
    return msgspec.convert(p.to_dict() if isinstance(p, _Payload) else p, ptype)
