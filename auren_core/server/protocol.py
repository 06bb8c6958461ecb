"""The WebSocket protocol as pure functions and a small state machine (no I/O).

Client -> server: ``{"type":"auth","token":JWT}`` (first, when auth is on), then
``{"type":"subscribe","types":[...],"agents":[...],"since":"<id>"|"0-0"|"now"}``.
Server -> client: ``{"type":"snapshot","state":{...}}`` once, then
``{"type":"events","events":[...],"last_id":"<id>"}`` frames, and ``{"type":"error",...}``
just before a close. Each event is the stream entry's JSON plus ``"_sid"``: its stream id.

Everything here is testable without a socket: :class:`Session` consumes raw text and
returns :class:`Action` values the I/O adapter carries out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgspec

from ..events import Event, Malformed
from ..events.codec import encode_with_sid, wire

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_SERVER_FULL",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOO_BIG",
    "CLOSE_UNAUTHORIZED",
    "Authenticate",
    "Phase",
    "ProtocolError",
    "Session",
    "Subscribe",
    "Subscription",
    "error_frame",
    "events_frame",
    "snapshot_frame",
]

# Close codes (RFC 6455 range for the standard ones, 4000-4999 for ours).
CLOSE_TOO_BIG = 1009  # message larger than max_size (sent by websockets itself)
CLOSE_SERVER_FULL = 1013  # "try again later": max clients reached
CLOSE_BAD_REQUEST = 4400  # malformed or out-of-order message
CLOSE_UNAUTHORIZED = 4401  # missing, invalid, expired or revoked token
CLOSE_FORBIDDEN = 4403  # token valid but not for this (e.g. a refresh token used to connect)
CLOSE_SLOW_CONSUMER = 4408  # per-client send queue overflowed: the client reads too slowly

MAX_FILTER_ITEMS = 256
MAX_FILTER_LEN = 256
_STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
_CURSOR = re.compile(r"^c1\.[A-Za-z0-9_-]{1,65536}$")


class ProtocolError(Exception):
    """A client mistake: close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # close reasons must fit in a control frame


