"""What a load tells the dashboard: one ``memory_tier_access`` event and one
``knowledge_access`` per item served (or one ``hit=False`` for a knowledge gap).

Pure functions build the payloads (their structs); :class:`EventSink` hands them to the auren
Publisher, which only enqueues (never blocks on the network, never raises).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..events import Event, KnowledgeAccess, MemoryTierAccess, make_event
from ..events.model import _Payload

# Imported first so that the publisher's exit flush is registered before ours, and
# so runs after it (atexit is last-in, first-out).
from ..streams import publisher as _publisher  # noqa: F401
from ._health import describe
from ._types import TIERS, MemoryResult

if TYPE_CHECKING:
    from ..streams.publisher import Publisher

__all__ = ["EventSink", "load_events", "redact"]

log = logging.getLogger("auren.memory")


def redact(query: str) -> str:
    """A stable stand-in for a redacted query: equal queries still group together."""
    return "sha256:" + hashlib.sha256(query.encode()).hexdigest()[:16]


MAX_QUERY_CHARS = 500


def shorten(query: str) -> str:
    """Queries travel in events: a pasted document must not become a 1 MB entry."""
    if len(query) <= MAX_QUERY_CHARS:
        return query
    return f"{query[: MAX_QUERY_CHARS - 20]}... [{len(query)} chars]"


def load_events(
    query: str,
    result: MemoryResult,
    *,
    redact_queries: bool = False,
    tier_costs: Mapping[str, float] | None = None,
) -> list[tuple[str, MemoryTierAccess | KnowledgeAccess]]:
    """The ``(type, payload)`` pairs describing one load, in publishing order (the
    payloads as their structs).

    ``latency_by_tier`` holds exactly the tiers tried (a tier skipped while down is
    in ``errors`` only). With ``tier_costs``, each tier tried costs its price and the
    load carries ``cost_usd`` (their sum) and ``cost_by_tier``.
    """
    shown = redact(query) if redact_queries else shorten(query)
    by_tier: dict[str, float] = {}
    cost: float | None = None
    if tier_costs:
        by_tier = {
            t: float(tier_costs[t])
            for t in TIERS
            if t in result.latency_by_tier and t in tier_costs
        }
        cost = round(sum(by_tier.values()), 12)
    load = MemoryTierAccess(
        tier_accessed=result.tier,
        query=shown,
        latency_by_tier={k: round(v, 3) for k, v in result.latency_by_tier.items()},
        items_retrieved=len(result.items),
        errors=dict(result.errors),
        cost_usd=cost,
        cost_by_tier=by_tier,
    )
    out: list[tuple[str, MemoryTierAccess | KnowledgeAccess]] = [("memory_tier_access", load)]
    if result.items:
        source = result.items[0].source
        out.extend(
            ("knowledge_access", KnowledgeAccess(item=it.id, source=source, hit=True))
            for it in result.items
        )
    else:
        out.append(("knowledge_access", KnowledgeAccess(item=shown, source="miss", hit=False)))
    return out


class EventSink:
    """Hands load events to the auren Publisher, a few at a time.

    The publisher's thread wakes for the first event after an idle spell; at the pace of
    memory reads (one every few hundred microseconds to milliseconds) that wake-up, not
    the event, is most of what tracking costs (see bench/bench_memory.py). So events are
    built at load time (their ``ts`` is the load's) and handed over together at most
    ``linger_s`` later, from a timer on the loop that ran the load. ``linger_s=0``
    hands each load's events over at once. :meth:`flush` hands over what is pending
    (``TieredMemory.close`` does, and so does interpreter exit).

    The process publisher is looked up lazily (if it cannot be created, retried after
    30 s; events are counted in ``errors`` meanwhile).
    """

    def __init__(self, publisher: Publisher | None, linger_s: float = 0.0) -> None:
        self._publisher = publisher
        self.linger_s = linger_s
        self._retry_at = 0.0
        self.errors = 0
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None
        _SINKS.add(self)

    def _get(self) -> Publisher | None:
        pub = self._publisher
        if pub is not None:
            return pub
        if time.monotonic() < self._retry_at:
            return None
        try:
            from ..emitter import get_publisher

            pub = self._publisher = get_publisher()
        except Exception as exc:
            self._retry_at = time.monotonic() + 30.0
            log.warning("auren memory: no publisher (%s); events dropped", describe(exc))
            return None
        return pub

    def publish(
        self,
        events: Sequence[tuple[str, _Payload]],
        agent: str | None,
        run: str | None,
    ) -> None:
        """Queue ``events`` (stamped now). Never raises, never blocks."""
        try:
            now = time.time()
            built = [make_event(t, p, agent=agent, run=run, ts=now) for t, p in events]
            loop: asyncio.AbstractEventLoop | None = None
            if self.linger_s > 0:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
            with self._lock:
                self._pending.extend(built)
                if loop is not None and len(self._pending) < _MAX_PENDING:
                    if self._timer is None:
                        self._timer = loop.call_later(self.linger_s, self._on_timer)
                    return
            self.flush()
        except Exception as exc:
            self.errors += 1
            log.debug("auren memory: publish failed: %s", describe(exc))

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self) -> None:
        """Hand every pending event to the publisher now. Never raises."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            pub = self._get()
            if pub is None:
                self.errors += len(pending)
                return
            for ev in pending:
                pub.publish(ev)
        except Exception as exc:
            self.errors += 1
            log.debug("auren memory: publish failed: %s", describe(exc))


_MAX_PENDING = 1000
_SINKS: weakref.WeakSet[EventSink] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    """Events of loads whose loop ended before the timer fired (``asyncio.run``
    returning) still reach the publisher, whose own exit flush runs after this."""
    for sink in list(_SINKS):
        sink.flush()
