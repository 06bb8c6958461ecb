"""Analytics over events: pure functions, no I/O, shared by the dashboard, API and export.

:func:`analyze` bundles everything into one JSON-ready dict for the dashboard's analytics
pane; the parts are importable on their own (``knowledge_patterns``, ``collaboration_patterns``,
``token_forecast``, ``detect_loops``, ``detect_stalls``, ``recommendations``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..events import AgentRegistered, Event, Malformed
from ..events.codec import typed_event
from .collaboration import collaboration_patterns, run_outcomes
from .forecast import (
    forecast_series,
    hourly_series,
    hourly_series_from_aggregates,
    token_forecast,
)
from .knowledge import knowledge_patterns
from .learning import learning_velocity
from .loops import detect_loops, detect_stalls
from .recommend import Thresholds, recommendations

__all__ = [
    "SECTIONS",
    "Thresholds",
    "agent_names",
    "analysis",
    "analyze",
    "collaboration_patterns",
    "detect_loops",
    "detect_stalls",
    "forecast_series",
    "hourly_series",
    "hourly_series_from_aggregates",
    "knowledge_patterns",
    "learning_velocity",
    "recommendations",
    "run_outcomes",
    "sections",
    "token_forecast",
    "trim",
]


MAX_NAMES = 10_000  # agents named by one analysis (memory bound on hostile input)


def agent_names(events: Iterable[Event]) -> dict[str, str]:
    """Agent id -> display name: the ``role`` of its newest ``agent_registered`` (the
    name the main screen shows); agents never registered are not listed (show the id)."""
    out: dict[str, str] = {}
    for ev in events:
        if ev.type == "agent_registered" and ev.agent:
            p: AgentRegistered = typed_event(ev).payload
            role = p.role
            if isinstance(role, str) and role.strip() and (ev.agent in out or len(out) < MAX_NAMES):
                out[ev.agent] = role[:200]
    return out


def analyze(
    events: Iterable[Event | Malformed],
    *,
    now: float,
    budget_usd_per_hour: float | None = None,
    stall_after_s: float = 120.0,
    loop_repeats: int = 3,
    thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """Every analysis over ``events`` as one JSON-ready dict (Malformed entries skipped)."""
    # typed once here: every analysis below reads a known type's payload as its struct
    evs = [typed_event(e) for e in events if isinstance(e, Event)]
    th = thresholds or Thresholds(loop_repeats=loop_repeats)
    collab = collaboration_patterns(evs)
    forecast = token_forecast(evs, now=now, budget_usd_per_hour=budget_usd_per_hour)
    loops = detect_loops(evs, min_repeats=th.loop_repeats)
    stalls = detect_stalls(evs, now=now, silent_s=stall_after_s)
    names = agent_names(evs)
    alerts = list(forecast["alerts"])
    alerts += [
        {"kind": "loop", "level": "warning", "agent": lp["agent"],
         "text": f"{names.get(lp['agent'], lp['agent'])} repeated {lp['kind']} "
                 f"{lp['signature'][:60]!r} "
                 f"{lp['repeats']}x (${lp['cost_usd']:.4f})"}
        for lp in loops
    ]  # fmt: skip
    alerts += [
        {"kind": "stall", "level": "warning", "agent": st["agent"],
         "text": f"{names.get(st['agent'], st['agent'])} silent {st['silent_s']:.0f}s with task "
                 f"{st['task_id'] or '?'} in flight (${st['cost_usd']:.4f} so far)"}
        for st in stalls
    ]  # fmt: skip
    return {
        "generated_at": now,
        "events": len(evs),
        "knowledge": knowledge_patterns(evs),
        "collaboration": collab,
        "forecast": forecast,
        "loops": loops,
        "stalls": stalls,
        "alerts": alerts,
        "recommendations": recommendations(
            evs, pairs=collab["pairs"], loops=loops, thresholds=th, names=names
        ),
        # agent id -> display name (its role, as the main screen shows it)
        "agent_names": names,
        "learning": learning_velocity(evs, now=now),
    }


def trim(result: dict[str, Any], shown: int = 40) -> dict[str, Any]:
    """:func:`analyze`'s result cut for display or the wire: long lists to ``shown`` (their
    full lengths in ``counts``), the item x agent readers matrix reduced to its size."""
    out = dict(result)
    counts: dict[str, int] = {}
    for key in ("loops", "stalls", "alerts", "recommendations"):
        counts[key] = len(result[key])
        out[key] = result[key][:shown]
    know = dict(result["knowledge"])
    counts["gaps"] = know.get("gaps_total", len(know["gaps"]))
    know["gaps"] = know["gaps"][:shown]
    readers = know.pop("readers")
    counts["items"] = know.get("items_total", len(readers))
    collab = dict(result["collaboration"])
    counts["pairs"] = collab.get("pairs_total", len(collab["pairs"]))
    collab["pairs"] = collab["pairs"][:shown]
    out.update(knowledge=know, collaboration=collab, counts=counts)
    return out


def analysis(
    items: Iterable[Event | Malformed],
    *,
    now: float,
    budget_usd_per_hour: float | None = None,
    shown: int = 40,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the dashboard's analytics screen and serve-ws show: :func:`analyze` over
    ``items``, :func:`trim`-med to ``shown``, with ``since`` (the oldest event analysed)."""
    items = list(items)
    th = Thresholds(**thresholds) if isinstance(thresholds, Mapping) else thresholds
    result = trim(
        analyze(items, now=now, budget_usd_per_hour=budget_usd_per_hour, thresholds=th), shown
    )
    result["since"] = min((i.ts for i in items if isinstance(i, Event)), default=None)
    return result


# the sections of /api/v2/analytics/<section>, the snapshot's "analytics" and the export
SECTIONS = ("forecast", "alerts", "patterns", "gaps", "recommendations", "learning")


def sections(trimmed: dict[str, Any]) -> dict[str, Any]:
    """A :func:`trim`-med result as the wire shows it: one object per :data:`SECTIONS`
    name, plus ``generated_at``, ``events`` (analysed) and ``counts`` (full list lengths).
    ``patterns``: knowledge by hour of day, collaboration pairs, loops and stalls."""
    know = trimmed["knowledge"]
    return {
        "generated_at": trimmed["generated_at"],
        "events": trimmed["events"],
        "since": trimmed.get("since"),
        "counts": trimmed["counts"],
        "forecast": trimmed["forecast"],
        "alerts": trimmed["alerts"],
        "patterns": {
            "knowledge_by_hour": know["by_hour"],
            "knowledge_hour_matrix": know.get("hour_matrix"),
            "collaboration": trimmed["collaboration"],
            "loops": trimmed["loops"],
            "stalls": trimmed["stalls"],
        },
        "gaps": know["gaps"],
        "recommendations": trimmed["recommendations"],
        "learning": trimmed["learning"],
    }
