"""Snapshot building for the agents table (internal): cached per-agent views.

A view is rebuilt only when its agent saw an event, one of its buckets left the window,
the minute turned while it has a sparkline, or (for agents younger than the window) its
$/hour span stepped (not every agent each time the window moves or the minute turns); its
tools, collaborators, hypotheses and sparkline tuples are cached on their own
versions, so thousands of mostly idle agents cost little per frame.
"""

from __future__ import annotations

import math
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from .model import AgentView
from .parts import SPARK_MINUTES, AgentAcc
from .window import BUCKET_S, KeyedCounts

if TYPE_CHECKING:
    from . import Reducer
    from .registry import AgentRecord

__all__ = ["MIN_SPAN_S", "agents_view", "minutes", "top", "top_of"]

MIN_SPAN_S = 60.0
_COUNT = itemgetter(1)
_ID = attrgetter("id")
_LAST = attrgetter("last_activity")
T_ = TypeVar("T_")


_ZEROS = (0.0,) * SPARK_MINUTES


def minutes(spark: dict[int, float], now: float) -> tuple[float, ...]:
    """Per-minute values for the last hour, oldest first, ending with now's minute."""
    m = int(now // 60)
    return tuple(map(spark.get, range(m - SPARK_MINUTES + 1, m + 1), _ZEROS))


def _agent_minutes(acc: AgentAcc, now: float) -> tuple[float, ...]:
    """The agent's sparkline; when only the current minute changed (the usual case),
    only its last value is replaced."""
    m = int(now // 60)
    hit = acc.cache.get("spark")
    if hit is not None:
        (cm, cver), vals = hit
        if cver == acc.spark_ver and cm == m:
            return vals  # type: ignore[no-any-return]
        if cm == m and acc.spark_low >= m:
            vals = (*vals[:-1], acc.spark.get(m, 0.0))
            acc.cache["spark"] = ((m, acc.spark_ver), vals)
            acc.spark_low = 2**62
            return vals  # type: ignore[no-any-return]
    vals = minutes(acc.spark, now)
    acc.cache["spark"] = ((m, acc.spark_ver), vals)
    acc.spark_low = 2**62
    return vals


def top(kc: KeyedCounts[str], n: int) -> list[tuple[str, int]]:
    return top_of(kc.tot, n)


def top_of(d: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The ``n`` largest counts; ties keep first-seen order (deterministic)."""
    items = sorted(d.items(), key=_COUNT, reverse=True)
    return items[:n]


def _parts(acc: AgentAcc) -> tuple[Any, Any, Any]:
    """Tools used, collaborators and hypotheses, each rebuilt only when it changed."""
    c = acc.cache
    key = (acc.tools.ver, acc.partners.ver, len(acc.hyps), acc.hyps[-1] if acc.hyps else None)
    hit = c.get("parts")
    if hit is not None and hit[0] == key:
        return hit[1]  # type: ignore[no-any-return]
    old = hit[0] if hit is not None else (-1, -1, -1, None)
    prev = hit[1] if hit is not None else ((), (), ())
    tools = prev[0] if old[0] == key[0] else tuple(top(acc.tools, 50))
    partners = prev[1] if old[1] == key[1] else tuple(sorted(acc.partners.tot))
    hyps = prev[2] if old[2:] == key[2:] else tuple(acc.hyps)
    val = (tools, partners, hyps)
    c["parts"] = (key, val)
    return val


def _agent(
    rec: AgentRecord, acc: AgentAcc, now: float, span: float, load: int, status: Any
) -> AgentView:
    v = acc.sums.tot
    waiting = status == "waiting_human"
    cost = v[3]  # AgentAcc.COST
    if cost < 0.0:
        cost = 0.0
    aid = rec.id
    tools_used, collaborators, hypotheses = _parts(acc)
    return AgentView(
        aid,
        rec.role or aid,
        status,
        rec.last_activity,
        load,
        rec.capabilities,
        rec.goal,
        rec.model,
        rec.tools,
        rec.allow_delegation,
        rec.first_seen,
        int(v[0]),  # IN
        int(v[1]),  # OUT
        int(v[2]),  # CACHED
        cost,
        int(v[4]),  # UNP
        cost * 3600.0 / span,
        int(v[5]),  # LLM
        int(v[6]),  # TOOL
        tools_used,
        collaborators,
        hypotheses,
        _agent_minutes(acc, now),
        rec.last_error,
        int(v[8]),  # REASON
        rec.wait_open if waiting else None,
        rec.wait_message if waiting else None,
    )


def agents_view(r: Reducer, now: float) -> tuple[AgentView, ...]:
    """Active agents, most recent first. A view is rebuilt only when its agent saw an
    event (every event of an agent bumps its ``AgentAcc.version``: its registry record
    changes only then), one of its buckets left the window, the minute turned while it has
    a sparkline, or (for agents younger than the window) the 10 s step of its $/hour span
    changed: an unchanged agent costs a key comparison, not a view, so 10,000 mostly idle
    agents stay cheap per frame."""
    # an agent waiting for a human stays listed while its wait is in the window
    recs = r.registry.active_records(r.active_window_s, now, r.window_s)
    recs.sort(key=_ID)  # ties by id; stable, so the next sort keeps it
    recs.sort(key=_LAST, reverse=True)
    old = r.snapshot_cache.views
    new: dict[str, tuple[tuple[Any, ...], AgentView, AgentAcc]] = {}
    minute = int(now // 60)
    w = r.window_s
    old_edge = now - w  # agents first seen before it are measured over the whole window
    accs = r._accs
    out: list[AgentView] = []
    append = out.append
    for rec in recs:
        aid = rec.id
        acc = accs.get(aid)
        if acc is None:
            acc = accs[aid] = AgentAcc(r.s.expiry)
        first = rec.first_seen
        if first <= old_edge:
            span = w
        else:  # max(MIN_SPAN_S, min(w, the age in whole buckets))
            span = math.ceil((now - first) / BUCKET_S) * BUCKET_S
            if span > w:
                span = w
            if span < MIN_SPAN_S:
                span = MIN_SPAN_S
        key = (
            acc.version,
            acc.sums.dropped,
            acc.tools.ver,
            acc.partners.ver,
            minute if acc.spark else None,
            span,
            rec.role,
            rec.capabilities,
        )
        hit = old.get(aid)
        if hit is not None and hit[0] == key and hit[2] is acc:
            view = hit[1]
        else:
            view = _agent(rec, acc, now, span, rec.load, rec.status)
        new[aid] = (key, view, acc)
        append(view)
    r.snapshot_cache.views = new
    return tuple(out)
