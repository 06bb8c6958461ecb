"""The one duration grammar, for every flag that takes a span of time (``auren top
--since`` / ``--active-window`` / ``--replay 2h..``, ``auren export --since`` / ``--until``,
``auren serve-ws --window``, ``auren token --access-ttl`` / ``--refresh-ttl``, ``auren demo
--duration``, ``auren persist --maintain-every``).

A duration is plain seconds (``90``, ``2.5``) or one or more ``<number><unit>`` parts with
units ``w d h m s`` (weeks, days, hours, minutes, seconds), largest first, each at most
once, optionally separated by spaces: ``90s``, ``15m``, ``1h``, ``1h30m``, ``2d``,
``1.5h``, ``1w 2d``. Case does not matter. Nothing else is a duration: no signs, no
exponents, no ``inf``; at most :data:`MAX_S` (10 years).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["EXAMPLES", "MAX_S", "DurationError", "parse_duration"]

EXAMPLES: Final = "90s, 15m, 1h, 1h30m, 2d, 1w or plain seconds"
MAX_S: Final = 10 * 365 * 86400.0
_NUM = r"[0-9]+(?:\.[0-9]+)?"
_UNITS: Final = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PLAIN = re.compile(_NUM)
_PARTS = re.compile(r"\s*".join(rf"(?:(?P<{u}>{_NUM})\s*{u})?" for u in _UNITS))


class DurationError(ValueError):
    """Not a duration (or out of range); the message names the text and the grammar."""


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds in ``text`` (see the module docstring). Raises :class:`DurationError`."""
    t = text.strip().lower()
    if _PLAIN.fullmatch(t):
        secs = float(t)
    else:
        m = _PARTS.fullmatch(t)
        if not t or m is None or not any(m.groupdict().values()):
            raise DurationError(f"{text!r} is not a duration (use {EXAMPLES})")
        secs = sum(float(v) * _UNITS[u] for u, v in m.groupdict().items() if v is not None)
    if secs <= 0 and not allow_zero:
        raise DurationError(f"{text!r} is not a duration: it must be more than 0")
    if secs > MAX_S:
        raise DurationError(f"{text!r} is too long a duration: at most 3650d")
    return secs
