"""AUREN Observatory engine: events, publisher, reader, state, analytics.

Importing this package never imports textual, rich, crewai or chromadb.
"""

from __future__ import annotations

from typing import Any

from .api import configure, emit, get_publisher, hypothesis, set_publisher
from .events import EVENT_TYPES, Event, Malformed, decode, encode, make_event
from .publisher import Publisher

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


def instrument(**kwargs: Any) -> Any:
    """One line for a crew application: ``auren_core.instrument()``.

    Registers a listener on CrewAI's event bus that converts and enqueues events.
    Keyword arguments go to :func:`auren_core.integrations.crewai.instrument`.
    """
    from .integrations.crewai import instrument as _instrument

    return _instrument(**kwargs)
