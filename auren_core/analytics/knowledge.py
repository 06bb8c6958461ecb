"""Knowledge patterns: what is read, when, by whom, and the knowledge gaps."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from .. import rules
from ..events import Event

__all__ = ["knowledge_patterns"]


def knowledge_patterns(events: Sequence[Event], *, top: int = 5) -> dict[str, Any]:
    """``by_hour``: the most-accessed items per UTC hour of day (answered lookups);
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
        by_hour[int(ev.ts % 86400 // 3600)][item] += 1
        readers[item][ev.agent or ""] += 1
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
        "gaps": gaps,
        "readers": {item: dict(sorted(c.items())) for item, c in sorted(readers.items())},
    }
