"""Learning velocity: hypotheses formed / updated / validated / rejected per hour, per agent,
and the validation rate - from ``hypothesis`` events, by :mod:`auren_core.rules`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import rules
from ..events import Event, Hypothesis
from ..events.codec import typed_event

__all__ = ["learning_velocity"]

_STATUSES = rules.HYPOTHESIS_STATUSES


def _row(counts: dict[str, int], span_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {s: counts.get(s, 0) for s in _STATUSES}
    for s in _STATUSES:
        out[f"{s}_per_hour"] = round(rules.per_hour(counts.get(s, 0), span_s), 6)
    out["validation_rate"] = rules.round_rate(
        rules.validation_rate(counts.get("validated", 0), counts.get("rejected", 0))
    )
    return out


def learning_velocity(events: Sequence[Event], *, now: float) -> dict[str, Any]:
    """Totals and per-agent rows (most hypotheses formed first), plus one row per UTC hour
    (``hour``: its start, epoch seconds). ``span_s``: from the first event analysed to
    ``now`` (what the per-hour rates are measured over)."""
    seen: set[tuple[str, str]] = set()  # (hypothesis id, status): counted once each
    total: dict[str, int] = {}
    by_agent: dict[str, dict[str, int]] = {}
    by_hour: dict[int, dict[str, int]] = {}
    first = min((e.ts for e in events), default=now)
    for ev in events:
        if ev.type != "hypothesis":
            continue
        p: Hypothesis = typed_event(ev).payload
        status = p.status
        if status not in _STATUSES:
            continue
        hid = p.hypothesis_id
        if hid:
            key = (rules.name(hid), str(status))
            if key in seen:
                continue
            seen.add(key)
        agent = ev.agent or "?"
        for d in (
            total,
            by_agent.setdefault(agent, {}),
            by_hour.setdefault(int(ev.ts // 3600), {}),
        ):
            d[status] = d.get(status, 0) + 1
    span = max(0.0, now - first)
    agents = [
        {"agent": a, **_row(c, span)}
        for a, c in sorted(by_agent.items(), key=lambda kv: (-kv[1].get("formed", 0), kv[0]))
    ]
    hours = [
        {"hour": h * 3600.0, **{s: c.get(s, 0) for s in _STATUSES}}
        for h, c in sorted(by_hour.items())
    ]
    return {"span_s": round(span, 3), **_row(total, span), "agents": agents, "hours": hours}
