"""Next-hour token and cost forecast per agent, with an honest interval.

Method (stated in every result), per agent:

* With at least three *complete* hours of history: hourly buckets (UTC); with at least two
  days, additive Holt-Winters (level, trend, 24-hour season); with less, Holt's linear trend.
  Smoothing parameters come from a grid search minimising one-step-ahead squared error on the
  history *before* the backtest window; the error estimate is the mean absolute error of
  one-step-ahead forecasts over that window (the last ``min(24, n/4)`` hours), reported next to
  a seasonal-naive baseline (same hour yesterday); the 95 % interval is ``next ± 1.96 x RMSE``
  of the same backtest.
* Before that (the first minutes and hours): the minute-level rate. The next hour is
  ``60 x mean`` of the agent's complete minutes over the last hour (idle minutes count as
  zero), and the 95 % interval treats minutes as independent draws:
  ``± 1.96 x s x sqrt(60 + 3600 / n)`` for ``n`` minutes with sample deviation ``s`` (the
  spread of the next 60 minutes plus the uncertainty of the mean), so it narrows as
  history grows.

Incomplete buckets are never used as whole ones: the bucket now in progress is excluded, and
so is each agent's first bucket (it started somewhere inside it). On a steady load the
minute rate agrees with the dashboard's burn rate.
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
    "minute_rate_forecast",
    "minute_series",
    "token_forecast",
]

SEASON = 24
_GRID_A = (0.1, 0.3, 0.5, 0.8)
_GRID_B = (0.0, 0.05, 0.2)
_GRID_G = (0.05, 0.2, 0.5)


Z95 = 1.959964  # two-sided 95 % normal quantile
MINUTES = 60  # the minute-level method looks at the last hour of complete minutes
MIN_HOURS = 3  # complete hours an agent needs before the hourly models are used
TOP_AGENTS = 50  # agents forecast one by one; the rest are summed into ``others``


@dataclass(frozen=True, slots=True)
class Forecast:
    method: str
    next: float
    mae: float | None
    mape: float | None
    baseline_mae: float | None
    points: int  # history points used, in ``unit`` buckets
    params: dict[str, float]
    low: float | None = None  # 95 % interval of ``next`` (None: too little history)
    high: float | None = None
    unit: str = "hour"


def _interval(nxt: float, half: float | None) -> tuple[float | None, float | None]:
    if half is None or not math.isfinite(half):
        return None, None
    return max(0.0, nxt - half), nxt + half


def minute_rate_forecast(y: Sequence[float]) -> Forecast:
    """The next hour's total from ``y``, an agent's values per complete minute (oldest
    first, idle minutes as 0), as ``60 x mean`` with the 95 % interval described above."""
    n = len(y)
    if n == 0:
        return Forecast("minute rate", 0.0, None, None, None, 0, {}, None, None, "minute")
    mean = sum(y) / n
    nxt = MINUTES * mean
    half = None
    if n >= 2:
        sd = math.sqrt(sum((v - mean) ** 2 for v in y) / (n - 1))
        half = Z95 * sd * math.sqrt(MINUTES + MINUTES * MINUTES / n)
    low, high = _interval(nxt, half)
    return Forecast("minute rate", nxt, None, None, None, n, {}, low, high, "minute")


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
        return Forecast("mean", max(0.0, mean), None, None, None, n, {})  # callers: >= 3
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
    nxt = max(0.0, preds[n])
    low, high = _interval(nxt, Z95 * math.sqrt(sum(e * e for e in errs) / len(errs)))
    return Forecast(
        method=method,
        next=nxt,
        mae=sum(errs) / len(errs),
        mape=sum(nonzero) / len(nonzero) if nonzero else None,
        baseline_mae=sum(base) / len(base) if base else None,
        points=n,
        params=p,
        low=low,
        high=high,
    )


Series = dict[str, tuple[list[float], list[float]]]


def _hourly(
    points: Iterable[tuple[str, int, float, float]], *, now: float, max_hours: int
) -> Series:
    """Agent -> (tokens per hour, cost per hour) from (agent, hour, tokens, cost) points,
    over complete hours up to ``now``: the current hour and each agent's first hour (both
    incomplete) are excluded."""
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
            [tokens[a].get(h, 0.0) for h in range(first[a] + 1, end)],
            [cost[a].get(h, 0.0) for h in range(first[a] + 1, end)],
        )
        for a in sorted(first)
    }


def minute_series(events: Sequence[Event], *, now: float) -> Series:
    """Agent -> (tokens per minute, cost per minute) over the complete minutes of the last
    hour before ``now``, from each agent's second minute on (its first is incomplete)."""
    end = int(now // 60)
    start = end - MINUTES
    tokens: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    cost: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    first: dict[str, int] = {}
    for ev in events:
        if ev.type != "llm_call":
            continue
        m = int(ev.ts // 60)
        a = ev.agent or ""
        first[a] = min(first.get(a, m), m)
        if start <= m < end:
            call = llm_call(ev.payload)
            tokens[a][m] += float(call.input_tokens + call.output_tokens)
            cost[a][m] += call.cost or 0.0
    out: Series = {}
    for a in sorted(first):
        lo = max(start, first[a] + 1)
        if lo < end:
            tk, cs = tokens.get(a, {}), cost.get(a, {})
            out[a] = ([tk.get(m, 0.0) for m in range(lo, end)],
                      [cs.get(m, 0.0) for m in range(lo, end)])  # fmt: skip
    return out


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
    """The sum of series that all end at the same bucket (aligned on the right)."""
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


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def _agent_forecast(
    hours: tuple[list[float], list[float]] | None, minutes: tuple[list[float], list[float]] | None
) -> tuple[Forecast, Forecast]:
    if hours is not None and len(hours[0]) >= MIN_HOURS:
        return forecast_series(hours[0]), forecast_series(hours[1])
    tok, usd = minutes if minutes is not None else ([], [])
    return minute_rate_forecast(tok), minute_rate_forecast(usd)


def token_forecast(
    events: Sequence[Event],
    *,
    now: float,
    budget_usd_per_hour: float | None = None,
    series: dict[str, tuple[list[float], list[float]]] | None = None,
    top_agents: int = TOP_AGENTS,
) -> dict[str, Any]:
    """Per-agent next-hour tokens and cost with 95 % intervals, the total, and budget
    alerts. ``series`` (e.g. from :func:`hourly_series_from_aggregates`) replaces the hourly
    series built from events; the minute-level rate always comes from ``events``. The
    ``top_agents`` with the most tokens are forecast one by one, the others summed into one
    series (``others``), so the cost does not grow with the number of agents."""
    if series is None:
        series = hourly_series(events, now=now)
    minutes = minute_series(events, now=now)
    names = set(series) | set(minutes)

    def volume(a: str) -> tuple[float, float, str]:
        h, m = series.get(a, ([], [])), minutes.get(a, ([], []))
        return (-(sum(h[0]) + sum(m[0])), -(sum(h[1]) + sum(m[1])), a)

    ranked = sorted(names, key=volume)
    rest = ranked[top_agents:]
    units: list[tuple[str | None, Any, Any]] = [
        (a, series.get(a), minutes.get(a)) for a in sorted(ranked[:top_agents])
    ]
    if rest:  # one summed series for the long tail (``others``)
        units.append((
            None,
            _merge(series[a] for a in rest if a in series) if any(a in series for a in rest)
            else None,
            _merge(minutes[a] for a in rest if a in minutes) if any(a in minutes for a in rest)
            else None,
        ))  # fmt: skip
    agents = []
    others: dict[str, Any] | None = None
    total_cost = total_tokens = 0.0
    var_cost = var_tokens = 0.0
    bounded = True  # every agent has an interval
    for agent, hours, mins in units:
        ft, fc = _agent_forecast(hours, mins)
        if ft.points == 0:
            continue  # seen only in the minute now in progress: nothing complete to go on
        total_tokens += ft.next
        total_cost += fc.next
        if fc.high is None or ft.high is None:
            bounded = False
        else:
            var_cost += (fc.high - fc.next) ** 2
            var_tokens += (ft.high - ft.next) ** 2
        if agent is None:
            others = {"agents": len(rest), "tokens": asdict(ft), "cost_usd": asdict(fc)}
        else:
            agents.append({"agent": agent, "tokens": asdict(ft), "cost_usd": asdict(fc)})
    forecast_any = bool(agents) or others is not None
    half_cost = math.sqrt(var_cost) if bounded and forecast_any else None
    half_tok = math.sqrt(var_tokens) if bounded and forecast_any else None
    tok_low, tok_high = _interval(total_tokens, half_tok)
    cost_low, cost_high = _interval(total_cost, half_cost)
    alerts = []
    if budget_usd_per_hour is not None and forecast_any:
        level = "alert" if total_cost > budget_usd_per_hour else None
        if level is None and half_cost is not None and total_cost + half_cost > budget_usd_per_hour:
            level = "warning"
        if level:
            err = f" (95% up to ${total_cost + half_cost:.2f})" if half_cost is not None else ""
            alerts.append({
                "kind": "budget_forecast",
                "level": level,
                "forecast_usd": round(total_cost, 6),
                "high_usd": None if half_cost is None else round(total_cost + half_cost, 6),
                "budget_usd_per_hour": budget_usd_per_hour,
                "text": f"next hour forecast ${total_cost:.2f}{err} vs budget "
                f"${budget_usd_per_hour:.2f}/h",
            })  # fmt: skip
    return {
        "forecast_hour_start": now,  # the next 60 minutes from now
        "agents": agents,
        "agents_total": len(agents) + (others["agents"] if others else 0),
        "others": others,
        "total_tokens": round(total_tokens, 3),
        "total_tokens_low": _round(tok_low, 3),
        "total_tokens_high": _round(tok_high, 3),
        "total_cost_usd": round(total_cost, 6),
        "total_cost_low_usd": _round(cost_low, 6),
        "total_cost_high_usd": _round(cost_high, 6),
        "interval": "95%",
        "alerts": alerts,
    }
