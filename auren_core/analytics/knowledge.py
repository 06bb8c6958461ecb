"""Knowledge patterns: what is read, when, by whom, and the knowledge gaps."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from .. import rules
from ..events import Event, KnowledgeAccess, MemoryTierAccess
from ..events.codec import typed_event

__all__ = ["TOP_GAPS", "TOP_ITEMS", "knowledge_patterns"]

TOP_GAPS = 200  # gaps listed (``gaps_total`` counts them all)
TOP_ITEMS = 200  # items whose readers are listed (``items_total`` counts them all)
_GAP_AGENTS = 50  # agents named per gap (``agents_total`` counts them all)


def _top(c: Counter[Any] | dict[Any, int], n: int | None) -> list[tuple[Any, int]]:
    """The ``n`` largest counts (all when ``None``), most first, ties by key."""
    items = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    return items if n is None else items[:n]


def _hour_rows(counts: dict[str, list[int]], key: str) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    return [{key: k, "hours": v, "total": sum(v)} for k, v in ranked]


def knowledge_patterns(
    events: Sequence[Event],
    *,
    top: int = 5,
    top_gaps: int | None = TOP_GAPS,
    top_items: int | None = TOP_ITEMS,
    matrix_top: int = 12,
) -> dict[str, Any]:
    """``by_hour``: the most-accessed items per UTC hour of day (answered lookups);
    ``hour_matrix``: the hour-of-day (UTC, 0-23) x item and hour x agent access counts of
    the ``matrix_top`` most-read items and agents (``items_total`` / ``agents_total``: how
    many there were in all);
    ``gaps``: knowledge gaps (:func:`auren_core.rules.gap_key`: lookups nothing answered,
    by what was asked), most first, with how often the same question *was* answered (the
    ``top_gaps`` first; ``gaps_total`` counts them all); ``readers``: item -> {agent: reads}
    for the ``top_items`` most read items (``items_total`` counts them all). Linear in the
    events: one dict entry per distinct item, question or (gap, agent)."""
    by_hour: dict[int, Counter[str]] = defaultdict(Counter)
    reads: Counter[str] = Counter()
    readers: dict[str, Counter[str]] = defaultdict(Counter)
    agent_reads: Counter[str] = Counter()
    answered: Counter[tuple[str, str]] = Counter()
    missed: Counter[tuple[str, str]] = Counter()
    gap_agents: dict[tuple[str, str], set[str]] = defaultdict(set)
    first: dict[tuple[str, str], float] = {}
    last: dict[tuple[str, str], float] = {}
    for ev in events:
        t = ev.type
        if t == "knowledge_access":
            ka: KnowledgeAccess = typed_event(ev).payload
            p: KnowledgeAccess | MemoryTierAccess = ka
            source = "knowledge"
            item = rules.name(ka.item)
        elif t == "memory_tier_access":
            p = typed_event(ev).payload
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
        reads[item] += 1
        agent_reads[ev.agent or ""] += 1
    shown = {i for i, _ in _top(reads, top_items)}
    matrix_items = {i: [0] * 24 for i, _ in _top(reads, matrix_top)}
    matrix_agents = {a: [0] * 24 for a, _ in _top(agent_reads, matrix_top)}
    for ev in events:  # second pass: who read the items listed
        t = ev.type
        if t == "knowledge_access":
            p = ka = typed_event(ev).payload
            item = rules.name(ka.item)
        elif t == "memory_tier_access":
            p = typed_event(ev).payload
            item = rules.gap_key(t, p)
        else:
            continue
        if rules.is_gap(t, p):
            continue
        if item in shown:
            readers[item][ev.agent or ""] += 1
        hour = int(ev.ts % 86400 // 3600)
        if (row := matrix_items.get(item)) is not None:
            row[hour] += 1
        if (row := matrix_agents.get(ev.agent or "")) is not None:
            row[hour] += 1
    gaps = []
    for (source, q), n in _top(missed, top_gaps):
        names = gap_agents[(source, q)]
        gaps.append({
            "source": source,
            "query": q,
            "misses": n,
            "answered": answered[(source, q)],
            "agents": sorted(names)[:_GAP_AGENTS],
            "agents_total": len(names),
            "first_seen": first[(source, q)],
            "last_seen": last[(source, q)],
        })  # fmt: skip
    return {
        "by_hour": {
            str(h): [{"item": i, "accesses": n} for i, n in _top(c, top)]
            for h, c in sorted(by_hour.items())
        },
        "hour_matrix": {
            "items": _hour_rows(matrix_items, "item"),
            "items_total": len(reads),
            "agents": _hour_rows(matrix_agents, "agent"),
            "agents_total": len(agent_reads),
        },
        "gaps": gaps,
        "gaps_total": len(missed),
        "readers": {item: dict(sorted(c.items())) for item, c in sorted(readers.items())},
        "items_total": len(reads),
    }
