"""What a load tells the dashboard: one ``memory_tier_access`` event and one
``knowledge_access`` per item served (or one ``hit=False`` for a knowledge gap).

Pure functions build the payloads; :class:`EventSink` hands them to the auren
Publisher, which only enqueues (never blocks on the network, never raises).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._health import describe
from ._types import TIERS, MemoryResult

if TYPE_CHECKING:
    from ..publisher import Publisher

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
) -> list[tuple[str, dict[str, Any]]]:
    """The ``(type, payload)`` pairs describing one load, in publishing order.

    ``latency_by_tier`` holds exactly the tiers tried (a tier skipped while down is
    in ``errors`` only). With ``tier_costs``, each tier tried costs its price and the
    load carries ``cost_usd`` (their sum) and ``cost_by_tier``.
    """
    shown = redact(query) if redact_queries else shorten(query)
    payload: dict[str, Any] = {
        "tier_accessed": result.tier,
        "query": shown,
        "latency_by_tier": {k: round(v, 3) for k, v in result.latency_by_tier.items()},
        "items_retrieved": len(result.items),
    }
    if result.errors:
        payload["errors"] = dict(result.errors)
    if tier_costs:
        by_tier = {
            t: float(tier_costs[t])
            for t in TIERS
            if t in result.latency_by_tier and t in tier_costs
        }
        payload["cost_by_tier"] = by_tier
        payload["cost_usd"] = round(sum(by_tier.values()), 12)
    out: list[tuple[str, dict[str, Any]]] = [("memory_tier_access", payload)]
    if result.items:
        source = result.items[0].source
        out.extend(
            ("knowledge_access", {"item": it.id, "source": source, "hit": True})
            for it in result.items
        )
    else:
        out.append(("knowledge_access", {"item": shown, "source": "miss", "hit": False}))
    return out


class EventSink:
    """Publishes load events; the process publisher is looked up lazily (and, if it
    cannot be created, retried after 30 s: events are counted as dropped meanwhile)."""

    def __init__(self, publisher: Publisher | None) -> None:
        self._publisher = publisher
        self._retry_at = 0.0
        self.errors = 0

    def _get(self) -> Publisher | None:
        pub = self._publisher
        if pub is not None:
            return pub
        if time.monotonic() < self._retry_at:
            self.errors += 1
            return None
        try:
            from ..api import get_publisher

            pub = self._publisher = get_publisher()
        except Exception as exc:
            self.errors += 1
            self._retry_at = time.monotonic() + 30.0
            log.warning("auren memory: no publisher (%s); events dropped", describe(exc))
            return None
        return pub

    def publish(
        self,
        events: list[tuple[str, dict[str, Any]]],
        agent: str | None,
        run: str | None,
    ) -> None:
        """Enqueue ``events``. Never raises, never blocks."""
        try:
            pub = self._get()
            if pub is None:
                return
            emit = pub.emit
            for etype, payload in events:
                emit(etype, payload, agent=agent, run=run)
        except Exception as exc:
            self.errors += 1
            log.debug("auren memory: publish failed: %s", describe(exc))
