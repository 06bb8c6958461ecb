"""Analytics over events: pure functions, no I/O, shared by the dashboard, API and export.

:func:`analyze` bundles everything into one JSON-ready dict for the dashboard's analytics
pane; the parts are importable on their own (``knowledge_patterns``, ``collaboration_patterns``,
``token_forecast``, ``detect_loops``, ``detect_stalls``, ``recommendations``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..events import Event, Malformed
from .collaboration import collaboration_patterns, run_outcomes
from .forecast import (
    forecast_series,
    hourly_series,
    hourly_series_from_aggregates,
    token_forecast,
)
from .knowledge import knowledge_patterns
from .loops import detect_loops, detect_stalls
from .recommend import Thresholds, recommendations

__all__ = [
    "Thresholds",
    "analyze",
    "collaboration_patterns",
    "detect_loops",
    "detect_stalls",
    "forecast_series",
    "hourly_series",
    "hourly_series_from_aggregates",
    "knowledge_patterns",
    "recommendations",
    "run_outcomes",
    "token_forecast",
]


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
    evs = [e for e in events if isinstance(e, Event)]
    th = thresholds or Thresholds(loop_repeats=loop_repeats)
    collab = collaboration_patterns(evs)
    forecast = token_forecast(evs, now=now, budget_usd_per_hour=budget_usd_per_hour)
    loops = detect_loops(evs, min_repeats=th.loop_repeats)
    stalls = detect_stalls(evs, now=now, silent_s=stall_after_s)
    alerts = list(forecast["alerts"])
    alerts += [
        {"kind": "loop", "level": "warning", "agent": lp["agent"],
         "text": f"{lp['agent']} repeated {lp['kind']} {lp['signature'][:60]!r} "
                 f"{lp['repeats']}x (${lp['cost_usd']:.4f})"}
        for lp in loops
    ]  # fmt: skip
    alerts += [
        {"kind": "stall", "level": "warning", "agent": st["agent"],
         "text": f"{st['agent']} silent {st['silent_s']:.0f}s with task "
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
            evs, pairs=collab["pairs"], loops=loops, thresholds=th
        ),
    }
