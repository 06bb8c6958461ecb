"""Collaboration patterns: which agents work together, how often, and with what outcome.

Linear in the events: pairs are only the agents a ``collaboration`` event links (never every
pair of agents in a run: 10,000 agents in one run would be 50 million pairs), and the costly
per-pair figures (runs both were active in, completion rates) are computed for the ``top``
pairs only, with ``pairs_total`` saying how many there are in all.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from ..events import Collaboration, CrewCompleted, Event
from ..events.codec import typed_event

__all__ = ["TOP_PAIRS", "collaboration_patterns", "run_outcomes"]

TOP_PAIRS = 200  # pairs described in full (the rest are counted in ``pairs_total``)


def run_outcomes(events: Sequence[Event]) -> dict[str, bool | None]:
    """Run -> True (completed), False (failed) or None (still running / unknown)."""
    out: dict[str, bool | None] = {}
    for ev in events:
        if ev.run is None:
            continue
        out.setdefault(ev.run, None)
        if ev.type == "crew_completed":
            ended: CrewCompleted = typed_event(ev).payload
            out[ev.run] = ended.ok is not False
        elif ev.type == "task_failed" and out[ev.run] is None:
            out[ev.run] = False
    return out


def _rate(done: int, known: int) -> float | None:
    return round(done / known, 6) if known else None


def collaboration_patterns(
    events: Sequence[Event], *, min_runs: int = 1, top: int | None = TOP_PAIRS
) -> dict[str, Any]:
    """Pairs (unordered) that collaborate (a ``collaboration`` event either way) per run, their
    share of all runs, and the completion rate of runs with and without the pair; the ``top``
    pairs by runs (``None``: all), ``pairs_total`` counting every pair with ``min_runs``."""
    outcome = run_outcomes(events)
    pair_runs: dict[tuple[str, str], set[str]] = defaultdict(set)
    interactions: Counter[tuple[str, str]] = Counter()
    agent_runs: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev.run is not None and ev.agent:
            agent_runs[ev.agent].add(ev.run)
        if ev.type != "collaboration" or not ev.agent:
            continue
        p: Collaboration = typed_event(ev).payload
        to = str(p.to_agent or "")
        if not to or to == ev.agent:
            continue
        a, b = (ev.agent, to) if ev.agent < to else (to, ev.agent)
        interactions[(a, b)] += 1
        if ev.run is not None:
            pair_runs[(a, b)].add(ev.run)
    n = len(outcome)
    known_all = sum(1 for v in outcome.values() if v is not None)
    done_all = sum(1 for v in outcome.values() if v)
    ranked = sorted(
        (kv for kv in pair_runs.items() if len(kv[1]) >= min_runs),
        key=lambda kv: (-len(kv[1]), kv[0]),
    )
    pairs = []
    for (a, b), runs in ranked if top is None else ranked[:top]:
        share = len(runs) / n if n else 0.0
        known = done = 0
        for r in runs:
            o = outcome.get(r)
            if o is not None:
                known += 1
                done += o
        ra, rb = agent_runs.get(a, set()), agent_runs.get(b, set())
        small, big = (ra, rb) if len(ra) <= len(rb) else (rb, ra)
        pairs.append({
            "agents": [a, b],
            "runs": len(runs),
            "share_of_runs": round(share, 6),
            "interactions": interactions[(a, b)],
            "co_active_runs": sum(1 for r in small if r in big),
            "completion_rate_with": _rate(done, known),
            "completion_rate_without": _rate(done_all - done, known_all - known),
            "summary": f"{a} and {b} collaborate in {share:.0%} of runs",
        })  # fmt: skip
    return {
        "runs": n,
        "completion_rate": _rate(done_all, known_all),
        "pairs": pairs,
        "pairs_total": len(ranked),
    }
