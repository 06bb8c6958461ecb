"""Text helpers for the CrewAI conversion and the OTLP mapping: agent ids, bounded values."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["TEXT_LIMIT", "args_digest", "args_of", "jsonable", "repair", "sid", "slug", "text"]

TEXT_LIMIT = 500
_NON_ID = re.compile(r"[^0-9a-z]+")


@lru_cache(maxsize=4096)
def slug(role: str | None) -> str | None:
    """Stable agent id from a role: "Sleep Specialist" -> "sleep_specialist"."""
    if not role:
        return None
    s = _NON_ID.sub("_", str(role).strip().lower()).strip("_")[:64]
    return s or "agent"


_SIDS: dict[int, tuple[Any, str]] = {}


def sid(v: Any) -> str:
    """``str(uuid)`` (and UUID hashing) cost microseconds; ids repeat: cache by identity."""
    hit = _SIDS.get(id(v))
    if hit is not None and hit[0] is v:
        return hit[1]
    if len(_SIDS) > 4096:
        _SIDS.clear()
    s = str(v)
    _SIDS[id(v)] = (v, s)  # keeps v alive, so its id cannot be reused while cached
    return s


def text(v: Any, limit: int = TEXT_LIMIT) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def jsonable(v: Any, depth: int = 0) -> Any:
    if v is None or isinstance(v, bool | int | float):
        return v
    if isinstance(v, str):
        return text(v)
    if depth < 3 and isinstance(v, Mapping):
        return {str(k)[:100]: jsonable(x, depth + 1) for k, x in list(v.items())[:50]}
    if depth < 3 and isinstance(v, list | tuple):
        return [jsonable(x, depth + 1) for x in v[:50]]
    return text(repr(v))


def repair(v: Any) -> Any:
    """Make any value encodable: unpaired surrogates escaped, others stringified."""
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(v, dict):
        return {repair(str(k)): repair(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [repair(x) for x in v]
    if v is None or isinstance(v, bool | int | float):
        return v
    return repair(repr(v))


def args_of(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            val = json.loads(raw)
        except ValueError:
            return {}
        return val if isinstance(val, dict) else {}
    return {}


def args_digest(raw: Any) -> str | None:
    """A 16-hex-digit BLAKE2b digest of a tool call's arguments (canonical JSON when they
    parse, else their text), or None when there are none. Only the digest leaves the process."""
    if raw is None or raw == "" or raw == {}:
        return None
    args: Any = args_of(raw) or raw
    try:
        blob = json.dumps(args, sort_keys=True, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        blob = repr(args)
    return hashlib.blake2b(blob.encode("utf-8", "replace"), digest_size=8).hexdigest()
