"""AUREN Observatory engine: events, publisher, reader, state, analytics.

Importing this package never imports textual, rich, crewai or chromadb, and imports
the rest lazily (PEP 562): ``auren top`` pays only for what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emitter import configure, emit, get_publisher, hypothesis, set_publisher
    from .events import EVENT_TYPES, Event, Malformed, decode, encode, make_event
    from .streams.publisher import Publisher

__all__ = [
    "EVENT_TYPES",
    "Event",
    "Malformed",
    "Publisher",
    "configure",
    "decode",
    "emit",
    "encode",
    "get_publisher",
    "hypothesis",
    "instrument",
    "make_event",
    "set_publisher",
]
__version__ = "0.1.0"

_LAZY = {
    "configure": ".emitter",
    "emit": ".emitter",
    "get_publisher": ".emitter",
    "hypothesis": ".emitter",
    "set_publisher": ".emitter",
    "EVENT_TYPES": ".events",
    "Event": ".events",
    "Malformed": ".events",
    "decode": ".events",
    "encode": ".events",
    "make_event": ".events",
    "Publisher": ".streams.publisher",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auren_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def instrument(**kwargs: Any) -> Any:
    """One line for a crew application: ``auren_core.instrument()``.

    Registers a listener on CrewAI's event bus that converts and enqueues events.
    Keyword arguments go to :func:`auren_core.integrations.crewai.instrument`.
    """
    from .integrations.crewai import instrument as _instrument

    return _instrument(**kwargs)
