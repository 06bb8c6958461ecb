"""One stream entry -> :class:`Event` | :class:`Malformed`, for every reader.

redis-py hands entries over in several shapes: ids as bytes (or str with
``decode_responses``), fields as a dict with bytes or str keys (XRANGE, XREAD,
XAUTOCLAIM) or as the flat ``[field, value, ...]`` list of a raw reply (readers that skip
redis-py's per-entry dict for speed), ``None`` for an entry trimmed while pending. This
module is the one place that turns any of them into an event; the codec
(:func:`auren_core.events.decode`) does the rest and never raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..events import FIELD, Event, Malformed, decode

__all__ = [
    "decode_entries",
    "decode_entry",
    "entry_id",
    "entry_value",
    "id_for_time",
    "parse_stream_id",
]

_FIELD_S = FIELD.decode()


def entry_id(sid: bytes | str) -> str:
    """A stream id as ``str``, whichever way the client returned it."""
    return sid.decode() if isinstance(sid, bytes) else str(sid)


def entry_value(fields: Any) -> bytes | str | None:
    """The event field (``e``) of an entry's fields, or None when it has none."""
    if not fields:
        return None
    if isinstance(fields, dict):
        raw = fields.get(FIELD)
        return fields.get(_FIELD_S) if raw is None else raw
    for j in range(0, len(fields) - 1, 2):  # raw reply: [field, value, field, value, ...]
        if fields[j] in (FIELD, _FIELD_S):
            return fields[j + 1]  # type: ignore[no-any-return]
    return None


def decode_entry(sid: bytes | str, fields: Any) -> Event | Malformed:
    """Decode one entry ``(id, fields)``: envelope, version and payload checked. Never
    raises: anything wrong is a :class:`Malformed` carrying the entry id and the reason."""
    return decode(entry_value(fields), entry_id(sid))


def decode_entries(entries: Iterable[Any]) -> list[Event | Malformed]:
    """Decode XRANGE / XREAD / XREADGROUP entries ``[(id, fields), ...]`` in order."""
    return [decode(entry_value(fields), entry_id(sid)) for sid, fields in entries]


def parse_stream_id(sid: str) -> tuple[int, int]:
    """``"ms-seq"`` -> ``(ms, seq)``, comparable (a bare ``"ms"`` has seq 0)."""
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


def id_for_time(ts: float) -> str:
    """The smallest stream id at or after unix time ``ts``."""
    return f"{max(0, int(ts * 1000))}-0"
