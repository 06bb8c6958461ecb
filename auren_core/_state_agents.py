"""Snapshot building for the agents table (internal): cached per-agent views.

A view is rebuilt only when its agent saw an event, the window moved, the minute
turned, or (for agents younger than the window) its $/hour span stepped; its
tools, collaborators, hypotheses and sparkline tuples are cached on their own
versions, so thousands of mostly idle agents cost little per frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from ._state_model import AgentView
from ._state_parts import SPARK_MINUTES, AgentAcc
from ._state_window import BUCKET_S, KeyedCounts

if TYPE_CHECKING:
    from .registry import AgentRecord
    from .state import Reducer

__all__ = ["MIN_SPAN_S", "agents_view", "minutes", "top", "top_of"]

MIN_SPAN_S = 60.0
_COUNT = itemgetter(1)
T_ = TypeVar("T_")


def minutes(spark: dict[int, float], now: float) -> tuple[float, ...]:
    m = int(now // 60)
    get = spark.get
    return tuple(get(k, 0.0) for k in range(m - SPARK_MINUTES + 1, m + 1))


def top(kc: KeyedCounts[str], n: int) -> list[tuple[str, int]]:
    return top_of(kc.tot, n)


def top_of(d: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The ``n`` largest counts; ties keep first-seen order (deterministic)."""
    items = sorted(d.items(), key=_COUNT, reverse=True)
    return items[:n]


def _cached(acc: AgentAcc, name: str, key: Any, make: Callable[[], T_]) -> T_:
    hit = acc.cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]  # type: ignore[no-any-return]
    val = make()
    acc.cache[name] = (key, val)
    return val


def _agent(r: Reducer, rec: AgentRecord, acc: AgentAcc, now: float, span: float) -> AgentView:
    v = acc.sums.tot
    cost = max(0.0, v[AgentAcc.COST])
    aid = rec.id
    return AgentView(
        id=aid,
        role=rec.role or aid,
        status=rec.status,
        last_activity=rec.last_activity,
        current_load=rec.load,
        capabilities=rec.capabilities,
        goal=rec.goal,
        model=rec.model,
        tools=rec.tools,
        allow_delegation=rec.allow_delegation,
        first_seen=rec.first_seen,
        input_tokens=int(v[AgentAcc.IN]),
        output_tokens=int(v[AgentAcc.OUT]),
        cached_tokens=int(v[AgentAcc.CACHED]),
        cost_usd=cost,
        unpriced_llm_calls=int(v[AgentAcc.UNP]),
        usd_per_hour=cost * 3600.0 / span,
        llm_calls=int(v[AgentAcc.LLM]),
        tool_calls=int(v[AgentAcc.TOOL]),
        tools_used=_cached(acc, "tools", acc.tools.ver, lambda: tuple(top(acc.tools, 50))),
        collaborators=_cached(
            acc, "partners", acc.partners.ver, lambda: tuple(sorted(acc.partners.tot))
        ),
        hypotheses=_cached(acc, "hyps", len(acc.hyps) and acc.hyps[-1], lambda: tuple(acc.hyps)),
        cost_per_minute=_cached(
            acc,
            "spark",
            (int(now // 60), sum(acc.spark.values())),
            lambda: minutes(acc.spark, now),
        ),
        last_error=rec.last_error,
    )


def agents_view(r: Reducer, now: float) -> tuple[AgentView, ...]:
    """Active agents, most recent first. A view is rebuilt only when its agent saw an
    event, the window moved, the minute turned, or (for agents younger than the
    window) the 10 s step of its $/hour span changed."""
    recs = r.registry.active_records(r.active_window_s, now)
    recs.sort(key=lambda x: (-x.last_activity, x.id))
    old = r._views
    new: dict[str, tuple[tuple[Any, ...], AgentView]] = {}
    cutoff = r.s.expiry.cutoff
    minute = int(now // 60)
    w = r.window_s
    out = []
    for rec in recs:
        aid = rec.id
        acc = r._accs.get(aid)
        if acc is None:
            acc = r._accs[aid] = AgentAcc(r.s.expiry)
        age = now - rec.first_seen
        span = w if age >= w else max(MIN_SPAN_S, min(w, math.ceil(age / BUCKET_S) * BUCKET_S))
        key = (acc.version, rec.load, rec.status, rec.role, rec.capabilities, cutoff, minute, span)
        hit = old.get(aid)
        view = hit[1] if hit is not None and hit[0] == key else _agent(r, rec, acc, now, span)
        new[aid] = (key, view)
        out.append(view)
    r._views = new
    return tuple(out)
