"""One-line CrewAI instrumentation: ``auren_core.instrument()``.

Hooks :class:`AurenListener` onto CrewAI's event bus. A tap on the bus's
``emit`` runs in the emitting thread, in emission order, and records what
CrewAI 1.6 events do not carry: the sequence number (``seq``), the parent event
id (``parent``), the kickoff id (``run``), durations, LLM latency and each
call's own token usage (see ``auren_core.integrations.crewai.tap``). The event then goes to our own
conversion thread (default ``dispatch="tap"``) or to async handlers registered
on the bus (``dispatch="bus"``); either way the agent's thread never converts,
encodes or touches the network, and CrewAI's own slow handlers cannot hold our
events up.

Nothing raises into CrewAI: failures are caught and counted
(:meth:`AurenListener.counters`); an event whose text cannot be encoded (e.g. a
lone surrogate in a tool argument) is repaired, counted and still sent.

Importing this module imports crewai (``auren_core`` itself never does).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from crewai.events.base_event_listener import BaseEventListener
from crewai.events.event_bus import CrewAIEventsBus, crewai_event_bus

from ...streams.publisher import Publisher
from ..text import slug
from .convert import Converter
from .tap import Tap, record_usage, resolve
from .worker import Worker

__all__ = ["AurenListener", "Dispatch", "instrument", "slug", "uninstrument"]


Dispatch = Literal["tap", "bus"]


class AurenListener(BaseEventListener):
    """Maps CrewAI events to AUREN events on one publisher.

    ``dispatch="tap"`` (default): the emission tap queues each event for our own
    conversion thread (cheapest for the crew, in emission order). ``"bus"``:
    async handlers registered on CrewAI's bus do the conversion (CrewAI's loop
    thread); same events, higher per-event cost (see bench/bench_crew_overhead.py).
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        tool_costs: Mapping[str, float] | None = None,
        redact_queries: bool = False,
        dispatch: Dispatch = "tap",
    ) -> None:
        self.tap = Tap()
        self.converter = Converter(
            publisher, self.tap, tool_costs=tool_costs, redact_queries=redact_queries
        )
        self.worker = Worker(self.converter)
        self.dispatch: Dispatch = dispatch
        self._handlers: dict[type[Any], Callable[[Any, Any], Any]] = {}
        self.installed = False
        super().__init__()

    @property
    def publisher(self) -> Publisher:
        return self.converter.publisher

    def setup_listeners(self, crewai_event_bus: CrewAIEventsBus) -> None:
        if self.dispatch == "tap":
            self.tap.sink = self.worker.put
        else:
            self.tap.sink = None
            # async: CrewAI runs it on its loop thread in arrival order, independently
            # of its own sync handlers (some wait up to 5 s in CrewAI 1.6.1)
            convert = self.converter.handle
            replaying = _is_replaying()

            async def handle(source: Any, event: Any) -> None:
                if replaying is not None and replaying():  # 1.14.3+ checkpoint replay
                    self.tap.take(event)
                    self.converter.replayed += 1
                    return
                convert(source, event)

            for etype, kind in resolve().items():
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
        dispatch: Dispatch | None = None,
    ) -> None:
        """Point at another publisher; agents are registered again there."""
        self.drain(2.0)
        self.converter.reconfigure(publisher, tool_costs=tool_costs, redact_queries=redact_queries)
        if dispatch is not None and dispatch != self.dispatch and self.installed:
            self.uninstall()
        if dispatch is not None:
            self.dispatch = dispatch
        if not self.installed:
            self.setup_listeners(crewai_event_bus)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far is converted and enqueued."""
        deadline = time.monotonic() + timeout
        flush = getattr(crewai_event_bus, "flush", None)  # 1.9+: pending bus handlers
        if self._handlers and flush is not None:
            with contextlib.suppress(Exception):
                flush(timeout)
        ok = self.worker.drain(timeout)
        while self.tap.pending and self._handlers:  # bus dispatch: handlers still to run
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return ok

    def uninstall(self) -> None:
        """Remove the handlers and the taps (tests, benchmarks)."""
        bus = crewai_event_bus
        off = getattr(bus, "off", None)  # 1.10+
        if off is not None:
            for etype, h in self._handlers.items():
                off(etype, h)
        else:  # older buses: remove from the handler sets under the bus's own lock
            with bus._rwlock.w_locked():
                for etype, h in self._handlers.items():
                    hs = bus._sync_handlers.get(etype)
                    if hs is not None and h in hs:
                        bus._sync_handlers[etype] = hs - {h}
                    ahs = bus._async_handlers.get(etype)
                    if ahs is not None and h in ahs:
                        bus._async_handlers[etype] = ahs - {h}
                    cache = getattr(bus, "_execution_plan_cache", None)
                    if cache is not None:
                        cache.pop(etype, None)
        self._handlers.clear()
        self.tap.sink = None
        _remove_patches()
        self.installed = False

    def counters(self) -> dict[str, int]:
        c = self.converter.counters()
        c["tap_errors"] = self.tap.errors
        c["duplicate_llm_calls"] = self.tap.duplicates
        c["pending"] = len(self.tap.pending) + len(self.worker)
        c["dropped"] = self.worker.dropped
        return c


# --------------------------------------------------------------------------- patches
def _install_patches(tap: Tap) -> None:
    """Hook the bus (emission-order tap) and the usage reporters.

    CrewAI 1.9+: wrap the bus's ``_prepare_event`` (called by ``emit`` and
    ``aemit`` after CrewAI assigned ``event_id``/``parent_event_id``/
    ``emission_sequence``; not called by ``replay``). Older releases: wrap ``emit``.
    """
    bus = crewai_event_bus
    on_emit = tap.on_emit
    prepare = getattr(type(bus), "_prepare_event", None)
    hook = "_prepare_event" if prepare is not None else "emit"
    current = bus.__dict__.get(hook)
    if current is None or getattr(current, "_auren_tap", None) is not tap:
        if current is not None and getattr(current, "_auren_tap", None) is not None:
            del bus.__dict__[hook]  # a previous listener's hook
        if prepare is not None:
            original_prepare = prepare.__get__(bus)

            def prepare_event(source: Any, event: Any) -> None:
                original_prepare(source, event)
                on_emit(source, event)

            prepare_event._auren_tap = tap  # type: ignore[attr-defined]
            bus._prepare_event = prepare_event  # type: ignore[method-assign]
        else:
            original = type(bus).emit.__get__(bus)

            def emit(source: Any, event: Any) -> Any:
                on_emit(source, event)
                return original(source, event)

            emit._auren_tap = tap  # type: ignore[attr-defined]
            bus.emit = emit  # type: ignore[method-assign]

    from crewai.llms.base_llm import BaseLLM

    track = BaseLLM._track_token_usage_internal
    if not getattr(track, "_auren", False):

        def _track(self: Any, usage_data: dict[str, Any]) -> None:
            track(self, usage_data)
            record_usage(usage_data)

        _track._auren = track  # type: ignore[attr-defined]
        BaseLLM._track_token_usage_internal = _track  # type: ignore[method-assign]

    handler = _token_calc_handler()
    if handler is not None:
        log_ok = handler.log_success_event
        if not getattr(log_ok, "_auren", False):

            def _log(
                self: Any, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                log_ok(self, kwargs, response_obj, start_time, end_time)
                usage = response_obj.get("usage") if isinstance(response_obj, dict) else None
                if usage is not None:
                    record_usage(usage)

            _log._auren = log_ok  # type: ignore[attr-defined]
            handler.log_success_event = _log


def _token_calc_handler() -> Any:
    try:
        from crewai.utilities.token_counter_callback import TokenCalcHandler
    except Exception:  # a release without litellm's callback
        return None
    return TokenCalcHandler


def _remove_patches() -> None:
    from crewai.llms.base_llm import BaseLLM

    for hook in ("_prepare_event", "emit"):
        if getattr(crewai_event_bus.__dict__.get(hook), "_auren_tap", None) is not None:
            del crewai_event_bus.__dict__[hook]
    orig = getattr(BaseLLM._track_token_usage_internal, "_auren", None)
    if orig is not None:
        BaseLLM._track_token_usage_internal = orig  # type: ignore[method-assign]
    handler = _token_calc_handler()
    if handler is not None:
        orig = getattr(handler.log_success_event, "_auren", None)
        if orig is not None:
            handler.log_success_event = orig


def _is_replaying() -> Callable[[], bool] | None:
    try:
        from crewai.events.event_bus import is_replaying
    except ImportError:  # before 1.14.3: no checkpoint replay
        return None
    return is_replaying  # type: ignore[no-any-return]


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
    dispatch: Dispatch = "tap",
) -> AurenListener:
    """Instrument every CrewAI crew in this process. Idempotent.

    Destination: ``publisher``, else a process publisher for ``redis_url`` /
    ``stream``, else the environment (``AUREN_REDIS_URL``, ``AUREN_STREAM``,
    auren.toml, embedded default). Tool costs come from ``tool_costs`` or the
    settings' ``tool_costs``. ``dispatch``: see :class:`AurenListener`. Calling it
    again re-targets the one listener; it never registers a second one.
    """
    global _listener
    from ... import emitter as api
    from ...config import load_settings

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
            _listener = AurenListener(
                publisher, tool_costs=costs, redact_queries=redact, dispatch=dispatch
            )
        else:
            _listener.reconfigure(
                publisher, tool_costs=costs, redact_queries=redact, dispatch=dispatch
            )
        return _listener


def uninstrument() -> None:
    """Undo :func:`instrument` (the listener is kept for a later ``instrument``)."""
    with _lock:
        if _listener is not None and _listener.installed:
            _listener.uninstall()