class Phase(Enum):
    AUTH = "auth"
    SUBSCRIBE = "subscribe"
    STREAMING = "streaming"


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a client asked for. ``None`` filters mean "everything"."""

    types: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    since: str = "now"  # "now", "0-0" or a stream id (exclusive: events after it)

    @property
    def key(self) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        """Clients with equal keys share one encoded frame per batch."""
        return (self.types, self.agents)

    def matches(self, ev: Event) -> bool:
        if self.types is not None and ev.type not in self.types:
            return False
        return self.agents is None or ev.agent in self.agents


@dataclass(frozen=True, slots=True)
class Authenticate:
    token: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    subscription: Subscription


Action = Authenticate | Subscribe

_decoder = msgspec.json.Decoder(dict[str, Any])


def _filter(doc: dict[str, Any], name: str) -> frozenset[str] | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_FILTER_ITEMS:
        raise ProtocolError(CLOSE_BAD_REQUEST, f"{name} must be a list of <= 256 strings")
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_FILTER_LEN for v in value):
        raise ProtocolError(CLOSE_BAD_REQUEST, f"{name} must be a list of non-empty strings")
    return frozenset(value)


def parse_since(value: Any) -> str:
    if value is None:
        return "now"
    if not isinstance(value, str):
        raise ProtocolError(CLOSE_BAD_REQUEST, "since must be a stream id, '0-0' or 'now'")
    if value in ("now", "$"):
        return "now"
    if _CURSOR.match(value):  # a sharded stream's cursor: checked against the shard count
        return value
    if not _STREAM_ID.match(value):
        raise ProtocolError(CLOSE_BAD_REQUEST, "since must be a stream id, '0-0' or 'now'")
    return value if "-" in value else f"{value}-0"


def parse_message(raw: str | bytes) -> dict[str, Any]:
    """The client message as a dict; hostile input of any kind is a 4400 ProtocolError."""
    try:
        doc = _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError):
        raise ProtocolError(CLOSE_BAD_REQUEST, "message is not a JSON object") from None
    except RecursionError:  # msgspec refuses depth beyond the interpreter's limit
        raise ProtocolError(CLOSE_BAD_REQUEST, "message nested too deeply") from None
    if not isinstance(doc.get("type"), str):
        raise ProtocolError(CLOSE_BAD_REQUEST, "message has no string 'type'")
    return doc


class Session:
    """One client's protocol state: auth (optional) -> subscribe -> streaming."""

    def __init__(self, *, auth_required: bool) -> None:
        self.auth_required = auth_required
        self.phase = Phase.AUTH if auth_required else Phase.SUBSCRIBE
        self.subscription: Subscription | None = None

    def authenticated(self) -> None:
        if self.phase is Phase.AUTH:
            self.phase = Phase.SUBSCRIBE

    def receive(self, raw: str | bytes) -> Action:
        """The action for one client message; any failure is a :class:`ProtocolError`."""
        try:
            return self._receive(raw)
        except ProtocolError:
            raise
        except Exception:  # a message nobody anticipated: still the client's mistake
            raise ProtocolError(CLOSE_BAD_REQUEST, "bad message") from None

    def _receive(self, raw: str | bytes) -> Action:
        doc = parse_message(raw)
        kind = doc["type"]
        if self.phase is Phase.AUTH and kind != "auth":
            raise ProtocolError(CLOSE_UNAUTHORIZED, "authenticate first: {type: auth}")
        if kind == "auth":
            if not self.auth_required:
                raise ProtocolError(CLOSE_BAD_REQUEST, "auth is off on this server")
            # first, or later to renew the session with a fresh token (same subject)
            token = doc.get("token")
            if not isinstance(token, str) or not token or len(token) > 8192:
                raise ProtocolError(CLOSE_UNAUTHORIZED, "auth needs a token string")
            return Authenticate(token)
        if kind != "subscribe":
            raise ProtocolError(CLOSE_BAD_REQUEST, f"unknown message type {kind[:40]!r}")
        if self.phase is Phase.STREAMING:
            raise ProtocolError(CLOSE_BAD_REQUEST, "already subscribed; reconnect to change")
        sub = Subscription(
            types=_filter(doc, "types"),
            agents=_filter(doc, "agents"),
            since=parse_since(doc.get("since")),
        )
        self.subscription = sub
        self.phase = Phase.STREAMING
        return Subscribe(sub)


# --------------------------------------------------------------------------- frames

_encoder = msgspec.json.Encoder()


def encode_event(ev: Event) -> bytes:
    """The event's JSON with its stream id as ``_sid`` (encoded once, shared by clients; a
    decoded payload is written as it was read, unknown fields included)."""
    return encode_with_sid(ev)


def events_frame(encoded: Sequence[bytes], last_id: str) -> bytes:
    return b"".join(
        (
            b'{"type":"events","events":[',
            b",".join(encoded),
            b'],"last_id":"',
            last_id.encode(),
            b'"}',
        )
    )


def events_frame_all(events: Sequence[Event], last_id: str) -> bytes:
    """Same bytes as :func:`events_frame`, the whole list encoded in one call."""
    return b"".join(
        (
            b'{"type":"events","events":',
            _encoder.encode([wire(e, with_sid=True) for e in events]),
            b',"last_id":"',
            last_id.encode(),
            b'"}',
        )
    )


def snapshot_frame(state: dict[str, Any], last_id: str | None) -> bytes:
    return _encoder.encode({"type": "snapshot", "state": state, "last_id": last_id})


def error_frame(code: int, reason: str) -> bytes:
    return _encoder.encode({"type": "error", "code": code, "reason": reason})


def select(items: Iterable[Event | Malformed], sub: Subscription) -> list[Event]:
    """Events (never Malformed entries) that ``sub`` wants, in stream order."""
    return [it for it in items if isinstance(it, Event) and sub.matches(it)]


def id_after(a: str, b: str) -> bool:
    """True when stream id ``a`` is strictly after ``b``."""
    am, _, aseq = a.partition("-")
    bm, _, bseq = b.partition("-")
    return (int(am), int(aseq or 0)) > (int(bm), int(bseq or 0))
