"""Collaboration patterns: which agents work together, how often, and with what outcome."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from ..events import Event

__all__ = ["collaboration_patterns", "run_outcomes"]


def run_outcomes(events: Sequence[Event]) -> dict[str, bool | None]:
    """Run -> True (completed), False (failed) or None (still running / unknown)."""
    out: dict[str, bool | None] = {}
    for ev in events:
        if ev.run is None:
            continue
        out.setdefault(ev.run, None)
        if ev.type == "crew_completed":
            out[ev.run] = ev.payload.get("ok", True) is not False
        elif ev.type == "task_failed" and out[ev.run] is None:
            out[ev.run] = False
    return out


def _rate(runs: set[str], outcome: dict[str, bool | None]) -> float | None:
    known = [outcome[r] for r in runs if outcome.get(r) is not None]
    return round(sum(1 for k in known if k) / len(known), 6) if known else None


def collaboration_patterns(events: Sequence[Event], *, min_runs: int = 1) -> dict[str, Any]:
    """Pairs (unordered) that collaborate (a ``collaboration`` event either way) per run, their
    share of all runs, and the completion rate of runs with and without the pair."""
    outcome = run_outcomes(events)
    pair_runs: dict[tuple[str, str], set[str]] = defaultdict(set)
    interactions: Counter[tuple[str, str]] = Counter()
    together: dict[tuple[str, str], set[str]] = defaultdict(set)
    run_agents: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev.run is not None and ev.agent:
            run_agents[ev.run].add(ev.agent)
        if ev.type != "collaboration" or not ev.agent:
            continue
        to = str(ev.payload.get("to_agent") or "")
        if not to or to == ev.agent:
            continue
        a, b = sorted((ev.agent, to))
        interactions[(a, b)] += 1
        if ev.run is not None:
            pair_runs[(a, b)].add(ev.run)
    for run, agents in run_agents.items():
        for a, b in combinations(sorted(agents), 2):
            together[(a, b)].add(run)
    all_runs = set(outcome)
    n = len(all_runs)
    pairs = []
    for (a, b), runs in sorted(pair_runs.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(runs) < min_runs:
            continue
        share = len(runs) / n if n else 0.0
        pairs.append({
            "agents": [a, b],
            "runs": len(runs),
            "share_of_runs": round(share, 6),
            "interactions": interactions[(a, b)],
            "co_active_runs": len(together[(a, b)]),
            "completion_rate_with": _rate(runs, outcome),
            "completion_rate_without": _rate(all_runs - runs, outcome),
            "summary": f"{a} and {b} collaborate in {share:.0%} of runs",
        })  # fmt: skip
    return {"runs": n, "completion_rate": _rate(all_runs, outcome), "pairs": pairs}
