"""Knowledge patterns: what is read, when, by whom, and what nobody could answer."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from ..events import Event

__all__ = ["knowledge_patterns"]


def knowledge_patterns(events: Sequence[Event], *, top: int = 5) -> dict[str, Any]:
    """``by_hour``: the most-accessed items per UTC hour of day; ``gaps``: queries that no
    memory tier answered (every access a miss); ``readers``: item -> {agent: reads}."""
    by_hour: dict[int, Counter[str]] = defaultdict(Counter)
    readers: dict[str, Counter[str]] = defaultdict(Counter)
    answered: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    gap_agents: dict[str, set[str]] = defaultdict(set)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for ev in events:
        p = ev.payload
        if ev.type == "knowledge_access":
            item = str(p.get("item") or "")
            if p.get("hit", True) is False:
                continue
        elif ev.type == "memory_tier_access":
            item = str(p.get("query") or "")
            if p.get("tier_accessed") == "miss":
                missed[item] += 1
                gap_agents[item].add(ev.agent or "")
                first[item] = min(first.get(item, ev.ts), ev.ts)
                last[item] = max(last.get(item, ev.ts), ev.ts)
                continue
            answered[item] += 1
        else:
            continue
        by_hour[int(ev.ts % 86400 // 3600)][item] += 1
        readers[item][ev.agent or ""] += 1
    gaps = [
        {
            "query": q,
            "misses": n,
            "agents": sorted(gap_agents[q]),
            "first_seen": first[q],
            "last_seen": last[q],
        }
        for q, n in sorted(missed.items(), key=lambda kv: (-kv[1], kv[0]))
        if answered[q] == 0
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
