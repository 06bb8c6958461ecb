"""Next-hour token and cost forecast per agent, with a backtested error estimate.

Method (stated in every result): hourly buckets (UTC) of completed hours; with at least two
days of history, additive Holt-Winters (level, trend, 24-hour season); with less, Holt's
linear trend; with under three hours, the mean. Smoothing parameters come from a grid search
minimising one-step-ahead squared error on the history *before* the backtest window; the
error estimate is the mean absolute error of one-step-ahead forecasts over that window (the
last ``min(24, n/4)`` hours), reported next to a seasonal-naive baseline (same hour
yesterday) so a reader can judge whether the model earns its keep.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

from ..events import Event
from ..rules import llm_call

__all__ = [
    "TOP_AGENTS",
    "Forecast",
    "forecast_series",
    "hourly_series",
    "hourly_series_from_aggregates",
    "token_forecast",
]

SEASON = 24
TOP_AGENTS = 50  # agents forecast one by one; the others are forecast as one series
_GRID_A = (0.1, 0.3, 0.5, 0.8)
_GRID_B = (0.0, 0.05, 0.2)
_GRID_G = (0.05, 0.2, 0.5)


@dataclass(frozen=True, slots=True)
class Forecast:
    method: str
    next: float
    mae: float | None
    mape: float | None
    baseline_mae: float | None
    points: int
    params: dict[str, float]


def _hw(y: Sequence[float], a: float, b: float, g: float, m: int) -> list[float]:
    """One-step-ahead predictions for y[1..] plus the next value (len(y) items after y[0])."""
    level = sum(y[:m]) / m
    trend = (sum(y[m : 2 * m]) - sum(y[:m])) / (m * m) if len(y) >= 2 * m else 0.0
    season = [v - level for v in y[:m]]
    preds: list[float] = []
    for t, v in enumerate(y):
        s = season[t % m]
        preds.append(level + trend + s)
        new_level = a * (v - s) + (1 - a) * (level + trend)
        trend = b * (new_level - level) + (1 - b) * trend
        season[t % m] = g * (v - new_level) + (1 - g) * s
        level = new_level
    preds.append(level + trend + season[len(y) % m])
    return preds  # preds[t] predicts y[t]; preds[len(y)] is the forecast


def _holt(y: Sequence[float], a: float, b: float) -> list[float]:
    level, trend = y[0], (y[1] - y[0]) if len(y) > 1 else 0.0
    preds = [level]
    for v in y[1:]:
        preds.append(level + trend)
        new_level = a * v + (1 - a) * (level + trend)
        trend = b * (new_level - level) + (1 - b) * trend
        level = new_level
    preds.append(level + trend)
    return preds


def _sse(y: Sequence[float], preds: Sequence[float], start: int) -> float:
    return sum((y[t] - preds[t]) ** 2 for t in range(start, len(y)))


def forecast_series(y: Sequence[float], season: int = SEASON) -> Forecast:
    """Forecast the value after ``y`` (hourly buckets, oldest first)."""
    n = len(y)
    if n < 3:
        mean = sum(y) / n if n else 0.0
        return Forecast("mean", max(0.0, mean), None, None, None, n, {})
    k = max(1, min(24, n // 4))
    train = y[: n - k]
    seasonal = n >= 2 * season and len(train) >= 2 * season
    best: tuple[float, dict[str, float]] = (math.inf, {})
    if seasonal:
        for a, b, g in product(_GRID_A, _GRID_B, _GRID_G):
            err = _sse(train, _hw(train, a, b, g, season), season)
            if err < best[0]:
                best = (err, {"alpha": a, "beta": b, "gamma": g})
        p = best[1]
        preds = _hw(y, p["alpha"], p["beta"], p["gamma"], season)
        method = "holt-winters additive, 24h season"
    else:
        for a, b in product(_GRID_A, _GRID_B):
            err = _sse(train, _holt(train, a, b), 1)
            if err < best[0]:
                best = (err, {"alpha": a, "beta": b})
        p = best[1]
        preds = _holt(y, p["alpha"], p["beta"])
        method = "holt linear trend (under 48h of history)"
    errs = [abs(y[t] - preds[t]) for t in range(n - k, n)]
    nonzero = [abs(y[t] - preds[t]) / abs(y[t]) for t in range(n - k, n) if y[t]]
    base = [abs(y[t] - y[t - season]) for t in range(n - k, n) if t >= season]
    return Forecast(
        method=method,
        next=max(0.0, preds[n]),
        mae=sum(errs) / len(errs),
        mape=sum(nonzero) / len(nonzero) if nonzero else None,
        baseline_mae=sum(base) / len(base) if base else None,
        points=n,
        params=p,
    )


Series = dict[str, tuple[list[float], list[float]]]


def _hourly(
    points: Iterable[tuple[str, int, float, float]], *, now: float, max_hours: int
) -> Series:
    """Agent -> (tokens per hour, cost per hour) from (agent, hour, tokens, cost) points,
    over completed hours up to ``now`` (the current, incomplete hour is excluded)."""
    end = int(now // 3600)
    tokens: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    cost: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    first: dict[str, int] = {}
    for a, h, tok, usd in points:
        if h >= end or h < end - max_hours:
            continue
        tokens[a][h] += tok
        cost[a][h] += usd
        first[a] = min(first.get(a, h), h)
    return {
        a: (
            [tokens[a].get(h, 0.0) for h in range(first[a], end)],
            [cost[a].get(h, 0.0) for h in range(first[a], end)],
        )
        for a in sorted(first)
    }


def _event_points(events: Sequence[Event]) -> Iterator[tuple[str, int, float, float]]:
    for ev in events:
        if ev.type != "llm_call":
            continue
        call = llm_call(ev.payload)  # tokens and cost as every output counts them
        tok = float(call.input_tokens + call.output_tokens)
        yield ev.agent or "", int(ev.ts // 3600), tok, call.cost or 0.0


def hourly_series(events: Sequence[Event], *, now: float, max_hours: int = 14 * 24) -> Series:
    """Agent -> (tokens per hour, cost per hour) over completed hours up to ``now``."""
    return _hourly(_event_points(events), now=now, max_hours=max_hours)


def hourly_series_from_aggregates(
    rows: Iterable[dict[str, Any]], *, now: float, max_hours: int = 14 * 24
) -> Series:
    """The same series from ``agg_hourly`` rows (``bucket`` in unix seconds), so a forecast
    can use two weeks of rollups when the detailed events or the stream hold less."""
    points = (
        (
            r["agent"],
            int(r["bucket"] // 3600),
            float(r["input_tokens"] + r["output_tokens"]),
            float(r["cost_usd"]),
        )
        for r in rows
        if r["type"] == "llm_call"
    )
    return _hourly(points, now=now, max_hours=max_hours)


def _merge(series: Iterable[tuple[list[float], list[float]]]) -> tuple[list[float], list[float]]:
    """The sum of hourly series that all end at the same hour (aligned on the right)."""
    tok: list[float] = []
    usd: list[float] = []
    for t, c in series:
        for acc, ys in ((tok, t), (usd, c)):
            if len(ys) > len(acc):
                acc[:0] = [0.0] * (len(ys) - len(acc))
            off = len(acc) - len(ys)
            for i, v in enumerate(ys):
                acc[off + i] += v
    return tok, usd


def token_forecast(
    events: Sequence[Event],
    *,
    now: float,
    budget_usd_per_hour: float | None = None,
    series: dict[str, tuple[list[float], list[float]]] | None = None,
    top_agents: int = TOP_AGENTS,
) -> dict[str, Any]:
    """Per-agent next-hour tokens and cost, the total, and budget alerts. ``series``
    (e.g. from :func:`hourly_series_from_aggregates`) replaces the series built from events.
    The ``top_agents`` with the most tokens are forecast one by one, the others summed into
    one series (``others``), so the cost does not grow with the number of agents."""
    agents = []
    total_cost = total_tokens = total_err = 0.0
    full = hourly_series(events, now=now) if series is None else series
    series = full
    others: dict[str, Any] | None = None
    if len(full) > top_agents:
        ranked = sorted(full, key=lambda a: (-sum(full[a][0]), -sum(full[a][1]), a))
        rest = ranked[top_agents:]
        tok, usd = _merge(full[a] for a in rest)
        ft, fc = forecast_series(tok), forecast_series(usd)
        total_tokens += ft.next
        total_cost += fc.next
        total_err += fc.mae or 0.0
        others = {"agents": len(rest), "tokens": asdict(ft), "cost_usd": asdict(fc)}
        series = {a: full[a] for a in sorted(ranked[:top_agents])}
    for agent, (tok, usd) in series.items():
        ft, fc = forecast_series(tok), forecast_series(usd)
        total_tokens += ft.next
        total_cost += fc.next
        total_err += fc.mae or 0.0
        agents.append({"agent": agent, "tokens": asdict(ft), "cost_usd": asdict(fc)})
    alerts = []
    if budget_usd_per_hour is not None and agents:
        level = "alert" if total_cost > budget_usd_per_hour else None
        if level is None and total_cost + total_err > budget_usd_per_hour:
            level = "warning"
        if level:
            alerts.append({
                "kind": "budget_forecast",
                "level": level,
                "forecast_usd": round(total_cost, 6),
                "error_usd": round(total_err, 6),
                "budget_usd_per_hour": budget_usd_per_hour,
                "text": f"next hour forecast ${total_cost:.2f} (±{total_err:.2f}) vs budget "
                f"${budget_usd_per_hour:.2f}/h",
            })  # fmt: skip
    return {
        "forecast_hour_start": (int(now // 3600)) * 3600.0,  # the hour now in progress
        "agents": agents,
        "agents_total": len(agents) + (others["agents"] if others else 0),
        "others": others,
        "total_tokens": round(total_tokens, 3),
        "total_cost_usd": round(total_cost, 6),
        "alerts": alerts,
    }
