"""Knowledge patterns: what is read, when, by whom, and the knowledge gaps."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from .. import rules
from ..events import Event

__all__ = ["knowledge_patterns"]


def _hour_rows(counts: dict[str, list[int]], key: str, top: int) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    return [{key: k, "hours": v, "total": sum(v)} for k, v in ranked[:top]]


def knowledge_patterns(
    events: Sequence[Event], *, top: int = 5, matrix_top: int = 12
) -> dict[str, Any]:
    """``by_hour``: the most-accessed items per UTC hour of day (answered lookups);
    ``hour_matrix``: the hour-of-day (UTC, 0-23) x item and hour x agent access counts of
    the ``matrix_top`` most-read items and agents (``items_total`` / ``agents_total``: how
    many there were in all);
    ``gaps``: knowledge gaps (:func:`auren_core.rules.gap_key`: lookups nothing answered,
    by what was asked), most first, with how often the same question *was* answered;
    ``readers``: item -> {agent: reads}."""
    by_hour: dict[int, Counter[str]] = defaultdict(Counter)
    readers: dict[str, Counter[str]] = defaultdict(Counter)
    answered: Counter[tuple[str, str]] = Counter()
    missed: Counter[tuple[str, str]] = Counter()
    gap_agents: dict[tuple[str, str], set[str]] = defaultdict(set)
    first: dict[tuple[str, str], float] = {}
    last: dict[tuple[str, str], float] = {}
    item_hours: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    agent_hours: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    for ev in events:
        t, p = ev.type, ev.payload
        if t == "knowledge_access":
            source = "knowledge"
            item = rules.name(p.get("item"))
        elif t == "memory_tier_access":
            source = "memory"
            item = rules.gap_key(t, p)
        else:
            continue
        if rules.is_gap(t, p):
            key = (source, rules.gap_key(t, p))
            missed[key] += 1
            gap_agents[key].add(ev.agent or "")
            first[key] = min(first.get(key, ev.ts), ev.ts)
            last[key] = max(last.get(key, ev.ts), ev.ts)
            continue
        answered[(source, rules.gap_key(t, p))] += 1
        hour = int(ev.ts % 86400 // 3600)
        by_hour[hour][item] += 1
        readers[item][ev.agent or ""] += 1
        item_hours[item][hour] += 1
        agent_hours[ev.agent or ""][hour] += 1
    gaps = [
        {
            "source": source,
            "query": q,
            "misses": n,
            "answered": answered[(source, q)],
            "agents": sorted(gap_agents[(source, q)]),
            "first_seen": first[(source, q)],
            "last_seen": last[(source, q)],
        }
        for (source, q), n in sorted(missed.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {
        "by_hour": {
            str(h): [
                {"item": i, "accesses": n}
                for i, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
            ]
            for h, c in sorted(by_hour.items())
        },
        "hour_matrix": {
            "items": _hour_rows(item_hours, "item", matrix_top),
            "items_total": len(item_hours),
            "agents": _hour_rows(agent_hours, "agent", matrix_top),
            "agents_total": len(agent_hours),
        },
        "gaps": gaps,
        "readers": {item: dict(sorted(c.items())) for item, c in sorted(readers.items())},
    }
