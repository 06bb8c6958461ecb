"""One-line CrewAI instrumentation: ``auren_core.instrument()``.

Registers :class:`AurenListener` on CrewAI's event bus. Its handlers only
convert a CrewAI event into a v1 AUREN event and enqueue it on the publisher
(no network, no locks held for long): CrewAI waits for its handlers at the end
of every agent run, so a slow handler would slow the crew. A handler never
raises into CrewAI: failures are caught and counted (:meth:`counters`); an
event whose text cannot be encoded (e.g. a lone surrogate in a tool argument)
is repaired and still sent.

Ordering: CrewAI 1.6 dispatches handlers from a thread pool, so they run out of
order. A tap on the bus's ``emit`` (see ``_crewai_tap``) records, in emission
order, the sequence number (``seq``), the parent event id (``parent``), the
kickoff id (``run``), durations, LLM latency and each call's own token usage.

Importing this module imports crewai (``auren_core`` itself never does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from crewai.events.base_event_listener import BaseEventListener
from crewai.events.event_bus import CrewAIEventsBus, crewai_event_bus

from ..publisher import Publisher
from ._crewai_convert import Converter, slug
from ._crewai_tap import KINDS, Tap, record_usage

__all__ = ["AurenListener", "instrument", "slug", "uninstrument"]


class AurenListener(BaseEventListener):
    """Maps CrewAI events to AUREN events on one publisher."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        tool_costs: Mapping[str, float] | None = None,
        redact_queries: bool = False,
    ) -> None:
        self.tap = Tap()
        self.converter = Converter(
            publisher, self.tap, tool_costs=tool_costs, redact_queries=redact_queries
        )
        self._handlers: dict[type[Any], Callable[[Any, Any], Any]] = {}
        self.installed = False
        super().__init__()

    @property
    def publisher(self) -> Publisher:
        return self.converter.publisher

    def setup_listeners(self, crewai_event_bus: CrewAIEventsBus) -> None:
        # An async handler: CrewAI runs it on its event-loop thread, in arrival order,
        # and independently of its own sync handlers (some of which wait up to 5 s).
        convert = self.converter.handle

        async def handle(source: Any, event: Any) -> None:
            convert(source, event)

        for etype, kind in KINDS.items():
            if kind == "llm_start":  # tapped only (call start time); no AUREN event
                continue
            crewai_event_bus.register_handler(etype, handle)
            self._handlers[etype] = handle
        _install_patches(self.tap)
        self.installed = True

    def reconfigure(
        self,
        publisher: Publisher,
        *,
        tool_costs: Mapping[str, float] | None = None,
        redact_queries: bool = False,
    ) -> None:
        """Point at another publisher; agents are registered again there."""
        self.converter.reconfigure(publisher, tool_costs=tool_costs, redact_queries=redact_queries)
        if not self.installed:
            self.setup_listeners(crewai_event_bus)

    def uninstall(self) -> None:
        """Remove the handlers and the taps (tests, benchmarks)."""
        bus = crewai_event_bus
        with bus._rwlock.w_locked():
            for etype, h in self._handlers.items():
                hs = bus._sync_handlers.get(etype)
                if hs is not None and h in hs:
                    bus._sync_handlers[etype] = hs - {h}
                ahs = bus._async_handlers.get(etype)
                if ahs is not None and h in ahs:
                    bus._async_handlers[etype] = ahs - {h}
                bus._execution_plan_cache.pop(etype, None)
        self._handlers.clear()
        _remove_patches()
        self.installed = False

    def counters(self) -> dict[str, int]:
        c = self.converter.counters()
        c["tap_errors"] = self.tap.errors
        c["pending"] = len(self.tap.pending)
        return c


# --------------------------------------------------------------------------- patches
def _install_patches(tap: Tap) -> None:
    """Wrap the bus's ``emit`` (emission-order tap) and the usage reporters."""
    from crewai.llms.base_llm import BaseLLM
    from crewai.utilities.token_counter_callback import TokenCalcHandler

    bus = crewai_event_bus
    current = bus.__dict__.get("emit")
    if current is not None and getattr(current, "_auren_tap", None) is tap:
        return
    original = type(bus).emit.__get__(bus)
    on_emit = tap.on_emit

    def emit(source: Any, event: Any) -> Any:
        on_emit(source, event)
        return original(source, event)

    emit._auren_tap = tap  # type: ignore[attr-defined]
    bus.emit = emit  # type: ignore[method-assign]

    track = BaseLLM._track_token_usage_internal
    if not getattr(track, "_auren", False):

        def _track(self: Any, usage_data: dict[str, Any]) -> None:
            track(self, usage_data)
            record_usage(usage_data)

        _track._auren = track  # type: ignore[attr-defined]
        BaseLLM._track_token_usage_internal = _track  # type: ignore[method-assign]

    log_ok = TokenCalcHandler.log_success_event
    if not getattr(log_ok, "_auren", False):

        def _log(self: Any, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            log_ok(self, kwargs, response_obj, start_time, end_time)
            usage = response_obj.get("usage") if isinstance(response_obj, dict) else None
            if usage is not None:
                record_usage(usage)

        _log._auren = log_ok  # type: ignore[attr-defined]
        TokenCalcHandler.log_success_event = _log  # type: ignore[method-assign]


def _remove_patches() -> None:
    from crewai.llms.base_llm import BaseLLM
    from crewai.utilities.token_counter_callback import TokenCalcHandler

    if getattr(crewai_event_bus.__dict__.get("emit"), "_auren_tap", None) is not None:
        del crewai_event_bus.emit
    orig = getattr(BaseLLM._track_token_usage_internal, "_auren", None)
    if orig is not None:
        BaseLLM._track_token_usage_internal = orig  # type: ignore[method-assign]
    orig = getattr(TokenCalcHandler.log_success_event, "_auren", None)
    if orig is not None:
        TokenCalcHandler.log_success_event = orig  # type: ignore[method-assign]


# --------------------------------------------------------------------------- entry point
_lock = threading.Lock()
_listener: AurenListener | None = None


def instrument(
    *,
    redis_url: str | None = None,
    stream: str | None = None,
    publisher: Publisher | None = None,
    tool_costs: Mapping[str, float] | None = None,
    redact_queries: bool | None = None,
) -> AurenListener:
    """Instrument every CrewAI crew in this process. Idempotent.

    Destination: ``publisher``, else a process publisher for ``redis_url`` /
    ``stream``, else the environment (``AUREN_REDIS_URL``, ``AUREN_STREAM``,
    auren.toml, embedded default). Tool costs come from ``tool_costs`` or the
    settings' ``tool_costs``. Calling it again re-targets the one listener; it
    never registers a second one.
    """
    global _listener
    from .. import api
    from ..config import load_settings

    settings = load_settings(redis_url=redis_url, stream=stream)
    if publisher is None:
        if redis_url is not None or stream is not None:
            publisher = api.configure(redis_url, stream)
        else:
            publisher = api.get_publisher()
    costs = dict(settings.tool_costs if tool_costs is None else tool_costs)
    redact = settings.redact_queries if redact_queries is None else redact_queries
    with _lock:
        if _listener is None:
            _listener = AurenListener(publisher, tool_costs=costs, redact_queries=redact)
        else:
            _listener.reconfigure(publisher, tool_costs=costs, redact_queries=redact)
        return _listener


def uninstrument() -> None:
    """Undo :func:`instrument` (the listener is kept for a later ``instrument``)."""
    with _lock:
        if _listener is not None and _listener.installed:
            _listener.uninstall()
